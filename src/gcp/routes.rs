//! Which snapshot column feeds each of a table's columns, and the BigQuery SQL that reads it
//! from the staging table (JSON staged as text is parsed) and converts it losslessly into the
//! column's type; or why the pairing is refused. A table pg2bq creates is fed as is; a table
//! the app created (string ids, JSON, extra columns) is fed through the conversions it asks for.
//!
//! Input: the snapshot's columns (from the manifest), the target's columns (its table
//! resource), the operator's column map and opt-ins. Output: one [`ColumnRoute`] per target
//! column, or every refusal at once, each naming the table, the column and both types.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::gcp::schema::{FieldMode, TableColumn};
use crate::gcp::sql::quote;
use crate::model::manifest::{ColumnManifest, TableManifest};
use crate::model::types::{BigQueryType, ColumnMapping};

/// What the operator allows beyond the lossless conversions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetOptions {
    /// Snapshot column (BigQuery name) → target column, from `--column-map table.source=target`.
    pub column_map: BTreeMap<String, String>,
    /// `DATE` into `TIMESTAMP`/`DATETIME` (midnight UTC): only when asked for.
    pub date_to_timestamp: bool,
}

/// The operator's routing options for every table: `--column-map` (TOML `column_map`) and
/// `--date-to-timestamp`; `load` and `validate` read a table through the same routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// Table name (as options name it) → snapshot column → target column.
    pub column_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub date_to_timestamp: bool,
}

impl Routing {
    pub fn options_for(&self, table: &TableManifest) -> TargetOptions {
        let column_map = self.column_maps.iter().find(|(name, _)| table.is_named(name)).map(|(_, map)| map.clone());
        TargetOptions { column_map: column_map.unwrap_or_default(), date_to_timestamp: self.date_to_timestamp }
    }

    /// Whether a `--column-map` names this table.
    pub fn maps_columns_of(&self, table: &TableManifest) -> bool {
        self.column_maps.keys().any(|name| table.is_named(name))
    }
}

/// How one target column is filled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnRoute {
    /// The target column.
    pub target: String,
    /// The snapshot column feeding it; `None` leaves it NULL (a NULLABLE column the snapshot
    /// does not have).
    pub source: Option<String>,
    /// The SQL over the staging table's column (`s.<source>`), or `NULL`.
    pub expr: String,
    /// What the expression does, for `--dry-run`: `as is`, `INT64 → STRING`, `left NULL`, …
    pub conversion: String,
    /// The target's values compare only as JSON text (JSON, arrays): BigQuery has no `=` for them.
    #[serde(skip)]
    pub compare_as_text: bool,
    /// The SQL reading the target column (`t.<target>`) back as the snapshot's BigQuery type,
    /// for `validate`: a value that no longer converts back becomes NULL (and fails its check).
    #[serde(skip)]
    pub inverse: String,
}

/// The columns of a table pg2bq creates from the snapshot: each fed as is.
pub fn snapshot_columns(snapshot: &[ColumnManifest]) -> Vec<TableColumn> {
    let column = |c: &ColumnMapping| TableColumn { name: c.bq_name.clone(), field_type: Ok(c.bq_type), mode: Ok(FieldMode::of(c)) };
    snapshot.iter().map(|c| column(&c.mapping)).collect()
}

/// Routes every target column, or lists every refusal.
///
/// # Errors
/// One line per problem: a snapshot column with no target column, a lossy or unknown type
/// pairing, a REQUIRED target column that would receive NULLs (with their count) or that the
/// snapshot does not feed, a repeated column paired with a single one.
pub fn route_columns(
    table: &str,
    snapshot: &[ColumnManifest],
    target: &[TableColumn],
    options: &TargetOptions,
) -> Result<Vec<ColumnRoute>, Vec<String>> {
    let mut problems = Vec::new();
    let mut fed: BTreeMap<&str, &ColumnManifest> = BTreeMap::new();
    for column in snapshot {
        let name = column.mapping.bq_name.as_str();
        let wanted = options.column_map.get(name).map_or(name, String::as_str);
        // BigQuery column names are case-insensitive: `ID` is the column `id`.
        match target.iter().find(|t| t.name.eq_ignore_ascii_case(wanted)) {
            Some(t) => {
                fed.insert(t.name.as_str(), column);
            }
            None => problems.push(format!(
                "table `{table}`: snapshot column `{name}` has no column `{wanted}` in the target; \
                 map it with --column-map {table}.{name}=<target column>"
            )),
        }
    }
    let mut routes = Vec::new();
    for column in target {
        match fed.get(column.name.as_str()) {
            Some(source) => match route(table, source, column, options) {
                Ok(route) => routes.push(route),
                Err(problem) => problems.push(problem),
            },
            None if column.mode == Ok(FieldMode::Required) => problems.push(format!(
                "table `{table}`: target column `{}` is REQUIRED and no snapshot column feeds it; \
                 map one with --column-map or make the column NULLABLE",
                column.name
            )),
            None => routes.push(ColumnRoute {
                target: column.name.clone(),
                source: None,
                expr: "NULL".into(),
                conversion: "left NULL (not in the snapshot)".into(),
                compare_as_text: false,
                inverse: String::new(),
            }),
        }
    }
    if problems.is_empty() {
        Ok(routes)
    } else {
        Err(problems)
    }
}

/// One snapshot column into one target column.
fn route(table: &str, source: &ColumnManifest, target: &TableColumn, options: &TargetOptions) -> Result<ColumnRoute, String> {
    let mapping = &source.mapping;
    let source_type = format!("{}{}", if mapping.repeated { "REPEATED " } else { "" }, mapping.bq_type.sql_name());
    let refuse = |why: &str| {
        format!(
            "table `{table}`: column `{}` ({source_type}, Postgres {}) cannot go into target column `{}` ({}): {why}",
            mapping.bq_name,
            mapping.pg_type,
            target.name,
            target.describe()
        )
    };
    let (Ok(mode), Ok(target_type)) = (&target.mode, &target.field_type) else {
        return Err(refuse("the target's type is not one pg2bq loads"));
    };
    if mapping.repeated != (*mode == FieldMode::Repeated) {
        return Err(refuse("a repeated column pairs only with a repeated one"));
    }
    let Conversion { expr, conversion, inverse } = convert(mapping, *target_type, &target.name, options).map_err(|why| refuse(&why))?;
    let nulls = source.aggregates.null_count;
    if *mode == FieldMode::Required && nulls > 0 {
        return Err(refuse(&format!("the target is REQUIRED and the snapshot holds {nulls} NULL(s) in it")));
    }
    let compare_as_text = *mode == FieldMode::Repeated || *target_type == BigQueryType::Json;
    Ok(ColumnRoute { target: target.name.clone(), source: Some(mapping.bq_name.clone()), expr, conversion, compare_as_text, inverse })
}

/// The SQL of one route, both ways.
struct Conversion {
    expr: String,
    conversion: String,
    inverse: String,
}

/// A snapshot column's value, read from the staging table (`s`), as the target's type, and the
/// target's value (`t`) read back as the snapshot's; or why no lossless conversion exists.
fn convert(mapping: &ColumnMapping, to: BigQueryType, target: &str, options: &TargetOptions) -> Result<Conversion, String> {
    // JSON is staged as text and parsed here; PARSE_JSON's wide_number_mode defaults to
    // 'exact': a number JSON cannot hold is an error.
    let column = format!("s.{}", quote(&mapping.bq_name));
    let held = format!("t.{}", quote(target));
    let (from, scalar) = (mapping.bq_type, !mapping.repeated);
    let done = |expr: String, conversion: String, inverse: String| Ok(Conversion { expr, conversion, inverse });
    match (from, to) {
        (BigQueryType::Json, BigQueryType::Json) if !scalar => {
            done(format!("ARRAY(SELECT PARSE_JSON(e) FROM UNNEST({column}) AS e WITH OFFSET AS o ORDER BY o)"), "as is".into(), held)
        }
        (BigQueryType::Json, BigQueryType::Json) => done(format!("PARSE_JSON({column})"), "as is".into(), held),
        _ if from == to => done(column, "as is".into(), held),
        (BigQueryType::Int64, BigQueryType::String | BigQueryType::Numeric | BigQueryType::Bignumeric)
        | (BigQueryType::Numeric, BigQueryType::Bignumeric)
            if scalar =>
        {
            let (from, to) = (from.sql_name(), to.sql_name());
            done(format!("CAST({column} AS {to})"), format!("{from} → {to}"), format!("SAFE_CAST({held} AS {from})"))
        }
        (BigQueryType::Date, BigQueryType::Timestamp | BigQueryType::Datetime) if scalar && options.date_to_timestamp => {
            let to = to.sql_name();
            let inverse = format!("IF({held} = {to}(DATE({held})), DATE({held}), NULL)");
            done(format!("{to}({column})"), format!("DATE → {to} (midnight, by --date-to-timestamp)"), inverse)
        }
        (BigQueryType::Date, BigQueryType::Timestamp | BigQueryType::Datetime) if scalar => {
            Err("a date becomes midnight of that day; allow it with --date-to-timestamp".into())
        }
        (BigQueryType::String, BigQueryType::Json) if scalar && matches!(mapping.pg_type.as_str(), "json" | "jsonb") => {
            done(format!("PARSE_JSON({column})"), "STRING(json) → JSON".into(), format!("TO_JSON_STRING({held})"))
        }
        _ => Err("no lossless conversion between these types".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::aggregates::ColumnAggregates;
    use crate::model::types::{map_column, OutOfRange, PgColumn};

    fn snapshot(name: &str, pg_type: &str, nulls: u64) -> ColumnManifest {
        let mapping = map_column(&PgColumn::base(name, pg_type, -1), None, OutOfRange::Refuse).unwrap();
        let aggregates = ColumnAggregates { null_count: nulls, ..ColumnAggregates::default() };
        ColumnManifest { mapping, adjusted_rows: 0, aggregates }
    }

    fn target(name: &str, field_type: BigQueryType, mode: FieldMode) -> TableColumn {
        TableColumn { name: name.into(), field_type: Ok(field_type), mode: Ok(mode) }
    }

    /// The first user's `entity_mentions`: string ids, JSON metadata, an extra column.
    fn app_table() -> Vec<TableColumn> {
        vec![
            target("id", BigQueryType::String, FieldMode::Required),
            target("metadata", BigQueryType::Json, FieldMode::Nullable),
            target("mentioned_at", BigQueryType::Timestamp, FieldMode::Required),
            target("ingested_by", BigQueryType::String, FieldMode::Nullable),
        ]
    }

    #[test]
    fn app_created_columns_take_lossless_conversions_and_extra_columns_stay_null() {
        let columns = [snapshot("id", "int8", 0), snapshot("metadata", "jsonb", 3), snapshot("mentioned_at", "timestamptz", 0)];
        let routes = route_columns("entity_mentions", &columns, &app_table(), &TargetOptions::default()).unwrap();
        let described: Vec<(&str, &str, &str)> =
            routes.iter().map(|r| (r.target.as_str(), r.expr.as_str(), r.conversion.as_str())).collect();
        assert_eq!(
            described,
            [
                ("id", "CAST(s.`id` AS STRING)", "INT64 → STRING"),
                ("metadata", "PARSE_JSON(s.`metadata`)", "as is"),
                ("mentioned_at", "s.`mentioned_at`", "as is"),
                ("ingested_by", "NULL", "left NULL (not in the snapshot)"),
            ]
        );
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let columns = [snapshot("id", "int8", 2), snapshot("note", "text", 0), snapshot("mentioned_at", "date", 0)];
        let mut target_columns = app_table();
        target_columns.push(target("source", BigQueryType::String, FieldMode::Required));
        let problems = route_columns("entity_mentions", &columns, &target_columns, &TargetOptions::default()).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            problems[0].contains("snapshot column `note` has no column `note`")
                && problems[0].contains("--column-map entity_mentions.note=")
        );
        assert!(problems[1].contains("`id` (INT64, Postgres int8)") && problems[1].contains("holds 2 NULL(s)"), "{}", problems[1]);
        assert!(
            problems[2].contains("(DATE, Postgres date)")
                && problems[2].contains("REQUIRED TIMESTAMP")
                && problems[2].contains("--date-to-timestamp")
        );
        assert!(problems[3].contains("target column `source` is REQUIRED"), "{}", problems[3]);
    }

    #[test]
    fn the_column_map_renames_and_opt_ins_allow_dates() {
        let columns = [snapshot("id", "int8", 0), snapshot("happened_on", "date", 0)];
        let options = TargetOptions {
            column_map: BTreeMap::from([("happened_on".to_string(), "mentioned_at".to_string())]),
            date_to_timestamp: true,
        };
        let routes = route_columns("entity_mentions", &columns, &app_table(), &options).unwrap();
        assert_eq!(routes[2].expr, "TIMESTAMP(s.`happened_on`)");
        assert_eq!(routes[2].source.as_deref(), Some("happened_on"));
    }

    #[test]
    fn target_columns_match_whatever_their_case_as_in_bigquery() {
        let columns = [snapshot("id", "int8", 0)];
        let routes =
            route_columns("t", &columns, &[target("ID", BigQueryType::String, FieldMode::Required)], &TargetOptions::default()).unwrap();
        assert_eq!((routes[0].target.as_str(), routes[0].source.as_deref()), ("ID", Some("id")));
    }

    #[test]
    fn lossy_pairings_are_refused_with_both_types() {
        for (pg_type, into) in [
            ("float8", BigQueryType::Int64),
            ("text", BigQueryType::Int64),
            ("numeric", BigQueryType::Int64),
            ("int8", BigQueryType::Float64),
        ] {
            let problems =
                route_columns("t", &[snapshot("c", pg_type, 0)], &[target("c", into, FieldMode::Nullable)], &TargetOptions::default())
                    .unwrap_err();
            assert!(problems[0].contains("no lossless conversion") && problems[0].contains(into.sql_name()), "{pg_type}: {problems:?}");
        }
    }
}

//! Which snapshot column feeds each of a table's columns, and the BigQuery SQL that reads it
//! from the staging table (JSON staged as text is parsed) and converts it losslessly into the
//! column's type; or why the pairing is refused. A table pg2bq creates is fed as is; a table
//! the app created (string ids, JSON, extra columns) is fed through the conversions it asks for.
//!
//! Input: the snapshot's columns (from the manifest), the target's columns (its table
//! resource), the operator's column map and opt-ins. Output: one [`ColumnRoute`] per target
//! column, or every refusal at once, each naming the table, the column and both types.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::gcp::schema::{FieldMode, TableColumn};
use crate::gcp::sql::{quote, string_literal};
use crate::model::manifest::{ColumnManifest, TableManifest};
use crate::model::types::{BigQueryType, ColumnMapping};

/// What the operator asks of one table beyond the lossless conversions, by snapshot column
/// (BigQuery name) unless said otherwise. `load` records it per run; `validate` reads the table
/// back through the routes it gives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetOptions {
    /// Snapshot column → target column (`--column-map table.source=target`).
    pub column_map: BTreeMap<String, String>,
    /// `DATE` into `TIMESTAMP`/`DATETIME` (midnight UTC): only when asked for.
    pub date_to_timestamp: bool,
    /// Snapshot columns left out of the load (`--exclude-column`).
    pub excluded: BTreeSet<String>,
    /// Target column the snapshot does not feed → the constant it is filled with (`--set`).
    pub set: BTreeMap<String, String>,
    /// Snapshot column → the value its NULLs become (`--default`).
    pub defaults: BTreeMap<String, String>,
    /// Snapshot column → the target type a lossy conversion into it is allowed (`--allow-lossy`).
    pub lossy: BTreeMap<String, BigQueryType>,
}

/// The operator's routing options for every table (`--column-map`, `--exclude-column`, `--set`,
/// `--default`, `--allow-lossy` and their TOML keys), by table name as options name it, and
/// `--date-to-timestamp` for all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub tables: BTreeMap<String, TargetOptions>,
    pub date_to_timestamp: bool,
}

impl Routing {
    pub fn options_for(&self, table: &TableManifest) -> TargetOptions {
        let options = self.tables.iter().find(|(name, _)| table.is_named(name)).map(|(_, options)| options.clone());
        TargetOptions { date_to_timestamp: self.date_to_timestamp, ..options.unwrap_or_default() }
    }

    /// Whether an option names this table (it then loads through routes, like an app's table).
    pub fn routes_columns_of(&self, table: &TableManifest) -> bool {
        self.tables.keys().any(|name| table.is_named(name))
    }
}

/// How one target column is filled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnRoute {
    /// The target column.
    pub target: String,
    /// The snapshot column feeding it; `None` leaves it NULL (a NULLABLE column the snapshot
    /// does not have) or fills it with a constant (`--set`).
    pub source: Option<String>,
    /// The SQL over the staging table's column (`s.<source>`), a constant, or `NULL`.
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
    /// The values read back are not the snapshot's own (JSON as BigQuery serialises it, NULLs
    /// replaced, a lossy type): `load` measures them over the staged rows and records what
    /// `validate` is to expect, in this type.
    #[serde(skip)]
    pub measured_as: Option<BigQueryType>,
}

impl ColumnRoute {
    /// Whether the load writes the column: from the snapshot or with a `--set` constant (not
    /// a column left NULL).
    pub fn is_written(&self) -> bool {
        self.source.is_some() || self.expr != "NULL"
    }

    /// The snapshot column as `validate` measures it through this route: the snapshot's, or
    /// the lossy target type's.
    pub fn measured_column(&self, column: &ColumnManifest) -> ColumnManifest {
        let mut measured = column.clone();
        if let Some(bq_type) = self.measured_as {
            measured.mapping.bq_type = bq_type;
        }
        measured
    }
}

/// Why a table's columns cannot be routed: one variant per refusal, each naming the table
/// (as the options name it), the columns and the way out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteProblem {
    #[error("table `{table}`: {flag} names column `{column}`, which the snapshot does not have")]
    UnknownColumn { table: String, flag: &'static str, column: String },
    #[error(
        "table `{table}`: snapshot column `{column}` has no column `{wanted}` in the target; \
         map it with --column-map {table}.{column}=<target column> or leave it out with --exclude-column {table}.{column}"
    )]
    NoTargetColumn { table: String, column: String, wanted: String },
    #[error(
        "table `{table}`: target column `{target}` would be fed by {} snapshot columns ({}); \
         map each to a column of its own or leave the others out with --exclude-column",
        sources.len(),
        sources.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
    )]
    FedTwice { table: String, target: String, sources: Vec<String> },
    #[error("table `{table}`: column `{column}` is left out with --exclude-column and also mapped or given a --default")]
    ExcludedAndMapped { table: String, column: String },
    #[error("table `{table}`: column `{column}` ({source_type}, Postgres {pg_type}) cannot go into target column `{target}` ({target_type}): {reason}")]
    Conversion {
        table: String,
        column: String,
        source_type: String,
        pg_type: String,
        target: String,
        target_type: String,
        reason: ConversionRefusal,
    },
    #[error(
        "table `{table}`: --set {table}.{target}=… fills target column `{target}`, which snapshot column `{fed_by}` already feeds; \
         leave `{fed_by}` out with --exclude-column {table}.{fed_by} or drop the --set"
    )]
    SetOverFed { table: String, target: String, fed_by: String },
    #[error("table `{table}`: --set {table}.{target}={value}: {reason}")]
    BadSet { table: String, target: String, value: String, reason: ConstantRefusal },
    #[error(
        "table `{table}`: target column `{target}` is REQUIRED and no snapshot column feeds it; \
         map one with --column-map, fill it with --set {table}.{target}=<value>, or make the column NULLABLE"
    )]
    RequiredUnfed { table: String, target: String },
    #[error("table `{table}`: --set names column `{column}`, which the target table does not have")]
    UnknownSetColumn { table: String, column: String },
}

/// Why a snapshot column cannot go into a target column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionRefusal {
    #[error("the target's type is not one pg2bq loads")]
    UnknownTargetType,
    #[error("a repeated column pairs only with a repeated one")]
    RepeatedMismatch,
    #[error("a date becomes midnight of that day; allow it with --date-to-timestamp")]
    DateNeedsOptIn,
    #[error("FLOAT64 keeps 15–17 significant digits; allow the rounding with --allow-lossy {table}.{column}=FLOAT64")]
    Lossy { table: String, column: String },
    #[error("no lossless conversion between these types")]
    NoLosslessConversion,
    #[error("--default {value}: {reason}")]
    BadDefault { value: String, reason: ConstantRefusal },
    #[error(
        "the target is REQUIRED and the snapshot holds {nulls} NULL(s) in it; give them a value with --default {table}.{column}=<value>"
    )]
    RequiredNulls { table: String, column: String, nulls: u64 },
}

/// Why a `--set` or `--default` value cannot fill a column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstantRefusal {
    #[error("the target column is {target_type}, which pg2bq does not fill")]
    NotFillable { target_type: String },
    #[error("a repeated column takes no constant")]
    Repeated,
    #[error("`{value}` is not a {} value", bq_type.sql_name())]
    NotAValue { value: String, bq_type: BigQueryType },
}

/// The columns of a table pg2bq creates from the snapshot, without the excluded ones: each fed as is.
pub fn snapshot_columns(snapshot: &[ColumnManifest], options: &TargetOptions) -> Vec<TableColumn> {
    let column = |c: &ColumnMapping| TableColumn { name: c.bq_name.clone(), field_type: Ok(c.bq_type), mode: Ok(FieldMode::of(c)) };
    snapshot.iter().filter(|c| !options.excluded.contains(&c.mapping.bq_name)).map(|c| column(&c.mapping)).collect()
}

/// Routes every target column, or lists every refusal.
///
/// # Errors
/// One [`RouteProblem`] per refusal: an option naming a column the snapshot (or the target) lacks, two
/// snapshot columns or a constant into one target column, a snapshot column with no target
/// column, a lossy or unknown type pairing, a REQUIRED target column that would receive NULLs
/// (with their count) or that nothing feeds, a repeated column paired with a single one.
pub fn route_columns(
    table: &str,
    snapshot: &[ColumnManifest],
    target: &[TableColumn],
    options: &TargetOptions,
) -> Result<Vec<ColumnRoute>, Vec<RouteProblem>> {
    let (fed, mut problems) = feed(table, snapshot, target, options);
    let mut routes = Vec::new();
    for column in target {
        let set = options.set.iter().find(|(name, _)| name.eq_ignore_ascii_case(&column.name)).map(|(_, value)| value);
        match (fed.get(column.name.as_str()), set) {
            (Some(source), None) => match route(table, source, column, options) {
                Ok(route) => routes.push(route),
                Err(problem) => problems.push(*problem),
            },
            (Some(source), Some(_)) => problems.push(RouteProblem::SetOverFed {
                table: table.into(),
                target: column.name.clone(),
                fed_by: source.mapping.bq_name.clone(),
            }),
            (None, Some(value)) => match constant_route(column, value) {
                Ok(route) => routes.push(route),
                Err(reason) => {
                    problems.push(RouteProblem::BadSet { table: table.into(), target: column.name.clone(), value: value.clone(), reason })
                }
            },
            (None, None) if column.mode == Ok(FieldMode::Required) => {
                problems.push(RouteProblem::RequiredUnfed { table: table.into(), target: column.name.clone() })
            }
            (None, None) => routes.push(ColumnRoute {
                target: column.name.clone(),
                source: None,
                expr: "NULL".into(),
                conversion: "left NULL (not in the snapshot)".into(),
                compare_as_text: false,
                inverse: String::new(),
                measured_as: None,
            }),
        }
    }
    for name in options.set.keys().filter(|name| !target.iter().any(|t| t.name.eq_ignore_ascii_case(name))) {
        problems.push(RouteProblem::UnknownSetColumn { table: table.into(), column: name.clone() });
    }
    if problems.is_empty() {
        Ok(routes)
    } else {
        Err(problems)
    }
}

/// The routes reading each snapshot column back from a loaded table (validate): as
/// [`route_columns`], but target columns nothing fed (the app's own, or added since) are left
/// out instead of refused.
///
/// # Errors
/// As [`route_columns`], for the snapshot's columns.
pub fn read_back_routes(
    table: &str,
    snapshot: &[ColumnManifest],
    target: &[TableColumn],
    options: &TargetOptions,
) -> Result<Vec<ColumnRoute>, Vec<RouteProblem>> {
    let (fed, mut problems) = feed(table, snapshot, target, options);
    let mut routes = Vec::new();
    for column in target {
        if let Some(source) = fed.get(column.name.as_str()) {
            match route(table, source, column, options) {
                Ok(route) => routes.push(route),
                Err(problem) => problems.push(*problem),
            }
        }
    }
    if problems.is_empty() {
        Ok(routes)
    } else {
        Err(problems)
    }
}

/// Which snapshot column feeds each target column (by the target's name), and every problem
/// with the options as a whole: names the snapshot lacks, a target column fed twice, a snapshot
/// column with no target column.
fn feed<'a>(
    table: &str,
    snapshot: &'a [ColumnManifest],
    target: &'a [TableColumn],
    options: &TargetOptions,
) -> (BTreeMap<&'a str, &'a ColumnManifest>, Vec<RouteProblem>) {
    let mut problems = Vec::new();
    let named = |flag: &'static str, names: Vec<&String>, problems: &mut Vec<RouteProblem>| {
        for name in names.into_iter().filter(|name| !snapshot.iter().any(|c| &c.mapping.bq_name == *name)) {
            problems.push(RouteProblem::UnknownColumn { table: table.into(), flag, column: name.clone() });
        }
    };
    named("--column-map", options.column_map.keys().collect(), &mut problems);
    named("--exclude-column", options.excluded.iter().collect(), &mut problems);
    named("--default", options.defaults.keys().collect(), &mut problems);
    named("--allow-lossy", options.lossy.keys().collect(), &mut problems);
    let mut fed: BTreeMap<&str, &ColumnManifest> = BTreeMap::new();
    let mut feeders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for column in snapshot.iter().filter(|c| !options.excluded.contains(&c.mapping.bq_name)) {
        let name = column.mapping.bq_name.as_str();
        let wanted = options.column_map.get(name).map_or(name, String::as_str);
        // BigQuery column names are case-insensitive: `ID` is the column `id`.
        match target.iter().find(|t| t.name.eq_ignore_ascii_case(wanted)) {
            Some(t) => {
                fed.insert(t.name.as_str(), column);
                feeders.entry(t.name.as_str()).or_default().push(name);
            }
            None => problems.push(RouteProblem::NoTargetColumn { table: table.into(), column: name.into(), wanted: wanted.into() }),
        }
    }
    for (target_column, sources) in feeders.iter().filter(|(_, sources)| sources.len() > 1) {
        problems.push(RouteProblem::FedTwice {
            table: table.into(),
            target: target_column.to_string(),
            sources: sources.iter().map(ToString::to_string).collect(),
        });
    }
    for name in options.excluded.iter().filter(|name| options.defaults.contains_key(*name) || options.column_map.contains_key(*name)) {
        problems.push(RouteProblem::ExcludedAndMapped { table: table.into(), column: name.clone() });
    }
    (fed, problems)
}

/// One snapshot column into one target column.
fn route(table: &str, source: &ColumnManifest, target: &TableColumn, options: &TargetOptions) -> Result<ColumnRoute, Box<RouteProblem>> {
    let mapping = &source.mapping;
    let refuse = |reason: ConversionRefusal| {
        Box::new(RouteProblem::Conversion {
            table: table.into(),
            column: mapping.bq_name.clone(),
            source_type: format!("{}{}", if mapping.repeated { "REPEATED " } else { "" }, mapping.bq_type.sql_name()),
            pg_type: mapping.pg_type.clone(),
            target: target.name.clone(),
            target_type: target.describe(),
            reason,
        })
    };
    let (Ok(mode), Ok(target_type)) = (&target.mode, &target.field_type) else {
        return Err(refuse(ConversionRefusal::UnknownTargetType));
    };
    if mapping.repeated != (*mode == FieldMode::Repeated) {
        return Err(refuse(ConversionRefusal::RepeatedMismatch));
    }
    let Conversion { mut expr, mut conversion, inverse, lossy } =
        convert(table, mapping, *target_type, &target.name, options).map_err(refuse)?;
    let default = options.defaults.get(&mapping.bq_name);
    let nulls = source.aggregates.null_count;
    if let Some(value) = default {
        let constant = constant(*target_type, !mapping.repeated, value)
            .map_err(|reason| refuse(ConversionRefusal::BadDefault { value: value.clone(), reason }))?;
        expr = format!("IFNULL({expr}, {constant})");
        conversion = format!("{conversion}; NULL → {value} (--default, {nulls} NULL(s) in the snapshot)");
    } else if *mode == FieldMode::Required && nulls > 0 {
        return Err(refuse(ConversionRefusal::RequiredNulls { table: table.into(), column: mapping.bq_name.clone(), nulls }));
    }
    let compare_as_text = *mode == FieldMode::Repeated || *target_type == BigQueryType::Json;
    let measured = lossy || default.is_some() || *target_type == BigQueryType::Json;
    let measured_as = measured.then_some(if lossy { *target_type } else { mapping.bq_type });
    Ok(ColumnRoute {
        target: target.name.clone(),
        source: Some(mapping.bq_name.clone()),
        expr,
        conversion,
        compare_as_text,
        inverse,
        measured_as,
    })
}

/// A target column the snapshot does not feed, filled with a constant (`--set`).
fn constant_route(target: &TableColumn, value: &str) -> Result<ColumnRoute, ConstantRefusal> {
    let (Ok(mode), Ok(target_type)) = (&target.mode, &target.field_type) else {
        return Err(ConstantRefusal::NotFillable { target_type: target.describe() });
    };
    let expr = constant(*target_type, *mode != FieldMode::Repeated, value)?;
    Ok(ColumnRoute {
        target: target.name.clone(),
        source: None,
        expr,
        conversion: format!("set to {value} (--set)"),
        compare_as_text: *target_type == BigQueryType::Json,
        inverse: String::new(),
        measured_as: None,
    })
}

/// A constant of the target's type from the operator's text (`--set`, `--default`): the text
/// as a string literal, cast (JSON parsed); numbers and booleans are checked here, other types
/// by BigQuery when the statement runs (before the table changes).
fn constant(to: BigQueryType, scalar: bool, value: &str) -> Result<String, ConstantRefusal> {
    let literal = string_literal(value);
    let parses = match to {
        BigQueryType::Int64 => value.parse::<i64>().is_ok(),
        BigQueryType::Float64 => value.parse::<f64>().is_ok(),
        BigQueryType::Bool => matches!(value.to_ascii_lowercase().as_str(), "true" | "false"),
        BigQueryType::Numeric | BigQueryType::Bignumeric => crate::model::decimal::parse_decimal(value, 76, 38).is_ok(),
        BigQueryType::Json => serde_json::from_str::<serde_json::Value>(value).is_ok(),
        _ => true,
    };
    match to {
        _ if !scalar => Err(ConstantRefusal::Repeated),
        _ if !parses => Err(ConstantRefusal::NotAValue { value: value.into(), bq_type: to }),
        BigQueryType::String => Ok(literal),
        BigQueryType::Json => Ok(format!("PARSE_JSON({literal})")),
        other => Ok(format!("CAST({literal} AS {})", other.sql_name())),
    }
}

/// The SQL of one route, both ways.
struct Conversion {
    expr: String,
    conversion: String,
    inverse: String,
    /// Allowed only by `--allow-lossy`: validate compares it as the target's type.
    lossy: bool,
}

/// A snapshot column's value, read from the staging table (`s`), as the target's type, and the
/// target's value (`t`) read back as the snapshot's; or why no lossless conversion exists.
fn convert(
    table: &str,
    mapping: &ColumnMapping,
    to: BigQueryType,
    target: &str,
    options: &TargetOptions,
) -> Result<Conversion, ConversionRefusal> {
    // JSON is staged as text and parsed here; PARSE_JSON's wide_number_mode defaults to
    // 'exact': a number JSON cannot hold is an error.
    let column = format!("s.{}", quote(&mapping.bq_name));
    let held = format!("t.{}", quote(target));
    let (from, scalar) = (mapping.bq_type, !mapping.repeated);
    let done = |expr: String, conversion: String, inverse: String| Ok(Conversion { expr, conversion, inverse, lossy: false });
    let allowed_lossy = options.lossy.get(&mapping.bq_name) == Some(&to);
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
        (BigQueryType::Date, BigQueryType::Timestamp | BigQueryType::Datetime) if scalar => Err(ConversionRefusal::DateNeedsOptIn),
        (BigQueryType::String, BigQueryType::Json) if scalar && matches!(mapping.pg_type.as_str(), "json" | "jsonb") => {
            done(format!("PARSE_JSON({column})"), "STRING(json) → JSON".into(), format!("TO_JSON_STRING({held})"))
        }
        (BigQueryType::Int64 | BigQueryType::Numeric | BigQueryType::Bignumeric, BigQueryType::Float64) if scalar && allowed_lossy => {
            let conversion = format!("{} → FLOAT64 (lossy: 15–17 significant digits, by --allow-lossy)", from.sql_name());
            Ok(Conversion { expr: format!("CAST({column} AS FLOAT64)"), conversion, inverse: held, lossy: true })
        }
        (BigQueryType::Int64 | BigQueryType::Numeric | BigQueryType::Bignumeric, BigQueryType::Float64) if scalar => {
            Err(ConversionRefusal::Lossy { table: table.into(), column: mapping.bq_name.clone() })
        }
        _ => Err(ConversionRefusal::NoLosslessConversion),
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
        let table = || "entity_mentions".to_string();
        let conversion = |column: &str, source_type: &str, pg_type: &str, target_type: &str, reason| RouteProblem::Conversion {
            table: table(),
            column: column.into(),
            source_type: source_type.into(),
            pg_type: pg_type.into(),
            target: column.into(),
            target_type: target_type.into(),
            reason,
        };
        assert_eq!(
            problems,
            [
                RouteProblem::NoTargetColumn { table: table(), column: "note".into(), wanted: "note".into() },
                conversion(
                    "id",
                    "INT64",
                    "int8",
                    "REQUIRED STRING",
                    ConversionRefusal::RequiredNulls { table: table(), column: "id".into(), nulls: 2 }
                ),
                conversion("mentioned_at", "DATE", "date", "REQUIRED TIMESTAMP", ConversionRefusal::DateNeedsOptIn),
                RouteProblem::RequiredUnfed { table: table(), target: "source".into() },
            ]
        );
        let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "table `entity_mentions`: snapshot column `note` has no column `note` in the target; map it with --column-map \
                 entity_mentions.note=<target column> or leave it out with --exclude-column entity_mentions.note",
                "table `entity_mentions`: column `id` (INT64, Postgres int8) cannot go into target column `id` (REQUIRED STRING): the \
                 target is REQUIRED and the snapshot holds 2 NULL(s) in it; give them a value with --default entity_mentions.id=<value>",
                "table `entity_mentions`: column `mentioned_at` (DATE, Postgres date) cannot go into target column `mentioned_at` \
                 (REQUIRED TIMESTAMP): a date becomes midnight of that day; allow it with --date-to-timestamp",
                "table `entity_mentions`: target column `source` is REQUIRED and no snapshot column feeds it; map one with \
                 --column-map, fill it with --set entity_mentions.source=<value>, or make the column NULLABLE",
            ]
        );
    }

    #[test]
    fn the_column_map_renames_and_opt_ins_allow_dates() {
        let columns = [snapshot("id", "int8", 0), snapshot("happened_on", "date", 0)];
        let options = TargetOptions {
            column_map: BTreeMap::from([("happened_on".to_string(), "mentioned_at".to_string())]),
            date_to_timestamp: true,
            ..TargetOptions::default()
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

    /// Issue 19: `--column-map t.subtitle=title` while the snapshot has `title` too used to
    /// overwrite the first route and drop the snapshot's own `title`.
    #[test]
    fn options_are_checked_as_a_whole_and_every_conflict_is_listed() {
        let columns = [snapshot("id", "int8", 0), snapshot("note", "text", 0), snapshot("subtitle", "text", 0)];
        let mut table = app_table();
        table[2] = target("note", BigQueryType::String, FieldMode::Nullable);
        let options = TargetOptions {
            column_map: BTreeMap::from([("subtitle".to_string(), "note".to_string()), ("nope".to_string(), "note".to_string())]),
            excluded: ["gone".to_string()].into(),
            set: BTreeMap::from([("id".to_string(), "1".to_string()), ("absent".to_string(), "x".to_string())]),
            ..TargetOptions::default()
        };
        let problems: Vec<String> = route_columns("m", &columns, &table, &options).unwrap_err().iter().map(ToString::to_string).collect();
        let has = |text: &str| problems.iter().any(|p| p.contains(text));
        assert!(has("--column-map names column `nope`, which the snapshot does not have"), "{problems:#?}");
        assert!(has("--exclude-column names column `gone`"), "{problems:#?}");
        assert!(has("target column `note` would be fed by 2 snapshot columns (`note`, `subtitle`)"), "{problems:#?}");
        assert!(has("--set m.id=… fills target column `id`, which snapshot column `id` already feeds"), "{problems:#?}");
        assert!(has("--set names column `absent`, which the target table does not have"), "{problems:#?}");
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn excluded_columns_set_constants_and_defaults_fill_an_apps_table() {
        let columns = [
            snapshot("id", "int8", 0),
            snapshot("metadata", "jsonb", 4),
            snapshot("mentioned_at", "timestamptz", 0),
            snapshot("legacy", "text", 0),
        ];
        let mut table = app_table();
        table[1] = target("metadata", BigQueryType::Json, FieldMode::Required);
        let refused: Vec<String> =
            route_columns("m", &columns, &table, &TargetOptions::default()).unwrap_err().iter().map(ToString::to_string).collect();
        assert!(refused.iter().any(|p| p.contains("holds 4 NULL(s)") && p.contains("--default m.metadata=<value>")), "{refused:#?}");
        assert!(refused.iter().any(|p| p.contains("--exclude-column m.legacy")), "{refused:#?}");
        let options = TargetOptions {
            excluded: ["legacy".to_string()].into(),
            set: BTreeMap::from([("ingested_by".to_string(), "postgres".to_string())]),
            defaults: BTreeMap::from([("metadata".to_string(), "{}".to_string())]),
            ..TargetOptions::default()
        };
        let routes = route_columns("m", &columns, &table, &options).unwrap();
        assert_eq!(routes[1].expr, "IFNULL(PARSE_JSON(s.`metadata`), PARSE_JSON('{}'))");
        assert_eq!(routes[1].measured_as, Some(BigQueryType::Json));
        assert!(routes[1].conversion.contains("NULL → {} (--default, 4 NULL(s) in the snapshot)"), "{}", routes[1].conversion);
        assert_eq!((routes[3].source.as_deref(), routes[3].expr.as_str()), (None, "'postgres'"));
        let bad = TargetOptions { set: BTreeMap::from([("entity".to_string(), "x".to_string())]), ..options.clone() };
        let mut with_int = table.clone();
        with_int.push(target("entity", BigQueryType::Int64, FieldMode::Nullable));
        let problems = route_columns("m", &columns, &with_int, &bad).unwrap_err();
        let bad_set = RouteProblem::BadSet {
            table: "m".into(),
            target: "entity".into(),
            value: "x".into(),
            reason: ConstantRefusal::NotAValue { value: "x".into(), bq_type: BigQueryType::Int64 },
        };
        assert_eq!(problems, [bad_set]);
        assert_eq!(problems[0].to_string(), "table `m`: --set m.entity=x: `x` is not a INT64 value");
    }

    #[test]
    fn numeric_into_float64_needs_its_column_named_in_allow_lossy() {
        let columns = [snapshot("amount", "numeric", 0)];
        let table = [target("amount", BigQueryType::Float64, FieldMode::Nullable)];
        let refused = route_columns("t", &columns, &table, &TargetOptions::default()).unwrap_err();
        assert!(refused[0].to_string().contains("--allow-lossy t.amount=FLOAT64"), "{refused:?}");
        let options = TargetOptions { lossy: BTreeMap::from([("amount".to_string(), BigQueryType::Float64)]), ..TargetOptions::default() };
        let routes = route_columns("t", &columns, &table, &options).unwrap();
        assert_eq!((routes[0].expr.as_str(), routes[0].measured_as), ("CAST(s.`amount` AS FLOAT64)", Some(BigQueryType::Float64)));
    }

    #[test]
    fn lossy_pairings_are_refused_with_both_types() {
        for (pg_type, into) in [("float8", BigQueryType::Int64), ("text", BigQueryType::Int64), ("numeric", BigQueryType::Int64)] {
            let problems =
                route_columns("t", &[snapshot("c", pg_type, 0)], &[target("c", into, FieldMode::Nullable)], &TargetOptions::default())
                    .unwrap_err();
            let problem = problems[0].to_string();
            assert!(problem.contains("no lossless conversion") && problem.contains(into.sql_name()), "{pg_type}: {problems:?}");
        }
    }
}

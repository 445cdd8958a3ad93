//! BigQuery SQL that recomputes the manifest's aggregates, with the same value encodings as
//! `aggregates::encode_value` (see docs/manifest.md): validate runs it over a loaded table, load
//! over its staged rows (for the columns it converts). Pure text generation, unit-tested.

use crate::gcp::sql::{encoding, fingerprint_items, fingerprint_sums, list_encoding, minimal_decimal, quote, row_encoding};
use crate::model::aggregates::ColumnAggregates;
use crate::model::check::CheckKind;
use crate::model::locate::Level;
use crate::model::manifest::ColumnManifest;
use crate::model::types::BigQueryType;

/// The encoding of a column value (lists: `<byte length>:<element>` per element, in order;
/// empty lists are NULL, as in the manifest).
pub fn column_encoding(column: &ColumnManifest) -> String {
    let name = quote(&column.mapping.bq_name);
    if column.mapping.repeated {
        list_encoding(&name, &encoding(column.mapping.bq_type, "e"))
    } else {
        encoding(column.mapping.bq_type, &name)
    }
}

/// One aggregate the validation compares, in the order of the generated SELECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    NullCount,
    ValueCount,
    Min,
    Max,
    Sum,
    /// Σ|x| of a float column: the scale of the sum's tolerance, not compared itself.
    AbsSum,
    NanCount,
    FingerprintXor,
    FingerprintSum,
}

impl Measure {
    /// The check that compares this measure; none for [`Measure::AbsSum`], which only scales
    /// the float sum's tolerance.
    pub fn check_kind(self) -> Option<CheckKind> {
        Some(match self {
            Self::NullCount => CheckKind::NullCount,
            Self::ValueCount => CheckKind::ValueCount,
            Self::Min => CheckKind::Min,
            Self::Max => CheckKind::Max,
            Self::Sum => CheckKind::Sum,
            Self::AbsSum => return None,
            Self::NanCount => CheckKind::NanCount,
            Self::FingerprintXor => CheckKind::FingerprintXor,
            Self::FingerprintSum => CheckKind::FingerprintSum,
        })
    }
}

/// `(measure, SQL)` pairs for one column.
pub fn column_measures(column: &ColumnManifest) -> Vec<(Measure, String)> {
    let name = quote(&column.mapping.bq_name);
    let bq_type = column.mapping.bq_type;
    let mut out = Vec::new();
    if column.mapping.repeated {
        // BigQuery loads a NULL array as empty; emulators may keep it NULL: count both.
        out.push((Measure::NullCount, format!("COUNTIF({name} IS NULL OR ARRAY_LENGTH({name}) = 0)")));
        out.push((Measure::ValueCount, format!("COUNTIF(ARRAY_LENGTH({name}) > 0)")));
    } else {
        out.push((Measure::NullCount, format!("COUNTIF({name} IS NULL)")));
        out.push((Measure::ValueCount, format!("COUNTIF({name} IS NOT NULL)")));
    }
    if column.mapping.orderable() {
        let (min, max) = match bq_type {
            // LOGICAL_AND/OR of no value is NULL, which must stay NULL (no min/max).
            BigQueryType::Bool => (encoding(bq_type, &format!("LOGICAL_AND({name})")), encoding(bq_type, &format!("LOGICAL_OR({name})"))),
            BigQueryType::Float64 => {
                let finite = format!("IF(IS_NAN({name}), NULL, {name})");
                (encoding(bq_type, &format!("MIN({finite})")), encoding(bq_type, &format!("MAX({finite})")))
            }
            BigQueryType::Bytes => (format!("TO_HEX(MIN({name}))"), format!("TO_HEX(MAX({name}))")),
            _ => (encoding(bq_type, &format!("MIN({name})")), encoding(bq_type, &format!("MAX({name})"))),
        };
        out.push((Measure::Min, min));
        out.push((Measure::Max, max));
    }
    match bq_type {
        BigQueryType::Int64 if !column.mapping.repeated => {
            out.push((Measure::Sum, minimal_decimal(&format!("SUM(CAST({name} AS NUMERIC))"))))
        }
        BigQueryType::Numeric | BigQueryType::Bignumeric if !column.mapping.repeated => {
            out.push((Measure::Sum, minimal_decimal(&format!("SUM({name})"))))
        }
        BigQueryType::Float64 if !column.mapping.repeated => {
            let finite = format!("IF(IS_NAN({name}), NULL, {name})");
            out.push((Measure::Sum, format!("FORMAT('%.17g', SUM({finite}))")));
            out.push((Measure::AbsSum, format!("FORMAT('%.17g', SUM(ABS({finite})))")));
            out.push((Measure::NanCount, format!("COUNTIF(IS_NAN({name}))")));
        }
        _ => {}
    }
    let [xor, sum] = fingerprint_items(&column_encoding(column));
    out.push((Measure::FingerprintXor, xor));
    out.push((Measure::FingerprintSum, sum));
    out
}

/// `SELECT COUNT(*), <every measure of every column> FROM table [WHERE filter]`, every value
/// cast to STRING; returns the SQL and, per output column, `(column index, measure)`.
pub fn aggregate_query(table: &str, columns: &[&ColumnManifest], filter: Option<&str>) -> (String, Vec<(usize, Measure)>) {
    let mut select = vec!["CAST(COUNT(*) AS STRING)".to_string()];
    let mut layout = Vec::new();
    for (index, column) in columns.iter().enumerate() {
        for (measure, sql) in column_measures(column) {
            select.push(format!("CAST({sql} AS STRING)"));
            layout.push((index, measure));
        }
    }
    let filter = filter.map(|f| format!(" WHERE {f}")).unwrap_or_default();
    (format!("SELECT {} FROM {table}{filter}", select.join(", ")), layout)
}

/// Each column's encoding in a row's text, in order (BYTES as lower-case hex: a row's text is
/// STRING, and the emulator cannot cast all text to BYTES).
pub fn row_encodings(columns: &[ColumnManifest]) -> Vec<String> {
    columns
        .iter()
        .map(|c| match (c.mapping.bq_type, c.mapping.repeated) {
            (BigQueryType::Bytes, false) => format!("TO_HEX({})", quote(&c.mapping.bq_name)),
            _ => column_encoding(c),
        })
        .collect()
}

/// `FARM_FINGERPRINT` of a row's text over `columns`: its row fingerprint.
pub fn row_fingerprint(columns: &[ColumnManifest]) -> String {
    format!("FARM_FINGERPRINT({})", row_encoding(&row_encodings(columns)))
}

/// `SELECT COUNT(*), BIT_XOR, SUM` of the rows' fingerprints over `columns` (in order), as
/// text, from `table` [WHERE filter].
pub fn row_fingerprint_query(table: &str, columns: &[ColumnManifest], filter: Option<&str>) -> String {
    let [xor, sum] = fingerprint_items(&row_encoding(&row_encodings(columns)));
    let filter = filter.map(|f| format!(" WHERE {f}")).unwrap_or_default();
    format!("SELECT CAST(COUNT(*) AS STRING), {xor}, {sum} FROM {table}{filter}")
}

/// The bucket (`bits` high bits, as `model::locate::bucket`) of an INT64 fingerprint: `>>`
/// fills with zeros in BigQuery.
fn bucket_of(fingerprint: &str, bits: u32) -> String {
    match bits {
        0 => "0".into(),
        bits => format!("({fingerprint} >> {})", 64 - bits),
    }
}

/// `FROM (SELECT <key fingerprint> AS _pg2bq_k, * FROM table) [WHERE <its bucket is in the
/// level>]`: what the caller selects is computed only for the level's rows.
fn level_rows(table: &str, key: &[ColumnManifest], level: &Level) -> String {
    let within = match &level.within {
        Some((bits, prefixes)) => {
            let list: Vec<String> = prefixes.iter().map(u64::to_string).collect();
            format!(" WHERE {} IN ({})", bucket_of("_pg2bq_k", *bits), list.join(", "))
        }
        None => String::new(),
    };
    format!("FROM (SELECT {} AS _pg2bq_k, * FROM {table}){within}", row_fingerprint(key))
}

/// Per bucket of `level`: the bucket, COUNT(*), BIT_XOR and exact SUM of the rows'
/// fingerprints over `columns`, as text: one `GROUP BY` over the rows of the level.
pub fn bucket_query(table: &str, key: &[ColumnManifest], columns: &[ColumnManifest], level: &Level) -> String {
    let rows =
        format!("SELECT {} AS b, {} AS f {}", bucket_of("_pg2bq_k", level.bits), row_fingerprint(columns), level_rows(table, key, level));
    let [xor, sum] = fingerprint_sums("f");
    format!("SELECT CAST(b AS STRING), CAST(COUNT(*) AS STRING), {xor}, {sum} FROM ({rows}) GROUP BY b")
}

/// The rows of `buckets` (of `bits` high bits; every row with none): the key columns'
/// encodings, then the `FARM_FINGERPRINT` of every column's (small answers whatever the
/// values' size), as text; at most `limit` rows.
pub fn bucket_rows_query(
    table: &str,
    key: &[ColumnManifest],
    columns: &[ColumnManifest],
    bits: u32,
    buckets: &[u64],
    limit: u64,
) -> String {
    let fingerprints = row_encodings(columns).into_iter().map(|e| format!("CAST(FARM_FINGERPRINT({e}) AS STRING)"));
    let encodings: Vec<String> = row_encodings(key).into_iter().chain(fingerprints).collect();
    let level = Level { bits: 0, within: (bits > 0).then(|| (bits, buckets.to_vec())) };
    format!("SELECT {} {} LIMIT {limit}", encodings.join(", "), level_rows(table, key, &level))
}

/// The aggregates a query of [`aggregate_query`] answered, one per column (its `layout` and
/// its values after `COUNT(*)`, SQL NULL as `None`): what `load` records of a converted column
/// for `validate` to expect. `None` when a count is not a number.
pub fn aggregates_from_measures(columns: usize, layout: &[(usize, Measure)], values: &[Option<String>]) -> Option<Vec<ColumnAggregates>> {
    let mut aggregates = vec![ColumnAggregates { fingerprint_xor: "0".into(), fingerprint_sum: "0".into(), ..Default::default() }; columns];
    for ((index, measure), value) in layout.iter().zip(values) {
        let column = &mut aggregates[*index];
        let count = || value.as_deref().and_then(|v| v.parse::<u64>().ok());
        match measure {
            Measure::NullCount => column.null_count = count()?,
            Measure::ValueCount => column.value_count = count()?,
            Measure::NanCount => column.nan_count = Some(count()?),
            Measure::Min => column.min = value.clone(),
            Measure::Max => column.max = value.clone(),
            Measure::Sum => column.sum = value.clone(),
            Measure::AbsSum => {}
            // An aggregate over no value is NULL: the empty fingerprint, 0.
            Measure::FingerprintXor => column.fingerprint_xor = value.clone().unwrap_or_else(|| "0".into()),
            Measure::FingerprintSum => column.fingerprint_sum = value.clone().unwrap_or_else(|| "0".into()),
        }
    }
    Some(aggregates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::types::{map_column, OutOfRange, PgColumn};

    fn column(type_name: &str, element: Option<&str>) -> ColumnManifest {
        let pg = PgColumn { element_type: element.map(str::to_string), ..PgColumn::base("c", type_name, -1) };
        ColumnManifest {
            mapping: map_column(&pg, None, OutOfRange::Refuse).unwrap(),
            adjusted_rows: 0,
            aggregates: ColumnAggregates::default(),
        }
    }

    #[test]
    fn encodings_use_integers_for_temporal_types() {
        assert_eq!(column_encoding(&column("timestamptz", None)), "CAST(UNIX_MICROS(`c`) AS STRING)");
        assert_eq!(column_encoding(&column("timestamp", None)), "CAST(UNIX_MICROS(TIMESTAMP(`c`)) AS STRING)");
        assert_eq!(column_encoding(&column("date", None)), "CAST(UNIX_DATE(`c`) AS STRING)");
    }

    #[test]
    fn lists_encode_each_element_with_its_length() {
        let sql = column_encoding(&column("_int4", Some("int4")));
        assert!(sql.starts_with("IF(ARRAY_LENGTH(`c`) > 0, ARRAY_TO_STRING(ARRAY(SELECT CONCAT(CAST(BYTE_LENGTH(CAST(e AS STRING)) AS STRING), ':', CAST(e AS STRING))"), "{sql}");
    }

    #[test]
    fn float_columns_get_nan_counts_and_a_tolerance_scale() {
        let measures: Vec<Measure> = column_measures(&column("float8", None)).into_iter().map(|(m, _)| m).collect();
        assert_eq!(
            measures,
            [
                Measure::NullCount,
                Measure::ValueCount,
                Measure::Min,
                Measure::Max,
                Measure::Sum,
                Measure::AbsSum,
                Measure::NanCount,
                Measure::FingerprintXor,
                Measure::FingerprintSum
            ]
        );
    }

    /// Aggregates over no value are NULL; the SQL must keep them NULL, as the manifest does.
    #[test]
    fn bool_min_max_and_json_fingerprints_keep_null() {
        let measures = column_measures(&column("bool", None));
        let min = &measures.iter().find(|(m, _)| *m == Measure::Min).unwrap().1;
        assert_eq!(min, "CASE WHEN LOGICAL_AND(`c`) THEN 'true' WHEN NOT LOGICAL_AND(`c`) THEN 'false' END");
        assert_eq!(column_encoding(&column("jsonb", None)), "IF(`c` IS NULL, NULL, TO_JSON_STRING(`c`))");
    }

    #[test]
    fn a_row_fingerprint_length_prefixes_each_column_and_marks_null() {
        let sql = row_fingerprint_query("t", &[column("int8", None), column("bytea", None)], Some("k < 3"));
        let part = |e: &str| format!("IFNULL(CONCAT(CAST(BYTE_LENGTH({e}) AS STRING), ':', {e}), '-')");
        let fingerprint = format!("FARM_FINGERPRINT(CONCAT({}, {}))", part("CAST(`c` AS STRING)"), part("TO_HEX(`c`)"));
        assert_eq!(
            sql,
            format!(
                "SELECT CAST(COUNT(*) AS STRING), CAST(BIT_XOR({fingerprint}) AS STRING), {} FROM t WHERE k < 3",
                minimal_decimal(&format!("SUM(CAST({fingerprint} AS NUMERIC))"))
            )
        );
    }

    /// The emulator and BigQuery shift INT64 right with zeros; a level filters its rows by the
    /// prefixes of the level before.
    #[test]
    fn bucket_queries_group_by_high_bits_within_the_prefixes() {
        let (key, columns) = ([column("int8", None)], [column("int8", None), column("text", None)]);
        let level = Level { bits: 14, within: Some((12, vec![3, 70])) };
        let sql = bucket_query("t", &key, &columns, &level);
        let inner = format!("FROM (SELECT {} AS _pg2bq_k, * FROM t)", row_fingerprint(&key));
        let rows = format!("SELECT (_pg2bq_k >> 50) AS b, {} AS f {inner} WHERE (_pg2bq_k >> 52) IN (3, 70)", row_fingerprint(&columns));
        assert!(sql.starts_with("SELECT CAST(b AS STRING), CAST(COUNT(*) AS STRING), CAST(BIT_XOR(f) AS STRING), "), "{sql}");
        assert!(sql.ends_with(&format!(" FROM ({rows}) GROUP BY b")), "{sql}");
        // The columns' fingerprints are computed over the bucket's rows only.
        let fetch = bucket_rows_query("t", &key, &columns, 14, &[9], 100);
        let selected = "CAST(`c` AS STRING), CAST(FARM_FINGERPRINT(CAST(`c` AS STRING)) AS STRING), CAST(FARM_FINGERPRINT(`c`) AS STRING)";
        assert_eq!(fetch, format!("SELECT {selected} {inner} WHERE (_pg2bq_k >> 50) IN (9) LIMIT 100"));
        assert!(bucket_rows_query("t", &key, &columns, 0, &[], 5).ends_with(" * FROM t) LIMIT 5"));
    }

    #[test]
    fn json_columns_have_no_min_or_max() {
        let measures: Vec<Measure> = column_measures(&column("jsonb", None)).into_iter().map(|(m, _)| m).collect();
        assert_eq!(measures, [Measure::NullCount, Measure::ValueCount, Measure::FingerprintXor, Measure::FingerprintSum]);
    }
}

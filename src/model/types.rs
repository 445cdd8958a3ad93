//! The single table of how each Postgres type travels: the SQL we select it with,
//! the Arrow type we pin it to, and the BigQuery type it loads as.
//!
//! Input: a column's catalog entry. Output: a [`ColumnMapping`] or a [`Refusal`] that says
//! what to do instead. It never guesses: a type not listed here is refused before data moves.

use arrow::datatypes::{DataType, Field, TimeUnit};
use serde::{Deserialize, Serialize};

/// Time zone of pinned TIMESTAMP columns (an offset: arrow parses it without a tz database).
pub const UTC: &str = "+00:00";
/// Widest decimal BigQuery's NUMERIC holds: 38 digits, at most 9 after the point.
pub const NUMERIC_MAX_SCALE: u8 = 9;
/// Integer digits NUMERIC holds.
pub const NUMERIC_MAX_INTEGER_DIGITS: u8 = 29;
/// BIGNUMERIC as Parquet carries it: DECIMAL(76, 38).
pub const BIGNUMERIC_PRECISION: u8 = 76;
/// Largest scale BIGNUMERIC holds.
pub const BIGNUMERIC_SCALE: u8 = 38;

/// A column as the Postgres catalog describes it (domains already resolved to their base type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgColumn {
    pub name: String,
    /// `format_type()` output, e.g. `numeric(12,2)` or `timestamp with time zone`.
    pub type_display: String,
    /// Base type name in `pg_type`, e.g. `numeric`, `_int4` for `int4[]`.
    pub type_name: String,
    /// `pg_type.typtype`: b(ase), e(num), r(ange), m(ultirange), c(omposite), p(seudo).
    pub type_kind: char,
    /// Element type name when this is an array.
    pub element_type: Option<String>,
    /// `atttypmod`, -1 when unconstrained.
    pub type_modifier: i32,
    pub not_null: bool,
    pub comment: Option<String>,
}

impl PgColumn {
    /// A nullable base-type column without a comment (tests, benches, generated schemas).
    pub fn base(name: &str, type_name: &str, type_modifier: i32) -> Self {
        Self {
            name: name.into(),
            type_display: type_name.into(),
            type_name: type_name.into(),
            type_kind: 'b',
            element_type: None,
            type_modifier,
            not_null: false,
            comment: None,
        }
    }
}

/// How out-of-range dates and timestamps (BigQuery holds years 0001–9999) are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfRange {
    /// Refuse the table before any data moves (default).
    #[default]
    Refuse,
    /// Clamp to the nearest value BigQuery can hold (`infinity` → 9999-12-31 23:59:59.999999).
    Clamp,
    /// Export NULL instead.
    Null,
}

/// What happens to rows holding a value BigQuery cannot hold (beyond what `OutOfRange`
/// adjusts): refuse the table before any data moves, or set the rows aside with their reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadValue {
    #[default]
    Refuse,
    /// Write them, as Postgres prints them, to `<run>/<table>/_rejected/` and export the rest.
    Quarantine,
}

/// The BigQuery type a column loads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BigQueryType {
    Bool,
    Int64,
    Float64,
    Numeric,
    Bignumeric,
    String,
    Bytes,
    Json,
    Date,
    Time,
    Datetime,
    Timestamp,
}

impl BigQueryType {
    /// The type's name in BigQuery standard SQL.
    pub fn sql_name(self) -> &'static str {
        match self {
            BigQueryType::Bool => "BOOL",
            BigQueryType::Int64 => "INT64",
            BigQueryType::Float64 => "FLOAT64",
            BigQueryType::Numeric => "NUMERIC",
            BigQueryType::Bignumeric => "BIGNUMERIC",
            BigQueryType::String => "STRING",
            BigQueryType::Bytes => "BYTES",
            BigQueryType::Json => "JSON",
            BigQueryType::Date => "DATE",
            BigQueryType::Time => "TIME",
            BigQueryType::Datetime => "DATETIME",
            BigQueryType::Timestamp => "TIMESTAMP",
        }
    }
}

/// What we do to ConnectorX's Arrow column to reach the pinned Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conversion {
    /// An exact Arrow cast (widening undone, large → small offsets, ns → µs). Manifests
    /// written before timestamps were read natively say `epoch_micros` for them.
    #[serde(alias = "epoch_micros")]
    Cast,
    /// Text holding a decimal, parsed exactly into the pinned Decimal type.
    ParseDecimal,
    /// A list of decimal texts, parsed element by element.
    ParseDecimalList,
}

/// One column's complete route from Postgres to BigQuery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnMapping {
    /// Name in Postgres.
    pub name: String,
    /// Name in Parquet and BigQuery (see [`bigquery_column_names`]).
    pub bq_name: String,
    pub pg_type: String,
    #[serde(with = "arrow_type_serde")]
    pub arrow_type: DataType,
    pub bq_type: BigQueryType,
    /// REPEATED in BigQuery.
    pub repeated: bool,
    pub nullable: bool,
    /// Expression in our SELECT list (already quoted), e.g. `"amount"::text`.
    pub select_expr: String,
    pub conversion: Conversion,
    /// Why this column is selected the way it is, for `--dry-run` and the manifest.
    pub note: Option<String>,
    /// SQL counting rows whose value BigQuery cannot hold, evaluated before export.
    #[serde(skip)]
    pub check: Option<ValueCheck>,
    pub comment: Option<String>,
}

impl ColumnMapping {
    /// `column` as `arrow_type` / `bq_type`, selected by `select_expr`: a scalar, nullable as
    /// in Postgres, under its Postgres name, with no note and no check.
    pub fn new(column: &PgColumn, arrow_type: DataType, bq_type: BigQueryType, select_expr: String, conversion: Conversion) -> Self {
        Self {
            name: column.name.clone(),
            bq_name: column.name.clone(),
            pg_type: column.type_display.clone(),
            arrow_type,
            bq_type,
            repeated: false,
            nullable: !column.not_null,
            select_expr,
            conversion,
            note: None,
            check: None,
            comment: column.comment.clone(),
        }
    }

    /// With why the column is selected this way.
    pub fn with_note(self, note: impl Into<String>) -> Self {
        Self { note: Some(note.into()), ..self }
    }

    /// With the plan-time check of its values.
    pub fn with_check(self, check: ValueCheck) -> Self {
        Self { check: Some(check), ..self }
    }

    /// Whether `other` reads and routes the column the same way. The plan-time check is left
    /// out: unit records and plans read from JSON do not keep it.
    pub fn same_route(&self, other: &ColumnMapping) -> bool {
        Self { check: None, ..self.clone() } == Self { check: None, ..other.clone() }
    }

    /// REPEATED in BigQuery.
    pub fn repeated(self) -> Self {
        Self { repeated: true, ..self }
    }

    /// Whether min/max are recorded and compared: BigQuery cannot order JSON or arrays.
    pub fn orderable(&self) -> bool {
        !self.repeated && self.bq_type != BigQueryType::Json
    }
}

/// A plan-time data check: a boolean SQL predicate that is true for offending rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueCheck {
    pub predicate: String,
    /// What the offending rows hold, for the error message.
    pub problem: String,
    /// Whether `--out-of-range clamp|null` applies (dates, times, timestamps).
    pub range_adjustable: bool,
}

/// Rows of a `json`/`jsonb` column holding a number BigQuery's JSON type cannot store exactly
/// (`PARSE_JSON`'s default `wide_number_mode => 'exact'` takes an INT64, a UINT64, or a FLOAT64
/// that prints back as the same number). Only `--on-bad-value quarantine` checks it at export
/// (it parses every value); otherwise load finds such values in staging and refuses.
pub fn json_number_check(mapping: &ColumnMapping) -> Option<ValueCheck> {
    if mapping.bq_type != BigQueryType::Json || mapping.repeated {
        return None;
    }
    let n = "(x #>> '{}')::numeric";
    let integer = format!("({n} = trunc({n}) AND {n} BETWEEN -9223372036854775808 AND 18446744073709551615)");
    let double = format!(
        "(abs({n}) <= 1.7976931348623157e308 AND ({n} = 0 OR abs({n}) >= 2.2250738585072014e-308) AND {n}::float8::text::numeric = {n})"
    );
    let predicate = format!(
        "EXISTS (SELECT 1 FROM jsonb_path_query({}::jsonb, 'strict $.**') AS v(x) WHERE jsonb_typeof(x) = 'number' AND NOT ({integer} OR {double}))",
        quote_ident(&mapping.name)
    );
    Some(ValueCheck { predicate, problem: "JSON numbers BigQuery's JSON type cannot hold exactly".into(), range_adjustable: false })
}

/// A column we will not export as it is, with the way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub column: String,
    pub pg_type: String,
    pub reason: String,
}

/// What the operator asked for a column instead of the default mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CastOverride {
    /// Export Postgres' text output as STRING.
    Text,
}

/// Maps one column, or says why it cannot be mapped.
///
/// # Errors
/// Returns a [`Refusal`] for types without an exact route; the reason names the way out.
pub fn map_column(column: &PgColumn, cast: Option<CastOverride>, out_of_range: OutOfRange) -> Result<ColumnMapping, Refusal> {
    let quoted = quote_ident(&column.name);
    let base = |arrow_type, bq_type, select_expr, conversion| ColumnMapping::new(column, arrow_type, bq_type, select_expr, conversion);
    if cast == Some(CastOverride::Text) {
        return Ok(base(DataType::Utf8, BigQueryType::String, format!("{quoted}::text"), Conversion::Cast)
            .with_note("cast to text by the operator"));
    }
    let refuse = |reason: String| Refusal { column: column.name.clone(), pg_type: column.type_display.clone(), reason };
    if let Some(element) = &column.element_type {
        return map_array(column, element, &quoted).ok_or_else(|| {
            refuse(format!(
                "arrays of `{element}` have no exact route to BigQuery; export the column as Postgres text with `--cast {}=text`",
                column.name
            ))
        });
    }
    let text_expr = format!("{quoted}::text");
    let mapping = match (column.type_kind, column.type_name.as_str()) {
        ('e', _) => base(DataType::Utf8, BigQueryType::String, quoted.clone(), Conversion::Cast),
        ('r' | 'm', _) => {
            base(DataType::Utf8, BigQueryType::String, text_expr, Conversion::Cast).with_note("range as Postgres text, e.g. [1,5)")
        }
        (_, "bool") => base(DataType::Boolean, BigQueryType::Bool, quoted.clone(), Conversion::Cast),
        (_, "int2") => base(DataType::Int16, BigQueryType::Int64, quoted.clone(), Conversion::Cast),
        (_, "int4") => base(DataType::Int32, BigQueryType::Int64, quoted.clone(), Conversion::Cast),
        (_, "int8") => base(DataType::Int64, BigQueryType::Int64, quoted.clone(), Conversion::Cast),
        (_, "oid" | "xid" | "cid") => base(DataType::Int64, BigQueryType::Int64, format!("{quoted}::text::int8"), Conversion::Cast),
        (_, "float4") => {
            base(DataType::Float32, BigQueryType::Float64, quoted.clone(), Conversion::Cast).with_note("float4 widens exactly to FLOAT64")
        }
        (_, "float8") => base(DataType::Float64, BigQueryType::Float64, quoted.clone(), Conversion::Cast),
        (_, "numeric") => map_numeric(column, &quoted, numeric_typmod(column.type_modifier)),
        (_, "money") => base(decimal_type(19, 2), BigQueryType::Numeric, format!("{quoted}::numeric::text"), Conversion::ParseDecimal)
            .with_note("money as numeric with 2 decimals (lc_monetary with other fractional digits is refused at export)"),
        (_, "text" | "varchar" | "bpchar" | "name") => base(DataType::Utf8, BigQueryType::String, quoted.clone(), Conversion::Cast),
        (
            _,
            "citext" | "char" | "xml" | "tsvector" | "tsquery" | "cidr" | "macaddr" | "macaddr8" | "bit" | "varbit" | "pg_lsn" | "point"
            | "line" | "lseg" | "box" | "path" | "polygon" | "circle" | "txid_snapshot" | "pg_snapshot",
        ) => base(DataType::Utf8, BigQueryType::String, text_expr, Conversion::Cast).with_note("Postgres text output"),
        // `inet::text` always appends the netmask (`10.0.1.1/32`); `abbrev(inet)` is the output function's text.
        (_, "inet") => base(DataType::Utf8, BigQueryType::String, format!("abbrev({quoted})"), Conversion::Cast)
            .with_note("Postgres text output (`abbrev`, as Postgres prints it: no /32 on a host address)"),
        (_, "uuid") => {
            base(DataType::Utf8, BigQueryType::String, quoted.clone(), Conversion::Cast).with_note("canonical lower-case hyphenated")
        }
        (_, "json") => base(DataType::Utf8, BigQueryType::Json, text_expr, Conversion::Cast).with_note("json text byte for byte"),
        (_, "jsonb") => base(DataType::Utf8, BigQueryType::Json, text_expr, Conversion::Cast).with_note("jsonb as Postgres prints it"),
        (_, "bytea") => base(DataType::Binary, BigQueryType::Bytes, quoted.clone(), Conversion::Cast),
        (_, "interval") => base(DataType::Utf8, BigQueryType::String, text_expr, Conversion::Cast)
            .with_note("ISO 8601 duration (intervalstyle iso_8601): months, days and microseconds kept apart"),
        (_, "timetz") => base(DataType::Utf8, BigQueryType::String, text_expr, Conversion::Cast)
            .with_note("time with its UTC offset as Postgres prints it; BigQuery has no TIME WITH TIME ZONE"),
        (_, "date") => map_temporal(column, &quoted, out_of_range, Temporal::Date),
        (_, "time") => map_temporal(column, &quoted, out_of_range, Temporal::Time),
        (_, "timestamp") => map_temporal(column, &quoted, out_of_range, Temporal::Timestamp),
        (_, "timestamptz") => map_temporal(column, &quoted, out_of_range, Temporal::TimestampTz),
        _ => {
            return Err(refuse(format!(
                "type `{}` has no exact route to BigQuery; export it as Postgres text with `--cast {}=text`",
                column.type_display, column.name
            )))
        }
    };
    Ok(mapping)
}

/// `DECIMAL(p, s)` as Arrow: 128-bit up to 38 digits, 256-bit beyond.
pub fn decimal_type(precision: u8, scale: u8) -> DataType {
    if precision <= 38 {
        DataType::Decimal128(precision, scale as i8)
    } else {
        DataType::Decimal256(precision, scale as i8)
    }
}

/// The decimal `(precision, scale)` that holds every value of a numeric typmod exactly,
/// `None` when unconstrained. Postgres 15 allows a scale above the precision (`numeric(3,5)`
/// holds ±0.00999: DECIMAL(5,5)) and a negative scale (`numeric(3,-2)` holds ±99900:
/// DECIMAL(5,0)); its typmod packs the scale as an 11-bit signed number.
fn numeric_typmod(typmod: i32) -> Option<(u32, u32)> {
    if typmod < 4 {
        return None;
    }
    let packed = (typmod - 4) as u32;
    let precision = (packed >> 16) & 0xffff;
    let scale = ((packed & 0x7ff) as i32) << 21 >> 21;
    Some(if scale < 0 { (precision + scale.unsigned_abs(), 0) } else { (precision.max(scale as u32), scale as u32) })
}

fn map_numeric(column: &PgColumn, quoted: &str, typmod: Option<(u32, u32)>) -> ColumnMapping {
    let text = format!("{quoted}::text");
    let fits_numeric = |p: u32, s: u32| s <= NUMERIC_MAX_SCALE as u32 && p - s <= NUMERIC_MAX_INTEGER_DIGITS as u32;
    let fits_bignumeric = |p: u32, s: u32| s <= BIGNUMERIC_SCALE as u32 && p - s <= (BIGNUMERIC_PRECISION - BIGNUMERIC_SCALE) as u32;
    let (arrow_type, bq_type, check) = match typmod {
        Some((p, s)) if fits_numeric(p, s) => (
            decimal_type(p as u8, s as u8),
            BigQueryType::Numeric,
            ValueCheck { predicate: format!("{quoted} = 'NaN'"), problem: "NaN".into(), range_adjustable: false },
        ),
        Some((p, s)) if fits_bignumeric(p, s) => (
            decimal_type(p as u8, s as u8),
            BigQueryType::Bignumeric,
            ValueCheck { predicate: format!("{quoted} = 'NaN'"), problem: "NaN".into(), range_adjustable: false },
        ),
        _ => (
            decimal_type(BIGNUMERIC_PRECISION, BIGNUMERIC_SCALE),
            BigQueryType::Bignumeric,
            ValueCheck {
                predicate: format!(
                    "{quoted} = 'NaN' OR abs({quoted}) >= 1e{} OR {quoted} <> round({quoted}, {BIGNUMERIC_SCALE})",
                    BIGNUMERIC_PRECISION - BIGNUMERIC_SCALE
                ),
                problem: format!(
                    "NaN, ±Infinity, or values beyond BIGNUMERIC ({} integer digits, {} decimals)",
                    BIGNUMERIC_PRECISION - BIGNUMERIC_SCALE,
                    BIGNUMERIC_SCALE
                ),
                range_adjustable: false,
            },
        ),
    };
    ColumnMapping::new(column, arrow_type, bq_type, text, Conversion::ParseDecimal)
        .with_note("selected as text and parsed exactly (ConnectorX rounds numerics to 28 digits)")
        .with_check(check)
}

#[derive(Clone, Copy)]
enum Temporal {
    Date,
    Time,
    Timestamp,
    TimestampTz,
}

fn map_temporal(column: &PgColumn, quoted: &str, out_of_range: OutOfRange, kind: Temporal) -> ColumnMapping {
    // Bounds BigQuery can hold, as Postgres literals of the column's type.
    let (low, high, cast) = match kind {
        Temporal::Date => ("'0001-01-01'", "'9999-12-31'", "date"),
        Temporal::Time => ("'00:00:00'", "'23:59:59.999999'", "time"),
        Temporal::Timestamp => ("'0001-01-01 00:00:00'", "'9999-12-31 23:59:59.999999'", "timestamp"),
        Temporal::TimestampTz => ("'0001-01-01 00:00:00+00'", "'9999-12-31 23:59:59.999999+00'", "timestamptz"),
    };
    let predicate = format!("{quoted} < {low}::{cast} OR {quoted} > {high}::{cast}");
    let adjusted = match out_of_range {
        OutOfRange::Refuse => quoted.to_string(),
        OutOfRange::Clamp => format!("LEAST(GREATEST({quoted}, {low}::{cast}), {high}::{cast})"),
        OutOfRange::Null => format!("CASE WHEN {predicate} THEN NULL ELSE {quoted} END"),
    };
    let (arrow_type, bq_type, select_expr, conversion, note) = match kind {
        Temporal::Date => (DataType::Date32, BigQueryType::Date, adjusted, Conversion::Cast, None),
        Temporal::Time => (DataType::Time64(TimeUnit::Microsecond), BigQueryType::Time, adjusted, Conversion::Cast, None),
        Temporal::Timestamp => (
            DataType::Timestamp(TimeUnit::Microsecond, None),
            BigQueryType::Datetime,
            adjusted,
            Conversion::Cast,
            Some("naive, in microseconds (exact over years 1–9999)".to_string()),
        ),
        Temporal::TimestampTz => (
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            BigQueryType::Timestamp,
            adjusted,
            Conversion::Cast,
            Some("UTC, in microseconds (exact over years 1–9999)".to_string()),
        ),
    };
    let check = ValueCheck {
        predicate,
        problem: format!("values outside BigQuery's range {low} to {high} (or ±infinity)"),
        range_adjustable: true,
    };
    ColumnMapping { note, ..ColumnMapping::new(column, arrow_type, bq_type, select_expr, conversion) }.with_check(check)
}

fn map_array(column: &PgColumn, element: &str, quoted: &str) -> Option<ColumnMapping> {
    let item = |dt: DataType| DataType::List(std::sync::Arc::new(Field::new("element", dt, true)));
    let native = quoted.to_string();
    let as_text = format!("{quoted}::text[]");
    let (element_type, bq_type, select_expr, conversion, note) = match element {
        "bool" => (DataType::Boolean, BigQueryType::Bool, native, Conversion::Cast, None),
        "int2" => (DataType::Int16, BigQueryType::Int64, native, Conversion::Cast, None),
        "int4" => (DataType::Int32, BigQueryType::Int64, native, Conversion::Cast, None),
        "int8" => (DataType::Int64, BigQueryType::Int64, native, Conversion::Cast, None),
        "float4" => (DataType::Float32, BigQueryType::Float64, native, Conversion::Cast, None),
        "float8" => (DataType::Float64, BigQueryType::Float64, native, Conversion::Cast, None),
        "text" | "varchar" => (DataType::Utf8, BigQueryType::String, native, Conversion::Cast, None),
        "bpchar" | "name" | "uuid" | "citext" => {
            (DataType::Utf8, BigQueryType::String, as_text, Conversion::Cast, Some("elements as Postgres text"))
        }
        "json" | "jsonb" => (DataType::Utf8, BigQueryType::Json, as_text, Conversion::Cast, Some("elements as Postgres prints them")),
        "numeric" => {
            let (p, s) = match numeric_typmod(column.type_modifier) {
                Some((p, s)) if s <= BIGNUMERIC_SCALE as u32 && p - s <= 38 => (p as u8, s as u8),
                _ => return None,
            };
            let bq = if s <= NUMERIC_MAX_SCALE && p - s <= NUMERIC_MAX_INTEGER_DIGITS {
                BigQueryType::Numeric
            } else {
                BigQueryType::Bignumeric
            };
            (decimal_type(p, s), bq, as_text, Conversion::ParseDecimalList, Some("elements as text, parsed exactly"))
        }
        _ => return None,
    };
    let check = ValueCheck {
        predicate: format!("CASE WHEN array_ndims({quoted}) > 1 THEN true ELSE array_position({quoted}, NULL) IS NOT NULL END"),
        problem: "NULL elements or multi-dimensional arrays (BigQuery arrays cannot hold NULL and are one-dimensional)".into(),
        range_adjustable: false,
    };
    let mapping = ColumnMapping::new(column, item(element_type), bq_type, select_expr, conversion).repeated().with_check(check);
    Some(ColumnMapping { note: note.map(str::to_string), ..mapping })
}

/// Quotes an identifier for Postgres SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Column name prefixes BigQuery reserves (compared ignoring case); `_PARTITION` covers
/// `_PARTITIONTIME` and `_PARTITIONDATE`.
pub const BIGQUERY_RESERVED_COLUMN_PREFIXES: [&str; 6] =
    ["_TABLE_", "_FILE_", "_PARTITION", "_ROW_TIMESTAMP", "__ROOT__", "_COLIDENTIFIER"];
/// Longest column name BigQuery accepts.
const BIGQUERY_MAX_COLUMN_NAME: usize = 300;

/// BigQuery column names for Postgres names, in order: deterministic and collision-free.
///
/// Characters outside `[A-Za-z0-9_]` become `_`, a leading digit gets a `_` prefix, a name
/// starting with a reserved prefix ([`BIGQUERY_RESERVED_COLUMN_PREFIXES`]) gets an `x` prefix
/// (`_PARTITIONTIME` → `x_PARTITIONTIME`), names are cut to 300 characters, and names equal
/// ignoring case (BigQuery compares them so) get `_2`, `_3`, … in column order.
pub fn bigquery_column_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let reserved = |name: &str| {
        let upper = name.to_ascii_uppercase();
        BIGQUERY_RESERVED_COLUMN_PREFIXES.iter().any(|prefix| upper.starts_with(prefix))
    };
    unique_names(names.into_iter().map(|name| {
        let clean = bigquery_identifier(name);
        if reserved(&clean) {
            format!("x{clean}")
        } else {
            clean
        }
    }))
}

/// The characters a kind of name may hold: ASCII letters, digits and a few more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAlphabet {
    /// Allowed besides ASCII letters and digits.
    extra: &'static str,
}

impl NameAlphabet {
    /// BigQuery column and table names: `[A-Za-z0-9_]`.
    pub const IDENTIFIER: Self = Self { extra: "_" };
    /// BigQuery job ids and label parts, and our query names: `[A-Za-z0-9_-]`.
    pub const ID: Self = Self { extra: "_-" };

    pub fn allows(self, c: char) -> bool {
        c.is_ascii_alphanumeric() || self.extra.contains(c)
    }

    /// Whether `text` is non-empty and holds only characters of the alphabet.
    pub fn spells(self, text: &str) -> bool {
        !text.is_empty() && text.chars().all(|c| self.allows(c))
    }

    /// `text` with every character outside the alphabet as `_`, cut to `max_chars`.
    pub fn sanitize(self, text: &str, max_chars: usize) -> String {
        text.chars().map(|c| if self.allows(c) { c } else { '_' }).take(max_chars).collect()
    }
}

/// `name` with characters outside `[A-Za-z0-9_]` as `_` and a `_` before a leading digit
/// (the rule BigQuery column and table names share).
pub fn bigquery_identifier(name: &str) -> String {
    let mut clean = NameAlphabet::IDENTIFIER.sanitize(name, usize::MAX);
    if clean.is_empty() || clean.starts_with(|c: char| c.is_ascii_digit()) {
        clean.insert(0, '_');
    }
    clean
}

/// Cuts names to BigQuery's length and suffixes `_2`, `_3`, … to names already taken
/// (ignoring case), keeping every result within the length.
fn unique_names(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    let mut out = Vec::new();
    for mut clean in names {
        clean.truncate(BIGQUERY_MAX_COLUMN_NAME);
        let mut candidate = clean.clone();
        let mut n = 2;
        while !taken.insert(candidate.to_ascii_lowercase()) {
            let suffix = format!("_{n}");
            candidate = format!("{}{suffix}", &clean[..clean.len().min(BIGQUERY_MAX_COLUMN_NAME - suffix.len())]);
            n += 1;
        }
        out.push(candidate);
    }
    out
}

/// Serialises Arrow types as their Display text (`Decimal128(12, 2)`,
/// `Timestamp(Microsecond, Some("UTC"))`), lists as `List(<element type>)`.
mod arrow_type_serde {
    use std::str::FromStr;
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field};
    use serde::{Deserialize, Deserializer, Serializer};

    fn to_text(dt: &DataType) -> String {
        match dt {
            DataType::List(item) => format!("List({})", to_text(item.data_type())),
            other => other.to_string(),
        }
    }

    fn from_text(text: &str) -> Result<DataType, arrow::error::ArrowError> {
        match text.strip_prefix("List(").and_then(|t| t.strip_suffix(')')) {
            Some(item) => Ok(DataType::List(Arc::new(Field::new("element", from_text(item)?, true)))),
            None => DataType::from_str(text),
        }
    }

    pub fn serialize<S: Serializer>(dt: &DataType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_text(dt))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DataType, D::Error> {
        from_text(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_alphabets_replace_what_they_do_not_spell() {
        assert_eq!(NameAlphabet::IDENTIFIER.sanitize("a-b.c_1é", usize::MAX), "a_b_c_1_");
        assert_eq!(NameAlphabet::ID.sanitize("a-b.c_1é", 5), "a-b_c");
        assert!(NameAlphabet::ID.spells("daily-2024_x"));
        assert!(!NameAlphabet::ID.spells("daily 2024") && !NameAlphabet::ID.spells(""));
        assert!(!NameAlphabet::IDENTIFIER.spells("a-b"));
    }

    fn column(type_name: &str, typmod: i32) -> PgColumn {
        PgColumn::base("c", type_name, typmod)
    }

    fn numeric_typmod_of(p: i32, s: i32) -> i32 {
        ((p << 16) | (s & 0x7ff)) + 4
    }

    #[test]
    fn numeric_scale_above_precision_or_negative_maps_without_overflow() {
        let m = map_column(&column("numeric", numeric_typmod_of(3, 5)), None, OutOfRange::Refuse).unwrap();
        assert_eq!((m.arrow_type, m.bq_type), (DataType::Decimal128(5, 5), BigQueryType::Numeric));
        let m = map_column(&column("numeric", numeric_typmod_of(3, -2)), None, OutOfRange::Refuse).unwrap();
        assert_eq!((m.arrow_type, m.bq_type), (DataType::Decimal128(5, 0), BigQueryType::Numeric));
        let mut array = column("_numeric", numeric_typmod_of(2, 4));
        array.element_type = Some("numeric".into());
        let m = map_column(&array, None, OutOfRange::Refuse).unwrap();
        assert_eq!(m.arrow_type, DataType::List(std::sync::Arc::new(Field::new("element", DataType::Decimal128(4, 4), true))));
    }

    #[test]
    fn inet_is_selected_as_postgres_prints_it() {
        let m = map_column(&column("inet", -1), None, OutOfRange::Refuse).unwrap();
        assert_eq!(m.select_expr, "abbrev(\"c\")");
        assert_eq!(map_column(&column("cidr", -1), None, OutOfRange::Refuse).unwrap().select_expr, "\"c\"::text");
    }

    #[test]
    fn reserved_bigquery_column_names_are_renamed_deterministically() {
        let names = bigquery_column_names([
            "_PARTITIONTIME",
            "_partitiondate",
            "_TABLE_SUFFIX",
            "_file_name",
            "__root__",
            "x_PARTITIONTIME",
            "_ROW_TIMESTAMP",
            "_COLIDENTIFIER1",
            "_tablet",
        ]);
        assert_eq!(
            names,
            [
                "x_PARTITIONTIME",
                "x_partitiondate",
                "x_TABLE_SUFFIX",
                "x_file_name",
                "x__root__",
                "x_PARTITIONTIME_2",
                "x_ROW_TIMESTAMP",
                "x_COLIDENTIFIER1",
                "_tablet"
            ]
        );
    }

    #[test]
    fn suffixed_names_stay_within_bigquery_length() {
        let long = "a".repeat(400);
        let names = bigquery_column_names([long.as_str(), long.as_str()]);
        assert_eq!(names[0].len(), 300);
        assert_eq!((names[1].len(), &names[1][296..]), (300, "aa_2"));
    }

    #[test]
    fn numeric_within_numeric_limits_maps_to_numeric() {
        let m = map_column(&column("numeric", numeric_typmod_of(12, 2)), None, OutOfRange::Refuse).unwrap();
        assert_eq!(m.arrow_type, DataType::Decimal128(12, 2));
        assert_eq!(m.bq_type, BigQueryType::Numeric);
    }

    #[test]
    fn numeric_beyond_numeric_maps_to_bignumeric() {
        let m = map_column(&column("numeric", numeric_typmod_of(40, 20)), None, OutOfRange::Refuse).unwrap();
        assert_eq!(m.arrow_type, DataType::Decimal256(40, 20));
        assert_eq!(m.bq_type, BigQueryType::Bignumeric);
    }

    #[test]
    fn unconstrained_numeric_is_checked_against_bignumeric() {
        let m = map_column(&column("numeric", -1), None, OutOfRange::Refuse).unwrap();
        assert_eq!(m.arrow_type, DataType::Decimal256(76, 38));
        assert!(m.check.unwrap().predicate.contains("round(\"c\", 38)"));
    }

    #[test]
    fn unknown_type_is_refused_with_the_way_out() {
        let err = map_column(&column("geometry", -1), None, OutOfRange::Refuse).unwrap_err();
        assert!(err.reason.contains("--cast c=text"), "{}", err.reason);
    }

    #[test]
    fn cast_override_turns_anything_into_text() {
        let m = map_column(&column("geometry", -1), Some(CastOverride::Text), OutOfRange::Refuse).unwrap();
        assert_eq!(m.bq_type, BigQueryType::String);
        assert_eq!(m.select_expr, "\"c\"::text");
    }

    #[test]
    fn clamp_rewrites_the_select_expression() {
        let m = map_column(&column("timestamptz", -1), None, OutOfRange::Clamp).unwrap();
        assert!(m.select_expr.contains("LEAST(GREATEST(\"c\""), "{}", m.select_expr);
    }

    #[test]
    fn bigquery_names_are_cleaned_and_deduplicated_case_insensitively() {
        let names = bigquery_column_names(["id", "ID", "user name", "1st", "ünï", "id_2"]);
        assert_eq!(names, ["id", "ID_2", "user_name", "_1st", "_n_", "id_2_2"]);
    }

    #[derive(Serialize, Deserialize)]
    struct Wrapper(#[serde(with = "arrow_type_serde")] DataType);

    #[test]
    fn arrow_type_text_round_trips() {
        for dt in [
            DataType::Decimal256(76, 38),
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            DataType::List(std::sync::Arc::new(Field::new("element", DataType::Int32, true))),
        ] {
            let json = serde_json::to_string(&Wrapper(dt.clone())).unwrap();
            assert_eq!(serde_json::from_str::<Wrapper>(&json).unwrap().0, dt, "{json}");
        }
    }
}

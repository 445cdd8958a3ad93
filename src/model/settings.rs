//! The values of per-table settings as a user writes them on the command line or in the config
//! file, each parsed once, by its `FromStr`, where it comes in: a query (`NAME=SQL`), a column of
//! some table (`[[schema.]table.]column`), a column of a named table (`TABLE.COLUMN`), with
//! columns, a value or a lossy type after it, a table's BigQuery target (`TABLE=TARGET`), and
//! the run's destination.
//! Table parts are read by Postgres' rules ([`name_parts`]); nothing downstream splits a string
//! to recover a name.

use std::str::FromStr;

use serde::Deserialize;

use crate::model::table_ref::{name_parts, split_outside_quotes, table_key, ParseTableRefError, TableRef, MAX_DIRECTORY_BYTES};
use crate::model::types::{BigQueryType, CastOverride, NameAlphabet};

/// A setting's text that does not parse, naming it and the shape it should have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("`{value}` is not of the form {expected}")]
    Malformed { value: String, expected: &'static str },
    #[error(transparent)]
    TableName(#[from] ParseTableRefError),
    #[error(
        "query name `{name}` may only hold letters, digits, `_` and `-`, {max} at most (it names the BigQuery table and the run's directory)",
        max = MAX_DIRECTORY_BYTES
    )]
    QueryName { name: String },
    #[error("query `{name}` is empty")]
    EmptyQuery { name: String },
    #[error("unknown partitioning unit `{unit}` (use DAY, HOUR, MONTH or YEAR)")]
    PartitionUnit { unit: String },
    #[error("destination `{url}` is in memory and would vanish when pg2bq exits; pass gs://bucket/prefix, file:///abs/dir or a path")]
    MemoryDestination { url: String },
    #[error("`{value}` is not a lossy type pg2bq allows: use FLOAT64 (the one lossy conversion pg2bq makes)")]
    LossyType { value: String },
}

fn malformed(value: &str, expected: &'static str) -> SettingError {
    SettingError::Malformed { value: value.to_string(), expected }
}

/// `--query NAME=SQL`, or a config-file table with `query`: a name that may be a directory and
/// a BigQuery table (`[A-Za-z0-9_-]`, at most [`MAX_DIRECTORY_BYTES`]), and its SELECT without
/// trailing `;` and blanks (it is wrapped in a sub-select).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySpec {
    pub name: String,
    pub sql: String,
}

impl QuerySpec {
    /// # Errors
    /// [`SettingError::QueryName`] or [`SettingError::EmptyQuery`].
    pub fn new(name: &str, sql: &str) -> Result<Self, SettingError> {
        if !NameAlphabet::ID.spells(name) || name.len() > MAX_DIRECTORY_BYTES {
            return Err(SettingError::QueryName { name: name.to_string() });
        }
        let sql = sql.trim_end_matches(|c: char| c == ';' || c.is_whitespace()).trim_start();
        if sql.is_empty() {
            return Err(SettingError::EmptyQuery { name: name.to_string() });
        }
        Ok(Self { name: name.to_string(), sql: sql.to_string() })
    }
}

impl FromStr for QuerySpec {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        let (name, sql) = text.split_once('=').ok_or_else(|| malformed(text, "NAME=SQL"))?;
        Self::new(name.trim(), sql)
    }
}

/// Where a run goes (`--dest`, `PG2BQ_DEST`, the file's `dest`): `gs://bucket/prefix`,
/// `file:///abs/dir` or a path; never an in-memory store, which would vanish with the process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Destination(String);

impl From<Destination> for String {
    fn from(destination: Destination) -> String {
        destination.0
    }
}

impl FromStr for Destination {
    type Err = SettingError;

    fn from_str(url: &str) -> Result<Self, SettingError> {
        match url.starts_with("memory://") {
            true => Err(SettingError::MemoryDestination { url: url.to_string() }),
            false => Ok(Self(url.to_string())),
        }
    }
}

impl TryFrom<String> for Destination {
    type Error = SettingError;

    fn try_from(url: String) -> Result<Self, SettingError> {
        url.parse()
    }
}

/// `--table [schema.]table`: the table, and its spelling as written, which a message naming two
/// spellings of one table quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub table: TableRef,
    pub written: String,
}

impl FromStr for TableName {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        Ok(Self { table: TableRef::parse(text)?, written: text.to_string() })
    }
}

/// A table as an option names it, `[schema.]table`: each part as the catalog spells it, the
/// schema only when written, and the table part as written (a query's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    pub schema: Option<String>,
    pub table: String,
    /// The table part unquoted but not case-folded: a query goes by this name.
    pub written: String,
}

impl TablePattern {
    /// The key of the table's load options (see [`table_key`]).
    pub fn key(&self) -> String {
        table_key(self.schema.as_deref(), &self.table)
    }

    /// Whether this names `table`: the same table part, and the same schema when one is written.
    pub fn names(&self, table: &TableRef) -> bool {
        self.schema.as_ref().is_none_or(|s| *s == table.schema) && self.table == table.name
    }

    /// Whether this names the query called `name` (a query's name holds no dot).
    pub fn names_query(&self, name: &str) -> bool {
        self.schema.is_none() && self.written == name
    }

    /// The table as messages name it: as written when unqualified, else the [`TableRef`] displayed.
    pub fn shown(&self) -> String {
        match &self.schema {
            None => self.written.clone(),
            Some(schema) => TableRef::new(schema, &self.table).to_string(),
        }
    }
}

/// `[[schema.]table.]column` (`--cast`, `--partition-on`, `--watermark`, `--updated-at`): a
/// column of the table named, or of every table when none is. The column is taken as written
/// (inside its quotes, if quoted; not case-folded, as options always took it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    pub table: Option<TablePattern>,
    pub column: String,
    /// The text as written, for messages.
    pub text: String,
}

impl FromStr for ColumnRef {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        let mut parts = name_parts(text).map_err(|_| malformed(text, "[[SCHEMA.]TABLE.]COLUMN"))?;
        let column = parts.pop().expect("name_parts gives one part or more").text;
        let table = match parts.as_slice() {
            [] => None,
            [table] => Some(TablePattern { schema: None, table: table.folded(), written: table.text.clone() }),
            [schema, table] => Some(TablePattern { schema: Some(schema.folded()), table: table.folded(), written: table.text.clone() }),
            _ => return Err(malformed(text, "[[SCHEMA.]TABLE.]COLUMN")),
        };
        Ok(Self { table, column, text: text.to_string() })
    }
}

impl std::fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `[TABLE.]COLUMN=text` (`--cast`): a column exported as Postgres' text output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnCast {
    pub column: ColumnRef,
    pub cast: CastOverride,
}

impl FromStr for ColumnCast {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        match split_outside_quotes(text, '=') {
            Some((column, "text")) => Ok(Self { column: column.parse()?, cast: CastOverride::Text }),
            _ => Err(malformed(text, "[TABLE.]COLUMN=text")),
        }
    }
}

/// `[schema.]table.column` (`--exclude-column`): the table's load key ([`TablePattern::key`])
/// and the column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedColumn {
    pub table: String,
    pub column: String,
}

impl QualifiedColumn {
    /// `text` as a column of a named table; `expected` names the whole value's shape.
    fn parse(text: &str, whole: &str, expected: &'static str) -> Result<Self, SettingError> {
        match ColumnRef::from_str(text) {
            Ok(ColumnRef { table: Some(table), column, .. }) => Ok(Self { table: table.key(), column }),
            _ => Err(malformed(whole, expected)),
        }
    }
}

impl FromStr for QualifiedColumn {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        Self::parse(text, text, "TABLE.COLUMN")
    }
}

/// `TABLE.COLUMN[,COLUMN…]` (`--cluster-by`, `--key`): a table's load key and its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumns {
    pub table: String,
    pub columns: Vec<String>,
}

impl FromStr for TableColumns {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        let (first, rest) = split_outside_quotes(text, ',').unwrap_or((text, ""));
        let QualifiedColumn { table, column } = QualifiedColumn::parse(first, text, "TABLE.COLUMN[,COLUMN]")?;
        let mut columns = vec![column];
        columns.extend(rest.split(',').filter(|c| !c.is_empty()).map(str::to_string));
        Ok(Self { table, columns })
    }
}

/// `TABLE.COLUMN=VALUE` (`--column-map`, `--set`, `--default`): a column of a named table and
/// the text after the first `=` outside quotes (which may be empty and hold `=` and `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnValue {
    pub column: QualifiedColumn,
    pub value: String,
}

impl FromStr for ColumnValue {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        let expected = "TABLE.COLUMN=VALUE";
        let (column, value) = split_outside_quotes(text, '=').ok_or_else(|| malformed(text, expected))?;
        Ok(Self { column: QualifiedColumn::parse(column, text, expected)?, value: value.to_string() })
    }
}

/// The type a lossy conversion may produce (`--allow-lossy`, `allow_lossy`): only FLOAT64
/// (`FLOAT`, any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct LossyType(pub BigQueryType);

impl FromStr for LossyType {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        match text.to_ascii_uppercase().as_str() {
            "FLOAT64" | "FLOAT" => Ok(Self(BigQueryType::Float64)),
            _ => Err(SettingError::LossyType { value: text.to_string() }),
        }
    }
}

impl TryFrom<String> for LossyType {
    type Error = SettingError;

    fn try_from(text: String) -> Result<Self, SettingError> {
        text.parse()
    }
}

/// `TABLE.COLUMN=FLOAT64` (`--allow-lossy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossyColumn {
    pub column: QualifiedColumn,
    pub lossy: LossyType,
}

impl FromStr for LossyColumn {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        let ColumnValue { column, value } =
            text.parse().map_err(|_| malformed(text, "TABLE.COLUMN=FLOAT64 (the one lossy conversion pg2bq makes)"))?;
        Ok(Self { column, lossy: value.parse()? })
    }
}

/// `TABLE=TARGET` (`--table-map`): a table's load key and the BigQuery table it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMapping {
    pub table: String,
    pub target: String,
}

impl FromStr for TableMapping {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        let (table, target) = split_outside_quotes(text, '=')
            .filter(|(t, id)| !t.is_empty() && !id.is_empty())
            .ok_or_else(|| malformed(text, "TABLE=TARGET"))?;
        Ok(Self { table: load_key(table)?, target: target.to_string() })
    }
}

/// The key of a table's load options for `[schema.]table` (see [`table_key`]).
///
/// # Errors
/// [`SettingError::TableName`] for text that is not a table name.
pub fn load_key(name: &str) -> Result<String, SettingError> {
    let (schema, table) = TableRef::parse_partial(name)?;
    Ok(table_key(schema.as_deref(), &table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: FromStr<Err = SettingError> + std::fmt::Debug>(text: &str) -> String {
        text.parse::<T>().unwrap_err().to_string()
    }

    #[test]
    fn queries_lose_trailing_semicolons_and_need_a_plain_name() {
        assert_eq!("recent=SELECT 1 ;; \n".parse(), Ok(QuerySpec { name: "recent".into(), sql: "SELECT 1".into() }));
        assert_eq!("r = SELECT a=b".parse::<QuerySpec>().unwrap().sql, "SELECT a=b");
        assert_eq!(err::<QuerySpec>("SELECT 1"), "`SELECT 1` is not of the form NAME=SQL");
        assert_eq!(err::<QuerySpec>("q= ; "), "query `q` is empty");
        for bad in ["../x=SELECT 1", "a.b=SELECT 1", "\"Recent\"=SELECT 1", &format!("{}=SELECT 1", "q".repeat(256))] {
            assert!(
                err::<QuerySpec>(bad).ends_with(
                    "may only hold letters, digits, `_` and `-`, 255 at most (it names the BigQuery table and the run's directory)"
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_destination_in_memory_is_refused() {
        assert_eq!(String::from("gs://b/p".parse::<Destination>().unwrap()), "gs://b/p");
        assert_eq!(
            err::<Destination>("memory://scratch"),
            "destination `memory://scratch` is in memory and would vanish when pg2bq exits; pass gs://bucket/prefix, file:///abs/dir or a path"
        );
    }

    #[test]
    fn table_names_keep_their_spelling() {
        let name: TableName = "Public.\"Events\"".parse().unwrap();
        assert_eq!((name.table, name.written.as_str()), (TableRef::new("public", "Events"), "Public.\"Events\""));
        assert_eq!(
            err::<TableName>("a.b.c"),
            "`a.b.c` is not a table name: more than two parts (write SCHEMA.TABLE and quote a part holding a dot)"
        );
    }

    #[test]
    fn column_refs_read_quoted_table_parts() {
        let c: ColumnRef = "\"sales.eu\".orders.amount".parse().unwrap();
        let table = c.table.clone().unwrap();
        assert_eq!((table.schema.as_deref(), table.table.as_str(), c.column.as_str()), (Some("sales.eu"), "orders", "amount"));
        assert!(table.names(&TableRef::new("sales.eu", "orders")) && !table.names(&TableRef::new("sales", "eu.orders")));
        assert_eq!((table.key(), table.shown(), c.to_string()), ("\"sales.eu\".orders".into(), "\"sales.eu\".orders".into(), c.text));
        let c: ColumnRef = "Recent.\"Amount.x\"".parse().unwrap();
        let table = c.table.unwrap();
        assert_eq!((table.table.as_str(), table.written.as_str(), c.column.as_str()), ("recent", "Recent", "Amount.x"));
        assert!(table.names_query("Recent") && !table.names_query("recent"));
        assert_eq!("id".parse::<ColumnRef>().unwrap().table, None);
        assert_eq!(err::<ColumnRef>("a.b.c.d"), "`a.b.c.d` is not of the form [[SCHEMA.]TABLE.]COLUMN");
        assert_eq!(err::<ColumnRef>("a.\"b"), "`a.\"b` is not of the form [[SCHEMA.]TABLE.]COLUMN");
    }

    #[test]
    fn casts_are_to_text_only() {
        let cast: ColumnCast = "\"sales.eu\".orders.\"a=b\"=text".parse().unwrap();
        assert_eq!((cast.column.column.as_str(), cast.cast), ("a=b", CastOverride::Text));
        assert_eq!(cast.column.table.unwrap().schema.as_deref(), Some("sales.eu"));
        assert_eq!("amount=text".parse::<ColumnCast>().unwrap().column.table, None);
        for bad in ["amount", "amount=int", "amount=TEXT"] {
            assert_eq!(err::<ColumnCast>(bad), format!("`{bad}` is not of the form [TABLE.]COLUMN=text"));
        }
        assert_eq!(err::<ColumnCast>("a.b.c.d=text"), "`a.b.c.d` is not of the form [[SCHEMA.]TABLE.]COLUMN");
    }

    #[test]
    fn table_columns_need_a_table() {
        let column = |table: &str, column: &str| QualifiedColumn { table: table.into(), column: column.into() };
        assert_eq!("\"sales.eu\".orders.amount".parse(), Ok(column("\"sales.eu\".orders", "amount")));
        assert_eq!("public.\"Events\".id".parse(), Ok(column("\"Events\"", "id")));
        assert_eq!("events.id".parse(), Ok(column("events", "id")));
        assert_eq!(err::<QualifiedColumn>("id"), "`id` is not of the form TABLE.COLUMN");
        let columns: TableColumns = "s.\"a,b\".c,d".parse().unwrap();
        assert_eq!((columns.table.as_str(), columns.columns), ("s.\"a,b\"", vec!["c".to_string(), "d".to_string()]));
        assert_eq!(err::<TableColumns>("id,x"), "`id,x` is not of the form TABLE.COLUMN[,COLUMN]");
    }

    #[test]
    fn column_values_cut_at_the_first_equals_outside_quotes() {
        let v: ColumnValue = "\"sales.eu\".orders.\"a=b\"=x=y".parse().unwrap();
        assert_eq!((v.column.table.as_str(), v.column.column.as_str(), v.value.as_str()), ("\"sales.eu\".orders", "a=b", "x=y"));
        assert_eq!("events.note=".parse::<ColumnValue>().unwrap().value, "");
        assert_eq!(err::<ColumnValue>("events.note"), "`events.note` is not of the form TABLE.COLUMN=VALUE");
        assert_eq!(err::<ColumnValue>("note=x"), "`note=x` is not of the form TABLE.COLUMN=VALUE");
    }

    #[test]
    fn only_float64_is_a_lossy_type() {
        let lossy: LossyColumn = "events.amount=float".parse().unwrap();
        assert_eq!((lossy.column.column.as_str(), lossy.lossy), ("amount", LossyType(BigQueryType::Float64)));
        assert_eq!(
            err::<LossyColumn>("events.amount=INT64"),
            "`INT64` is not a lossy type pg2bq allows: use FLOAT64 (the one lossy conversion pg2bq makes)"
        );
        assert_eq!(
            err::<LossyColumn>("amount=FLOAT64"),
            "`amount=FLOAT64` is not of the form TABLE.COLUMN=FLOAT64 (the one lossy conversion pg2bq makes)"
        );
    }

    #[test]
    fn table_mappings_read_quoted_table_names() {
        let mapping = |table: &str, target: &str| TableMapping { table: table.into(), target: target.into() };
        assert_eq!("\"sales.eu\".orders=eu_orders".parse(), Ok(mapping("\"sales.eu\".orders", "eu_orders")));
        assert_eq!("s.\"a=b\"=ab".parse(), Ok(mapping("s.\"a=b\"", "ab")));
        assert_eq!("public.Events=e".parse(), Ok(mapping("events", "e")));
        for bad in ["events", "=x", "events="] {
            assert_eq!(err::<TableMapping>(bad), format!("`{bad}` is not of the form TABLE=TARGET"));
        }
        assert_eq!(
            err::<TableMapping>("a.b.c=x"),
            "`a.b.c` is not a table name: more than two parts (write SCHEMA.TABLE and quote a part holding a dot)"
        );
    }
}

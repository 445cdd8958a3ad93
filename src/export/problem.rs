//! Why an export plan refuses a table or query: one [`Problem`] variant per refusal, its
//! inputs as fields, rendered once with the way out. A run stops with every problem of every
//! table at once ([`PlanError::Refused`](super::plan::PlanError)); `--dry-run` lists them
//! after the tables that can go.

use serde::{Serialize, Serializer};

use crate::model::row_hash::MAX_CARRIED_KEYS;
use crate::model::tail::WatermarkRefused;
use crate::source::postgres::AccessProblem;

/// What a problem is about: a table (as the catalog spells it) or a query (by its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Table(String),
    Query(String),
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Table(name) => write!(f, "table `{name}`"),
            Subject::Query(name) => write!(f, "query `{name}`"),
        }
    }
}

/// How a tail's earlier rows count now against what the runs up to its parent hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierCount {
    /// Rows at or below the watermark (or without one) now.
    pub rows: u64,
    pub watermark: String,
    pub parent_run: String,
    /// The parent's runs set rows aside (counted with the rows they hold).
    pub set_aside: bool,
    /// Rows the runs up to the parent hold.
    pub held: u64,
}

impl std::fmt::Display for EarlierCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rows are at or below the watermark `{}` of run `{}` (or have none{}) now, where the runs up to it hold {} (those they set aside included)",
            self.rows,
            self.watermark,
            self.parent_run,
            if self.set_aside { ", or are rows they set aside" } else { "" },
            self.held,
        )
    }
}

/// Why a table or query cannot be exported as it is, with the way out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{what}: run `{parent_run}` did not export it; export it whole (without --since)")]
    NotInParent { what: Subject, parent_run: String },
    #[error("{what}: a tail needs a watermark column that only grows: pass --watermark {name}.<column>")]
    NoWatermark { what: Subject, name: String },
    #[error("{what}: it has no column `{column}` to be the watermark")]
    NoWatermarkColumn { what: Subject, column: String },
    #[error(transparent)]
    Watermark(WatermarkRefused),
    #[error("{what}: --updated-at column `{column}` is {pg_type}; it must be a timestamp with time zone")]
    UpdatedAtType { what: Subject, column: String, pg_type: String },
    #[error("{what}: it has no column `{column}` for --updated-at")]
    NoUpdatedAtColumn { what: Subject, column: String },
    /// The earlier rows differ, not told apart by key (no row hashes, or none differ by key).
    #[error(
        "{what}: {counted}: rows were added below the watermark, changed or deleted since, and a tail would miss them{}. \
         Export the table whole and load it with --mode merge (rows already loaded are skipped)",
        if *keyless_set_aside {
            "; or a row set aside lies above the watermark, which a table without a primary key cannot tell apart"
        } else {
            ""
        }
    )]
    EarlierRowsDiffer { what: Subject, counted: EarlierCount, keyless_set_aside: bool },
    /// Rows changed below the watermark, by key (`changes`: the keys in words), without
    /// `--carry-changes`.
    #[error(
        "{what}: {counted}; since run `{}`, by key: {changes}. A tail would miss these changes: carry them into the tail with \
         --carry-changes (then load it with --mode merge --overwrite-existing --apply-deletes), or export the table whole \
         and load it with --mode truncate",
        counted.parent_run
    )]
    EarlierRowsChanged { what: Subject, counted: EarlierCount, changes: String },
    #[error(
        "{what}: since run `{parent_run}`, {total} rows changed below the watermark ({changes}), more than the {MAX_CARRIED_KEYS} a tail carries: \
         export the table whole and load it with --mode truncate"
    )]
    TooManyChanges { what: Subject, parent_run: String, total: u64, changes: String },
    #[error("{what}: column {position} has no name (`?column?`); give every expression an alias, e.g. `SELECT a + b AS total`")]
    Unnamed { what: Subject, position: usize },
    #[error("{what}, column `{column}` ({pg_type}): {reason}")]
    Unmappable { what: Subject, column: String, pg_type: String, reason: String },
    #[error("{what} has no columns; a BigQuery table needs at least one, leave it out of the run")]
    NoColumns { what: Subject },
    /// `--cast` names a column the table lacks; `several`: the run has other tables (the cast
    /// may be meant for one of them).
    #[error(
        "{what}: --cast names column `{column}`, which it does not have{}",
        if *several { format!("; to cast it in one table only, qualify it: `--cast schema.table.{column}=text`") } else { String::new() }
    )]
    UnknownCast { what: Subject, column: String, several: bool },
    /// A SQL_ASCII database's text that is not UTF-8 (which Parquet and BigQuery need): the
    /// first row's column, value (bytes above 127 in octal) and key.
    #[error(
        "{what}: {rows} row(s) hold text that is not valid UTF-8; the first{} in column `{column}`: `{value}` (bytes above 127 in octal); \
         the database's encoding is SQL_ASCII, which stores any bytes, and Parquet and BigQuery hold only UTF-8: convert those \
         rows to UTF-8, or export the bytes as BYTES through --query with `convert_to({quoted}, 'SQL_ASCII') AS {quoted}`",
        key.as_ref().map_or_else(String::new, |key| format!(", {key},")),
        quoted = crate::model::types::quote_ident(column)
    )]
    InvalidText { what: Subject, rows: u64, column: String, value: String, key: Option<String> },
    #[error(transparent)]
    Access(AccessProblem),
    /// A child of the table this role cannot read directly.
    #[error("{problem} (each child is read on its own; or pass --partition-on <integer column> to read {what} through its parent)")]
    ChildAccess { what: Subject, problem: AccessProblem },
    #[error(
        "{what}: child `{child}` is a foreign table, whose rows are not in the run's snapshot; detach it \
         (ALTER TABLE … DETACH PARTITION, or ALTER TABLE {child} NO INHERIT …) or copy its rows into a local table, then export again"
    )]
    ForeignChild { what: Subject, child: String },
    #[error(
        "{what}: partition `{child}` is being detached concurrently; let the detach finish (or complete it with \
         ALTER TABLE … DETACH PARTITION {child} FINALIZE), then export again"
    )]
    DetachPending { what: Subject, child: String },
    #[error(
        "{what}: compressed TimescaleDB chunk `{chunk}` has no dimension constraint (`constraint_<n>`) to read it through the \
         hypertable by; decompress it (SELECT decompress_chunk('{}')), then export again",
        chunk.replace('\'', "''")
    )]
    ChunkWithoutRange { what: Subject, chunk: String },
    /// Rows failing a column's value check (`problem`), with neither `--out-of-range` (when
    /// `range_adjustable`) nor quarantine asked for.
    #[error(
        "{what}, column `{column}` ({pg_type}): {rows} row(s) hold {problem}; {}, or `--on-bad-value quarantine` to set the rows aside",
        if *range_adjustable {
            format!("pass `--out-of-range clamp` or `--out-of-range null`, or `--cast {column}=text`")
        } else {
            format!("export the column as text with `--cast {column}=text`")
        }
    )]
    BadValues { what: Subject, column: String, pg_type: String, rows: u64, problem: String, range_adjustable: bool },
    /// Two tables or queries that would land in one BigQuery table (names compared ignoring case).
    #[error(
        "`{first}` and `{later}` both map to BigQuery table `{bq_table}`; export them in separate runs (loaded with different \
         --table-prefix or datasets), or give the query another name"
    )]
    NameCollision { first: String, later: String, bq_table: String },
}

/// A plan's JSON (`--dry-run --json`) gives each problem as its message.
impl Serialize for Problem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> Subject {
        Subject::Table("sales.orders".into())
    }

    #[test]
    fn each_problem_names_its_subject_and_the_way_out_once() {
        let counted = EarlierCount { rows: 98, watermark: "id".into(), parent_run: "backfill".into(), set_aside: true, held: 100 };
        let cases = [
            (
                Problem::UnknownCast { what: orders(), column: "note".into(), several: true },
                "table `sales.orders`: --cast names column `note`, which it does not have; to cast it in one table only, qualify it: \
                 `--cast schema.table.note=text`",
            ),
            (
                Problem::UnknownCast { what: Subject::Query("recent".into()), column: "note".into(), several: false },
                "query `recent`: --cast names column `note`, which it does not have",
            ),
            (
                Problem::EarlierRowsDiffer { what: orders(), counted: counted.clone(), keyless_set_aside: false },
                "table `sales.orders`: 98 rows are at or below the watermark `id` of run `backfill` (or have none, or are rows they \
                 set aside) now, where the runs up to it hold 100 (those they set aside included): rows were added below the \
                 watermark, changed or deleted since, and a tail would miss them. Export the table whole and load it with --mode \
                 merge (rows already loaded are skipped)",
            ),
            (
                Problem::BadValues {
                    what: orders(),
                    column: "placed_on".into(),
                    pg_type: "date".into(),
                    rows: 2,
                    problem: "dates outside BigQuery's range".into(),
                    range_adjustable: true,
                },
                "table `sales.orders`, column `placed_on` (date): 2 row(s) hold dates outside BigQuery's range; pass `--out-of-range \
                 clamp` or `--out-of-range null`, or `--cast placed_on=text`, or `--on-bad-value quarantine` to set the rows aside",
            ),
            (
                Problem::InvalidText { what: orders(), rows: 1, column: "note".into(), value: "caf\\351".into(), key: Some("id=7".into()) },
                "table `sales.orders`: 1 row(s) hold text that is not valid UTF-8; the first, id=7, in column `note`: `caf\\351` (bytes \
                 above 127 in octal); the database's encoding is SQL_ASCII, which stores any bytes, and Parquet and BigQuery hold \
                 only UTF-8: convert those rows to UTF-8, or export the bytes as BYTES through --query with \
                 `convert_to(\"note\", 'SQL_ASCII') AS \"note\"`",
            ),
            (
                Problem::ChunkWithoutRange { what: orders(), chunk: "_ts.o'k".into() },
                "table `sales.orders`: compressed TimescaleDB chunk `_ts.o'k` has no dimension constraint (`constraint_<n>`) to read \
                 it through the hypertable by; decompress it (SELECT decompress_chunk('_ts.o''k')), then export again",
            ),
        ];
        for (problem, text) in cases {
            assert_eq!(problem.to_string(), text);
            assert_eq!(serde_json::to_value(&problem).unwrap(), serde_json::json!(text));
        }
    }

    #[test]
    fn a_child_the_role_cannot_read_names_the_way_through_its_parent() {
        let problem = AccessProblem::Denied { table: "sales.orders_2025".into(), columns: Some(vec!["total".into()]), role: "etl".into() };
        assert_eq!(
            Problem::ChildAccess { what: orders(), problem }.to_string(),
            "table `sales.orders_2025`: permission denied for column(s) `total` of table `sales.orders_2025` to role `etl`; GRANT \
             SELECT ON sales.orders_2025 TO etl (or SELECT on those columns), or export with a role that may read them (each child \
             is read on its own; or pass --partition-on <integer column> to read table `sales.orders` through its parent)"
        );
    }
}

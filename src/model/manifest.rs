//! The manifest: what a snapshot holds and how to check it. Written last, once, with
//! create-only semantics: its presence is what makes a run committed. It carries a SHA-256
//! digest of its own content, and its table totals must equal what its files record, so an
//! edited manifest is caught before anything trusts it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::aggregates::{ColumnAccumulator, ColumnAggregates};
use crate::model::days::DayCounts;
use crate::model::partition::PartitionBounds;
use crate::model::row_fingerprint::{RowFingerprint, TableRowFingerprint};
use crate::model::table_ref::TableRef;
use crate::model::tail::{Parent, Tail};
use crate::model::types::ColumnMapping;

/// Bumped on any incompatible change of this format. Version 2 added [`DIGEST_FIELD`].
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version still read: version 1 manifests have no digest (their totals are still
/// checked against their files).
pub const OLDEST_READABLE_VERSION: u32 = 1;
/// Top-level field holding `sha256:<hex>` of the manifest's canonical content without it.
pub const DIGEST_FIELD: &str = "digest";
/// File name of the manifest inside `<dest>/<run-id>/`.
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub tool: String,
    pub tool_version: String,
    pub run_id: String,
    pub started_at: String,
    pub completed_at: String,
    pub source: SourceInfo,
    /// The destination root the paths below are relative to (the run directory's parent).
    pub destination: String,
    pub tables: Vec<TableManifest>,
    /// Whether units were read in more than one snapshot (a resumed run); absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mixed_snapshot: bool,
    /// For a mixed-snapshot run, the snapshot each unit was read in; absent otherwise (every
    /// unit was read in [`Self::source`]'s).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unit_snapshots: Vec<UnitSnapshot>,
}

/// The snapshot one unit (partition) of a table was read in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitSnapshot {
    pub table: String,
    pub partition: usize,
    /// `pg_export_snapshot()` of the session the unit was read in: one per export attempt.
    pub snapshot_id: String,
    /// `txid_current_snapshot()` of the exporting transaction.
    pub txid_snapshot: String,
    /// WAL position when the snapshot was taken (replay position on a standby).
    pub wal_lsn: Option<String>,
}

/// The source and the consistent snapshot every table was read in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Connection URL with the password removed.
    pub url: String,
    pub server_version: String,
    /// `txid_current_snapshot()` of the exporting transaction.
    pub txid_snapshot: String,
    /// WAL position when the snapshot was taken (replay position on a standby).
    pub wal_lsn: Option<String>,
    /// The server's time (µs since 1970) before which no change the snapshot misses began: the
    /// start of the oldest other transaction then open (as `pg_stat_activity` shows it to the
    /// exporting role), else the snapshot's own. A tail's
    /// `--updated-at` check re-reads the rows updated at or after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes_since: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableManifest {
    /// The name the table goes by in the run and in messages: its [`TableRef`] displayed as SQL
    /// spells it (`public.events`, `"sales.eu".orders`), or the query's name.
    pub name: String,
    /// The table read, typed; absent for a query, and in manifests written before it was
    /// recorded (see [`Self::source_table`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableRef>,
    /// BigQuery table name (see [`TableRef::bigquery_name`]).
    pub bq_table: String,
    /// The SELECT every partition ran, before its partition predicate.
    pub source_query: String,
    pub primary_key: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    pub columns: Vec<ColumnManifest>,
    pub partitions: Vec<PartitionManifest>,
    pub files: Vec<FileManifest>,
    pub row_count: u64,
    /// A tail export (`--since`): the earlier run it continues and the rows it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<Tail>,
    /// Rows set aside by `--on-bad-value quarantine`, not in [`Self::files`] nor `row_count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<RejectedRows>,
    /// Every row's hash in the snapshot, by which a later tail sees changes below its
    /// watermark ([`crate::model::row_hash`]); only for a table with a primary key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_hashes: Option<RowHashes>,
    /// A tail with `--carry-changes`: the keys of the rows deleted below its watermark since
    /// the parent, one `key` (as [`crate::model::tail::key_json`] prints it) per row in
    /// [`DELETED_KEYS_FILE`], for `load --mode merge --apply-deletes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_keys: Option<FileManifest>,
    /// The rows' fingerprints over the columns they cover; absent from manifests written
    /// before they were recorded (validate then skips its `row_fingerprint` check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_fingerprint: Option<TableRowFingerprint>,
    /// Rows per day of each DATE and TIMESTAMP column (absent from older manifests).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub day_counts: Vec<DayCounts>,
}

/// Rows of the snapshot BigQuery cannot hold, set aside for retry: one Parquet file of
/// `key` (the primary key as JSON), `row` (the row as Postgres prints it, `row_to_json`) and
/// `reason` per row, and the rows per reason (a row with two bad columns counts in both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedRows {
    pub file: FileManifest,
    pub reasons: BTreeMap<String, u64>,
}

/// The deleted keys' file under the table's directory.
pub const DELETED_KEYS_FILE: &str = "_deleted/keys.parquet";

impl TableManifest {
    /// The table's rows in the snapshot: those in the files, those set aside by quarantine,
    /// and, for a tail, those the earlier runs hold, less those it carried updated or saw
    /// deleted (counted in its files or gone).
    pub fn snapshot_rows(&self) -> u64 {
        let rejected = self.rejected.as_ref().map_or(0, |r| r.file.rows);
        let earlier = self.tail.as_ref().map_or(0, |t| t.rows_through - t.replaced_rows());
        self.row_count + rejected + earlier
    }

    /// What a tail of `column` after this table of run `run` reads of it.
    pub fn tail_parent<'a>(&'a self, run: &'a str, column: &str) -> Parent<'a> {
        let watermark =
            self.columns.iter().find(|c| c.mapping.name == column).map(|c| (c.mapping.pg_type.as_str(), c.aggregates.max.as_deref()));
        Parent { run, table: &self.name, watermark, tail: self.tail.as_ref(), rows: self.snapshot_rows() }
    }

    /// The files beside the data: the rows set aside, the row hashes, the deleted keys (which
    /// only `load --apply-deletes` reads).
    pub fn side_files(&self) -> impl Iterator<Item = &FileManifest> {
        let files = self.rejected.iter().map(|r| &r.file).chain(self.row_hashes.iter().map(|h| &h.file));
        files.chain(self.deleted_keys.iter())
    }

    /// The table the entry was read from: the recorded [`Self::table`], else (a manifest
    /// written before it was recorded) its `name` read as that version wrote it (see
    /// [`TableRef::from_untyped_manifest_name`]); `None` for a query.
    pub fn source_table(&self) -> Option<TableRef> {
        self.table.clone().or_else(|| TableRef::from_untyped_manifest_name(&self.name))
    }

    /// Whether `name` (an option's table, `[schema.]table` as SQL spells it) designates this
    /// table: its name in the run, `schema.table`, the bare table of any schema, or its
    /// BigQuery name.
    pub fn is_named(&self, name: &str) -> bool {
        self.bq_table == name || self.name == name || self.source_table().is_some_and(|t| t.is_named_by(name))
    }
}

/// Which BigQuery table holds each snapshot table (shared by `load` and `validate`): the one
/// `--table-map` names, else the recorded BigQuery name after `--table-prefix`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableNames {
    pub prefix: String,
    /// Table name as options name it (see [`TableManifest::is_named`]) → BigQuery table id.
    pub map: BTreeMap<String, String>,
}

impl TableNames {
    pub fn table_id(&self, table: &TableManifest) -> String {
        match self.map.iter().find(|(name, _)| table.is_named(name)) {
            Some((_, id)) => id.clone(),
            None => self.own_id(table),
        }
    }

    /// The table's own name in BigQuery: its recorded name after the prefix.
    pub fn own_id(&self, table: &TableManifest) -> String {
        format!("{}{}", self.prefix, table.bq_table)
    }

    /// Whether `--table-map` (or the file's `target`) names where this table goes.
    pub fn is_mapped(&self, table: &TableManifest) -> bool {
        self.map.keys().any(|name| table.is_named(name))
    }
}

/// A column: its route and its aggregates over the whole table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnManifest {
    #[serde(flatten)]
    pub mapping: ColumnMapping,
    /// Rows whose value was clamped or set to NULL by `--out-of-range`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub adjusted_rows: u64,
    pub aggregates: ColumnAggregates,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    /// The table referenced, displayed as [`TableManifest::name`] names it.
    pub references_table: String,
    pub references_columns: Vec<String>,
}

/// One partition (unit) of a table: which rows it read and how many. `method`, `relation`,
/// `predicate`, `lower` and `upper` are the audit record, rendered from [`Self::bounds`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionManifest {
    pub index: usize,
    /// `whole`, `key_range`, `key_null`, `block_range`, `child`, `child_block_range` or
    /// `chunk_range` (see [`PartitionBounds::method`]).
    pub method: String,
    /// `schema.name` of the child relation (partition, inheritance child, chunk, or the
    /// parent's own rows) whose rows the partition read; absent for the table's own splits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    /// SQL predicate the partition's query added (empty for `whole` and `child`).
    pub predicate: String,
    /// Inclusive lower bound, when the method has one.
    pub lower: Option<String>,
    /// Exclusive upper bound, when the method has one.
    pub upper: Option<String>,
    pub rows: u64,
    /// The bounds typed; absent from manifests written before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<PartitionBounds>,
}

impl PartitionManifest {
    /// Partition `index` over `bounds`, its rows not counted yet.
    pub fn new(index: usize, bounds: PartitionBounds) -> Self {
        let (lower, upper) = bounds.recorded_ends();
        Self {
            index,
            method: bounds.method().into(),
            relation: bounds.relation().map(ToString::to_string),
            predicate: bounds.postgres_predicate(),
            lower,
            upper,
            rows: 0,
            bounds: Some(bounds),
        }
    }

    /// The partition's rows in the loaded BigQuery table, when a predicate can select them
    /// there (see [`PartitionBounds::bigquery_predicate`]).
    pub fn bigquery_predicate(&self) -> Option<String> {
        match &self.bounds {
            Some(bounds) => bounds.bigquery_predicate(),
            // Written before `bounds` was recorded: a key predicate compares one double-quoted
            // column with numbers, which reads the same in BigQuery once back-quoted.
            None => matches!(self.method.as_str(), "key_range" | "key_null").then(|| self.predicate.replace('"', "`")),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileManifest {
    /// Relative to the run directory, e.g. `public.events/part-p0000-s00000.parquet`.
    pub path: String,
    /// Full URI at export, for the record. Readers resolve [`Self::path`] against where they
    /// found the manifest instead, so a run copied elsewhere loads from its new place.
    pub uri: String,
    pub partition: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Base64 big-endian CRC32C, as GCS reports it.
    pub crc32c: String,
    /// Per column (by BigQuery name, in column order), for pinning a mismatch to a file.
    pub aggregates: Vec<ColumnAggregates>,
    /// The file's row fingerprints (over the table's [`TableRowFingerprint::columns`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_fingerprint: Option<RowFingerprint>,
}

/// SHA-256 of a manifest's canonical content: its JSON value without [`DIGEST_FIELD`],
/// serialised compactly (key order and whitespace of the file do not matter).
fn content_digest(value: &Value) -> String {
    let mut content = value.clone();
    if let Some(object) = content.as_object_mut() {
        object.remove(DIGEST_FIELD);
    }
    let hash = Sha256::digest(serde_json::to_vec(&content).expect("a JSON value serialises"));
    format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// What reading a manifest found about its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestCheck {
    Matches,
    /// No digest recorded (a version 1 manifest, or one whose digest was removed).
    Absent,
    Differs {
        recorded: String,
        actual: String,
    },
}

/// A recorded figure that disagrees with what it must equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconsistency {
    /// Where in the manifest, e.g. `tables[public.events].row_count`.
    pub field: String,
    pub recorded: String,
    /// What the field must hold, and why.
    pub expected: String,
}

impl std::fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` is {}, but {}", self.field, self.recorded, self.expected)
    }
}

impl Manifest {
    /// The manifest as written at commit: pretty JSON carrying its digest.
    ///
    /// # Errors
    /// When serialisation fails.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut value = serde_json::to_value(self)?;
        let digest = content_digest(&value);
        if let Some(object) = value.as_object_mut() {
            object.insert(DIGEST_FIELD.into(), Value::String(digest));
        }
        serde_json::to_vec_pretty(&value)
    }

    /// Parses a manifest and checks its recorded digest against its content.
    ///
    /// # Errors
    /// When the bytes are not a manifest.
    pub fn from_json(bytes: &[u8]) -> Result<(Manifest, DigestCheck), serde_json::Error> {
        let value: Value = serde_json::from_slice(bytes)?;
        let check = match value.get(DIGEST_FIELD).and_then(Value::as_str) {
            None => DigestCheck::Absent,
            Some(recorded) => {
                let actual = content_digest(&value);
                if actual == recorded {
                    DigestCheck::Matches
                } else {
                    DigestCheck::Differs { recorded: recorded.to_string(), actual }
                }
            }
        };
        Ok((serde_json::from_value(value)?, check))
    }

    /// Every problem that makes this manifest untrustworthy: a digest that differs from its
    /// content (or is missing where the format requires one), and every table total that is not
    /// what its files record (see [`TableManifest::inconsistencies`]).
    pub fn integrity_problems(&self, digest: &DigestCheck) -> Vec<Inconsistency> {
        let mut problems = Vec::new();
        match digest {
            DigestCheck::Matches => {}
            DigestCheck::Absent if self.format_version < FORMAT_VERSION => {}
            DigestCheck::Absent => problems.push(Inconsistency {
                field: DIGEST_FIELD.into(),
                recorded: "missing".into(),
                expected: format!("format version {} manifests record one", self.format_version),
            }),
            DigestCheck::Differs { recorded, actual } => problems.push(Inconsistency {
                field: DIGEST_FIELD.into(),
                recorded: recorded.clone(),
                expected: format!("the content hashes to {actual}: the manifest was edited after export"),
            }),
        }
        problems.extend(self.tables.iter().flat_map(TableManifest::inconsistencies));
        problems
    }
}

impl TableManifest {
    /// Table totals that differ from its files' own figures: `row_count` must be the sum of the
    /// files' rows, each partition's `rows` the sum of its files' rows, and each column's
    /// aggregates the merge of its files' aggregates.
    pub fn inconsistencies(&self) -> Vec<Inconsistency> {
        let mut problems = Vec::new();
        let field = |name: &str| format!("tables[{}].{name}", self.name);
        if let Some(rejected) = &self.rejected {
            let (rows, most) = (rejected.file.rows, rejected.reasons.values().copied().max().unwrap_or(0));
            if rows < most || rows > rejected.reasons.values().sum() {
                problems.push(Inconsistency {
                    field: field("rejected.file.rows"),
                    recorded: rows.to_string(),
                    expected: format!("between the largest and the sum of its reasons' rows {:?}", rejected.reasons),
                });
            }
        }
        let file_rows: u64 = self.files.iter().map(|f| f.rows).sum();
        if self.row_count != file_rows {
            problems.push(Inconsistency {
                field: field("row_count"),
                recorded: self.row_count.to_string(),
                expected: format!("its {} file(s) hold {file_rows} rows", self.files.len()),
            });
        }
        for partition in &self.partitions {
            let rows: u64 = self.files.iter().filter(|f| f.partition == partition.index).map(|f| f.rows).sum();
            if partition.rows != rows {
                problems.push(Inconsistency {
                    field: field(&format!("partitions[{}].rows", partition.index)),
                    recorded: partition.rows.to_string(),
                    expected: format!("its files hold {rows} rows"),
                });
            }
        }
        for (position, column) in self.columns.iter().enumerate() {
            let column_field = field(&format!("columns[{}].aggregates", column.mapping.bq_name));
            match self.merged_file_aggregates(position, &column.mapping, |_| true) {
                Some(merged) => {
                    problems.extend(measure_differences(&column.aggregates, &merged).into_iter().map(|(measure, recorded, merged)| {
                        Inconsistency {
                            field: format!("{column_field}.{measure}"),
                            recorded,
                            expected: format!("its files' aggregates merge to {merged}"),
                        }
                    }))
                }
                None => problems.push(Inconsistency {
                    field: column_field,
                    recorded: "not comparable".into(),
                    expected: "every file records this column's aggregates as values of its type".into(),
                }),
            }
        }
        problems.extend(self.row_fingerprint_inconsistency());
        problems
    }

    /// The table's row fingerprints must be the merge of its files'.
    fn row_fingerprint_inconsistency(&self) -> Option<Inconsistency> {
        let recorded = &self.row_fingerprint.as_ref()?.total;
        let merged = self.merged_row_fingerprint(|_| true);
        (merged.as_ref() != Some(recorded)).then(|| Inconsistency {
            field: format!("tables[{}].row_fingerprint", self.name),
            recorded: format!("{recorded:?}"),
            expected: match merged {
                Some(merged) => format!("its files' row fingerprints merge to {merged:?}"),
                None => "every file records its row fingerprints".into(),
            },
        })
    }

    /// The row fingerprints of the files `include` selects, merged; `None` if one is absent
    /// or not a number.
    pub fn merged_row_fingerprint(&self, include: impl Fn(&FileManifest) -> bool) -> Option<RowFingerprint> {
        let parts: Option<Vec<&RowFingerprint>> = self.files.iter().filter(|f| include(f)).map(|f| f.row_fingerprint.as_ref()).collect();
        RowFingerprint::merged(parts?)
    }

    /// The aggregates of the column at `position`, merged over the files `include` selects (all of
    /// them, or one partition's); `None` if a file's cannot be read back.
    pub fn merged_file_aggregates(
        &self,
        position: usize,
        mapping: &ColumnMapping,
        include: impl Fn(&FileManifest) -> bool,
    ) -> Option<ColumnAggregates> {
        let mut total = ColumnAccumulator::for_column(mapping);
        for file in self.files.iter().filter(|f| include(f)) {
            total.merge(&ColumnAccumulator::from_recorded(mapping, file.aggregates.get(position)?)?);
        }
        Some(total.finish())
    }
}

/// `(measure, recorded, expected)` for every measure that differs, values as text.
fn measure_differences(recorded: &ColumnAggregates, expected: &ColumnAggregates) -> Vec<(String, String, String)> {
    let as_map = |a: &ColumnAggregates| match serde_json::to_value(a) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (recorded, expected) = (as_map(recorded), as_map(expected));
    let text = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "absent".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let mut measures: Vec<&String> = recorded.keys().chain(expected.keys()).collect();
    measures.sort();
    measures.dedup();
    measures
        .into_iter()
        .filter(|m| recorded.get(*m) != expected.get(*m))
        .map(|m| (m.clone(), text(recorded.get(m)), text(expected.get(m))))
        .collect()
}

/// A table's row hashes in the manifest: the file (`key`, `key_hash`, `row_hash`), how the
/// rows were hashed (a later tail hashes its rows the same way) and the exact sum of `row_hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowHashes {
    pub file: FileManifest,
    pub method: HashMethod,
    /// The columns hashed, in order (the table's exported columns).
    pub columns: Vec<String>,
    /// Those hashed as their text (a type that may have no hash function).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text_columns: Vec<String>,
    /// The sum of the rows' `row_hash`, exactly, as decimal text.
    pub sum: String,
}

/// How a row is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashMethod {
    /// `hash_record_extended(ROW(..), 0)` (PostgreSQL 14+).
    Record,
    /// `hashtextextended(ROW(..)::text, 0)`.
    Text,
}

#[cfg(test)]
impl Manifest {
    /// Run `run_id` to `gs://b/p` holding `tables`: the fixture unit tests build on.
    pub fn of_run(run_id: &str, tables: Vec<TableManifest>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            tool: "pg2bq".into(),
            tool_version: "0".into(),
            run_id: run_id.into(),
            started_at: String::new(),
            completed_at: String::new(),
            source: SourceInfo::default(),
            destination: "gs://b/p".into(),
            mixed_snapshot: false,
            unit_snapshots: Vec::new(),
            tables,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray};

    use super::*;
    use crate::model::types::{map_column, OutOfRange, PgColumn};

    fn mapping(name: &str, type_name: &str, type_modifier: i32) -> ColumnMapping {
        map_column(&PgColumn::base(name, type_name, type_modifier), None, OutOfRange::Refuse).unwrap()
    }

    #[test]
    fn partitions_recorded_before_their_bounds_still_narrow_in_bigquery() {
        let recorded = |method: &str, predicate: &str| PartitionManifest {
            index: 0,
            method: method.into(),
            relation: None,
            predicate: predicate.into(),
            lower: None,
            upper: None,
            rows: 0,
            bounds: None,
        };
        assert_eq!(recorded("key_range", r#""id" >= 10 AND "id" < 20"#).bigquery_predicate().as_deref(), Some("`id` >= 10 AND `id` < 20"));
        assert_eq!(recorded("key_null", r#""id" IS NULL"#).bigquery_predicate().as_deref(), Some("`id` IS NULL"));
        assert_eq!(recorded("block_range", "ctid >= '(0,0)'::tid").bigquery_predicate(), None);
    }

    #[test]
    fn partitions_record_their_child_and_older_ones_still_read() {
        use crate::model::partition::Relation;
        let relation = Relation { schema: "public".into(), name: "events_2024_01".into() };
        let child = PartitionManifest::new(3, PartitionBounds::Child { relation, blocks: None });
        let json = serde_json::to_value(&child).unwrap();
        assert_eq!((json["method"].as_str(), json["relation"].as_str()), (Some("child"), Some("public.events_2024_01")));
        assert_eq!(serde_json::from_value::<PartitionManifest>(json).unwrap(), child);
        let older = r#"{"index":0,"method":"block_range","predicate":"ctid < '(5,0)'::tid","lower":null,"upper":"(5,0)","rows":7}"#;
        let older: PartitionManifest = serde_json::from_str(older).unwrap();
        assert_eq!((older.relation, older.bounds, older.rows), (None, None, 7));
        let keyed = serde_json::to_value(PartitionManifest::new(0, PartitionBounds::Whole)).unwrap();
        assert!(keyed.get("relation").is_none(), "{keyed}");
    }

    /// Two files of four columns, with table totals merged from the files as export does.
    fn manifest() -> Manifest {
        let numeric_10_2 = ((10 << 16) | 2) + 4;
        let mappings = [
            mapping("id", "int8", -1),
            mapping("title", "text", -1),
            mapping("price", "numeric", numeric_10_2),
            mapping("data", "bytea", -1),
        ];
        let file_values: [[Vec<Option<&str>>; 4]; 2] = [
            [vec![Some("1"), Some("2")], vec![Some("b"), None], vec![Some("1.50"), Some("-3")], vec![Some("ab"), Some("")]],
            [vec![Some("-7")], vec![Some("a")], vec![None], vec![Some("zz")]],
        ];
        let mut totals: Vec<ColumnAccumulator> = mappings.iter().map(ColumnAccumulator::for_column).collect();
        let files = file_values.iter().enumerate().map(|(index, columns)| file(index, &mappings, columns, &mut totals)).collect();
        Manifest::of_run(
            "r",
            vec![TableManifest {
                day_counts: Vec::new(),
                name: "public.t".into(),
                table: None,
                bq_table: "t".into(),
                source_query: String::new(),
                primary_key: vec![],
                foreign_keys: vec![],
                columns: mappings
                    .iter()
                    .zip(&totals)
                    .map(|(mapping, total)| ColumnManifest { mapping: mapping.clone(), adjusted_rows: 0, aggregates: total.finish() })
                    .collect(),
                partitions: (0..2)
                    .map(|index| PartitionManifest {
                        index,
                        method: "key_range".into(),
                        relation: None,
                        predicate: String::new(),
                        lower: None,
                        upper: None,
                        rows: 2 - index as u64,
                        bounds: None,
                    })
                    .collect(),
                files,
                row_count: 3,
                tail: None,
                rejected: None,
                row_hashes: None,
                deleted_keys: None,
                row_fingerprint: None,
            }],
        )
    }

    /// File `index` of the test table holding `columns`' values (as text), its aggregates
    /// merged into `totals`.
    fn file(index: usize, mappings: &[ColumnMapping], columns: &[Vec<Option<&str>>], totals: &mut [ColumnAccumulator]) -> FileManifest {
        let accumulators: Vec<ColumnAccumulator> = mappings
            .iter()
            .zip(columns)
            .map(|(mapping, values)| {
                let text: ArrayRef = Arc::new(StringArray::from(values.clone()));
                let mut accumulator = ColumnAccumulator::for_column(mapping);
                accumulator.update(&arrow::compute::cast(&text, &mapping.arrow_type).unwrap());
                accumulator
            })
            .collect();
        for (total, file) in totals.iter_mut().zip(&accumulators) {
            total.merge(file);
        }
        FileManifest {
            path: format!("public.t/part-{index:05}.parquet"),
            uri: format!("gs://b/p/r/public.t/part-{index:05}.parquet"),
            partition: index,
            rows: columns[0].len() as u64,
            bytes: 100,
            crc32c: String::new(),
            aggregates: accumulators.iter().map(ColumnAccumulator::finish).collect(),
            row_fingerprint: None,
        }
    }

    fn reread(manifest: &Manifest) -> (Manifest, DigestCheck) {
        Manifest::from_json(&manifest.to_json().unwrap()).unwrap()
    }

    /// Edits the manifest as written (its JSON), as a person or a script would.
    fn edit(manifest: &Manifest, change: impl FnOnce(&mut Value)) -> Vec<Inconsistency> {
        let mut value: Value = serde_json::from_slice(&manifest.to_json().unwrap()).unwrap();
        change(&mut value);
        let (edited, digest) = Manifest::from_json(&serde_json::to_vec(&value).unwrap()).unwrap();
        edited.integrity_problems(&digest)
    }

    #[test]
    fn a_written_manifest_reads_back_equal_with_its_digest_matching() {
        let manifest = manifest();
        let (read, digest) = reread(&manifest);
        assert_eq!(serde_json::to_value(&read).unwrap(), serde_json::to_value(&manifest).unwrap());
        assert_eq!(digest, DigestCheck::Matches);
        assert_eq!(read.integrity_problems(&digest), []);
    }

    /// A manifest written before `table` was recorded names its table by `schema.table` joined
    /// unquoted: it reads with its digest intact, its table taken as its exporter cut the name.
    #[test]
    fn manifests_without_a_typed_table_still_read_and_name_their_table() {
        let mut older = manifest();
        older.tables[0].name = "sales.Odd t".into();
        let json = older.to_json().unwrap();
        assert!(!String::from_utf8_lossy(&json).contains("\"table\""));
        let (read, digest) = Manifest::from_json(&json).unwrap();
        assert_eq!(digest, DigestCheck::Matches);
        assert_eq!(read.tables[0].source_table(), Some(TableRef::new("sales", "Odd t")));
        assert!(read.tables[0].is_named("sales.\"Odd t\"") && read.tables[0].is_named("\"Odd t\""));

        let mut typed = manifest();
        typed.tables[0].name = "\"sales.eu\".orders".into();
        typed.tables[0].table = Some(TableRef::new("sales.eu", "orders"));
        let value: Value = serde_json::from_slice(&typed.to_json().unwrap()).unwrap();
        assert_eq!(value["tables"][0]["table"], serde_json::json!({"schema": "sales.eu", "name": "orders"}));
        let (read, digest) = reread(&typed);
        assert_eq!((read.tables[0].source_table(), digest), (typed.tables[0].table.clone(), DigestCheck::Matches));
        assert!(read.tables[0].is_named("\"sales.eu\".orders") && !read.tables[0].is_named("sales.\"eu.orders\""));
    }

    #[test]
    fn an_edited_row_count_is_named_by_the_digest_and_the_totals() {
        let problems = edit(&manifest(), |m| m["tables"][0]["row_count"] = 4.into());
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["digest", "tables[public.t].row_count"]);
        assert_eq!(problems[1].to_string(), "`tables[public.t].row_count` is 4, but its 2 file(s) hold 3 rows");
    }

    #[test]
    fn edited_totals_with_a_recomputed_digest_are_still_caught() {
        let mut manifest = manifest();
        manifest.tables[0].columns[2].aggregates.sum = Some("100".into());
        manifest.tables[0].columns[1].aggregates.min = Some("0".into());
        manifest.tables[0].partitions[1].rows = 2;
        let (read, digest) = reread(&manifest);
        assert_eq!(digest, DigestCheck::Matches);
        let problems: Vec<String> = read.integrity_problems(&digest).iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "`tables[public.t].partitions[1].rows` is 2, but its files hold 1 rows",
                "`tables[public.t].columns[title].aggregates.min` is 0, but its files' aggregates merge to a",
                "`tables[public.t].columns[price].aggregates.sum` is 100, but its files' aggregates merge to -1.5",
            ]
        );
    }

    #[test]
    fn a_removed_digest_is_refused_unless_the_manifest_predates_digests() {
        let problems = edit(&manifest(), |m| {
            m.as_object_mut().unwrap().remove(DIGEST_FIELD);
        });
        assert_eq!(problems.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(), ["digest"]);
        let old = edit(&manifest(), |m| {
            m.as_object_mut().unwrap().remove(DIGEST_FIELD);
            m["format_version"] = 1.into();
        });
        assert_eq!(old, []);
    }

    #[test]
    fn file_aggregates_merge_back_to_the_table_totals_for_every_type() {
        let manifest = manifest();
        let table = &manifest.tables[0];
        for (position, column) in table.columns.iter().enumerate() {
            assert_eq!(
                table.merged_file_aggregates(position, &column.mapping, |_| true).as_ref(),
                Some(&column.aggregates),
                "{}",
                column.mapping.name
            );
        }
    }
}

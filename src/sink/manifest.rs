//! The manifest: what a snapshot holds and how to check it. Written last, once, with
//! create-only semantics: its presence is what makes a run committed.

use serde::{Deserialize, Serialize};

use crate::aggregates::ColumnAggregates;
use crate::source::types::ColumnMapping;

/// Bumped on any incompatible change of this format.
pub const FORMAT_VERSION: u32 = 1;
/// File name of the manifest inside `<dest>/<run-id>/`.
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// The source and the consistent snapshot every table was read in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Connection URL with the password removed.
    pub url: String,
    pub server_version: String,
    /// `txid_current_snapshot()` of the exporting transaction.
    pub txid_snapshot: String,
    /// WAL position when the snapshot was taken (replay position on a standby).
    pub wal_lsn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableManifest {
    /// `schema.table`, or the query's name.
    pub name: String,
    /// BigQuery table name (the export name with `.` → `__` for non-public schemas).
    pub bq_table: String,
    /// The SELECT every partition ran, before its partition predicate.
    pub source_query: String,
    pub primary_key: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    pub columns: Vec<ColumnManifest>,
    pub partitions: Vec<PartitionManifest>,
    pub files: Vec<FileManifest>,
    pub row_count: u64,
}

/// Whether `name` designates the table `full_name` (`schema.table`): in full, or by its bare
/// table name. Options and config entries name tables either way.
pub fn names_table(full_name: &str, name: &str) -> bool {
    full_name == name || full_name.split_once('.').is_some_and(|(_, bare)| bare == name)
}

impl TableManifest {
    /// Whether `name` designates this table: `schema.table`, the bare table, or its BigQuery name.
    pub fn is_named(&self, name: &str) -> bool {
        self.bq_table == name || names_table(&self.name, name)
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
    /// `schema.table` referenced.
    pub references_table: String,
    pub references_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionManifest {
    pub index: usize,
    /// `whole`, `key_range` or `block_range`.
    pub method: String,
    /// SQL predicate the partition's query added (empty for `whole`).
    pub predicate: String,
    /// Inclusive lower bound, when the method has one.
    pub lower: Option<String>,
    /// Exclusive upper bound, when the method has one.
    pub upper: Option<String>,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileManifest {
    /// Relative to the run directory, e.g. `public.events/part-p0000-s00000.parquet`.
    pub path: String,
    /// Full URI (what a BigQuery load job reads).
    pub uri: String,
    pub partition: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Base64 big-endian CRC32C, as GCS reports it.
    pub crc32c: String,
    /// Per column (by BigQuery name, in column order), for pinning a mismatch to a file.
    pub aggregates: Vec<ColumnAggregates>,
}

//! A finished unit of an export, recorded under its run as it finishes
//! (`<run-id>/_units/<table>/<unit>.json`, create-only) so `export --resume` keeps it: what it
//! read, the files it wrote, and the snapshot it read them in.

use serde::{Deserialize, Serialize};

use crate::model::days::DayCounts;
use crate::model::manifest::{FileManifest, UnitSnapshot};
use crate::model::table_ref::escape_path_part;
use crate::model::types::ColumnMapping;

/// Directory of the unit records inside a run directory.
pub const UNITS_DIR: &str = "_units";

/// The start of every file name unit `partition` writes into its table's `directory`
/// (`<dir>/part-p0002-` for `part-p0002-s00001.parquet`): the files a retry removes.
pub fn unit_file_prefix(directory: &str, partition: usize) -> String {
    format!("{directory}/part-p{partition:04}-")
}

/// One finished unit: enough to merge it into its table's manifest without reading it again,
/// and to check that a new plan cuts the table the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitRecord {
    /// `schema.table` or the query's name.
    pub table: String,
    /// The unit's index within its table (its partition).
    pub partition: usize,
    /// How many units the plan cut the table into.
    pub units_in_table: usize,
    /// The query the unit ran (the table's SELECT and the unit's predicate).
    pub query: String,
    /// The columns it read, with their routes.
    pub columns: Vec<ColumnMapping>,
    /// Rows read, equal to the count of the snapshot it was read in.
    pub rows: u64,
    /// The files it wrote, as the table's manifest lists them.
    pub files: Vec<FileManifest>,
    /// Rows per day of its DATE and TIMESTAMP columns; absent from records of an older pg2bq.
    #[serde(default)]
    pub day_counts: Option<Vec<DayCounts>>,
    /// The snapshot it was read in.
    pub snapshot: UnitSnapshot,
    /// Attempts it took (1 unless it was retried).
    pub attempts: u32,
    /// Wall time of its attempts and pauses.
    pub seconds: f64,
}

impl UnitRecord {
    /// Where the record of `partition` of `table` (its name in the run) lives inside the run
    /// directory: the name escaped as [`escape_path_part`] does, so it is one object name on
    /// every store.
    pub fn path(run_id: &str, table: &str, partition: usize) -> String {
        format!("{run_id}/{UNITS_DIR}/{}/unit-{partition:05}.json", escape_path_part(table))
    }

    /// Whether `name` (an object's path inside a run directory) is a unit record.
    pub fn is_record(name: &str) -> bool {
        name.strip_prefix(UNITS_DIR).is_some_and(|rest| rest.starts_with('/') && rest.ends_with(".json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::aggregates::ColumnAggregates;

    #[test]
    fn a_record_round_trips_and_names_its_path() {
        let record = UnitRecord {
            table: "public.t".into(),
            partition: 3,
            units_in_table: 4,
            query: "SELECT 1".into(),
            columns: Vec::new(),
            rows: 7,
            files: vec![FileManifest {
                path: "public.t/part-p0003-s00000.parquet".into(),
                uri: "gs://b/r/public.t/part-p0003-s00000.parquet".into(),
                partition: 3,
                rows: 7,
                bytes: 99,
                crc32c: "AAAAAA==".into(),
                aggregates: vec![ColumnAggregates::default()],
                row_fingerprint: None,
            }],
            day_counts: Some(vec![DayCounts { column: "at".into(), days: Some([("2024-03-01".into(), 7)].into()) }]),
            snapshot: UnitSnapshot {
                table: "public.t".into(),
                partition: 3,
                snapshot_id: "00000003-00000002-1".into(),
                txid_snapshot: "10:12:".into(),
                wal_lsn: Some("0/16B3748".into()),
            },
            attempts: 2,
            seconds: 1.5,
        };
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(serde_json::from_slice::<UnitRecord>(&json).unwrap(), record);
        let path = UnitRecord::path("r1", "public.t", 3);
        assert_eq!(path, "r1/_units/public+2Et/unit-00003.json");
        assert_eq!(UnitRecord::path("r1", "\"sales.eu\".orders", 3), "r1/_units/+22sales+2Eeu+22+2Eorders/unit-00003.json");
        assert!(UnitRecord::is_record(path.strip_prefix("r1/").unwrap()));
        assert!(!UnitRecord::is_record("public.t/part-p0003-s00000.parquet"));
    }
}

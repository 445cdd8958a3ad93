//! What `load` records for `validate`, per run and table, in one pg2bq-owned table of the
//! dataset (`_pg2bq_runs`), never in an app table's labels or options: the mode, the options
//! the table was routed with, a merge's counts and keys table, and what validate is to expect
//! of the columns whose values are not the snapshot's own (JSON as BigQuery serialises it, NULLs
//! given a `--default`, a lossy type). One row per (run, table, snapshot table): a later run
//! merging into the same table adds its own row and never changes another run's.
//!
//! This module is the whole contract between the two stages, each side typed and encoded once:
//! the record ([`LoadRecord::encode`]/[`LoadRecord::parse`], a merge's counts as
//! [`MergeCounts`]), the names of the tables load keeps beside the table for validate (keys,
//! deleted keys) and of its staging table, and the label older versions put on a loaded table.
//!
//! Also the one rule for which tables pg2bq created (and may replace without being told).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::gcp::routes::TargetOptions;
use crate::gcp::sql::{label_part, string_literal, table_path};
use crate::model::aggregates::ColumnAggregates;

/// The dataset's table of load records.
pub const RUNS_TABLE: &str = "_pg2bq_runs";

/// The label pg2bq puts on the tables it creates (and only on those).
pub const CREATED_LABEL: (&str, &str) = ("pg2bq_created", "true");

/// What pg2bq versions before `_pg2bq_runs` put on a table they loaded: this label's key per
/// run ([`legacy_run_label`]), its value the mode.
const LEGACY_RUN_LABEL_PREFIX: &str = "pg2bq_run_";

/// The key of the label a pg2bq version before `_pg2bq_runs` put on a table it loaded run
/// `run_id` into (`pg2bq_run_<run id>`, as a label key allows it).
pub fn legacy_run_label(run_id: &str) -> String {
    label_part(&format!("{LEGACY_RUN_LABEL_PREFIX}{run_id}"))
}

/// Whether pg2bq created the table `resource` describes: its label, or the run labels that
/// pg2bq versions before `_pg2bq_runs` put on the tables they created.
pub fn created_by_pg2bq(resource: &Value) -> bool {
    let labels = resource.get("labels").and_then(Value::as_object);
    labels.is_some_and(|labels| labels.contains_key(CREATED_LABEL.0) || labels.keys().any(|k| k.starts_with(LEGACY_RUN_LABEL_PREFIX)))
}

/// The staging table of a table's load: the snapshot's files, JSON as text.
pub fn staging_table_id(table_id: &str, run_id: &str) -> String {
    format!("{table_id}__pg2bq_staging_{}", label_part(run_id).replace('-', "_"))
}

/// The table of a merged run's keys, kept next to the table for `validate`.
pub fn keys_table_id(table_id: &str, run_id: &str) -> String {
    format!("{table_id}__pg2bq_keys_{}", label_part(run_id).replace('-', "_"))
}

/// The table of the keys a merge deleted (`--apply-deletes`), as the table held them, kept
/// next to the table for `validate`.
pub fn deleted_keys_table_id(table_id: &str, run_id: &str) -> String {
    format!("{table_id}__pg2bq_deleted_{}", label_part(run_id).replace('-', "_"))
}

/// Whether the table ends equal to the snapshot, gains its rows, or gains the rows whose key
/// it does not hold yet (merge).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    #[default]
    Truncate,
    Append,
    Merge,
}

impl LoadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadMode::Truncate => "truncate",
            LoadMode::Append => "append",
            LoadMode::Merge => "merge",
        }
    }
}

/// A merge's outcome: of the snapshot's rows, `inserted` were new to the table and
/// `already_present` had their key there; `updated` of those were overwritten
/// (`--overwrite-existing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeCounts {
    pub inserted: u64,
    pub already_present: u64,
    pub updated: u64,
}

/// `load --apply-deletes`: the keys a tail carried as deleted (`keys` of them, kept as the
/// table held them in `keys_table`) and the rows the `DELETE` removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedRows {
    pub keys_table: String,
    pub keys: u64,
    pub rows: u64,
}

/// One snapshot table's load into one BigQuery table, as validate reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRecord {
    pub run_id: String,
    /// The manifest's table name.
    pub source_table: String,
    pub table_id: String,
    pub mode: LoadMode,
    /// The prefix of the ids of the jobs that loaded it: a re-run with the same prefix attaches
    /// to those jobs instead of loading again.
    pub jobs: String,
    pub overwrite_existing: bool,
    /// Loaded through routes into a table with columns of its own (an app's), by DML.
    pub routed: bool,
    /// The options the table was routed with (also for a table pg2bq created).
    pub options: TargetOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<MergeCounts>,
    /// Merge: the table holding the snapshot's keys as the target holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_table: Option<String>,
    /// Merge with `--apply-deletes`: the rows deleted by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<DeletedRows>,
    /// Snapshot column → its aggregates as the table holds its values, read back as the
    /// snapshot's column (or as the lossy type), measured over the staged rows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub expected: BTreeMap<String, ColumnAggregates>,
}

impl LoadRecord {
    /// The record as its row holds it.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a record serialises")
    }

    /// # Errors
    /// The JSON error when the text is not a record.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A short digest of the record, part of the id of the job that writes it: a re-run
    /// recording the same attaches to that job, one recording something else gets its own.
    pub fn digest(&self) -> String {
        Sha256::digest(self.encode().as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
    }
}

/// The runs table as `tables.insert` creates it.
pub fn runs_table_resource(project: &str, dataset: &str) -> Value {
    let field = |name: &str, field_type: &str, mode: &str| json!({ "name": name, "type": field_type, "mode": mode });
    json!({
        "tableReference": { "projectId": project, "datasetId": dataset, "tableId": RUNS_TABLE },
        "description": "pg2bq: what each load recorded for validate (one row per run, table and snapshot table)",
        "schema": { "fields": [
            field("run_id", "STRING", "REQUIRED"),
            field("table_id", "STRING", "REQUIRED"),
            field("source_table", "STRING", "REQUIRED"),
            field("mode", "STRING", "REQUIRED"),
            field("jobs", "STRING", "REQUIRED"),
            field("loaded_at", "TIMESTAMP", "NULLABLE"),
            field("record", "STRING", "REQUIRED"),
        ]},
        "labels": { CREATED_LABEL.0: CREATED_LABEL.1 },
    })
}

/// The statement writing a record: its row is inserted, or replaced when the same run was
/// recorded into the same table before.
pub fn record_sql(project: &str, dataset: &str, record: &LoadRecord) -> String {
    let (run, table, source) = (string_literal(&record.run_id), string_literal(&record.table_id), string_literal(&record.source_table));
    let (mode, jobs) = (string_literal(record.mode.as_str()), string_literal(&record.jobs));
    format!(
        "MERGE {} T USING (SELECT {run} AS run_id, {table} AS table_id, {source} AS source_table, {mode} AS mode, {jobs} AS jobs, \
         {} AS record) S ON T.run_id = S.run_id AND T.table_id = S.table_id AND T.source_table = S.source_table \
         WHEN MATCHED THEN UPDATE SET mode = S.mode, jobs = S.jobs, record = S.record, loaded_at = CURRENT_TIMESTAMP() \
         WHEN NOT MATCHED THEN INSERT (run_id, table_id, source_table, mode, jobs, loaded_at, record) \
         VALUES (S.run_id, S.table_id, S.source_table, S.mode, S.jobs, CURRENT_TIMESTAMP(), S.record)",
        table_path(project, dataset, RUNS_TABLE),
        string_literal(&record.encode())
    )
}

/// The query for a snapshot table's records in a run: `table_id, record` per row.
pub fn records_sql(project: &str, dataset: &str, run_id: &str, source_table: &str) -> String {
    format!(
        "SELECT table_id, record FROM {} WHERE run_id = {} AND source_table = {} ORDER BY table_id",
        table_path(project, dataset, RUNS_TABLE),
        string_literal(run_id),
        string_literal(source_table)
    )
}

/// `SELECT COUNT(*)` of the loads of `run_id`'s `source_table` into `table_id` recorded by
/// other jobs than an append under the prefix `jobs` (a re-run of which attaches to them).
pub fn other_loads_sql(project: &str, dataset: &str, run_id: &str, table_id: &str, source_table: &str, jobs: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM {} WHERE run_id = {} AND table_id = {} AND source_table = {} AND NOT (mode = 'append' AND jobs = {})",
        table_path(project, dataset, RUNS_TABLE),
        string_literal(run_id),
        string_literal(table_id),
        string_literal(source_table),
        string_literal(jobs)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LoadRecord {
        LoadRecord {
            run_id: "backfill".into(),
            source_table: "public.events".into(),
            table_id: "events".into(),
            mode: LoadMode::Merge,
            jobs: "pg2bq_backfill_app_events_merge".into(),
            overwrite_existing: false,
            routed: true,
            options: TargetOptions { defaults: [("metadata".to_string(), "{}".to_string())].into(), ..TargetOptions::default() },
            merged: Some(MergeCounts { inserted: 250, already_present: 50, updated: 0 }),
            keys_table: Some("events__pg2bq_keys_backfill".into()),
            deleted: Some(DeletedRows { keys_table: "events__pg2bq_deleted_tail1".into(), keys: 2, rows: 1 }),
            expected: [("metadata".to_string(), ColumnAggregates { null_count: 0, value_count: 300, ..Default::default() })].into(),
        }
    }

    #[test]
    fn a_record_round_trips_through_its_text_and_its_statement_quotes_it() {
        let record = record();
        assert_eq!(LoadRecord::parse(&record.encode()).unwrap(), record);
        let sql = record_sql("p", "d", &record);
        assert!(sql.starts_with("MERGE `p.d._pg2bq_runs` T USING (SELECT 'backfill' AS run_id, 'events' AS table_id, 'public.events' AS source_table, 'merge' AS mode"), "{sql}");
        assert!(sql.contains(r#""defaults":{"metadata":"{}"}"#), "{sql}");
        assert!(sql.contains(r#""deleted":{"keys_table":"events__pg2bq_deleted_tail1","keys":2,"rows":1}"#), "{sql}");
        assert!(LoadRecord::parse(r#"{"run_id": "r", "unknown": 1}"#).is_err());
    }

    #[test]
    fn digests_differ_when_the_records_do() {
        let mut other = record();
        other.merged = Some(MergeCounts { inserted: 0, already_present: 300, updated: 0 });
        assert_eq!(record().digest(), record().digest());
        assert_ne!(record().digest(), other.digest());
        assert_eq!(record().digest().len(), 12);
    }

    #[test]
    fn tables_pg2bq_created_carry_its_label_or_an_older_run_label() {
        assert!(created_by_pg2bq(&json!({ "labels": { "pg2bq_created": "true" } })));
        assert!(created_by_pg2bq(&json!({ "labels": { "pg2bq_run_r1": "truncate" } })));
        assert!(!created_by_pg2bq(&json!({ "labels": { "team": "app" } })));
        assert!(!created_by_pg2bq(&json!({})));
    }

    #[test]
    fn the_names_load_gives_validate_are_label_safe_and_an_older_run_label_is_one_pg2bq_created() {
        let run = "20261124T070000Z-ABCD";
        assert_eq!(legacy_run_label(run), "pg2bq_run_20261124t070000z-abcd");
        assert!(created_by_pg2bq(&json!({ "labels": { legacy_run_label(run): "truncate" } })));
        assert_eq!(staging_table_id("events", run), "events__pg2bq_staging_20261124t070000z_abcd");
        assert_eq!(keys_table_id("events", run), "events__pg2bq_keys_20261124t070000z_abcd");
        assert_eq!(deleted_keys_table_id("events", run), "events__pg2bq_deleted_20261124t070000z_abcd");
    }
}

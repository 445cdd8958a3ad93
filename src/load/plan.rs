//! The load plan, pure: from a manifest, where it was found and the load settings to the exact
//! BigQuery jobs, their deterministic ids, URIs, schema, partitioning and the final atomic step.
//! `pg2bq load --dry-run` prints it. File URIs are the manifest's relative paths resolved
//! against the run directory the manifest was read from, never the URIs recorded at export.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::gcp::bigquery::{DAILY_LOAD_JOBS_PER_TABLE, MAX_BYTES_PER_JOB, MAX_URIS_PER_JOB};
use crate::gcp::schema::{Field, PartitionUnit, TimePartitioning};
use crate::gcp::sql::{label_part, quote};
use crate::model::manifest::{Manifest, TableManifest};
use crate::model::types::NameAlphabet;

/// Whether the table ends equal to the snapshot or gains its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    Truncate,
    Append,
}

impl LoadMode {
    fn as_str(self) -> &'static str {
        match self {
            LoadMode::Truncate => "truncate",
            LoadMode::Append => "append",
        }
    }
}

/// What to load where, resolved from flags and the config file.
#[derive(Debug, Clone)]
pub struct LoadTarget {
    pub project: String,
    pub dataset: String,
    pub location: Option<String>,
    pub table_prefix: String,
    pub mode: LoadMode,
    /// Manifest table name (or its BigQuery name) → (column, unit).
    pub partition_by: BTreeMap<String, (String, PartitionUnit)>,
    /// Manifest table name (or its BigQuery name) → columns.
    pub cluster_by: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadPlan {
    pub run_id: String,
    pub project: String,
    pub dataset: String,
    pub location: Option<String>,
    pub mode: LoadMode,
    pub tables: Vec<TableLoad>,
}

/// One table's jobs.
#[derive(Debug, Clone, Serialize)]
pub struct TableLoad {
    /// The manifest's table name.
    pub source: String,
    pub table_id: String,
    pub rows: u64,
    pub bytes: u64,
    pub fields: Vec<Field>,
    pub time_partitioning: Option<TimePartitioning>,
    pub clustering: Vec<String>,
    /// Set when files go to a staging table first (JSON columns, several jobs, or append of
    /// JSON); the final step then moves them in one atomic statement.
    pub staging_table_id: Option<String>,
    pub load_jobs: Vec<LoadJob>,
    pub finalize: Option<QueryJob>,
    /// Label recording that this run was loaded (`pg2bq_run_<run id>` → mode).
    pub run_label: (String, String),
    /// Append only: the job that would have loaded this run in truncate mode straight into the
    /// table. Such a load commits before its label is set, so append refuses the run when this
    /// job (or a retry of it) succeeded, labelled or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncate_load_job_id: Option<String>,
    /// What the plan cannot know before it sees the destination table.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// REQUIRED columns of the snapshot loaded into NULLABLE columns of the existing table,
    /// with the table's mode kept (set once the table is seen).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_nullable_columns: Vec<String>,
    /// Share of BigQuery's daily load-job quota for the destination table this plan uses.
    pub daily_quota_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadJob {
    pub job_id: String,
    pub destination_table_id: String,
    pub write_disposition: String,
    pub uris: Vec<String>,
    pub bytes: u64,
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryJob {
    pub job_id: String,
    pub sql: String,
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum LoadPlanError {
    #[error("table `{table}` would load from `{uri}`: BigQuery loads from gs:// only; export to a gs:// destination (or copy the run directory to a bucket)")]
    NotOnGcs { table: String, uri: String },
    #[error("--partition-by names column `{column}` of table `{table}`, which {reason}")]
    Partition { table: String, column: String, reason: String },
    #[error("--cluster-by names column `{column}`, which table `{table}` does not have")]
    Cluster { table: String, column: String },
    #[error("--partition-by/--cluster-by name table `{table}`, which the manifest does not hold")]
    UnknownTable { table: String },
}

/// Builds the plan; `run_uri` is the run directory the manifest was read from, which the
/// files' relative paths resolve against. Pure: no network.
///
/// # Errors
/// [`LoadPlanError`] when the files are not on GCS or an option names a missing table/column.
pub fn plan_load(manifest: &Manifest, run_uri: &str, target: &LoadTarget) -> Result<LoadPlan, LoadPlanError> {
    for name in target.partition_by.keys().chain(target.cluster_by.keys()) {
        if !manifest.tables.iter().any(|t| t.is_named(name)) {
            return Err(LoadPlanError::UnknownTable { table: name.clone() });
        }
    }
    let tables =
        manifest.tables.iter().map(|t| plan_table(manifest, run_uri.trim_end_matches('/'), t, target)).collect::<Result<_, _>>()?;
    Ok(LoadPlan {
        run_id: manifest.run_id.clone(),
        project: target.project.clone(),
        dataset: target.dataset.clone(),
        location: target.location.clone(),
        mode: target.mode,
        tables,
    })
}

fn option_for<'a, T>(options: &'a BTreeMap<String, T>, table: &TableManifest) -> Option<&'a T> {
    options.iter().find(|(name, _)| table.is_named(name)).map(|(_, v)| v)
}

fn plan_table(manifest: &Manifest, run_uri: &str, table: &TableManifest, target: &LoadTarget) -> Result<TableLoad, LoadPlanError> {
    let file_uri = |file: &crate::model::manifest::FileManifest| format!("{run_uri}/{}", file.path);
    if let Some(file) = table.files.first().filter(|_| !run_uri.starts_with("gs://")) {
        return Err(LoadPlanError::NotOnGcs { table: table.name.clone(), uri: file_uri(file) });
    }
    let table_id = format!("{}{}", target.table_prefix, table.bq_table);
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|c| Field {
            name: c.mapping.bq_name.clone(),
            field_type: c.mapping.bq_type.sql_name().to_string(),
            mode: if c.mapping.repeated {
                "REPEATED"
            } else if c.mapping.nullable {
                "NULLABLE"
            } else {
                "REQUIRED"
            }
            .to_string(),
            description: c.mapping.comment.clone(),
        })
        .collect();
    let has_column = |name: &str| fields.iter().find(|f| f.name == name);
    let time_partitioning = match option_for(&target.partition_by, table) {
        None => None,
        Some((column, unit)) => {
            let field = has_column(column).ok_or_else(|| LoadPlanError::Partition {
                table: table.name.clone(),
                column: column.clone(),
                reason: "it does not have".into(),
            })?;
            if !matches!(field.field_type.as_str(), "DATE" | "TIMESTAMP" | "DATETIME") || field.mode == "REPEATED" {
                return Err(LoadPlanError::Partition {
                    table: table.name.clone(),
                    column: column.clone(),
                    reason: format!("is {} {}, not a DATE, TIMESTAMP or DATETIME", field.mode, field.field_type),
                });
            }
            Some(TimePartitioning { field: column.clone(), unit: *unit })
        }
    };
    let clustering = option_for(&target.cluster_by, table).cloned().unwrap_or_default();
    if let Some(missing) = clustering.iter().find(|c| has_column(c).is_none()) {
        return Err(LoadPlanError::Cluster { table: table.name.clone(), column: missing.clone() });
    }

    let mut batches: Vec<Vec<&crate::model::manifest::FileManifest>> = Vec::new();
    for file in &table.files {
        match batches.last_mut() {
            Some(batch)
                if batch.len() < MAX_URIS_PER_JOB && batch.iter().map(|f| f.bytes).sum::<u64>() + file.bytes <= MAX_BYTES_PER_JOB =>
            {
                batch.push(file)
            }
            _ => batches.push(vec![file]),
        }
    }
    let has_json = fields.iter().any(|f| f.field_type == "JSON");
    // No files (an empty table): no load job; truncate empties the table with one statement.
    let staged = !table.files.is_empty() && (has_json || batches.len() > 1);
    let base_for = |mode: LoadMode| {
        NameAlphabet::ID.sanitize(&format!("pg2bq_{}_{}_{}_{}", manifest.run_id, target.dataset, table_id, mode.as_str()), usize::MAX)
    };
    let base = base_for(target.mode);
    let staging_table_id = staged.then(|| format!("{table_id}__pg2bq_staging_{}", label_part(&manifest.run_id).replace('-', "_")));
    let destination = staging_table_id.clone().unwrap_or_else(|| table_id.clone());
    let load_jobs = batches
        .iter()
        .enumerate()
        .map(|(index, files)| LoadJob {
            job_id: format!("{base}_load{index:04}"),
            destination_table_id: destination.clone(),
            write_disposition: match (staged, index, target.mode) {
                (true, 0, _) | (false, _, LoadMode::Truncate) => "WRITE_TRUNCATE",
                _ => "WRITE_APPEND",
            }
            .to_string(),
            uris: files.iter().map(|f| file_uri(f)).collect(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            rows: files.iter().map(|f| f.rows).sum(),
        })
        .collect::<Vec<_>>();
    let run_label = (label_part(&format!("pg2bq_run_{}", manifest.run_id)), target.mode.as_str().to_string());
    let finalize = match (&staging_table_id, target.mode) {
        (Some(staging), _) => Some(QueryJob {
            job_id: format!("{base}_finalize"),
            sql: finalize_sql(&Scope::of(target), &table_id, staging, &fields, time_partitioning.as_ref(), &clustering, &run_label),
        }),
        (None, LoadMode::Truncate) if table.files.is_empty() => Some(QueryJob {
            job_id: format!("{base}_finalize"),
            sql: format!("DELETE FROM {} WHERE TRUE", quote(&format!("{}.{}.{table_id}", target.project, target.dataset))),
        }),
        _ => None,
    };
    let truncate_load_job_id = (target.mode == LoadMode::Append && !staged && !table.files.is_empty())
        .then(|| format!("{}_load0000", base_for(LoadMode::Truncate)));
    let notes = fields
        .iter()
        .any(|f| f.mode == "REQUIRED")
        .then(|| {
            "REQUIRED columns also load into NULLABLE columns of the same type in an existing table; the table keeps its modes".to_string()
        })
        .into_iter()
        .collect();
    Ok(TableLoad {
        source: table.name.clone(),
        rows: table.row_count,
        bytes: table.files.iter().map(|f| f.bytes).sum(),
        daily_quota_share: load_jobs.len() as f64 / DAILY_LOAD_JOBS_PER_TABLE as f64,
        table_id,
        fields,
        time_partitioning,
        clustering,
        staging_table_id,
        load_jobs,
        finalize,
        run_label,
        truncate_load_job_id,
        notes,
        kept_nullable_columns: Vec::new(),
    })
}

/// The table's plan with `columns` (REQUIRED in the snapshot, NULLABLE in the existing table)
/// kept NULLABLE: in the load jobs' schema and the final statement, so that no job changes the
/// table's schema. Loading non-NULL values into a NULLABLE column loses nothing.
pub fn keep_nullable_columns(plan: &LoadPlan, table: &TableLoad, columns: &[String]) -> TableLoad {
    let mut kept = table.clone();
    for field in kept.fields.iter_mut().filter(|f| f.mode == "REQUIRED" && columns.contains(&f.name)) {
        field.mode = "NULLABLE".into();
    }
    if let (Some(finalize), Some(staging)) = (kept.finalize.as_mut(), &table.staging_table_id) {
        let scope = Scope { project: &plan.project, dataset: &plan.dataset, mode: plan.mode };
        finalize.sql = finalize_sql(
            &scope,
            &table.table_id,
            staging,
            &kept.fields,
            kept.time_partitioning.as_ref(),
            &kept.clustering,
            &kept.run_label,
        );
    }
    kept.kept_nullable_columns = columns.to_vec();
    kept
}

/// Where and how the final statement writes.
struct Scope<'a> {
    project: &'a str,
    dataset: &'a str,
    mode: LoadMode,
}

impl<'a> Scope<'a> {
    fn of(target: &'a LoadTarget) -> Self {
        Self { project: &target.project, dataset: &target.dataset, mode: target.mode }
    }
}

/// Staging columns are the final ones with JSON as STRING.
pub fn staging_fields(fields: &[Field]) -> Vec<Field> {
    fields
        .iter()
        .map(|f| Field { field_type: if f.field_type == "JSON" { "STRING".into() } else { f.field_type.clone() }, ..f.clone() })
        .collect()
}

fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'").replace('\n', "\\n"))
}

/// The one statement that moves staged rows into the destination: `CREATE OR REPLACE TABLE …
/// AS SELECT` (truncate: an atomic replacement with the full schema) or `INSERT … SELECT`
/// (append). JSON text becomes JSON with `PARSE_JSON`, which fails rather than round a number.
fn finalize_sql(
    target: &Scope,
    table_id: &str,
    staging: &str,
    fields: &[Field],
    partitioning: Option<&TimePartitioning>,
    clustering: &[String],
    run_label: &(String, String),
) -> String {
    let qualified = |t: &str| quote(&format!("{}.{}.{t}", target.project, target.dataset));
    let select: Vec<String> = fields
        .iter()
        .map(|f| {
            let column = quote(&f.name);
            match (f.field_type.as_str(), f.mode.as_str()) {
                ("JSON", "REPEATED") => {
                    format!("ARRAY(SELECT PARSE_JSON(e) FROM UNNEST({column}) AS e WITH OFFSET AS o ORDER BY o) AS {column}")
                }
                ("JSON", _) => format!("PARSE_JSON({column}) AS {column}"),
                _ => column,
            }
        })
        .collect();
    let from = format!("SELECT {} FROM {}", select.join(", "), qualified(staging));
    let names: Vec<String> = fields.iter().map(|f| quote(&f.name)).collect();
    match target.mode {
        LoadMode::Append => format!("INSERT INTO {} ({}) {from}", qualified(table_id), names.join(", ")),
        LoadMode::Truncate => {
            let columns: Vec<String> = fields
                .iter()
                .map(|f| {
                    let data_type = if f.mode == "REPEATED" { format!("ARRAY<{}>", f.field_type) } else { f.field_type.clone() };
                    let not_null = if f.mode == "REQUIRED" { " NOT NULL" } else { "" };
                    let description =
                        f.description.as_deref().map(|d| format!(" OPTIONS(description={})", string_literal(d))).unwrap_or_default();
                    format!("{} {data_type}{not_null}{description}", quote(&f.name))
                })
                .collect();
            let partition = partitioning.map(|p| format!(" PARTITION BY {}", partition_expression(p, fields))).unwrap_or_default();
            let cluster = if clustering.is_empty() {
                String::new()
            } else {
                format!(" CLUSTER BY {}", clustering.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "))
            };
            format!(
                "CREATE OR REPLACE TABLE {} ({}){partition}{cluster} OPTIONS(labels=[({}, {})]) AS {from}",
                qualified(table_id),
                columns.join(", "),
                string_literal(&run_label.0),
                string_literal(&run_label.1),
            )
        }
    }
}

fn partition_expression(partitioning: &TimePartitioning, fields: &[Field]) -> String {
    let column = quote(&partitioning.field);
    let unit = serde_json::to_value(partitioning.unit).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let field_type = fields.iter().find(|f| f.name == partitioning.field).map(|f| f.field_type.as_str()).unwrap_or("TIMESTAMP");
    match (field_type, partitioning.unit) {
        ("DATE", PartitionUnit::Day) => column,
        ("DATE", _) => format!("DATE_TRUNC({column}, {unit})"),
        ("DATETIME", _) => format!("DATETIME_TRUNC({column}, {unit})"),
        _ => format!("TIMESTAMP_TRUNC({column}, {unit})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::aggregates::ColumnAggregates;
    use crate::model::manifest::{ColumnManifest, FileManifest, SourceInfo};
    use crate::model::types::{map_column, OutOfRange, PgColumn};

    fn column(name: &str, type_name: &str, not_null: bool) -> ColumnManifest {
        let pg = PgColumn { not_null, comment: Some(format!("the {name}")), ..PgColumn::base(name, type_name, -1) };
        ColumnManifest {
            mapping: map_column(&pg, None, OutOfRange::Refuse).unwrap(),
            adjusted_rows: 0,
            aggregates: ColumnAggregates::default(),
        }
    }

    fn manifest(files: usize, with_json: bool) -> Manifest {
        let mut columns = vec![column("id", "int8", true), column("mentioned_at", "timestamptz", true)];
        if with_json {
            columns.push(column("metadata", "jsonb", false));
        }
        Manifest {
            format_version: 1,
            tool: "pg2bq".into(),
            tool_version: "0".into(),
            run_id: "20261124T070000Z-abcd".into(),
            started_at: String::new(),
            completed_at: String::new(),
            source: SourceInfo { url: String::new(), server_version: String::new(), txid_snapshot: String::new(), wal_lsn: None },
            destination: "gs://b/p".into(),
            tables: vec![TableManifest {
                name: "public.events".into(),
                bq_table: "events".into(),
                source_query: String::new(),
                primary_key: vec!["id".into()],
                foreign_keys: vec![],
                columns,
                partitions: vec![],
                files: (0..files)
                    .map(|i| FileManifest {
                        path: format!("public.events/part-{i:05}.parquet"),
                        uri: format!("gs://b/p/r/public.events/part-{i:05}.parquet"),
                        partition: 0,
                        rows: 10,
                        bytes: 100,
                        crc32c: String::new(),
                        aggregates: vec![],
                    })
                    .collect(),
                row_count: 10 * files as u64,
            }],
        }
    }

    /// Where the tests' manifest was read from: not where its files were written (`gs://b/p/r`).
    const RUN_URI: &str = "gs://copy/elsewhere/r";

    fn target(mode: LoadMode) -> LoadTarget {
        LoadTarget {
            project: "p".into(),
            dataset: "d".into(),
            location: None,
            table_prefix: String::new(),
            mode,
            partition_by: [("events".to_string(), ("mentioned_at".to_string(), PartitionUnit::Day))].into(),
            cluster_by: BTreeMap::new(),
        }
    }

    #[test]
    fn one_job_without_json_loads_straight_into_the_table() {
        let plan = plan_load(&manifest(3, false), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        let t = &plan.tables[0];
        assert!(t.staging_table_id.is_none() && t.finalize.is_none());
        assert_eq!(t.load_jobs.len(), 1);
        assert_eq!(t.load_jobs[0].write_disposition, "WRITE_TRUNCATE");
        assert_eq!(t.load_jobs[0].uris.len(), 3);
        assert_eq!(t.fields[0].mode, "REQUIRED");
        assert_eq!(t.time_partitioning, Some(TimePartitioning { field: "mentioned_at".into(), unit: PartitionUnit::Day }));
    }

    #[test]
    fn job_ids_are_deterministic_and_distinct_per_dataset_and_mode() {
        let a = plan_load(&manifest(1, false), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        let b = plan_load(&manifest(1, false), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        let c = plan_load(&manifest(1, false), RUN_URI, &target(LoadMode::Append)).unwrap();
        assert_eq!(a.tables[0].load_jobs[0].job_id, b.tables[0].load_jobs[0].job_id);
        assert_ne!(a.tables[0].load_jobs[0].job_id, c.tables[0].load_jobs[0].job_id);
        assert_eq!(a.tables[0].load_jobs[0].job_id, "pg2bq_20261124T070000Z-abcd_d_events_truncate_load0000");
    }

    #[test]
    fn json_goes_through_staging_and_one_atomic_statement() {
        let plan = plan_load(&manifest(2, true), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        let t = &plan.tables[0];
        assert_eq!(t.load_jobs[0].destination_table_id, "events__pg2bq_staging_20261124t070000z_abcd");
        let sql = &t.finalize.as_ref().unwrap().sql;
        assert!(sql.starts_with("CREATE OR REPLACE TABLE `p.d.events` (`id` INT64 NOT NULL OPTIONS(description='the id')"), "{sql}");
        assert!(sql.contains("PARSE_JSON(`metadata`) AS `metadata`"), "{sql}");
        assert!(sql.contains("PARTITION BY TIMESTAMP_TRUNC(`mentioned_at`, DAY)"), "{sql}");
        let append = plan_load(&manifest(2, true), RUN_URI, &target(LoadMode::Append)).unwrap();
        assert!(append.tables[0]
            .finalize
            .as_ref()
            .unwrap()
            .sql
            .starts_with("INSERT INTO `p.d.events` (`id`, `mentioned_at`, `metadata`) SELECT"));
    }

    #[test]
    fn uri_limit_splits_jobs_and_forces_staging() {
        let plan = plan_load(&manifest(MAX_URIS_PER_JOB + 1, false), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        let t = &plan.tables[0];
        assert_eq!(t.load_jobs.iter().map(|j| j.uris.len()).collect::<Vec<_>>(), [MAX_URIS_PER_JOB, 1]);
        assert_eq!(
            (t.load_jobs[0].write_disposition.as_str(), t.load_jobs[1].write_disposition.as_str()),
            ("WRITE_TRUNCATE", "WRITE_APPEND")
        );
        assert!(t.finalize.is_some());
    }

    #[test]
    fn an_empty_table_is_emptied_by_one_statement_not_a_load_job() {
        let plan = plan_load(&manifest(0, true), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        let t = &plan.tables[0];
        assert!(t.load_jobs.is_empty() && t.staging_table_id.is_none());
        assert_eq!(t.finalize.as_ref().unwrap().sql, "DELETE FROM `p.d.events` WHERE TRUE");
        assert!(plan_load(&manifest(0, true), RUN_URI, &target(LoadMode::Append)).unwrap().tables[0].finalize.is_none());
    }

    #[test]
    fn local_snapshots_and_bad_options_are_refused() {
        let local = plan_load(&manifest(1, false), "file:///tmp/r", &target(LoadMode::Truncate));
        assert!(matches!(local, Err(LoadPlanError::NotOnGcs { uri, .. }) if uri == "file:///tmp/r/public.events/part-00000.parquet"));
        let mut bad = target(LoadMode::Truncate);
        bad.partition_by = [("events".to_string(), ("id".to_string(), PartitionUnit::Day))].into();
        assert!(matches!(plan_load(&manifest(1, false), RUN_URI, &bad), Err(LoadPlanError::Partition { .. })));
    }

    #[test]
    fn files_load_from_where_the_manifest_is_not_where_they_were_written() {
        let plan = plan_load(&manifest(2, false), "gs://copy/elsewhere/r/", &target(LoadMode::Truncate)).unwrap();
        assert_eq!(
            plan.tables[0].load_jobs[0].uris,
            ["gs://copy/elsewhere/r/public.events/part-00000.parquet", "gs://copy/elsewhere/r/public.events/part-00001.parquet"]
        );
    }

    #[test]
    fn append_knows_the_truncate_job_that_commits_without_a_label() {
        let append = plan_load(&manifest(1, false), RUN_URI, &target(LoadMode::Append)).unwrap();
        assert_eq!(append.tables[0].truncate_load_job_id.as_deref(), Some("pg2bq_20261124T070000Z-abcd_d_events_truncate_load0000"));
        let truncate = plan_load(&manifest(1, false), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        assert_eq!(truncate.tables[0].truncate_load_job_id, None);
        // Staged truncate loads set the label in their one final statement.
        assert_eq!(plan_load(&manifest(1, true), RUN_URI, &target(LoadMode::Append)).unwrap().tables[0].truncate_load_job_id, None);
    }

    #[test]
    fn nullable_table_columns_are_kept_in_jobs_and_the_final_statement() {
        let plan = plan_load(&manifest(2, true), RUN_URI, &target(LoadMode::Truncate)).unwrap();
        assert_eq!(plan.tables[0].notes.len(), 1, "the plan says REQUIRED columns may load into NULLABLE ones");
        let kept = keep_nullable_columns(&plan, &plan.tables[0], &["id".to_string()]);
        let modes: Vec<(&str, &str)> = kept.fields.iter().map(|f| (f.name.as_str(), f.mode.as_str())).collect();
        assert_eq!(modes, [("id", "NULLABLE"), ("mentioned_at", "REQUIRED"), ("metadata", "NULLABLE")]);
        let sql = &kept.finalize.as_ref().unwrap().sql;
        assert!(sql.contains("(`id` INT64 OPTIONS(description='the id'), `mentioned_at` TIMESTAMP NOT NULL"), "{sql}");
        assert_eq!(kept.kept_nullable_columns, ["id"]);
    }
}

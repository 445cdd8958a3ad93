//! `pg2bq external`: the snapshot queryable in place, without loading it. BigQuery external
//! tables over its Parquet files (`CREATE OR REPLACE EXTERNAL TABLE`, one per table, named
//! with a prefix that names the run, labelled with the run), and DuckDB views over the same
//! files (`--duckdb FILE.sql`), so an analyst can diff the snapshot against the live table in
//! SQL. Only the files the manifest lists are read: never a wildcard that could pick up others.

use std::path::PathBuf;

use serde::Serialize;

use crate::audit::AuditError;
use crate::gcp::bigquery::{BigQuery, BigQueryOptions};
use crate::gcp::sql::{label_part, string_literal, table_path};
use crate::model::manifest::{Manifest, TableManifest};
use crate::storage::gcs::GcsOptions;
use crate::storage::manifest::read_manifest;

/// What `external` is to create, and where.
#[derive(Debug, Clone)]
pub struct ExternalConfig {
    pub manifest_uri: String,
    /// BigQuery: the project and dataset of the external tables (none: only `--duckdb`).
    pub target: Option<(String, String)>,
    pub location: Option<String>,
    /// The start of every table's name; default `snapshot_<run id>_`.
    pub prefix: Option<String>,
    pub duckdb: Option<PathBuf>,
    pub dry_run: bool,
    pub bigquery: BigQueryOptions,
    pub gcs: GcsOptions,
}

/// What `external` did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ExternalOutcome {
    pub run_id: String,
    pub dry_run: bool,
    /// One statement per table with files.
    pub ddl: Vec<String>,
    /// The external tables created, `project.dataset.table`.
    pub created: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duckdb: Option<String>,
}

/// Creates the external tables and writes the DuckDB views.
///
/// # Errors
/// [`AuditError`] when the manifest cannot be read, the files are not in GCS (BigQuery), a
/// statement fails or the views cannot be written.
pub async fn external(config: &ExternalConfig) -> Result<ExternalOutcome, AuditError> {
    let manifest = read_manifest(&config.manifest_uri, &config.gcs).await?.manifest;
    let prefix = config.prefix.clone().unwrap_or_else(|| default_prefix(&manifest.run_id));
    let mut outcome =
        ExternalOutcome { run_id: manifest.run_id.clone(), dry_run: config.dry_run, ddl: Vec::new(), created: Vec::new(), duckdb: None };
    if let Some((project, dataset)) = &config.target {
        if let Some(local) = manifest.tables.iter().flat_map(|t| &t.files).find(|f| !f.uri.starts_with("gs://")) {
            return Err(AuditError::NotInGcs { uri: local.uri.clone() });
        }
        let tables = manifest.tables.iter().filter(|t| !t.files.is_empty());
        outcome.ddl = tables.map(|t| external_table_ddl(&manifest, t, project, dataset, &prefix)).collect();
        if !config.dry_run {
            let bq = BigQuery::connect(project, config.location.clone(), &config.bigquery).await?;
            for (table, ddl) in manifest.tables.iter().filter(|t| !t.files.is_empty()).zip(&outcome.ddl) {
                bq.query_rows(ddl).await?;
                outcome.created.push(format!("{project}.{dataset}.{prefix}{}", table.bq_table));
            }
        }
    }
    if let Some(path) = &config.duckdb {
        let views = duckdb_views(&manifest, &prefix);
        if !config.dry_run {
            std::fs::write(path, &views).map_err(|source| AuditError::WriteLocal { path: path.display().to_string(), source })?;
        }
        outcome.duckdb = Some(path.display().to_string());
    }
    Ok(outcome)
}

/// `snapshot_<run id>_`, the run id as a name part allows it.
pub fn default_prefix(run_id: &str) -> String {
    format!("snapshot_{}_", label_part(run_id).replace('-', "_"))
}

/// The statement that makes `table`'s external table over exactly its files.
pub fn external_table_ddl(manifest: &Manifest, table: &TableManifest, project: &str, dataset: &str, prefix: &str) -> String {
    let uris: Vec<String> = table.files.iter().map(|f| string_literal(&f.uri)).collect();
    let description = format!("pg2bq snapshot of {} in run {} ({} rows)", table.name, manifest.run_id, table.row_count);
    format!(
        "CREATE OR REPLACE EXTERNAL TABLE {}\nOPTIONS (\n  format = 'PARQUET',\n  uris = [{}],\n  description = {},\n  labels = [('pg2bq_run', {})]\n)",
        table_path(project, dataset, &format!("{prefix}{}", table.bq_table)),
        uris.join(", "),
        string_literal(&description),
        string_literal(&label_part(&manifest.run_id)),
    )
}

/// DuckDB views over the snapshot's files, one per table (`read_parquet` of its listed files).
pub fn duckdb_views(manifest: &Manifest, prefix: &str) -> String {
    let mut sql = format!(
        "-- pg2bq snapshot {run}: one view per table over exactly the files its manifest lists.\n\
         -- gs:// files need DuckDB's httpfs extension and a GCS HMAC key:\n\
         --   INSTALL httpfs; LOAD httpfs; CREATE SECRET (TYPE gcs, KEY_ID '…', SECRET '…');\n",
        run = manifest.run_id
    );
    for table in &manifest.tables {
        let name = duckdb_ident(&format!("{prefix}{}", table.bq_table));
        if table.files.is_empty() {
            sql.push_str(&format!("-- {}: no rows, no files, no view\n", table.name));
            continue;
        }
        let paths: Vec<String> = table.files.iter().map(|f| duckdb_string(f.uri.strip_prefix("file://").unwrap_or(&f.uri))).collect();
        sql.push_str(&format!(
            "-- {} ({} rows)\nCREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet([{}]);\n",
            table.name,
            table.row_count,
            paths.join(", ")
        ));
    }
    sql
}

fn duckdb_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn duckdb_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::FileManifest;

    fn manifest() -> Manifest {
        let file = |path: &str| FileManifest { path: path.into(), uri: format!("gs://b/r-1/{path}"), rows: 2, ..Default::default() };
        let table = TableManifest {
            name: "public.events".into(),
            bq_table: "events".into(),
            row_count: 4,
            files: vec![file("public.events/part-p0000-s00000.parquet"), file("public.events/it's.parquet")],
            ..Default::default()
        };
        let empty = TableManifest { name: "public.none".into(), bq_table: "none".into(), ..Default::default() };
        Manifest { run_id: "R-1".into(), tables: vec![table, empty], ..Default::default() }
    }

    #[test]
    fn external_tables_list_exactly_the_files_and_label_the_run() {
        let m = manifest();
        let ddl = external_table_ddl(&m, &m.tables[0], "p", "d", &default_prefix(&m.run_id));
        assert_eq!(
            ddl,
            "CREATE OR REPLACE EXTERNAL TABLE `p.d.snapshot_r_1_events`\nOPTIONS (\n  format = 'PARQUET',\n  uris = ['gs://b/r-1/public.events/part-p0000-s00000.parquet', 'gs://b/r-1/public.events/it\\'s.parquet'],\n  description = 'pg2bq snapshot of public.events in run R-1 (4 rows)',\n  labels = [('pg2bq_run', 'r-1')]\n)"
        );
    }

    #[test]
    fn duckdb_views_quote_names_and_paths_and_skip_tables_without_files() {
        let views = duckdb_views(&manifest(), "s_");
        assert!(views.contains("CREATE OR REPLACE VIEW \"s_events\" AS SELECT * FROM read_parquet(['gs://b/r-1/public.events/part-p0000-s00000.parquet', 'gs://b/r-1/public.events/it''s.parquet']);"));
        assert!(views.contains("-- public.none: no rows, no files, no view"));
        assert!(!views.contains("\"s_none\""));
    }
}

//! `pg2bq validate`: proves a BigQuery table equals its snapshot, from the manifest's Arrow
//! aggregates, without re-scanning the source. `pg2bq verify` ([`crate::verify`]) proves the snapshot
//! itself is intact, from the files alone.
//!
//! Input: a manifest and a loaded dataset (and optionally the source). Output: a
//! [`ValidationReport`] of checks, each with expected and actual values. It never changes
//! BigQuery or Postgres.

pub mod compare;
pub mod locate;
pub mod plan;
pub mod rows;
pub mod sample;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::{debug, info, info_span, trace, warn, Instrument};

use crate::gcp::bigquery::{BigQuery, BigQueryError, BigQueryOptions};
use crate::gcp::measures::{aggregate_query, Measure};
use crate::gcp::routes::{read_back_routes, route_columns, ColumnRoute, RouteProblem};
use crate::gcp::runs::{records_sql, DeletedRows, LoadMode, LoadRecord, RUNS_TABLE};
use crate::gcp::schema::table_columns;
use crate::gcp::sql::{key_join, quote};
use crate::model::aggregates::ColumnAggregates;
pub use crate::model::check::Check;
use crate::model::check::CheckKind;
use crate::model::manifest::{ColumnManifest, ForeignKey, Manifest, PartitionManifest, TableManifest, TableNames};
use crate::model::progress::{ProgressCounter, ProgressReporter, TableProgress};
use crate::model::run_record::{RecordedCheck, RecordedCommand, RecordedLocation, RecordedRow, RecordedTable, RunRecord, Verdict};
use crate::model::types::{quote_ident, BigQueryType};
use crate::source::SourceError;
use crate::storage::gcs::GcsOptions;
use crate::storage::manifest::{read_manifest, ManifestError};
use crate::storage::records::append_record;
use compare::parse_float;
pub use plan::{plan_validate, ValidatePlan};
use plan::{DenormalizedCheck, PlannedProbe, Scope};

/// A denormalized column declared in the config: `table.column` must equal
/// `references.referenced_column` of the row that `via` points to (through a foreign key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Denormalized {
    /// e.g. `public.entity_mentions`
    pub table: String,
    /// e.g. `mentioned_at`
    pub column: String,
    /// The foreign key column, e.g. `event_id`.
    pub via: String,
    /// e.g. `public.events.mentioned_at`
    pub references: String,
}

/// A named query with a time budget; `{project}`, `{dataset}` and `{prefix}` are replaced.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub name: String,
    pub sql: String,
    pub max_seconds: f64,
}

/// Everything `validate` needs.
#[derive(Debug, Clone)]
pub struct ValidateConfig {
    pub manifest_uri: String,
    pub project: String,
    pub dataset: String,
    pub location: Option<String>,
    /// Which table each snapshot table was loaded into, where the run was loaded into several.
    pub names: TableNames,
    /// Postgres URL: enables the random-row sample and the drift report.
    pub source_url: Option<String>,
    pub sample_rows: usize,
    /// Rows listed when a table's differing rows are located; 0: rows are not located.
    pub locate_limit: usize,
    /// Estimate the queries' bytes instead of running them.
    pub dry_run: bool,
    pub denormalized: Vec<Denormalized>,
    pub probes: Vec<Probe>,
    pub bigquery: BigQueryOptions,
    pub gcs: GcsOptions,
}

/// Why validation could not run (as opposed to finding mismatches).
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    BigQuery(#[from] BigQueryError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("table `{table}` is not in BigQuery dataset `{dataset}`; load the snapshot first")]
    MissingTable { table: String, dataset: String },
    #[error("table `{table}` holds run `{run_id}` by merge, but the keys table `{keys}` that load keeps for validate is missing; re-run the same `pg2bq load --mode merge`")]
    MissingKeys { table: String, run_id: String, keys: String },
    #[error("table `{table}` cannot be read as the snapshot through the routes its load recorded (its columns changed since?):\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Routing { table: String, problems: Vec<RouteProblem> },
    #[error("no load of run `{run_id}`'s table `{table}` is recorded in dataset `{dataset}`: {hint}")]
    NotRecorded { run_id: String, table: String, dataset: String, hint: String },
    #[error("the record of run `{run_id}` in table `{table}` (in `_pg2bq_runs`) is not one this pg2bq reads")]
    BadRecord {
        table: String,
        run_id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    UnknownName(#[from] plan::UnknownName),
    #[error(transparent)]
    NotANumber(#[from] NotANumber),
    #[error(transparent)]
    FileRead(#[from] rows::FileReadError),
}

/// BigQuery answered something other than a number where validate reads one (a count, a float
/// sum's scale): an error, never read as 0.
#[derive(Debug, thiserror::Error)]
#[error("BigQuery answered `{text}` for {what} of table {table}, which is not a number")]
pub struct NotANumber {
    /// The table as the query names it: `` `project.dataset.table` ``.
    pub table: String,
    /// What was read, e.g. `COUNT(*) of partition 2`.
    pub what: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    pub run_id: String,
    pub project: String,
    pub dataset: String,
    /// No check failed (and, with `validate --strict`, none was skipped).
    pub passed: bool,
    /// Checks that ran and found a difference, across tables and probes.
    pub failed: usize,
    /// Checks that could not run (status `skip`, with the reason), across tables and probes.
    pub skipped: usize,
    /// `--dry-run`: the checks are estimates; nothing was compared.
    pub dry_run: bool,
    /// The run was resumed and its units read in more than one snapshot (a warning, not a
    /// failure: see the manifest's `unit_snapshots`).
    pub mixed_snapshot: bool,
    pub tables: Vec<TableValidation>,
    pub probes: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableValidation {
    pub table: String,
    pub bq_table: String,
    /// No check of the table failed.
    pub passed: bool,
    /// Its checks that could not run.
    pub skipped: usize,
    pub checks: Vec<Check>,
    /// The rows that differ, when a check failed and `--locate-limit` is not 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub located: Option<locate::RowLocation>,
}

/// Runs every check: reads the manifest, plans ([`plan::plan_validate`]), then [`execute`]s.
///
/// # Errors
/// [`ValidateError`] when a check cannot run (missing table, unreadable manifest, BigQuery
/// error); mismatches are not errors, they are failed checks in the report.
pub async fn validate(config: &ValidateConfig, progress: Option<&ProgressReporter>) -> Result<ValidationReport, ValidateError> {
    let found = read_manifest(&config.manifest_uri, &config.gcs).await?;
    let (manifest, files) = (found.manifest, rows::RunFiles { store: found.store, run_dir: found.run_dir });
    let plan = plan::plan_validate(config, &manifest)?;
    let bq = BigQuery::connect(&config.project, config.location.clone(), &config.bigquery).await?;
    let report = execute(&plan, &bq, (&manifest, &files), progress).await;
    if !config.dry_run {
        record_validation(&files, config, &report).await;
    }
    report
}

/// Leaves the validation's outcome beside the run (docs/audit.md), one that stopped with an
/// error too; a record that cannot be written is a warning, the validation stands.
async fn record_validation(files: &rows::RunFiles, config: &ValidateConfig, report: &Result<ValidationReport, ValidateError>) {
    let verdict = match report {
        Ok(report) if report.failed == 0 => Verdict::Passed,
        Ok(_) => Verdict::Failed,
        Err(_) => Verdict::Error,
    };
    let mut record = RunRecord::now(RecordedCommand::Validate, &config.project, &config.dataset, verdict);
    match report {
        Ok(report) => {
            (record.failed, record.skipped) = (report.failed, report.skipped);
            record.tables = report.tables.iter().map(recorded_table).collect();
            if !report.probes.is_empty() {
                let checks = report.probes.iter().map(RecordedCheck::from).collect();
                record.tables.push(RecordedTable { table: "(probes)".into(), checks, ..RecordedTable::default() });
            }
        }
        Err(error) => record.error = Some(crate::model::error_chain(error).join(": ")),
    }
    if let Err(error) = append_record(&files.store, &files.run_dir, &record).await {
        warn!(error = %crate::model::error_chain(&error).join(": "), "The validation is not recorded beside the run: its report will not show it");
    }
}

fn recorded_table(table: &TableValidation) -> RecordedTable {
    let located = table.located.as_ref().map(|l| RecordedLocation {
        key: l.key.clone(),
        missing: l.missing,
        only_in_bigquery: l.only_in_bigquery,
        differing: l.differing,
        complete: l.complete,
        rows: l
            .rows
            .iter()
            .map(|r| RecordedRow { key: r.key.clone(), status: r.status.as_str().to_string(), columns: r.columns.clone() })
            .collect(),
        note: l.note.clone(),
    });
    RecordedTable {
        table: table.table.clone(),
        bq_table: table.bq_table.clone(),
        checks: table.checks.iter().map(RecordedCheck::from).collect(),
        located,
        ..RecordedTable::default()
    }
}

/// Runs a plan's checks (with `dry_run`, estimates their bytes) on every table, then its probes.
///
/// # Errors
/// As [`validate`].
pub async fn execute(
    plan: &ValidatePlan,
    bq: &BigQuery,
    (manifest, files): (&Manifest, &rows::RunFiles),
    progress: Option<&ProgressReporter>,
) -> Result<ValidationReport, ValidateError> {
    let mut tables = Vec::new();
    for (table, denormalized) in manifest.tables.iter().zip(&plan.denormalized) {
        let span = info_span!("validate", table = %table.name, run_id = %manifest.run_id);
        let counter = ProgressCounter::default();
        if let Some(report) = progress {
            report(&table.name, &counter);
        }
        let (bq_table, checks, located) = match plan.dry_run {
            true => estimate_table(plan, bq, table).instrument(span).await?,
            false => validate_table(plan, bq, (manifest, files), (table, denormalized), &counter).instrument(span).await?,
        };
        tables.push(TableValidation {
            table: table.name.clone(),
            bq_table,
            passed: !checks.iter().any(Check::failed),
            skipped: checks.iter().filter(|c| c.is_skipped()).count(),
            checks,
            located,
        });
    }
    let mut probes = Vec::new();
    for probe in &plan.probes {
        probes.push(match plan.dry_run {
            true => estimate(bq, &probe.sql, &format!("probe `{}`", probe.name)).await?,
            false => run_probe(bq, probe).await?,
        });
    }
    let all = || tables.iter().flat_map(|t| &t.checks).chain(&probes);
    let (failed, skipped) = (all().filter(|c| c.failed()).count(), all().filter(|c| c.is_skipped()).count());
    Ok(ValidationReport {
        run_id: plan.run_id.clone(),
        project: plan.scope.project.clone(),
        dataset: plan.scope.dataset.clone(),
        passed: failed == 0,
        failed,
        skipped,
        dry_run: plan.dry_run,
        mixed_snapshot: manifest.mixed_snapshot,
        tables,
        probes,
    })
}

/// One snapshot table as loaded: the table, what its load recorded, and the rows compared.
struct Loaded {
    table_id: String,
    record: LoadRecord,
    /// `(SELECT <each snapshot column read back through its route> FROM table t [JOIN keys])`:
    /// the whole table, or a merged table's rows whose key is in the snapshot.
    rows: String,
    /// `table t [JOIN keys k ON …]`: the rows compared, with the table's own columns as `t.…`.
    from: String,
    /// The route of each snapshot column that was loaded.
    routes: Vec<ColumnRoute>,
}

impl Loaded {
    /// The route feeding a snapshot column; `None` when it was left out of the load.
    fn route(&self, column: &ColumnManifest) -> Option<&ColumnRoute> {
        self.routes.iter().find(|r| r.source.as_deref() == Some(column.mapping.bq_name.as_str()))
    }
}

/// The record of the snapshot table's load in `_pg2bq_runs`: into the table `--table-map` (or
/// the prefix) names.
async fn read_record(scope: &Scope, bq: &BigQuery, run_id: &str, table: &TableManifest) -> Result<LoadRecord, ValidateError> {
    let wanted = scope.table_id(table);
    let not_recorded = |hint: String| ValidateError::NotRecorded {
        run_id: run_id.into(),
        table: table.name.clone(),
        dataset: scope.dataset.clone(),
        hint,
    };
    if bq.table(&scope.dataset, RUNS_TABLE).await?.is_none() {
        return Err(not_recorded(format!(
            "the dataset has no `{RUNS_TABLE}` table: load the run first (a re-run of a finished load attaches to its jobs and records it)"
        )));
    }
    let rows = bq.query_rows(&records_sql(&scope.project, &scope.dataset, run_id, &table.name)).await?;
    let mut loaded_into = Vec::new();
    for row in rows {
        let (Some(Some(table_id)), Some(Some(text))) = (row.first(), row.get(1)) else { continue };
        if *table_id == wanted {
            return LoadRecord::parse(text).map_err(|source| ValidateError::BadRecord {
                table: table_id.clone(),
                run_id: run_id.into(),
                source,
            });
        }
        loaded_into.push(format!("`{table_id}`"));
    }
    Err(not_recorded(match loaded_into.is_empty() {
        true => "load the run first (a re-run of a finished load attaches to its jobs and records it)".into(),
        false => format!("it was loaded into {}: name it with --table-map {}=<table>", loaded_into.join(", "), table.bq_table),
    }))
}

/// The snapshot table as loaded: its record, and its rows read back as the snapshot's columns
/// through the routes it was loaded with (joined with the keys table after a merge).
async fn loaded_table(
    scope: &Scope,
    bq: &BigQuery,
    run_id: &str,
    table: &TableManifest,
) -> Result<(Loaded, serde_json::Value), ValidateError> {
    let record = read_record(scope, bq, run_id, table).await?;
    let table_id = record.table_id.clone();
    let Some(resource) = bq.table(&scope.dataset, &table_id).await? else {
        return Err(ValidateError::MissingTable { table: table_id, dataset: scope.dataset.clone() });
    };
    let routes = read_back_routes(&table.name, &table.columns, &table_columns(&resource), &record.options)
        .map_err(|problems| ValidateError::Routing { table: table_id.clone(), problems })?;
    let select: Vec<String> = table
        .columns
        .iter()
        .filter_map(|c| routes.iter().find(|r| r.source.as_deref() == Some(c.mapping.bq_name.as_str())))
        .map(|r| format!("{} AS {}", r.inverse, quote(r.source.as_deref().unwrap_or_default())))
        .collect();
    let whole = scope.path(&table_id);
    let from = match (&record.mode, &record.keys_table) {
        (LoadMode::Merge, Some(keys_id)) => {
            let missing = || ValidateError::MissingKeys { table: table_id.clone(), run_id: run_id.into(), keys: keys_id.clone() };
            let keys_resource = bq.table(&scope.dataset, keys_id).await?.ok_or_else(missing)?;
            let key: Vec<String> = table_columns(&keys_resource).into_iter().map(|k| k.name).collect();
            format!("{whole} t JOIN {} k ON {}", scope.path(keys_id), key_join("t", "k", &key))
        }
        // A merge of no rows (a tail that only carried deletes) kept no keys: none of its rows.
        (LoadMode::Merge, None) if table.row_count == 0 => format!("(SELECT * FROM {whole} WHERE FALSE) t"),
        _ => format!("{whole} t"),
    };
    let rows = format!("(SELECT {} FROM {from})", select.join(", "));
    Ok((Loaded { table_id, record, rows, from, routes }, resource))
}

/// A merged table: the count of its rows outside the snapshot (the app's own), and what the
/// row count's detail says of the rows the merge found already there.
async fn merged_checks(bq: &BigQuery, loaded: &Loaded, whole: &str, checks: &mut Vec<Check>) -> Result<(), ValidateError> {
    let counts = bq.query_counts(&format!("SELECT COUNT(*), (SELECT COUNT(*) FROM {}) FROM {whole}", loaded.rows)).await?;
    let outside = counts[0].saturating_sub(counts[1]);
    let outside_check = Check::new(CheckKind::OutsideSnapshot, None, "not compared", format!("{outside} rows"), true)
        .with_detail("rows of the table whose key is not in the snapshot (the app's own): reported, never a mismatch");
    let kept = loaded.record.merged.filter(|_| !loaded.record.overwrite_existing).map_or(0, |m| m.already_present);
    if kept > 0 {
        checks[0] = checks[0].clone().with_detail(format!(
            "the snapshot's rows with keys in the table; {kept} of them were already there and kept the table's values (merged without --overwrite-existing)"
        ));
    }
    checks.push(outside_check);
    Ok(())
}

/// `load --apply-deletes`: none of the keys deleted in Postgres is in the table any more.
async fn deleted_check(scope: &Scope, bq: &BigQuery, loaded: &Loaded, deleted: &DeletedRows) -> Result<Check, ValidateError> {
    let missing = || ValidateError::MissingKeys {
        table: loaded.table_id.clone(),
        run_id: loaded.record.run_id.clone(),
        keys: deleted.keys_table.clone(),
    };
    let keys = bq.table(&scope.dataset, &deleted.keys_table).await?.ok_or_else(missing)?;
    let key: Vec<String> = table_columns(&keys).into_iter().map(|k| k.name).collect();
    let sql = format!(
        "SELECT CAST(COUNT(*) AS STRING) FROM {} t JOIN {} k ON {}",
        scope.path(&loaded.table_id),
        scope.path(&deleted.keys_table),
        key_join("t", "k", &key)
    );
    let present = single_count(bq, &sql).await?;
    let check = Check::new(CheckKind::DeletedKeys, None, 0, present, present == 0);
    Ok(check.with_detail(format!(
        "rows of the {} key(s) deleted in Postgres before this tail still in the table; the load deleted {} row(s) by them (--apply-deletes; keys in `{}`)",
        deleted.keys, deleted.rows, deleted.keys_table
    )))
}

/// One check per `--set` column: the rows the load wrote hold its constant (a merge wrote the
/// rows it inserted; the others kept the table's values).
async fn set_checks(
    dataset: &str,
    bq: &BigQuery,
    loaded: &Loaded,
    resource: &serde_json::Value,
    table: &TableManifest,
) -> Result<Vec<Check>, ValidateError> {
    let mut checks = Vec::new();
    let routes = route_columns(&table.name, &table.columns, &table_columns(resource), &loaded.record.options).unwrap_or_default();
    for route in routes.iter().filter(|r| r.source.is_none() && r.expr != "NULL") {
        let column = format!("t.{}", quote(&route.target));
        let holds = match route.compare_as_text {
            true => format!("TO_JSON_STRING({column}) = TO_JSON_STRING({})", route.expr),
            false => format!("{column} = {}", route.expr),
        };
        let sql = format!("SELECT CAST(COUNTIF({holds}) AS STRING) FROM {}", loaded.from);
        let held = single_count(bq, &sql).await?;
        let (expected, passed) = match loaded.record.merged {
            Some(m) if !loaded.record.overwrite_existing => (
                format!("{}–{}", m.inserted, m.inserted + m.already_present),
                (m.inserted..=m.inserted + m.already_present).contains(&held),
            ),
            Some(m) => (format!("≥ {}", m.inserted), held >= m.inserted),
            None => (table.row_count.to_string(), held == table.row_count),
        };
        let check = Check::new(CheckKind::SetValue, Some(&route.target), expected, held, passed);
        checks.push(
            check.with_detail(format!("rows of the snapshot holding {} (--set; {} in `{}`)", route.conversion, dataset, loaded.table_id)),
        );
    }
    Ok(checks)
}

/// The rows quarantine set aside (not loaded, so not in `row_count`): listed with their
/// reasons and file; the snapshot's rows are the loaded ones plus these.
fn rejected_check(table: &TableManifest) -> Option<Check> {
    let rejected = table.rejected.as_ref()?;
    let reasons: Vec<String> = rejected.reasons.iter().map(|(reason, rows)| format!("{reason} ({rows})")).collect();
    let actual = format!("{} rows", rejected.file.rows);
    let check = Check::new(CheckKind::Rejected, None, "set aside, not loaded", actual, true);
    Some(check.with_detail(format!(
        "snapshot rows = {} loaded + {} rejected; reasons: {}; rows, keys and reasons in {}",
        table.row_count,
        rejected.file.rows,
        reasons.join(", "),
        rejected.file.path
    )))
}

async fn validate_table(
    plan: &ValidatePlan,
    bq: &BigQuery,
    (manifest, files): (&Manifest, &rows::RunFiles),
    (table, denormalized): (&TableManifest, &[DenormalizedCheck]),
    progress: &TableProgress,
) -> Result<(String, Vec<Check>, Option<locate::RowLocation>), ValidateError> {
    let (started, scope) = (Instant::now(), &plan.scope);
    let (loaded, resource) = loaded_table(scope, bq, &manifest.run_id, table).await?;
    let target = loaded.rows.clone();
    let measured: Vec<(ColumnManifest, ColumnAggregates)> = table
        .columns
        .iter()
        .filter_map(|c| loaded.route(c).map(|r| (r.measured_column(c), expected_aggregates(c, r, &loaded.record))))
        .collect();
    let columns: Vec<&ColumnManifest> = measured.iter().map(|(c, _)| c).collect();
    let (values, layout) = run_aggregates(bq, &target, &columns, None).await?;
    let rows = parse_count(values[0].as_deref(), &target, || "COUNT(*)".into())?;
    let mut checks = vec![Check::new(CheckKind::RowCount, None, table.row_count, rows, rows == table.row_count)];
    checks.extend(rejected_check(table));
    if loaded.record.mode == LoadMode::Merge {
        merged_checks(bq, &loaded, &scope.path(&loaded.table_id), &mut checks).await?;
    }
    if let Some(deleted) = &loaded.record.deleted {
        checks.push(deleted_check(scope, bq, &loaded, deleted).await?);
    }
    checks.extend(excluded_checks(table, &loaded));
    let expected: Vec<ColumnAggregates> = measured.iter().map(|(_, e)| e.clone()).collect();
    checks.extend(column_checks(&target, &columns, &expected, &layout, &values, &loaded)?);
    report_checks(progress, &checks);
    let failed_columns: Vec<&ColumnManifest> = columns
        .iter()
        .copied()
        .filter(|c| loaded.route(c).is_some_and(|r| r.measured_as.is_none()))
        .filter(|c| checks.iter().any(|k| k.failed() && k.column.as_deref() == Some(c.mapping.bq_name.as_str())))
        .collect();
    if !failed_columns.is_empty() || checks[0].failed() {
        locate_mismatches(bq, table, &target, &failed_columns, &mut checks).await?;
    }
    checks.push(rows::row_fingerprint_check(bq, files, table, &loaded).await?);
    let located = match plan.locate_limit > 0 && checks.iter().any(|c| c.failed() && locates(c.check)) {
        true => Some(locate::locate_rows(bq, files, table, &loaded, plan.locate_limit).await?),
        false => None,
    };
    checks.extend(required_checks(table, &checks));
    checks.extend(set_checks(&scope.dataset, bq, &loaded, &resource, table).await?);
    report_checks(progress, &checks);
    checks.extend(referential_checks(scope, bq, (manifest, table), &loaded, denormalized).await?);
    report_checks(progress, &checks);
    if let Some(sample) = &plan.sample {
        checks.extend(sample::sample_checks(sample, bq, &sampled_columns(table, &loaded), &target).await?);
        report_checks(progress, &checks);
    }
    log_checks(&checks, started);
    Ok((loaded.table_id, checks, located))
}

/// Whether a failed check of this kind is about the rows' values (and so worth locating).
fn locates(kind: CheckKind) -> bool {
    matches!(
        kind,
        CheckKind::RowCount
            | CheckKind::NullCount
            | CheckKind::ValueCount
            | CheckKind::Min
            | CheckKind::Max
            | CheckKind::Sum
            | CheckKind::NanCount
            | CheckKind::FingerprintXor
            | CheckKind::FingerprintSum
            | CheckKind::RowFingerprint
            | CheckKind::Required
    )
}

/// Each check at TRACE, then the table's totals at INFO.
fn log_checks(checks: &[Check], started: Instant) {
    for c in checks {
        trace!(check = %c.check, column = c.column.as_deref().unwrap_or("-"), expected = %c.expected, actual = %c.actual, status = c.status.label(), "Check");
    }
    info!(
        checks = checks.len(),
        failed = checks.iter().filter(|c| c.failed()).count(),
        skipped = checks.iter().filter(|c| c.is_skipped()).count(),
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "Validated table"
    );
}

/// The table with the columns a sample compares with the source: those loaded, except those
/// whose values the load changed on purpose (NULLs given a `--default`, a lossy type).
fn sampled_columns(table: &TableManifest, loaded: &Loaded) -> TableManifest {
    let options = &loaded.record.options;
    let changed = |c: &ColumnManifest| options.defaults.contains_key(&c.mapping.bq_name) || options.lossy.contains_key(&c.mapping.bq_name);
    let columns = table.columns.iter().filter(|c| loaded.route(c).is_some() && !changed(c)).cloned().collect();
    TableManifest { columns, ..table.clone() }
}

/// One skipped check per snapshot column left out of the load: nothing of it is compared.
fn excluded_checks(table: &TableManifest, loaded: &Loaded) -> Vec<Check> {
    let excluded = table.columns.iter().filter(|c| loaded.record.options.excluded.contains(&c.mapping.bq_name));
    let reason = "left out of the load by --exclude-column: none of its checks ran";
    excluded.map(|c| Check::skipped(CheckKind::Excluded, Some(&c.mapping.bq_name), "its values", reason)).collect()
}

/// Reads a count BigQuery answered as text; `what` names it in the error. A count that is
/// absent or not an integer is an error, never a zero.
fn parse_count(text: Option<&str>, table: &str, what: impl FnOnce() -> String) -> Result<u64, NotANumber> {
    text.and_then(|t| t.parse().ok()).ok_or_else(|| NotANumber { table: table.into(), what: what(), text: text.unwrap_or("NULL").into() })
}

/// One `required` check per NOT NULL column: its `null_count` must be 0.
fn required_checks(table: &TableManifest, checks: &[Check]) -> Vec<Check> {
    let mut required = Vec::new();
    for column in table.columns.iter().filter(|c| !c.mapping.nullable && !c.mapping.repeated) {
        let name = column.mapping.bq_name.as_str();
        let nulls = checks.iter().find(|k| k.check == CheckKind::NullCount && k.column.as_deref() == Some(name));
        if let Some(nulls) = nulls {
            let check = Check::new(
                CheckKind::Required,
                Some(name),
                "0 NULLs (NOT NULL in Postgres)",
                format!("{} NULLs", nulls.actual),
                nulls.actual == "0",
            );
            required.push(check.with_detail("REQUIRED column"));
        }
    }
    required
}

/// Publishes the checks made so far to the table's progress.
fn report_checks(progress: &TableProgress, checks: &[Check]) {
    progress.checks.store(checks.len() as u64, Ordering::Relaxed);
    progress.failed_checks.store(checks.iter().filter(|c| c.failed()).count() as u64, Ordering::Relaxed);
}

/// Runs the aggregate query and returns every value as text (SQL NULL as `None`, never as the
/// text "NULL", which a string column's min can be) plus its layout.
async fn run_aggregates(
    bq: &BigQuery,
    target: &str,
    columns: &[&ColumnManifest],
    filter: Option<&str>,
) -> Result<(Vec<Option<String>>, Vec<(usize, Measure)>), ValidateError> {
    let (sql, layout) = aggregate_query(target, columns, filter);
    debug!(columns = columns.len(), filter = filter.unwrap_or("none"), "Running aggregate query");
    trace!(sql = %sql, "Aggregate query");
    let row = bq.query_one_row(&sql).await?;
    Ok((row, layout))
}

/// The manifest's aggregates; for a column whose values the table does not hold as the
/// snapshot's (JSON as BigQuery serialises it, NULLs given a `--default`, a lossy type), what
/// `load` measured over the staged snapshot rows through the same route and recorded.
fn expected_aggregates(column: &ColumnManifest, route: &ColumnRoute, record: &LoadRecord) -> ColumnAggregates {
    match route.measured_as {
        // No values, nothing staged: the empty fingerprint (0, 0) of the manifest stands.
        Some(_) if column.aggregates.value_count == 0 && column.aggregates.null_count == 0 => column.aggregates.clone(),
        Some(_) => record.expected.get(&column.mapping.bq_name).cloned().unwrap_or_else(|| ColumnAggregates {
            fingerprint_xor: "nothing recorded at load".into(),
            fingerprint_sum: "nothing recorded at load".into(),
            ..column.aggregates.clone()
        }),
        None => column.aggregates.clone(),
    }
}

/// One check per measure; `expected` is aligned with `columns`.
///
/// # Errors
/// [`NotANumber`] when a float column's Σ|x| is not a number.
fn column_checks(
    target: &str,
    columns: &[&ColumnManifest],
    expected: &[ColumnAggregates],
    layout: &[(usize, Measure)],
    values: &[Option<String>],
    loaded: &Loaded,
) -> Result<Vec<Check>, NotANumber> {
    let value = |i: usize| values[i + 1].as_deref();
    let mut checks = Vec::new();
    for (i, (index, measure)) in layout.iter().enumerate() {
        let column = columns[*index];
        let abs_sum = match layout.iter().position(|(j, m)| j == index && *m == Measure::AbsSum).and_then(value) {
            Some(text) => Some(parse_float(text).ok_or_else(|| NotANumber {
                table: target.into(),
                what: format!("the sum of absolute values of `{}`", column.mapping.bq_name),
                text: text.into(),
            })?),
            None => None,
        };
        let Some(check) = compare::compare(&column.mapping.bq_name, column.mapping.bq_type, *measure, &expected[*index], value(i), abs_sum)
        else {
            continue;
        };
        let default = loaded.record.options.defaults.get(&column.mapping.bq_name);
        let lossy = loaded.record.options.lossy.contains_key(&column.mapping.bq_name);
        checks.push(match (default, lossy) {
            (Some(value), _) => check.with_detail(format!(
                "{} NULL(s) of the snapshot replaced by {value} (--default); expected as measured at load over the staged rows",
                column.aggregates.null_count
            )),
            (None, true) => check.with_detail("as FLOAT64 (--allow-lossy); expected as measured at load over the staged rows"),
            _ if column.mapping.bq_type == BigQueryType::Json && matches!(measure, Measure::FingerprintXor | Measure::FingerprintSum) => {
                check.with_detail("JSON as BigQuery serialises it, fingerprinted at load from the staged snapshot text")
            }
            _ => check,
        });
    }
    Ok(checks)
}

/// Narrows failed columns down to partitions (key ranges translate to BigQuery SQL) and names
/// the files of the partitions that differ.
async fn locate_mismatches(
    bq: &BigQuery,
    table: &TableManifest,
    target: &str,
    failed: &[&ColumnManifest],
    checks: &mut [Check],
) -> Result<(), ValidateError> {
    let key_partitions: Vec<_> = table.partitions.iter().filter_map(|p| Some((p, p.bigquery_predicate()?))).collect();
    if key_partitions.is_empty() || key_partitions.len() != table.partitions.len() {
        return Ok(());
    }
    // Per-file fingerprints of JSON columns are of the Postgres text, not comparable here.
    let failed: Vec<&ColumnManifest> = failed.iter().copied().filter(|c| c.mapping.bq_type != BigQueryType::Json).collect();
    let mut located: HashMap<String, Vec<String>> = HashMap::new();
    for (partition, filter) in key_partitions {
        for (column, place) in locate_in_partition(bq, table, target, &failed, partition, &filter).await? {
            located.entry(column).or_default().push(place);
        }
    }
    for check in checks.iter_mut().filter(|c| c.failed()) {
        let key = check.column.clone().unwrap_or_default();
        if let Some(places) = located.get(&key) {
            let mut unique = places.clone();
            unique.dedup();
            check.detail = Some(format!("differs in {}", unique.join("; ")));
        }
    }
    Ok(())
}

/// Re-runs the failed columns' counts and fingerprints over one partition and compares them
/// with its files' aggregates; returns `(column, where)` for each column that differs there,
/// and `("", where)` if only the row count does (no column failed).
async fn locate_in_partition(
    bq: &BigQuery,
    table: &TableManifest,
    target: &str,
    failed: &[&ColumnManifest],
    partition: &PartitionManifest,
    filter: &str,
) -> Result<Vec<(String, String)>, ValidateError> {
    let (values, layout) = run_aggregates(bq, target, failed, Some(filter)).await?;
    let rows = parse_count(values[0].as_deref(), target, || format!("COUNT(*) of partition {}", partition.index))?;
    let files: Vec<&str> = table.files.iter().filter(|f| f.partition == partition.index).map(|f| f.path.as_str()).collect();
    let place = format!("partition {} ({}): {}", partition.index, partition.predicate, files.join(", "));
    // The partition's expected aggregates per failed column, merged from its files.
    let expected: Vec<Option<ColumnAggregates>> = failed
        .iter()
        .map(|column| {
            let position = table.columns.iter().position(|c| c.mapping.bq_name == column.mapping.bq_name).unwrap_or(0);
            table.merged_file_aggregates(position, &column.mapping, |f| f.partition == partition.index)
        })
        .collect();
    let mut differing = Vec::new();
    for (i, (index, measure)) in layout.iter().enumerate() {
        let column = failed[*index];
        // The manifest was checked on reading, so every file's aggregates merge.
        let Some(expected) = &expected[*index] else { continue };
        let actual = values[i + 1].as_deref();
        let count = || {
            let kind = measure.check_kind().map_or("", CheckKind::as_str);
            parse_count(actual, target, || format!("{kind} of `{}` in partition {}", column.mapping.bq_name, partition.index))
        };
        if measure_differs(*measure, expected, actual, count)? {
            differing.push((column.mapping.bq_name.clone(), place.clone()));
        }
    }
    if failed.is_empty() && rows != partition.rows {
        differing.push((String::new(), format!("partition {} ({})", partition.index, partition.predicate)));
    }
    Ok(differing)
}

/// Whether a partition's count or fingerprint differs from its files' aggregates; `count`
/// reads BigQuery's count (counts are never NULL). Other measures are not compared per partition.
fn measure_differs(
    measure: Measure,
    expected: &ColumnAggregates,
    actual: Option<&str>,
    count: impl FnOnce() -> Result<u64, NotANumber>,
) -> Result<bool, NotANumber> {
    Ok(match measure {
        // BigQuery holds an empty array as NULL.
        Measure::NullCount => count()? != expected.null_count + expected.empty_count.unwrap_or(0),
        Measure::ValueCount => count()? != expected.value_count,
        // An aggregate over no value is NULL: the empty fingerprint, 0.
        Measure::FingerprintXor => actual.unwrap_or("0") != expected.fingerprint_xor,
        Measure::FingerprintSum => actual.unwrap_or("0") != expected.fingerprint_sum,
        _ => false,
    })
}

/// Orphans for every foreign key between exported tables, and mismatches of declared
/// denormalized columns, over the snapshot's rows as loaded (a merged table's own rows are the
/// app's: their parents need not be in the snapshot).
async fn referential_checks(
    scope: &Scope,
    bq: &BigQuery,
    (manifest, table): (&Manifest, &TableManifest),
    loaded: &Loaded,
    denormalized: &[DenormalizedCheck],
) -> Result<Vec<Check>, ValidateError> {
    let mut checks = Vec::new();
    for fk in &table.foreign_keys {
        let skip = |why: String| {
            Check::skipped(
                CheckKind::Orphans,
                Some(&fk.columns.join(",")),
                0,
                format!("foreign key {} → {}: {why}", fk.name, fk.references_table),
            )
        };
        match (manifest.tables.iter().find(|t| t.name == fk.references_table), unloaded(table, loaded, &fk.columns)) {
            (None, _) => checks.push(skip("the referenced table is not in this run".into())),
            (_, Some(column)) => checks.push(skip(format!("column {column} was not loaded"))),
            (Some(parent), None) => checks.push(orphan_check(scope, bq, table, loaded, parent, fk).await?),
        }
    }
    for d in denormalized {
        checks.push(match unloaded(table, loaded, &[d.column.clone(), d.via.clone()]) {
            Some(column) => Check::skipped(CheckKind::Denormalized, Some(&d.column), 0, format!("column {column} was not loaded")),
            None => denormalized_check(scope, bq, manifest, table, loaded, d).await?,
        });
    }
    Ok(checks)
}

/// The first of a table's `columns` (Postgres names) that its load left out, if any.
fn unloaded<'a>(table: &TableManifest, loaded: &Loaded, columns: &'a [String]) -> Option<&'a String> {
    columns.iter().find(|name| table.columns.iter().find(|c| &c.mapping.name == *name).is_none_or(|c| loaded.route(c).is_none()))
}

/// The BigQuery name of a table's Postgres column (the name itself if it is not exported).
fn bq_column(table: &TableManifest, pg: &str) -> String {
    table.columns.iter().find(|c| c.mapping.name == pg).map(|c| c.mapping.bq_name.clone()).unwrap_or_else(|| pg.to_string())
}

/// Child rows of `fk` whose key has no row in `parent`: 0 expected.
async fn orphan_check(
    scope: &Scope,
    bq: &BigQuery,
    table: &TableManifest,
    loaded: &Loaded,
    parent: &TableManifest,
    fk: &ForeignKey,
) -> Result<Check, ValidateError> {
    let on: Vec<String> = fk
        .columns
        .iter()
        .zip(&fk.references_columns)
        .map(|(c, p)| format!("c.{} = p.{}", quote(&bq_column(table, c)), quote(&bq_column(parent, p))))
        .collect();
    let present: Vec<String> = fk.columns.iter().map(|c| format!("c.{} IS NOT NULL", quote(&bq_column(table, c)))).collect();
    let first_parent = quote(&bq_column(parent, &fk.references_columns[0]));
    let sql = format!(
        "SELECT CAST(COUNT(*) AS STRING) FROM {} AS c LEFT JOIN {} AS p ON {} WHERE {} AND p.{first_parent} IS NULL",
        loaded.rows,
        scope.qualified(parent),
        on.join(" AND "),
        present.join(" AND ")
    );
    let orphans = single_count(bq, &sql).await?;
    Ok(Check::new(CheckKind::Orphans, Some(&fk.columns.join(",")), 0, orphans, orphans == 0).with_detail(format!(
        "foreign key {} → {}({})",
        fk.name,
        fk.references_table,
        fk.references_columns.join(",")
    )))
}

/// Rows where a declared denormalized column differs from the column it copies: 0 expected.
async fn denormalized_check(
    scope: &Scope,
    bq: &BigQuery,
    manifest: &Manifest,
    table: &TableManifest,
    loaded: &Loaded,
    d: &DenormalizedCheck,
) -> Result<Check, ValidateError> {
    let parent = manifest.tables.iter().find(|t| t.name == d.parent).expect("the plan resolves the parent in the manifest");
    let fk = table.foreign_keys.iter().find(|f| f.columns == [d.via.clone()] && f.references_table == parent.name);
    let parent_key =
        fk.map(|f| f.references_columns[0].clone()).or_else(|| parent.primary_key.first().cloned()).unwrap_or_else(|| "id".into());
    let (child_col, parent_col) = (quote(&bq_column(table, &d.column)), quote(&bq_column(parent, &d.parent_column)));
    let sql = format!(
        "SELECT CAST(COUNTIF(c.{child_col} IS DISTINCT FROM p.{parent_col}) AS STRING) FROM {} AS c JOIN {} AS p ON c.{} = p.{}",
        loaded.rows,
        scope.qualified(parent),
        quote(&bq_column(table, &d.via)),
        quote(&bq_column(parent, &parent_key)),
    );
    let mismatches = single_count(bq, &sql).await?;
    Ok(Check::new(CheckKind::Denormalized, Some(&d.column), 0, mismatches, mismatches == 0)
        .with_detail(format!("{}.{} = {} via {}", table.name, d.column, d.references, d.via)))
}

/// The one count a query answers; NULL or a non-integer is an error naming the query.
async fn single_count(bq: &BigQuery, sql: &str) -> Result<u64, ValidateError> {
    let counts = bq.query_counts(sql).await?;
    let count = counts.first().copied();
    Ok(count.ok_or_else(|| BigQueryError::NotACount { sql: sql.into(), column: 0, value: "no value".into() })?)
}

/// `--dry-run`: the bytes BigQuery estimates `sql` scans.
async fn estimate(bq: &BigQuery, sql: &str, what: &str) -> Result<Check, ValidateError> {
    let bytes = bq.dry_run_bytes(sql).await?.map_or_else(|| "unknown".to_string(), |b| format!("{b} bytes"));
    Ok(Check::new(CheckKind::Estimate, None, what, bytes, true).with_detail("BigQuery's dry-run estimate; nothing was compared"))
}

/// `--dry-run` of one table: the estimate of its comparison query (the rows `validate_table`
/// aggregates: the whole table, or a merged table's snapshot rows). Sampling reads a few rows by
/// key; locating a mismatch adds one query per failed column.
async fn estimate_table(
    plan: &ValidatePlan,
    bq: &BigQuery,
    table: &TableManifest,
) -> Result<(String, Vec<Check>, Option<locate::RowLocation>), ValidateError> {
    let (loaded, _) = loaded_table(&plan.scope, bq, &plan.run_id, table).await?;
    let measured: Vec<ColumnManifest> = table.columns.iter().filter_map(|c| loaded.route(c).map(|r| r.measured_column(c))).collect();
    let (sql, _) = aggregate_query(&loaded.rows, &measured.iter().collect::<Vec<_>>(), None);
    let mut estimates = vec![estimate(bq, &sql, "the aggregate query").await?];
    if let Some(sql) = rows::row_fingerprint_sql(table, &loaded) {
        estimates.push(estimate(bq, &sql, "the row fingerprint query").await?);
    }
    if plan.locate_limit > 0 {
        estimates.extend(locate::estimate(bq, table, &loaded).await?);
    }
    Ok((loaded.table_id, estimates, None))
}

async fn run_probe(bq: &BigQuery, probe: &PlannedProbe) -> Result<Check, ValidateError> {
    let sql = &probe.sql;
    let estimated = bq.dry_run_bytes(sql).await?;
    let started = Instant::now();
    let processed = bq.query_bytes(sql).await?;
    let seconds = started.elapsed().as_secs_f64();
    let check = Check::new(
        CheckKind::Probe,
        Some(&probe.name),
        format!("≤ {:.2} s", probe.max_seconds),
        format!("{seconds:.2} s"),
        seconds <= probe.max_seconds,
    );
    let bytes = |b: Option<u64>| b.map_or("unknown".to_string(), |b| b.to_string());
    Ok(check.with_detail(format!("bytes processed {}, dry-run estimate {}", bytes(processed), bytes(estimated))))
}

/// A manifest's table as Postgres SQL names it: the table it was read from, quoted; a query's
/// name quoted as one identifier.
pub fn pg_table(table: &TableManifest) -> String {
    table.source_table().map_or_else(|| quote_ident(&table.name), |t| t.quoted())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_that_is_not_an_integer_is_an_error_naming_it_never_zero() {
        assert_eq!(parse_count(Some("12"), "`p.d.t`", || "COUNT(*)".into()).unwrap(), 12);
        for text in [None, Some(""), Some("1.5"), Some("-1")] {
            let error = parse_count(text, "`p.d.t`", || "COUNT(*) of partition 2".into()).unwrap_err();
            let expected = format!("`{}` for COUNT(*) of partition 2 of table `p.d.t`", text.unwrap_or("NULL"));
            assert!(error.to_string().contains(&expected), "{error}");
        }
    }

    #[test]
    fn partition_counts_are_read_fingerprints_default_to_empty() {
        let expected = ColumnAggregates { null_count: 2, fingerprint_xor: "0".into(), ..ColumnAggregates::default() };
        let unparsable = || parse_count(Some("two"), "`t`", || "null_count".into());
        assert!(measure_differs(Measure::NullCount, &expected, Some("two"), unparsable).is_err());
        assert!(!measure_differs(Measure::NullCount, &expected, Some("2"), || Ok(2)).unwrap());
        assert!(measure_differs(Measure::ValueCount, &expected, Some("1"), || Ok(1)).unwrap());
        assert!(!measure_differs(Measure::FingerprintXor, &expected, None, unparsable).unwrap());
    }
}

//! `pg2bq runs`: the runs under a destination, newest first, each with its state, tables,
//! rows, bytes, the run it continues (a tail's parent) and the loads and validations recorded
//! beside it; and `export --since latest`, the newest committed run of the same tables.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::audit::AuditError;
use crate::model::manifest::{Manifest, MANIFEST_FILE};
use crate::model::run_id::RunId;
use crate::model::run_record::{GivenUp, RecordedCommand, GIVEN_UP_FILE};
use crate::model::unit_record::UnitRecord;
use crate::storage::gcs::GcsOptions;
use crate::storage::records::read_records;
use crate::storage::run::ClaimRecord;
use crate::storage::store::Store;
use crate::storage::units::read_unit_records;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Its manifest exists.
    Committed,
    /// An export holds its claim and has not committed (or was killed holding it: the next
    /// export of the run takes it over).
    InProgress,
    /// No manifest and no claim: the export failed or its coordinator gave up (its note
    /// says why); unit records it kept for `--resume` are counted as objects.
    GivenUp,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Committed => "committed",
            Self::InProgress => "in progress",
            Self::GivenUp => "given up",
        }
    }
}

/// One run under the destination.
#[derive(Debug, Clone, Serialize)]
pub struct RunListing {
    pub run_id: String,
    pub state: RunState,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub manifest: Option<String>,
    /// The snapshot's tables (a committed run's), or the tables units were recorded for.
    pub tables: Vec<String>,
    /// A committed run's rows; the recorded units' rows of another.
    pub rows: u64,
    /// Bytes of the run's objects as stored.
    pub bytes: u64,
    pub objects: usize,
    /// A tail's parent run, when its tables continue one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Who holds an uncommitted run's claim, and since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    /// Why the run was given up, as its export printed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_up: Option<String>,
    /// Tails made from this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    pub loads: Vec<RecordSummary>,
    pub validations: Vec<RecordSummary>,
}

/// A record beside a run, in a line.
#[derive(Debug, Clone, Serialize)]
pub struct RecordSummary {
    pub recorded_at: String,
    pub project: String,
    pub dataset: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    pub verdict: String,
}

/// Every run under `dest`, newest first (by run id within the same start time).
///
/// # Errors
/// [`AuditError`] when the destination cannot be listed or a manifest or record not read.
pub async fn list_runs(dest: &str, gcs: &GcsOptions) -> Result<Vec<RunListing>, AuditError> {
    let store = Store::open(dest, gcs).map_err(|source| AuditError::ListRuns { uri: dest.to_string(), source: Box::new(source) })?;
    let objects = store.list("").await.map_err(|source| AuditError::ListRuns { uri: dest.to_string(), source: Box::new(source) })?;
    let mut by_run: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for object in objects {
        if let Some((run, name)) = object.path.split_once('/') {
            by_run.entry(run.to_string()).or_default().push((name.to_string(), object.bytes));
        }
    }
    let mut runs = Vec::new();
    for (run_id, names) in by_run {
        if let Some(run) = listing(&store, &run_id, &names).await? {
            runs.push(run);
        }
    }
    let parents: Vec<(String, String)> = runs.iter().filter_map(|r| Some((r.parent.clone()?, r.run_id.clone()))).collect();
    for (parent, child) in parents {
        if let Some(run) = runs.iter_mut().find(|r| r.run_id == parent) {
            run.children.push(child);
        }
    }
    runs.sort_by(|a, b| (&b.started_at, &b.run_id).cmp(&(&a.started_at, &a.run_id)));
    Ok(runs)
}

/// The run in `run_id`, or `None` when the directory holds nothing of a run.
async fn listing(store: &Store, run_id: &str, names: &[(String, u64)]) -> Result<Option<RunListing>, AuditError> {
    let has = |test: &dyn Fn(&str) -> bool| names.iter().any(|(name, _)| test(name));
    let committed = has(&|n| n == MANIFEST_FILE);
    let claimed = has(&|n| n.starts_with("claim-") && n.ends_with(".json"));
    let given_up = has(&|n| n == GIVEN_UP_FILE);
    if !committed && !claimed && !given_up && !has(&|n| UnitRecord::is_record(n) || n.ends_with(".parquet")) {
        return Ok(None);
    }
    let mut run = RunListing {
        run_id: run_id.to_string(),
        state: match (committed, claimed) {
            (true, _) => RunState::Committed,
            (false, true) => RunState::InProgress,
            (false, false) => RunState::GivenUp,
        },
        started_at: None,
        completed_at: None,
        manifest: None,
        tables: Vec::new(),
        rows: 0,
        bytes: names.iter().map(|(_, bytes)| bytes).sum(),
        objects: names.len(),
        parent: None,
        claimed_by: None,
        given_up: None,
        children: Vec::new(),
        loads: Vec::new(),
        validations: Vec::new(),
    };
    if committed {
        let path = format!("{run_id}/{MANIFEST_FILE}");
        let bytes = store.get(&path).await.map_err(|source| AuditError::Read { uri: store.uri(&path), source: Box::new(source) })?;
        if let Ok((manifest, _)) = Manifest::from_json(&bytes) {
            describe(&mut run, &manifest);
        }
        run.manifest = Some(store.uri(&path));
    } else {
        describe_uncommitted(store, &mut run, names, given_up && !claimed).await;
    }
    for record in read_records(store, run_id).await? {
        let summary = RecordSummary {
            recorded_at: record.recorded_at.clone(),
            project: record.project.clone(),
            dataset: record.dataset.clone(),
            mode: record.mode.clone(),
            verdict: format!("{:?}", record.verdict).to_lowercase(),
        };
        match record.command {
            RecordedCommand::Load => run.loads.push(summary),
            RecordedCommand::Validate => run.validations.push(summary),
        }
    }
    Ok(Some(run))
}

/// An uncommitted run: the tables and rows of its recorded units (none when they cannot be
/// read: the state stands), who holds it, or why it was given up.
async fn describe_uncommitted(store: &Store, run: &mut RunListing, names: &[(String, u64)], given_up: bool) {
    let units = match RunId::parse(&run.run_id) {
        Ok(id) => read_unit_records(store, &id).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    run.tables = units.iter().map(|u| u.table.clone()).collect();
    run.tables.dedup();
    run.rows = units.iter().map(|u| u.rows).sum();
    if run.state == RunState::InProgress {
        run.claimed_by = claim_holder(store, &run.run_id, names).await;
    }
    if given_up {
        let path = format!("{}/{GIVEN_UP_FILE}", run.run_id);
        let note = store.get(&path).await.ok().and_then(|bytes| serde_json::from_slice::<GivenUp>(&bytes).ok());
        run.completed_at = note.as_ref().map(|n| n.at.clone());
        run.given_up = note.map(|n| n.error);
    }
}

/// `pid N on HOST since T` of the run's highest claim; `None` when it cannot be read.
async fn claim_holder(store: &Store, run_id: &str, names: &[(String, u64)]) -> Option<String> {
    let highest = names.iter().map(|(n, _)| n).filter(|n| n.starts_with("claim-") && n.ends_with(".json")).max()?;
    let bytes = store.get(&format!("{run_id}/{highest}")).await.ok()?;
    let claim: ClaimRecord = serde_json::from_slice(&bytes).ok()?;
    Some(format!("pid {} on {} since {}", claim.pid, claim.host, claim.started_at))
}

fn describe(run: &mut RunListing, manifest: &Manifest) {
    run.started_at = Some(manifest.started_at.clone());
    run.completed_at = Some(manifest.completed_at.clone());
    run.tables = manifest.tables.iter().map(|t| t.name.clone()).collect();
    run.rows = manifest.tables.iter().map(|t| t.row_count).sum();
    run.parent = manifest.tables.iter().find_map(|t| Some(t.tail.as_ref()?.parent_run.clone()));
}

/// `export --since latest`: the manifest URI of the newest committed run under `dest` that
/// exported every one of `tables` (their names in the run, `schema.table`).
///
/// # Errors
/// [`AuditError::NoCommittedRun`] when there is none, or as [`list_runs`].
pub async fn latest_committed(dest: &str, tables: &[String], gcs: &GcsOptions) -> Result<String, AuditError> {
    let runs = list_runs(dest, gcs).await?;
    runs.into_iter()
        .filter(|r| r.state == RunState::Committed && tables.iter().all(|t| r.tables.contains(t)))
        .find_map(|r| r.manifest)
        .ok_or_else(|| AuditError::NoCommittedRun { dest: dest.to_string(), tables: tables.join(", ") })
}

//! What `load` finds at each destination before any job runs, and what it will do there: the
//! plan against the table as it is (an existing table with other columns is fed through
//! routes), the effect in words (for `--dry-run` and the report), and every refusal at once:
//! rows that a person or an app wrote which a truncate would delete, a mapped target that is
//! not in the dataset, options that need an existing table. Reads metadata only (`tables.get`,
//! `tables.list`), so `--dry-run` runs it too.

use serde_json::Value;

use super::jobs::LoadPlanError;
use super::plan::{keep_nullable_columns, plan_into_existing, Problem, RowsHeld};
use super::{step_error, LoadError, LoadMode, LoadPlan, LoadStep, LoadTarget, TableLoad};
use crate::gcp::bigquery::BigQueryApi;
use crate::gcp::runs::created_by_pg2bq;
use crate::gcp::schema::{schema_differences, table_columns};
use crate::model::manifest::{Manifest, TableManifest};

/// One table's destination as it is now, and the plan to load it with.
pub(super) struct Destination {
    pub table: TableLoad,
    /// The table's resource, `None` when it does not exist (the load creates it).
    pub existing: Option<Value>,
}

impl Destination {
    /// Whether the table is pg2bq's own: created by it before, or by this load.
    pub fn pg2bq_owned(&self) -> bool {
        self.existing.as_ref().is_none_or(created_by_pg2bq)
    }
}

/// Every table's destination, and every reason to refuse the load (empty: go ahead).
///
/// # Errors
/// [`LoadError::Step`] when a table cannot be read or the dataset listed.
pub(super) async fn read_all(
    bq: &dyn BigQueryApi,
    plan: &LoadPlan,
    target: &LoadTarget,
    manifest: &Manifest,
) -> Result<(Vec<Destination>, Vec<Problem>), LoadError> {
    let mut destinations = Vec::new();
    let mut problems = Vec::new();
    let mut dataset_tables: Option<Vec<String>> = None;
    for table in &plan.tables {
        let manifest_table = manifest.tables.iter().find(|t| t.name == table.source).expect("the plan is made from the manifest");
        // Two snapshot tables appended into one missing table: the first creates it.
        let created_before = destinations.iter().find(|d: &&Destination| d.table.table_id == table.table_id && d.existing.is_none());
        let existing = match created_before {
            Some(first) => Some(first.table.table_resource.clone()),
            None => bq.table(&plan.dataset, &table.table_id).await.map_err(step_error(table, LoadStep::ReadTable))?,
        };
        let mut planned = match &existing {
            Some(resource) => match plan_for_existing(plan, target, table, manifest_table, resource) {
                Ok(planned) => planned,
                Err(refused) => {
                    problems.extend(refused);
                    table.clone()
                }
            },
            None => table.clone(),
        };
        match &existing {
            Some(resource) => problems.extend(replaced_rows_problem(plan, target, &planned, resource)),
            None => {
                if target.names.is_mapped(manifest_table) && !target.create_missing {
                    if dataset_tables.is_none() {
                        dataset_tables = Some(bq.list_tables(&plan.dataset).await.map_err(step_error(table, LoadStep::ListTables))?);
                    }
                    problems.push(missing_target_problem(plan, &planned, dataset_tables.as_deref().unwrap_or_default()));
                } else if !planned.options.column_map.is_empty() || !planned.options.set.is_empty() {
                    problems.push(Problem::RoutesNeedTable { dataset: plan.dataset.clone(), table_id: planned.table_id.clone() });
                }
            }
        }
        planned.effect = effect(plan, &planned, existing.as_ref());
        destinations.push(Destination { table: planned, existing });
    }
    Ok((destinations, problems))
}

/// The plan against an existing table: one with the snapshot's columns takes it as is (with
/// its NULLABLE modes kept); one with other columns, routing options, or any merge target is
/// fed through routes. Why it cannot be, one line per problem.
fn plan_for_existing(
    plan: &LoadPlan,
    target: &LoadTarget,
    table: &TableLoad,
    manifest_table: &TableManifest,
    resource: &Value,
) -> Result<TableLoad, Vec<Problem>> {
    let comparison = schema_differences(resource, &table.fields);
    if plan.mode == LoadMode::Merge || target.routing.routes_columns_of(manifest_table) || !comparison.differences.is_empty() {
        return plan_into_existing(plan, manifest_table, target, &table_columns(resource)).map_err(|error| match error {
            LoadPlanError::Routing { problems, .. } => problems.into_iter().map(Problem::Route).collect(),
            other => vec![Problem::Plan(other)],
        });
    }
    if comparison.nullable_in_table.is_empty() {
        return Ok(table.clone());
    }
    Ok(keep_nullable_columns(plan, table, &comparison.nullable_in_table))
}

/// A truncate into a table pg2bq did not create deletes rows a person or an app wrote: only
/// with `--replace-existing-rows`.
fn replaced_rows_problem(plan: &LoadPlan, target: &LoadTarget, table: &TableLoad, resource: &Value) -> Option<Problem> {
    if plan.mode != LoadMode::Truncate || target.replace_existing_rows || created_by_pg2bq(resource) {
        return None;
    }
    Some(Problem::ReplacesRows { dataset: plan.dataset.clone(), table_id: table.table_id.clone(), held: rows_held(resource) })
}

/// A `--table-map` target that is not there: a typo would otherwise create a table beside the
/// app's.
fn missing_target_problem(plan: &LoadPlan, table: &TableLoad, dataset_tables: &[String]) -> Problem {
    let mut scored: Vec<(f64, &String)> =
        dataset_tables.iter().map(|t| (strsim::jaro_winkler(&t.to_lowercase(), &table.table_id.to_lowercase()), t)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    Problem::MissingTarget {
        snapshot_table: table.source.clone(),
        table_id: table.table_id.clone(),
        dataset: plan.dataset.clone(),
        closest: scored.iter().filter(|(score, _)| *score > 0.7).take(3).map(|(_, t)| t.to_string()).collect(),
        dataset_tables: dataset_tables.len(),
    }
}

/// The rows `tables.get` counts in the table, and those in its streaming buffer.
fn rows_held(resource: &Value) -> RowsHeld {
    RowsHeld {
        rows: resource.get("numRows").and_then(Value::as_str).unwrap_or("0").to_string(),
        buffered: resource.pointer("/streamingBuffer/estimatedRows").and_then(Value::as_str).map(str::to_string),
    }
}

/// What the load does to the destination, in words: first the rows it deletes by key
/// (`--apply-deletes`), if any.
fn effect(plan: &LoadPlan, table: &TableLoad, existing: Option<&Value>) -> String {
    let name = format!("`{}.{}`", plan.dataset, table.table_id);
    let rows = table.rows;
    let Some(resource) = existing else {
        return format!("creates table {name} and loads {rows} row(s)");
    };
    let buffer = match resource.get("streamingBuffer") {
        Some(_) if plan.mode != LoadMode::Append => {
            "; the table has rows in its streaming buffer, over which BigQuery refuses DML for up to 90 minutes"
        }
        _ => "",
    };
    let (deletes, nothing) = match &table.deletes {
        Some(d) => (
            format!(
                "deletes {} row(s) by key ({}) from {name}, those deleted in Postgres since run `{}` (--apply-deletes); then ",
                d.keys,
                table.merge_key.join(", "),
                d.since_run
            ),
            "",
        ),
        None => (String::new(), "; deletes nothing"),
    };
    let key = table.merge_key.join(", ");
    match plan.mode {
        LoadMode::Truncate => format!("deletes {} existing in {name}, then loads {rows} row(s){buffer}", rows_held(resource)),
        LoadMode::Append => format!("inserts {rows} row(s) into {name}; deletes nothing"),
        LoadMode::Merge if plan.overwrite_existing => format!(
            "{deletes}inserts the snapshot's rows whose key ({key}) {name} lacks and updates those whose values differ \
             (--overwrite-existing){nothing}{buffer}"
        ),
        LoadMode::Merge => {
            format!("{deletes}inserts only the snapshot's rows whose key ({key}) {name} lacks; leaves the others{nothing}{buffer}")
        }
    }
}

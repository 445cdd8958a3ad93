//! `load --mode merge --apply-deletes`: the rows a tail saw deleted in Postgres
//! (`export --since … --carry-changes`, its `<table>/_deleted/keys.parquet`) deleted from the
//! table by key. The keys file goes in by a load job (never streaming inserts) into a staging
//! table of key text; one statement turns it into the keys as the table holds them (through the
//! key columns' routes), kept next to the table for `validate`; one `DELETE` removes those rows.
//! Each has a deterministic id, so a re-run attaches and deletes nothing twice.
//!
//! What a tail carries decides which loads take it: its updated rows need `--overwrite-existing`
//! (the table holds their old values), its deleted keys `--apply-deletes` (nothing deletes an
//! app's rows without an explicit flag), and both a merge.

use serde::Serialize;
use serde_json::json;

use crate::gcp::routes::ColumnRoute;
use crate::gcp::runs::{deleted_keys_table_id, staging_table_id, LoadMode};
use crate::gcp::schema::{schema_json, table_reference, Field, FieldMode};
use crate::gcp::sql::{key_join, quote, string_literal, table_path};
use crate::load::jobs::{LoadJob, LoadPlanError, QueryJob, WriteDisposition};
use crate::model::manifest::TableManifest;
use crate::model::types::BigQueryType;

/// A table's deletes by key: the keys file loaded, turned into the table's keys, deleted.
#[derive(Debug, Clone, Serialize)]
pub struct Deletes {
    /// The rows to delete: the keys in the file.
    pub keys: u64,
    /// The run the deleted rows were exported by (the tail's parent).
    pub since_run: String,
    /// The keys as text (`key`, as Postgres' `json_build_object` prints them), loaded here.
    pub staging_table_id: String,
    pub load_job: LoadJob,
    /// The keys as the table holds them, kept for `validate`.
    pub keys_table_id: String,
    pub keep_keys: QueryJob,
    /// `DELETE FROM <table> WHERE <key> IN <keys>`.
    pub delete: QueryJob,
}

/// Where a table's deletes go and how its key is fed: the pieces [`plan_deletes`] needs.
pub struct DeleteTarget<'a> {
    pub project: &'a str,
    pub dataset: &'a str,
    pub run_id: &'a str,
    pub run_uri: &'a str,
    pub table_id: &'a str,
    pub job_name: &'a str,
    pub job_base: &'a str,
    /// The merge key (target columns) and every column's route.
    pub key: &'a [String],
    pub routes: &'a [ColumnRoute],
}

/// Refuses a load that would drop what a tail carried: its updated rows (without a merge that
/// overwrites) or its deleted keys (without a merge that applies them).
///
/// # Errors
/// [`LoadPlanError::CarriedChanges`] with the flags that take them.
pub fn check_carried(table: &TableManifest, mode: LoadMode, overwrite_existing: bool, apply_deletes: bool) -> Result<(), LoadPlanError> {
    let Some((tail, carried)) = table.tail.as_ref().and_then(|t| t.carried.as_ref().map(|c| (t, c))) else { return Ok(()) };
    let deleted = table.deleted_keys.as_ref().map_or(0, |f| f.rows);
    let refuse =
        |reason: String| Err(LoadPlanError::CarriedChanges { table: table.name.clone(), since_run: tail.parent_run.clone(), reason });
    let (updated, run) = (carried.updated, &tail.parent_run);
    if mode != LoadMode::Merge && updated + deleted > 0 {
        return refuse(format!(
            "it carries {updated} row(s) updated and {deleted} deleted in Postgres since run `{run}`, which only a merge by key \
             applies: load it with --mode merge --overwrite-existing --apply-deletes"
        ));
    }
    if updated > 0 && !overwrite_existing {
        return refuse(format!(
            "it carries {updated} row(s) updated in Postgres since run `{run}`, which the table holds with their old values: \
             add --overwrite-existing"
        ));
    }
    if deleted > 0 && !apply_deletes {
        let path = table.deleted_keys.as_ref().map_or("", |f| f.path.as_str());
        return refuse(format!(
            "it carries the keys of {deleted} row(s) deleted in Postgres since run `{run}` ({path}): add --apply-deletes to \
             delete them from the table by key (a load deletes no row without it)"
        ));
    }
    Ok(())
}

/// The table's deletes, when its manifest entry carries deleted keys (checked by
/// [`check_carried`] first).
///
/// # Errors
/// [`LoadPlanError::MergeKey`] when a key column has no route from the snapshot.
pub fn plan_deletes(target: &DeleteTarget, table: &TableManifest) -> Result<Option<Deletes>, LoadPlanError> {
    let (Some(file), Some(tail)) = (&table.deleted_keys, &table.tail) else { return Ok(None) };
    let mut typed = Vec::new();
    let mut kept = Vec::new();
    for key in target.key {
        let route = target.routes.iter().find(|r| &r.target == key && r.source.is_some());
        let column = route.and_then(|r| table.columns.iter().find(|c| Some(&c.mapping.bq_name) == r.source.as_ref()));
        let (Some(route), Some(column)) = (route, column) else {
            return Err(LoadPlanError::MergeKey {
                table: table.name.clone(),
                key: target.key.join(", "),
                reason: format!("column `{key}` is not fed from the snapshot, so deleted keys cannot be matched"),
            });
        };
        let value = format!("JSON_VALUE(k.`key`, {})", string_literal(&json_path(&column.mapping.name)));
        typed.push(format!("CAST({value} AS {}) AS {}", column.mapping.bq_type.sql_name(), quote(&column.mapping.bq_name)));
        kept.push(format!("{} AS {}", route.expr, quote(key)));
    }
    let qualified = |id: &str| table_path(target.project, target.dataset, id);
    let staging = staging_table_id(&format!("{}_deleted", target.job_name), target.run_id);
    let keys_table = deleted_keys_table_id(target.table_id, target.run_id);
    let keys_sql = format!(
        "CREATE OR REPLACE TABLE {} AS SELECT DISTINCT {} FROM (SELECT {} FROM {} k) s",
        qualified(&keys_table),
        kept.join(", "),
        typed.join(", "),
        qualified(&staging)
    );
    let uri = format!("{}/{}", target.run_uri, file.path);
    let fields = [Field { name: "key".into(), field_type: BigQueryType::String, mode: FieldMode::Required, description: None }];
    let configuration = json!({ "load": {
        "sourceUris": [uri],
        "sourceFormat": "PARQUET",
        "destinationTable": table_reference(target.project, target.dataset, &staging),
        "writeDisposition": WriteDisposition::WriteTruncate,
        "createDisposition": "CREATE_IF_NEEDED",
        "schema": schema_json(&fields),
    }});
    let load_job = LoadJob {
        job_id: format!("{}_deletes_load", target.job_base),
        destination_table_id: staging.clone(),
        write_disposition: WriteDisposition::WriteTruncate,
        uris: vec![uri],
        bytes: file.bytes,
        rows: file.rows,
        configuration,
    };
    Ok(Some(Deletes {
        keys: file.rows,
        since_run: tail.parent_run.clone(),
        staging_table_id: staging,
        load_job,
        keep_keys: QueryJob::new(format!("{}_deletes_keys", target.job_base), keys_sql),
        delete: QueryJob::new(
            format!("{}_deletes", target.job_base),
            delete_sql(&qualified(target.table_id), &qualified(&keys_table), target.key),
        ),
        keys_table_id: keys_table,
    }))
}

/// `DELETE` of the rows of `target` whose key is in `keys` (both quoted paths).
pub fn delete_sql(target: &str, keys: &str, key: &[String]) -> String {
    format!("DELETE FROM {target} T WHERE EXISTS (SELECT 1 FROM {keys} K WHERE {})", key_join("T", "K", key))
}

/// The JSONPath of a key column in Postgres' `json_build_object` text: `$.id`, or `$."a b"`
/// for a name that is not a plain identifier.
fn json_path(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match plain {
        true => format!("$.{name}"),
        false => format!("$.\"{}\"", name.replace('"', "\\\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_match_every_key_column_and_paths_quote_odd_names() {
        assert_eq!(
            delete_sql("`p.d.t`", "`p.d.k`", &["site".into(), "n".into()]),
            "DELETE FROM `p.d.t` T WHERE EXISTS (SELECT 1 FROM `p.d.k` K WHERE T.`site` = K.`site` AND T.`n` = K.`n`)"
        );
        assert_eq!([json_path("id"), json_path("order id"), json_path("1st")], ["$.id", "$.\"order id\"", "$.\"1st\""]);
    }
}

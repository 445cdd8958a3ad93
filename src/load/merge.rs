//! `load --mode merge`: the SQL that merges a staged snapshot into a live table by key. Rows whose key the target lacks are inserted; rows already there are
//! left alone, or with `--overwrite-existing` updated where a value differs. Re-running the
//! same statement changes nothing, so a crash anywhere and a rerun converge.

use crate::gcp::routes::ColumnRoute;
use crate::gcp::sql::{key_join, quote};

/// A merge of `staging` into `target` (both full `project.dataset.table` paths, quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSpec<'a> {
    pub target: &'a str,
    pub staging: &'a str,
    /// Target columns that identify a row.
    pub key: &'a [String],
    pub routes: &'a [ColumnRoute],
    pub overwrite_existing: bool,
}

/// `SELECT COUNT(*) - COUNT(DISTINCT <key>)` over the staged snapshot (`staging` quoted): above
/// 0, the key is not unique there and the merge must not run.
pub fn duplicate_keys_sql(staging: &str, key_sources: &[String]) -> String {
    let key = key_sources.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ");
    format!("SELECT COUNT(*) - COUNT(DISTINCT TO_JSON_STRING(STRUCT({key}))) FROM {staging}")
}

/// The `MERGE` statement.
pub fn merge_sql(spec: &MergeSpec) -> String {
    let fed: Vec<&ColumnRoute> = spec.routes.iter().filter(|r| r.is_written()).collect();
    let source_list = fed.iter().map(|r| format!("{} AS {}", r.expr, quote(&r.target))).collect::<Vec<_>>().join(", ");
    let on = key_join("T", "S", spec.key);
    let columns = fed.iter().map(|r| quote(&r.target)).collect::<Vec<_>>().join(", ");
    let values = fed.iter().map(|r| format!("S.{}", quote(&r.target))).collect::<Vec<_>>().join(", ");
    let mut sql = format!(
        "MERGE {} T USING (SELECT {source_list} FROM {} s) S ON {on} WHEN NOT MATCHED BY TARGET THEN INSERT ({columns}) VALUES ({values})",
        spec.target, spec.staging
    );
    if spec.overwrite_existing {
        // Columns the snapshot does not have (a `--set` constant included) keep the table's values.
        let updated: Vec<&&ColumnRoute> = fed.iter().filter(|r| r.source.is_some() && !spec.key.contains(&r.target)).collect();
        if !updated.is_empty() {
            let differs = updated.iter().map(|r| differs(r)).collect::<Vec<_>>().join(" OR ");
            let set = updated.iter().map(|r| format!("{0} = S.{0}", quote(&r.target))).collect::<Vec<_>>().join(", ");
            sql.push_str(&format!(" WHEN MATCHED AND ({differs}) THEN UPDATE SET {set}"));
        }
    }
    sql
}

/// `T.c` and `S.c` differ, NULLs included; JSON and arrays, which BigQuery cannot compare,
/// through their JSON text.
fn differs(route: &ColumnRoute) -> String {
    let column_quoted = quote(&route.target);
    if route.compare_as_text {
        format!("TO_JSON_STRING(T.{column_quoted}) IS DISTINCT FROM TO_JSON_STRING(S.{column_quoted})")
    } else {
        format!("T.{column_quoted} IS DISTINCT FROM S.{column_quoted}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(target: &str, expr: &str, compare_as_text: bool) -> ColumnRoute {
        ColumnRoute {
            target: target.into(),
            source: Some(target.into()),
            expr: expr.into(),
            conversion: String::new(),
            compare_as_text,
            inverse: String::new(),
            measured_as: None,
        }
    }

    fn routes() -> Vec<ColumnRoute> {
        vec![
            route("id", "CAST(s.`id` AS STRING)", false),
            route("metadata", "s.`metadata`", true),
            ColumnRoute { source: None, expr: "NULL".into(), ..route("ingested_by", "", false) },
        ]
    }

    #[test]
    fn inserts_missing_keys_and_leaves_present_rows_alone() {
        let (routes, key) = (routes(), ["id".to_string()]);
        let spec = MergeSpec { target: "`p.app.events`", staging: "`p.app._stage`", key: &key, routes: &routes, overwrite_existing: false };
        assert_eq!(
            merge_sql(&spec),
            "MERGE `p.app.events` T USING (SELECT CAST(s.`id` AS STRING) AS `id`, s.`metadata` AS `metadata` FROM `p.app._stage` s) S \
             ON T.`id` = S.`id` WHEN NOT MATCHED BY TARGET THEN INSERT (`id`, `metadata`) VALUES (S.`id`, S.`metadata`)"
        );
    }

    #[test]
    fn overwrite_updates_only_rows_whose_values_differ_and_compares_json_as_text() {
        let (routes, key) = (routes(), ["id".to_string()]);
        let spec = MergeSpec { target: "`p.app.events`", staging: "`p.app._stage`", key: &key, routes: &routes, overwrite_existing: true };
        assert!(merge_sql(&spec).ends_with(
            " WHEN MATCHED AND (TO_JSON_STRING(T.`metadata`) IS DISTINCT FROM TO_JSON_STRING(S.`metadata`)) THEN UPDATE SET `metadata` = S.`metadata`"
        ));
    }

    #[test]
    fn duplicate_keys_count_composite_keys_as_one_value() {
        assert_eq!(
            duplicate_keys_sql("`p.app._stage`", &["id".into(), "mentioned_at".into()]),
            "SELECT COUNT(*) - COUNT(DISTINCT TO_JSON_STRING(STRUCT(`id`, `mentioned_at`))) FROM `p.app._stage`"
        );
    }
}

//! What `validate` will do, decided from its settings and the manifest before any query: where
//! the tables are, which declared denormalized columns each table's checks include, the probes
//! with their SQL filled in, and the optional work (locating rows, sampling the source).
//! Pure: no network. The executor (`validate`) takes only this plan, never the config.

use crate::gcp::sql::table_path;
use crate::model::manifest::{Manifest, TableManifest, TableNames};
use crate::model::settings::QualifiedColumn;
use crate::validate::ValidateConfig;

/// A denormalized column of the config naming a table (or reference) the manifest lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config names `{what}`, which the manifest does not hold")]
pub struct UnknownName {
    pub what: String,
}

/// Where validate reads: the dataset, and the table each snapshot table was loaded into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub project: String,
    pub dataset: String,
    pub names: TableNames,
}

impl Scope {
    /// A table of the dataset as BigQuery SQL names it.
    pub fn path(&self, table_id: &str) -> String {
        table_path(&self.project, &self.dataset, table_id)
    }

    /// The table a snapshot table was loaded into (`--table-map`, or the prefix and its name).
    pub fn table_id(&self, table: &TableManifest) -> String {
        self.names.table_id(table)
    }

    /// That table as BigQuery SQL names it.
    pub fn qualified(&self, table: &TableManifest) -> String {
        self.path(&self.table_id(table))
    }
}

/// A declared denormalized column of a table, resolved against the manifest: `column` must
/// equal `parent_column` of the `parent` row that `via` points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenormalizedCheck {
    pub column: String,
    pub via: String,
    /// The manifest's name of the referenced table.
    pub parent: String,
    pub parent_column: String,
    /// `references` as the config gives it, for the check's detail.
    pub references: String,
}

/// A probe with the run's project, dataset and table prefix filled into its SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedProbe {
    pub name: String,
    pub sql: String,
    pub max_seconds: f64,
}

/// `--source-url`: the drift report and `rows` random rows compared with the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSample {
    pub url: String,
    pub rows: usize,
}

/// Everything a validation does.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatePlan {
    pub run_id: String,
    pub scope: Scope,
    /// Per manifest table (in its order), its declared denormalized columns.
    pub denormalized: Vec<Vec<DenormalizedCheck>>,
    pub probes: Vec<PlannedProbe>,
    /// Rows listed when a table's differing rows are located; 0: rows are not located.
    pub locate_limit: usize,
    pub sample: Option<SourceSample>,
    /// `--dry-run`: estimate the queries' bytes instead of running them.
    pub dry_run: bool,
}

/// Plans the validation of `manifest`'s run.
///
/// # Errors
/// [`UnknownName`] when a denormalized column names a table (or reference) the manifest does
/// not hold.
pub fn plan_validate(config: &ValidateConfig, manifest: &Manifest) -> Result<ValidatePlan, UnknownName> {
    let scope = Scope { project: config.project.clone(), dataset: config.dataset.clone(), names: config.names.clone() };
    let mut denormalized = vec![Vec::new(); manifest.tables.len()];
    for d in &config.denormalized {
        let unknown = |what: &str| UnknownName { what: what.to_string() };
        let index = manifest.tables.iter().position(|t| t.is_named(&d.table)).ok_or_else(|| unknown(&d.table))?;
        let QualifiedColumn { table: parent, column: parent_column } = d.references.parse().map_err(|_| unknown(&d.references))?;
        let parent = manifest.tables.iter().find(|t| t.is_named(&parent)).ok_or_else(|| unknown(&parent))?;
        denormalized[index].push(DenormalizedCheck {
            column: d.column.clone(),
            via: d.via.clone(),
            parent: parent.name.clone(),
            parent_column,
            references: d.references.clone(),
        });
    }
    let fill =
        |sql: &str| sql.replace("{project}", &scope.project).replace("{dataset}", &scope.dataset).replace("{prefix}", &scope.names.prefix);
    let probes =
        config.probes.iter().map(|p| PlannedProbe { name: p.name.clone(), sql: fill(&p.sql), max_seconds: p.max_seconds }).collect();
    Ok(ValidatePlan {
        run_id: manifest.run_id.clone(),
        denormalized,
        probes,
        locate_limit: config.locate_limit,
        sample: config.source_url.as_ref().map(|url| SourceSample { url: url.clone(), rows: config.sample_rows }),
        dry_run: config.dry_run,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcp::bigquery::BigQueryOptions;
    use crate::storage::gcs::GcsOptions;
    use crate::validate::{Denormalized, Probe};

    fn table(name: &str) -> TableManifest {
        TableManifest {
            day_counts: Vec::new(),
            name: format!("public.{name}"),
            table: None,
            bq_table: name.to_string(),
            source_query: String::new(),
            primary_key: vec!["id".into()],
            foreign_keys: vec![],
            columns: vec![],
            partitions: vec![],
            files: vec![],
            row_count: 0,
            tail: None,
            rejected: None,
            row_hashes: None,
            deleted_keys: None,
            row_fingerprint: None,
        }
    }

    fn manifest() -> Manifest {
        Manifest::of_run("r1", vec![table("events"), table("entity_mentions")])
    }

    fn config(denormalized: Vec<Denormalized>) -> ValidateConfig {
        ValidateConfig {
            manifest_uri: "gs://b/p/r1/manifest.json".into(),
            project: "p".into(),
            dataset: "app".into(),
            location: None,
            names: TableNames { prefix: "pg_".into(), map: [("public.events".to_string(), "events_v2".to_string())].into() },
            source_url: Some("postgres://db".into()),
            sample_rows: 5,
            locate_limit: 20,
            dry_run: true,
            denormalized,
            probes: vec![Probe {
                name: "recent".into(),
                sql: "SELECT 1 FROM `{project}.{dataset}.{prefix}events`".into(),
                max_seconds: 2.0,
            }],
            bigquery: BigQueryOptions::default(),
            gcs: GcsOptions::default(),
        }
    }

    fn mentioned_at(references: &str) -> Denormalized {
        Denormalized {
            table: "entity_mentions".into(),
            column: "mentioned_at".into(),
            via: "event_id".into(),
            references: references.into(),
        }
    }

    #[test]
    fn the_plan_holds_only_what_validate_reads_resolved_against_the_manifest() {
        let manifest = manifest();
        let plan = plan_validate(&config(vec![mentioned_at("public.events.happened_at")]), &manifest).unwrap();
        assert_eq!(plan.run_id, "r1");
        assert_eq!(plan.scope.qualified(&manifest.tables[0]), "`p.app.events_v2`");
        assert_eq!(plan.scope.qualified(&manifest.tables[1]), "`p.app.pg_entity_mentions`");
        let check = DenormalizedCheck {
            column: "mentioned_at".into(),
            via: "event_id".into(),
            parent: "public.events".into(),
            parent_column: "happened_at".into(),
            references: "public.events.happened_at".into(),
        };
        assert_eq!(plan.denormalized, [vec![], vec![check]]);
        let probe = PlannedProbe { name: "recent".into(), sql: "SELECT 1 FROM `p.app.pg_events`".into(), max_seconds: 2.0 };
        assert_eq!(plan.probes, [probe]);
        assert_eq!(plan.sample, Some(SourceSample { url: "postgres://db".into(), rows: 5 }));
        assert_eq!((plan.locate_limit, plan.dry_run), (20, true));
    }

    #[test]
    fn a_denormalized_column_naming_what_the_manifest_lacks_is_refused_before_any_query() {
        let refused = |d: Denormalized| plan_validate(&config(vec![d]), &manifest()).unwrap_err().to_string();
        let unknown = |what: &str| format!("config names `{what}`, which the manifest does not hold");
        // The reference's table as options key it (`public` is the default schema).
        assert_eq!(refused(mentioned_at("public.orders.placed_at")), unknown("orders"));
        assert_eq!(refused(mentioned_at("happened_at")), unknown("happened_at"));
        assert_eq!(refused(Denormalized { table: "nope".into(), ..mentioned_at("public.events.happened_at") }), unknown("nope"));
    }
}

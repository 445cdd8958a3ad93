//! `load`'s settings: the BigQuery target, and each table's layout, merge key and routes, a
//! flag replacing the file's value for the same table (and, in routes, the same column).

use std::collections::BTreeMap;

use crate::cli::{LoadArgs, RoutingArgs};
use crate::config::bigquery::{file_key, Target};
use crate::config::{Combine, ConfigError, ConfigFile};
use crate::gcp::bigquery::BigQueryOptions;
use crate::gcp::routes::{Routing, TargetOptions};
use crate::gcp::schema::PartitionSpec;
use crate::load::{LoadConfig, LoadMode, LoadTarget};

/// The per-table load options of one layer (the flags, or the file), by load key.
#[derive(Debug, Default)]
pub(super) struct LoadOptions {
    pub partition_by: BTreeMap<String, PartitionSpec>,
    pub cluster_by: BTreeMap<String, Vec<String>>,
    pub merge_keys: BTreeMap<String, Vec<String>>,
    pub routes: BTreeMap<String, TargetOptions>,
}

impl Combine for LoadOptions {
    fn combine(self, lower: Self) -> Self {
        let mut routes = lower.routes;
        for (table, options) in self.routes {
            let lower = routes.remove(&table).unwrap_or_default();
            routes.insert(table, options.combine(lower));
        }
        Self {
            partition_by: self.partition_by.combine(lower.partition_by),
            cluster_by: self.cluster_by.combine(lower.cluster_by),
            merge_keys: self.merge_keys.combine(lower.merge_keys),
            routes,
        }
    }
}

/// Column by column: a flag's column map, constant, default or lossy type replaces the file's
/// for the same column; columns left out add up.
impl Combine for TargetOptions {
    fn combine(self, lower: Self) -> Self {
        Self {
            column_map: self.column_map.combine(lower.column_map),
            date_to_timestamp: self.date_to_timestamp || lower.date_to_timestamp,
            excluded: self.excluded.combine(lower.excluded),
            set: self.set.combine(lower.set),
            defaults: self.defaults.combine(lower.defaults),
            lossy: self.lossy.combine(lower.lossy),
        }
    }
}

impl LoadOptions {
    /// The file's tables' options, refusing two entries for one table.
    fn of_file(file: &ConfigFile) -> Result<Self, ConfigError> {
        let mut options = Self::default();
        let mut seen: Vec<(String, &str)> = Vec::new();
        for table in &file.tables {
            let key = file_key(&table.name)?;
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                return Err(ConfigError::DuplicateTable { first: first.to_string(), second: table.name.clone(), canonical: key });
            }
            seen.push((key.clone(), &table.name));
            options.partition_by.extend(table.partition_by.clone().map(|spec| (key.clone(), spec)));
            options.cluster_by.extend(table.cluster_by.clone().map(|columns| (key.clone(), columns)));
            options.merge_keys.extend(table.merge_key.clone().map(|columns| (key.clone(), columns)));
            let route = TargetOptions {
                column_map: table.column_map.clone(),
                excluded: table.exclude_columns.iter().cloned().collect(),
                set: table.set.clone(),
                defaults: table.default.clone(),
                lossy: table.allow_lossy.iter().map(|(column, lossy)| (column.clone(), lossy.0)).collect(),
                date_to_timestamp: false,
            };
            options.routes.insert(key, route);
        }
        Ok(options)
    }

    /// The flags' options; of two flags for one table (or column), the later wins.
    fn of_flags(args: &LoadArgs) -> Self {
        let by_table =
            |values: &[crate::model::settings::TableColumns]| values.iter().map(|v| (v.table.clone(), v.columns.clone())).collect();
        Self {
            partition_by: args.partition_by.iter().map(|p| (p.table.clone(), p.spec.clone())).collect(),
            cluster_by: by_table(&args.cluster_by),
            merge_keys: by_table(&args.merge_key),
            routes: flag_routes(&args.routing),
        }
    }
}

/// `--column-map`, `--exclude-column`, `--set`, `--default` and `--allow-lossy`, by table.
fn flag_routes(args: &RoutingArgs) -> BTreeMap<String, TargetOptions> {
    let mut tables: BTreeMap<String, TargetOptions> = BTreeMap::new();
    for value in &args.column_map {
        tables.entry(value.column.table.clone()).or_default().column_map.insert(value.column.column.clone(), value.value.clone());
    }
    for value in &args.exclude_column {
        tables.entry(value.table.clone()).or_default().excluded.insert(value.column.clone());
    }
    for value in &args.set {
        tables.entry(value.column.table.clone()).or_default().set.insert(value.column.column.clone(), unquoted(&value.value));
    }
    for value in &args.default {
        tables.entry(value.column.table.clone()).or_default().defaults.insert(value.column.column.clone(), unquoted(&value.value));
    }
    for value in &args.allow_lossy {
        tables.entry(value.column.table.clone()).or_default().lossy.insert(value.column.column.clone(), value.lossy.0);
    }
    tables
}

/// A constant as the shell leaves it: `'postgres'` and `postgres` are one value.
fn unquoted(text: &str) -> String {
    text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')).unwrap_or(text).to_string()
}

impl LoadConfig {
    /// Combines flags (with `GOOGLE_CLOUD_PROJECT`, `BIGQUERY_DATASET` folded in by clap), the
    /// export's config file (per-table layout, keys and routes) and defaults.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing project or dataset, a malformed file table name, two file
    /// entries for one table, or a flag its mode does not take.
    pub fn resolve(args: &LoadArgs, file: ConfigFile) -> Result<Self, ConfigError> {
        let Target { project, dataset, location, names } = Target::resolve(&args.target, &file)?;
        let options = LoadOptions::of_flags(args).combine(LoadOptions::of_file(&file)?);
        let mut routes = options.routes;
        routes.retain(|_, route| *route != TargetOptions::default());
        Ok(Self {
            manifest_uri: args.target.manifest.clone(),
            target: LoadTarget {
                project,
                dataset,
                location,
                names,
                mode: load_mode(args)?,
                partition_by: options.partition_by.into_iter().map(|(table, spec)| (table, (spec.column, spec.unit))).collect(),
                cluster_by: options.cluster_by,
                routing: Routing { tables: routes, date_to_timestamp: args.routing.date_to_timestamp },
                merge_keys: options.merge_keys,
                overwrite_existing: args.overwrite_existing,
                apply_deletes: args.apply_deletes,
                replace_existing_rows: args.replace_existing_rows,
                create_missing: args.create_missing,
            },
            create_dataset: args.create_dataset,
            dry_run: args.dry_run,
            bigquery: BigQueryOptions { streaming_buffer_wait: args.streaming_buffer_wait, ..args.gcp.bigquery() },
            gcs: args.gcp.gcs(),
        })
    }
}

/// `--mode` (default truncate), with the flags that only one mode takes.
fn load_mode(args: &LoadArgs) -> Result<LoadMode, ConfigError> {
    let mode = args.mode.unwrap_or_default();
    let only = |flag: &'static str, wanted: LoadMode, expected: &'static str| match mode == wanted {
        true => Ok(()),
        false => Err(ConfigError::ModeOnly { flag, expected }),
    };
    if args.overwrite_existing {
        only("--overwrite-existing", LoadMode::Merge, "--mode merge (truncate already replaces every row; append never updates)")?;
    }
    if args.apply_deletes {
        only("--apply-deletes", LoadMode::Merge, "--mode merge (truncate already replaces every row; append deletes none)")?;
    }
    if args.replace_existing_rows {
        only("--replace-existing-rows", LoadMode::Truncate, "--mode truncate (append and merge delete no row)")?;
    }
    Ok(mode)
}

//! `export`'s settings: the tables and queries of the run, each table's options merged from its
//! flags, its file entry and the file's globals ([`TableOptions`]), and the run's knobs.

use std::collections::BTreeMap;

use crate::cli::ExportArgs;
use crate::config::{source, Combine, ConfigError, ConfigFile, TableSpec};
use crate::export::config::{Coordination, ExportConfig, ExportTable, TableSource};
use crate::export::parquet::ParquetSettings;
use crate::model::settings::{ColumnRef, QuerySpec};
use crate::model::table_ref::TableRef;
use crate::model::types::{CastOverride, OnBadValue, OutOfRange};

/// How long a sharded run's coordinator waits for its workers unless told otherwise.
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// `--lock-timeout`: how long the snapshot's session waits to lock each exported table.
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Rows per Arrow batch from Postgres unless told otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 16_384;

/// One table's export options in one layer: its flags, its file entry, or the file's globals.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct TableOptions {
    pub partitions: Option<usize>,
    pub partition_on: Option<String>,
    pub watermark: Option<String>,
    pub updated_at: Option<String>,
    pub out_of_range: Option<OutOfRange>,
    pub on_bad_value: Option<OnBadValue>,
    pub casts: BTreeMap<String, CastOverride>,
}

impl Combine for TableOptions {
    fn combine(self, lower: Self) -> Self {
        Self {
            partitions: self.partitions.combine(lower.partitions),
            partition_on: self.partition_on.combine(lower.partition_on),
            watermark: self.watermark.combine(lower.watermark),
            updated_at: self.updated_at.combine(lower.updated_at),
            out_of_range: self.out_of_range.combine(lower.out_of_range),
            on_bad_value: self.on_bad_value.combine(lower.on_bad_value),
            casts: self.casts.combine(lower.casts),
        }
    }
}

impl TableOptions {
    /// The options a file entry sets for its table.
    fn of_file(spec: &TableSpec) -> Self {
        Self {
            partitions: spec.partitions,
            partition_on: spec.partition_on.clone(),
            watermark: spec.watermark.clone(),
            updated_at: spec.updated_at.clone(),
            out_of_range: spec.out_of_range,
            on_bad_value: spec.on_bad_value,
            casts: spec.casts.clone(),
        }
    }
}

/// A table or query of the run before its flags apply: the name it goes by (its [`TableRef`]
/// displayed, or the query's name), how it was written, and its file entry's options.
struct Entry {
    name: String,
    written: String,
    source: TableSource,
    file: TableOptions,
}

impl ExportConfig {
    /// Combines flags (clap already folded in `PG2BQ_*`), `DATABASE_URL`, the file and defaults.
    /// Per-table options follow the same order: a flag (or its variable) beats the file's
    /// per-table value, which beats the file's global value, which beats the default.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing source or destination, a malformed file value, or two
    /// entries naming one table.
    pub fn resolve(args: &ExportArgs, file: ConfigFile, database_url: Option<String>) -> Result<Self, ConfigError> {
        let source_url = source(args.source.clone(), database_url.combine(file.source))?.into();
        let destination = args.dest.clone().combine(file.dest).ok_or(ConfigError::MissingDestination)?.into();
        let global = TableOptions { out_of_range: file.out_of_range, on_bad_value: file.on_bad_value, ..TableOptions::default() };
        let file_entries = file.tables.iter().map(file_entry).collect::<Result<Vec<_>, _>>()?;
        let entries = match args.tables.is_empty() && args.queries.is_empty() {
            true => unique(file_entries)?,
            false => unique(flag_entries(args, &file_entries))?,
        };
        let flags = flag_layers(args, &entries)?;
        let tables = entries.into_iter().zip(flags).map(|(entry, flags)| export_table(entry, flags, &global)).collect::<Result<_, _>>()?;
        let jobs = match args.jobs.combine(file.jobs) {
            Some(0) => return Err(ConfigError::ZeroJobs),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(Self {
            source_url,
            destination,
            tables,
            run_id: args.run_id.clone(),
            take_over: args.take_over,
            resume: args.resume,
            jobs,
            since: args.since.clone(),
            carry_changes: args.carry_changes,
            dry_run: args.dry_run,
            parquet: parquet_settings(args),
            batch_rows: args.batch_rows.unwrap_or(DEFAULT_BATCH_ROWS),
            gcs: args.gcs.options(),
            coordinate: args
                .workers
                .filter(|_| args.coordinate)
                .map(|workers| Coordination { workers, deadline: args.deadline.unwrap_or(DEFAULT_DEADLINE) }),
            lock_timeout: args.lock_timeout.unwrap_or(DEFAULT_LOCK_TIMEOUT),
            lock_wait: args.lock_wait.duration.unwrap_or_default(),
        })
    }
}

/// A file entry: a query by its `name` and `query`, else the table its `name` spells.
fn file_entry(spec: &TableSpec) -> Result<Entry, ConfigError> {
    let (name, source) = match &spec.query {
        Some(sql) => {
            let query = QuerySpec::new(&spec.name, sql).map_err(|source| ConfigError::Setting { name: spec.name.clone(), source })?;
            (query.name, TableSource::Query(query.sql))
        }
        None => {
            let table = TableRef::parse(&spec.name).map_err(|source| ConfigError::TableName {
                flag: "tables.name",
                value: spec.name.clone(),
                source,
            })?;
            (table.to_string(), TableSource::Table(table))
        }
    };
    Ok(Entry { name, written: spec.name.clone(), source, file: TableOptions::of_file(spec) })
}

/// `--table` and `--query` entries; a flagged table keeps the file's options for it.
fn flag_entries(args: &ExportArgs, file_entries: &[Entry]) -> Vec<Entry> {
    let tables = args.tables.iter().map(|table| {
        let name = table.table.to_string();
        let from_file = file_entries.iter().find(|e| e.name == name && matches!(e.source, TableSource::Table(_)));
        let file = from_file.map(|e| e.file.clone()).unwrap_or_default();
        Entry { name, written: table.written.clone(), source: TableSource::Table(table.table.clone()), file }
    });
    let queries = args.queries.iter().map(|query| Entry {
        name: query.name.clone(),
        written: query.name.clone(),
        source: TableSource::Query(query.sql.clone()),
        file: TableOptions::default(),
    });
    tables.chain(queries).collect()
}

/// The entries, refusing two that name one table.
fn unique(entries: Vec<Entry>) -> Result<Vec<Entry>, ConfigError> {
    let mut kept: Vec<Entry> = Vec::new();
    for entry in entries {
        if let Some(first) = kept.iter().find(|k| k.name == entry.name) {
            return Err(ConfigError::DuplicateTable { first: first.written.clone(), second: entry.written, canonical: entry.name });
        }
        kept.push(entry);
    }
    Ok(kept)
}

/// The option a `[TABLE.]COLUMN` flag sets.
type ColumnField = fn(&mut TableOptions) -> &mut Option<String>;

/// Each entry's flag layer: the run's `--partitions`, `--out-of-range` and `--on-bad-value`,
/// and the `[TABLE.]COLUMN` flags that name it (`--cast`, `--partition-on`, `--watermark`,
/// `--updated-at`; a later flag replaces an earlier one's column).
fn flag_layers(args: &ExportArgs, entries: &[Entry]) -> Result<Vec<TableOptions>, ConfigError> {
    let run = TableOptions {
        partitions: args.partitions,
        out_of_range: args.out_of_range,
        on_bad_value: args.on_bad_value,
        ..Default::default()
    };
    let mut layers = vec![run; entries.len()];
    for cast in &args.casts {
        for i in targets(entries, "--cast", &cast.column)? {
            layers[i].casts.insert(cast.column.column.clone(), cast.cast);
        }
    }
    let columns: [(&'static str, &[ColumnRef], ColumnField); 3] = [
        ("--partition-on", &args.partition_on, |o| &mut o.partition_on),
        ("--watermark", &args.watermark, |o| &mut o.watermark),
        ("--updated-at", &args.updated_at, |o| &mut o.updated_at),
    ];
    for (flag, values, field) in columns {
        for value in values {
            for i in targets(entries, flag, value)? {
                *field(&mut layers[i]) = Some(value.column.clone());
            }
        }
    }
    Ok(layers)
}

/// One table's settings: its flags over its file entry over the file's globals over defaults.
fn export_table(entry: Entry, flags: TableOptions, global: &TableOptions) -> Result<ExportTable, ConfigError> {
    let options = flags.combine(entry.file).combine(global.clone());
    if options.partitions == Some(0) {
        return Err(ConfigError::ZeroPartitions { table: entry.written });
    }
    if let TableSource::Table(table) = &entry.source {
        representable(table)?;
    }
    Ok(ExportTable {
        name: entry.name,
        source: entry.source,
        casts: options.casts,
        partitions: options.partitions,
        partition_on: options.partition_on,
        watermark: options.watermark,
        updated_at: options.updated_at,
        out_of_range: options.out_of_range.unwrap_or_default(),
        on_bad_value: options.on_bad_value.unwrap_or_default(),
    })
}

/// Parquet file settings: flags over [`ParquetSettings::default`].
fn parquet_settings(args: &ExportArgs) -> ParquetSettings {
    let defaults = ParquetSettings::default();
    ParquetSettings {
        zstd_level: args.zstd_level.unwrap_or(defaults.zstd_level),
        row_group_bytes: args.row_group_size.map_or(defaults.row_group_bytes, |b| b as usize),
        file_bytes: args.file_size.unwrap_or(defaults.file_bytes),
        ..defaults
    }
}

/// Whether the table's run directory fits on every store; else the refusal with the way out.
fn representable(table: &TableRef) -> Result<(), ConfigError> {
    if table.directory_fits() {
        return Ok(());
    }
    let directory = table.directory();
    Err(ConfigError::UnrepresentableTable { table: table.to_string(), bytes: directory.len(), directory, quoted: table.quoted() })
}

/// The entries a `[[schema.]table.]column` target applies to: every one for a bare column;
/// otherwise the one it names: a query by its name, a table as `schema.table`, or as `table`
/// when one table of the run has that name.
fn targets(entries: &[Entry], flag: &'static str, target: &ColumnRef) -> Result<Vec<usize>, ConfigError> {
    let Some(pattern) = &target.table else { return Ok((0..entries.len()).collect()) };
    let named = |e: &Entry| match &e.source {
        TableSource::Query(_) => pattern.names_query(&e.name),
        TableSource::Table(table) => pattern.names(table),
    };
    let matching: Vec<usize> = (0..entries.len()).filter(|&i| named(&entries[i])).collect();
    if matching.len() == 1 {
        return Ok(matching);
    }
    let names = |indices: &mut dyn Iterator<Item = usize>| indices.map(|i| entries[i].name.as_str()).collect::<Vec<_>>().join(", ");
    let problem = match matching.is_empty() {
        true => format!("which is not in this run (tables: {})", names(&mut (0..entries.len()))),
        false => format!("which is ambiguous (tables: {}); qualify it as schema.table.{}", names(&mut matching.into_iter()), target.column),
    };
    Err(ConfigError::UnknownTarget { flag, value: target.to_string(), table: pattern.shown(), problem })
}

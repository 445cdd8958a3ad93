//! `pg2bq report`: gathers what the run's report shows (the manifest and its SHA-256, the files'
//! check, the records `load` and `validate` left, and per table the rows per day of its main
//! time column in the snapshot, in BigQuery and, when asked, in Postgres now), then writes it
//! as one HTML file ([`super::html`]) beside the manifest or where `--out` says.

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow::datatypes::DataType;
use sha2::{Digest, Sha256};
use tracing::info;

use crate::audit::contents::{DayRow, FilesCheck, RunReport, TableDays};
use crate::audit::{html, AuditError};
use crate::gcp::bigquery::{BigQuery, BigQueryOptions};
use crate::gcp::sql::{quote, table_path};
use crate::model::days::DayCounts;
use crate::model::manifest::TableManifest;
use crate::model::run_record::{RecordedCommand, RunRecord, Verdict, REPORT_FILE};
use crate::model::settings::ColumnRef;
use crate::model::types::ColumnMapping;
use crate::source::postgres::source_day_counts;
use crate::storage::gcs::GcsOptions;
use crate::storage::manifest::find_manifest;
use crate::storage::records::read_records;

/// What `report` is to show and where it goes.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    pub manifest_uri: String,
    /// A local file instead of `<run>/report.html`.
    pub out: Option<PathBuf>,
    /// `--time-column`: the column whose days are charted, per table or for all.
    pub time_columns: Vec<ColumnRef>,
    /// Postgres now, for a third count per day.
    pub source_url: Option<String>,
    /// The project BigQuery jobs run in (else the loading record's).
    pub project: Option<String>,
    /// The dataset to count in, over the one the latest load recorded.
    pub dataset: Option<String>,
    pub location: Option<String>,
    pub bigquery: BigQueryOptions,
    pub gcs: GcsOptions,
}

/// What `report` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportOutcome {
    pub run_id: String,
    /// Where the report is: a URI in the run's store, or the `--out` path.
    pub report: String,
    pub files_intact: bool,
    pub tables: usize,
    pub records: usize,
    /// Days on which BigQuery's (or Postgres's) count differs from the snapshot's, all tables.
    pub differing_days: usize,
}

/// Builds the run's report and writes it.
///
/// # Errors
/// [`AuditError`] when the manifest or a record cannot be read, a `--time-column` names no
/// recorded column, or the report cannot be written. BigQuery and Postgres failures are notes
/// in the report, not errors: the snapshot's side still stands.
pub async fn report(config: &ReportConfig, files: FilesCheck) -> Result<ReportOutcome, AuditError> {
    let found = find_manifest(&config.manifest_uri, &config.gcs).await?;
    let manifest_path = config.manifest_uri.rsplit('/').next().unwrap_or("manifest.json");
    let read = |source| AuditError::Read { uri: config.manifest_uri.clone(), source: Box::new(source) };
    let bytes = found.store.get(&format!("{}/{manifest_path}", found.run_dir)).await.map_err(read)?;
    let records = read_records(&found.store, &found.run_dir).await?;
    let mut days = Vec::new();
    for table in &found.manifest.tables {
        days.push(table_days(config, table, &records).await?);
    }
    let report = RunReport {
        manifest_uri: config.manifest_uri.clone(),
        manifest_sha256: Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect(),
        manifest: found.manifest,
        files,
        records,
        days,
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let page = html::render(&report);
    let written = match &config.out {
        Some(path) => {
            std::fs::write(path, page).map_err(|source| AuditError::WriteLocal { path: path.display().to_string(), source })?;
            path.display().to_string()
        }
        None => {
            let path = format!("{}/{REPORT_FILE}", found.run_dir);
            let uri = found.store.uri(&path);
            // The report is derived, not part of the record: writing it again replaces it.
            found
                .store
                .put(&path, page.into())
                .await
                .map_err(|source| AuditError::WriteReport { uri: uri.clone(), source: Box::new(source) })?;
            uri
        }
    };
    info!(report = %written, "Wrote the run's report");
    Ok(ReportOutcome {
        run_id: report.manifest.run_id.clone(),
        report: written,
        files_intact: report.files.intact,
        tables: report.manifest.tables.len(),
        records: report.records.len(),
        differing_days: report.days.iter().map(TableDays::differing_days).sum(),
    })
}

/// One table's days: the snapshot's from the manifest, BigQuery's and Postgres's counted now.
async fn table_days(config: &ReportConfig, table: &TableManifest, records: &[RunRecord]) -> Result<TableDays, AuditError> {
    let mut days = TableDays { table: table.name.clone(), ..TableDays::default() };
    let Some((mapping, counts)) = time_column(config, table)? else {
        days.notes.push("no DATE or TIMESTAMP column: no days to count".into());
        return Ok(days);
    };
    days.column = Some(mapping.bq_name.clone());
    let Some(snapshot) = &counts.days else {
        days.notes.push(format!(
            "the snapshot's days of `{}` were not recorded (more than a century of days, or an older pg2bq)",
            mapping.bq_name
        ));
        return Ok(days);
    };
    days.rows = snapshot.iter().map(|(day, &rows)| DayRow { day: day.clone(), snapshot: rows, bigquery: None, postgres: None }).collect();
    match bigquery_target(config, table, records) {
        Some(target) => {
            days.bigquery_table = Some(format!("{}.{}.{}", target.project, target.dataset, target.table));
            if target.merged {
                days.notes.push(
                    "loaded with --mode merge: the table may also hold rows outside the snapshot (an app's), counted on their days".into(),
                );
            }
            let sql = format!(
                "SELECT CAST(DATE({column}) AS STRING) AS day, COUNT(*) AS n FROM {path} WHERE {column} IS NOT NULL GROUP BY day ORDER BY day",
                column = quote(target.column(&mapping.bq_name)),
                path = table_path(&target.project, &target.dataset, &target.table),
            );
            match bigquery_days(config, &target.project, &sql).await {
                Ok(counted) => join(&mut days.rows, counted, |row, n| row.bigquery = Some(n)),
                Err(error) => days.notes.push(format!("BigQuery not counted: {}", crate::model::error_chain(&error).join(": "))),
            }
        }
        None => days.notes.push("not loaded (no load recorded and no --dataset): BigQuery not counted".into()),
    }
    if let (Some(url), Some(source)) = (&config.source_url, table.source_table()) {
        let with_zone = matches!(mapping.arrow_type, DataType::Timestamp(_, Some(_)));
        match source_day_counts(url, &source, &mapping.name, with_zone).await {
            Ok(counted) => join(&mut days.rows, counted, |row, n| row.postgres = Some(n)),
            Err(error) => days.notes.push(format!("Postgres not counted: {}", crate::model::error_chain(&error).join(": "))),
        }
    }
    Ok(days)
}

async fn bigquery_days(config: &ReportConfig, project: &str, sql: &str) -> Result<Vec<(String, u64)>, AuditError> {
    let bq = BigQuery::connect(config.project.as_deref().unwrap_or(project), config.location.clone(), &config.bigquery).await?;
    let rows = bq.query_rows(sql).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| match row.as_slice() {
            [Some(day), Some(n)] => Some((day.clone(), n.parse().ok()?)),
            _ => None,
        })
        .collect())
}

/// Adds another side's counts to the days; a day only that side has joins with 0 snapshot rows.
fn join(rows: &mut Vec<DayRow>, counted: Vec<(String, u64)>, set: impl Fn(&mut DayRow, u64)) {
    let mut by_day: BTreeMap<String, DayRow> = rows.drain(..).map(|row| (row.day.clone(), row)).collect();
    let sides_before = by_day.values().next().map(|r| (r.bigquery.is_some(), r.postgres.is_some()));
    for row in by_day.values_mut() {
        set(row, 0);
    }
    for (day, n) in counted {
        let row = by_day.entry(day.clone()).or_insert_with(|| {
            let (bigquery, postgres) = sides_before.unwrap_or_default();
            DayRow { day, snapshot: 0, bigquery: bigquery.then_some(0), postgres: postgres.then_some(0) }
        });
        set(row, n);
    }
    rows.extend(by_day.into_values());
}

/// The table's charted column: the `--time-column` naming it, else the first recorded
/// TIMESTAMP WITH TIME ZONE column, else TIMESTAMP, else DATE, in column order.
fn time_column<'a>(config: &ReportConfig, table: &'a TableManifest) -> Result<Option<(&'a ColumnMapping, &'a DayCounts)>, AuditError> {
    let recorded: Vec<(&ColumnMapping, &DayCounts)> = table
        .day_counts
        .iter()
        .filter_map(|counts| Some((&table.columns.iter().find(|c| c.mapping.bq_name == counts.column)?.mapping, counts)))
        .collect();
    let named = config.time_columns.iter().rev().find(|c| {
        c.table.as_ref().is_none_or(|pattern| match table.source_table() {
            Some(source) => pattern.names(&source),
            None => pattern.names_query(&table.name),
        })
    });
    if let Some(named) = named {
        let found = recorded.iter().find(|(m, _)| m.name == named.column || m.bq_name == named.column);
        return match (found, &named.table) {
            (Some(found), _) => Ok(Some(*found)),
            // A column named for every table may be missing from some.
            (None, None) if !recorded.is_empty() => Ok(preferred(&recorded)),
            (None, _) => Err(AuditError::UnknownTimeColumn {
                column: named.text.clone(),
                recorded: recorded.iter().map(|(m, _)| format!("{}.{}", table.name, m.bq_name)).collect::<Vec<_>>().join(", "),
            }),
        };
    }
    Ok(preferred(&recorded))
}

fn preferred<'a>(recorded: &[(&'a ColumnMapping, &'a DayCounts)]) -> Option<(&'a ColumnMapping, &'a DayCounts)> {
    let rank = |m: &ColumnMapping| match &m.arrow_type {
        DataType::Timestamp(_, Some(_)) => 0,
        DataType::Timestamp(_, None) => 1,
        _ => 2,
    };
    (0..3).find_map(|wanted| recorded.iter().find(|(m, _)| rank(m) == wanted).copied())
}

/// Where a table's rows are in BigQuery, as a load recorded it (or `--dataset` says).
#[derive(Debug, Clone, PartialEq, Eq)]
struct BigQueryTarget {
    project: String,
    dataset: String,
    table: String,
    /// Loaded with `--mode merge`: the table may hold rows outside the snapshot.
    merged: bool,
    /// Snapshot column → the table's column, where the load renamed one (`--column-map`).
    column_map: BTreeMap<String, String>,
}

impl BigQueryTarget {
    /// The table's name for a snapshot column.
    fn column<'a>(&'a self, snapshot_column: &'a str) -> &'a str {
        self.column_map.get(snapshot_column).map_or(snapshot_column, String::as_str)
    }
}

/// Where the table's rows are in BigQuery: `--dataset`, else the latest successful load of the
/// run that loaded it.
fn bigquery_target(config: &ReportConfig, table: &TableManifest, records: &[RunRecord]) -> Option<BigQueryTarget> {
    let loaded = records.iter().rev().filter(|r| r.command == RecordedCommand::Load && r.verdict == Verdict::Loaded).find_map(|r| {
        let loaded = r.tables.iter().find(|t| t.table == table.name)?;
        Some(BigQueryTarget {
            project: r.project.clone(),
            dataset: r.dataset.clone(),
            table: loaded.bq_table.clone(),
            merged: r.mode.as_deref() == Some("merge"),
            column_map: loaded.column_map.clone(),
        })
    });
    match (&config.dataset, loaded) {
        (Some(dataset), loaded) => Some(BigQueryTarget {
            project: config.project.clone().or_else(|| loaded.as_ref().map(|l| l.project.clone()))?,
            dataset: dataset.clone(),
            table: loaded.as_ref().map_or_else(|| table.bq_table.clone(), |l| l.table.clone()),
            merged: false,
            column_map: loaded.map(|l| l.column_map).unwrap_or_default(),
        }),
        (None, loaded) => loaded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::ColumnManifest;
    use crate::model::run_record::RecordedTable;
    use crate::model::types::{map_column, OutOfRange, PgColumn};

    fn table(columns: &[(&str, &str)]) -> TableManifest {
        let columns: Vec<ColumnManifest> = columns
            .iter()
            .map(|(name, pg_type)| ColumnManifest {
                mapping: map_column(&PgColumn::base(name, pg_type, -1), None, OutOfRange::Refuse).unwrap(),
                adjusted_rows: 0,
                aggregates: Default::default(),
            })
            .collect();
        let day_counts = columns.iter().skip(1).map(|c| DayCounts { column: c.mapping.bq_name.clone(), days: None }).collect();
        TableManifest {
            name: "public.events".into(),
            table: Some(crate::model::table_ref::TableRef::new("public", "events")),
            columns,
            day_counts,
            ..Default::default()
        }
    }

    fn config(time_columns: &[&str]) -> ReportConfig {
        ReportConfig {
            manifest_uri: String::new(),
            out: None,
            time_columns: time_columns.iter().map(|c| c.parse().unwrap()).collect(),
            source_url: None,
            project: None,
            dataset: None,
            location: None,
            bigquery: BigQueryOptions::default(),
            gcs: GcsOptions::default(),
        }
    }

    /// BigQuery is read where the latest successful load of the table put it, by the column its
    /// load renamed the snapshot's to; `--dataset` moves the dataset and keeps the rest.
    #[test]
    fn bigquery_is_counted_where_and_as_the_latest_load_put_the_table() {
        let t = table(&[("id", "int8"), ("at", "timestamptz")]);
        let load = |mode: &str, bq_table: &str, verdict: Verdict| {
            let mut record = RunRecord::now(RecordedCommand::Load, "p", "d", verdict);
            record.mode = Some(mode.into());
            let column_map = [("at".to_string(), "occurred_at".to_string())].into();
            record.tables.push(RecordedTable {
                table: "public.events".into(),
                bq_table: bq_table.into(),
                column_map,
                ..Default::default()
            });
            record
        };
        let records = [
            load("truncate", "events", Verdict::Loaded),
            load("merge", "app_events", Verdict::Loaded),
            load("append", "x", Verdict::Error),
        ];
        let target = bigquery_target(&config(&[]), &t, &records).unwrap();
        assert_eq!(
            (target.table.as_str(), target.merged, target.column("at"), target.column("id")),
            ("app_events", true, "occurred_at", "id")
        );
        let moved = bigquery_target(&ReportConfig { dataset: Some("other".into()), ..config(&[]) }, &t, &records).unwrap();
        assert_eq!(
            (moved.project.as_str(), moved.dataset.as_str(), moved.table.as_str(), moved.column("at")),
            ("p", "other", "app_events", "occurred_at")
        );
        assert_eq!(bigquery_target(&config(&[]), &t, &records[2..]), None, "a failed load put nothing anywhere");
    }

    /// With zone first, then without, then a date; `--time-column` wins, for its table or for
    /// all; one naming no recorded column of its table is refused with the columns it could name.
    #[test]
    fn the_charted_column_is_chosen_by_type_or_named() {
        let t = table(&[("id", "int8"), ("on_day", "date"), ("local_at", "timestamp"), ("at", "timestamptz")]);
        let chosen = |names: &[&str]| time_column(&config(names), &t).map(|c| c.map(|(m, _)| m.bq_name.clone()));
        assert_eq!(chosen(&[]).unwrap().as_deref(), Some("at"));
        assert_eq!(chosen(&["events.on_day"]).unwrap().as_deref(), Some("on_day"));
        assert_eq!(chosen(&["local_at"]).unwrap().as_deref(), Some("local_at"));
        assert_eq!(chosen(&["other.on_day"]).unwrap().as_deref(), Some("at"), "another table's column");
        assert_eq!(chosen(&["missing"]).unwrap().as_deref(), Some("at"), "a column named for every table may be missing from some");
        let refused = chosen(&["events.id"]).unwrap_err().to_string();
        assert!(refused.contains("events.id") && refused.contains("public.events.local_at"), "{refused}");
        assert!(time_column(&config(&[]), &table(&[("id", "int8")])).unwrap().is_none());
    }

    fn row(day: &str, snapshot: u64) -> DayRow {
        DayRow { day: day.into(), snapshot, bigquery: None, postgres: None }
    }

    /// A day BigQuery lacks counts 0 there; a day only BigQuery has joins with 0 snapshot rows;
    /// either differs, equal days do not.
    #[test]
    fn sides_join_by_day_and_differences_show_both_ways() {
        let mut rows = vec![row("2024-03-01", 2), row("2024-03-02", 1)];
        join(&mut rows, vec![("2024-03-01".into(), 2), ("2024-03-03".into(), 4)], |r, n| r.bigquery = Some(n));
        let shown: Vec<(&str, u64, Option<u64>, bool)> =
            rows.iter().map(|r| (r.day.as_str(), r.snapshot, r.bigquery, r.differs())).collect();
        assert_eq!(shown, [("2024-03-01", 2, Some(2), false), ("2024-03-02", 1, Some(0), true), ("2024-03-03", 0, Some(4), true)]);
        join(&mut rows, vec![("2024-03-01".into(), 2)], |r, n| r.postgres = Some(n));
        assert_eq!(rows[0].postgres, Some(2));
        assert_eq!(rows[2].postgres, Some(0));
    }
}

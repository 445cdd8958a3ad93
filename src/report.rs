//! What the binary prints: results on stdout (the report, or JSON with `--json`/`--format json`),
//! progress, logs and errors on stderr,
//! and the log subscriber that writes around the progress bars.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use pg2bq::cli::Progress;
use pg2bq::export::plan::{ExportPlan, TablePlan};
use pg2bq::load::{LoadMode, TableLoad};
use pg2bq::model::manifest::Manifest;
use pg2bq::model::progress::{ProgressCounter, ProgressReporter, UnitReport};
use pg2bq::{ExportOutcome, LoadOutcome};

/// The stage a bar belongs to: what its counters mean.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    Export,
    Load,
    Validate,
}

/// One progress bar per table on stderr. On a terminal the bars are redrawn in place; otherwise
/// (`--progress on` into a file or pipe) each running table gets a plain line every
/// [`PLAIN_EVERY`] and a last one when it is done. Log lines go through [`LogWriter`], which
/// clears the bars while a line is written.
pub struct ProgressBoard {
    multi: MultiProgress,
    terminal: bool,
    bars: Arc<Mutex<Vec<Bar>>>,
    stop: Arc<AtomicBool>,
    ticker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How often a running table's plain line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

struct Bar {
    bar: ProgressBar,
    counter: ProgressCounter,
    stage: Stage,
}

impl Bar {
    /// Copies the table's counters into the bar; an export is done when all its rows are.
    fn update(&self, terminal: bool) {
        if self.bar.is_finished() {
            return;
        }
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let counter = &self.counter;
        match self.stage {
            Stage::Export => {
                self.bar.set_position(load(&counter.rows));
                let retries = match load(&counter.retries) {
                    0 => String::new(),
                    n => format!(", {n} retried"),
                };
                self.bar.set_message(format!(
                    "{}/{} unit(s), {} running{retries}, {} read",
                    load(&counter.units),
                    counter.planned_units,
                    load(&counter.running_units),
                    HumanBytes(load(&counter.bytes))
                ));
                if load(&counter.units) >= counter.planned_units {
                    self.complete(terminal, true);
                }
            }
            Stage::Load => {
                self.bar.set_position(load(&counter.rows));
                self.bar.set_message(format!(
                    "{}/{} job(s), {}",
                    load(&counter.jobs),
                    counter.planned_jobs,
                    HumanBytes(load(&counter.bytes))
                ));
            }
            Stage::Validate => {
                self.bar.set_position(load(&counter.checks));
                self.bar.set_message(format!("{} failed", load(&counter.failed_checks)));
            }
        }
    }

    /// Leaves the bar's final state on screen (finished, or as it stopped), once.
    fn complete(&self, terminal: bool, succeeded: bool) {
        if self.bar.is_finished() {
            return;
        }
        if succeeded {
            self.bar.finish();
        } else {
            self.bar.abandon();
        }
        if !terminal {
            eprintln!("{}", self.plain_line(if succeeded { "done" } else { "stopped" }));
        }
    }

    /// `public.events: 5000/20000 rows, 1.2 MiB read, 2500 rows/s, ETA 6s`.
    fn plain_line(&self, state: &str) -> String {
        let bar = &self.bar;
        let timing = match (state, self.stage) {
            // Validate's number of checks is not known up front: no ETA.
            ("running", Stage::Validate) => format!("{} so far", HumanDuration(bar.elapsed())),
            ("running", _) => format!("ETA {}", HumanDuration(bar.eta())),
            _ => format!("{state} in {}", HumanDuration(bar.elapsed())),
        };
        match self.stage {
            Stage::Export | Stage::Load => {
                let rate = bar.position() as f64 / bar.elapsed().as_secs_f64().max(1e-3);
                format!(
                    "{}: {}/{} rows, {}, {rate:.0} rows/s, {timing}",
                    bar.prefix(),
                    bar.position(),
                    bar.length().unwrap_or(0),
                    bar.message()
                )
            }
            Stage::Validate => format!("{}: {} checks, {}, {timing}", bar.prefix(), bar.position(), bar.message()),
        }
    }
}

impl ProgressBoard {
    /// Bars on stderr: drawn in place when `terminal`, as plain lines otherwise.
    pub fn new(terminal: bool) -> Self {
        let target = if terminal { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let board = Self {
            multi: MultiProgress::with_draw_target(target),
            terminal,
            bars: Arc::default(),
            stop: Arc::default(),
            ticker: Mutex::new(None),
        };
        let (bars, stop) = (board.bars.clone(), board.stop.clone());
        *board.ticker.lock().expect("ticker lock") = Some(std::thread::spawn(move || {
            let tick = Duration::from_millis(100);
            let mut since_plain = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                since_plain += tick;
                for bar in bars.lock().expect("bars lock").iter() {
                    bar.update(terminal);
                    if !terminal && since_plain >= PLAIN_EVERY && !bar.bar.is_finished() {
                        eprintln!("{}", bar.plain_line("running"));
                    }
                }
                if since_plain >= PLAIN_EVERY {
                    since_plain = Duration::ZERO;
                }
                std::thread::sleep(tick);
            }
        }));
        board
    }

    /// The writer for log lines.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter { multi: Some(self.multi.clone()) }
    }

    /// A bar for a table the stage starts. Load and validate work through tables one at a time,
    /// so for them the tables before it are done; export runs its tables at once, and a table's
    /// bar is done when all its units are.
    pub fn add(&self, stage: Stage, table: &str, counter: &ProgressCounter) {
        let mut bars = self.bars.lock().expect("bars lock");
        for bar in bars.iter().filter(|b| !matches!(b.stage, Stage::Export)) {
            bar.update(self.terminal);
            bar.complete(self.terminal, true);
        }
        let bar = self.multi.add(new_bar(stage, counter).with_style(style(stage)));
        bar.set_prefix(table.to_string());
        if self.terminal {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        let bar = Bar { bar, counter: counter.clone(), stage };
        bar.update(self.terminal);
        bars.push(bar);
    }

    /// Leaves every bar's final state: done when the stage succeeded, as it stopped if not.
    pub fn finish(&self, succeeded: bool) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.lock().expect("ticker lock").take() {
            let _ = ticker.join();
        }
        for bar in self.bars.lock().expect("bars lock").iter() {
            bar.update(self.terminal);
            bar.complete(self.terminal, succeeded);
        }
    }
}

/// A bar sized by the rows planned; validate's has no length (finishing a bar moves it to its
/// length, which would reset the checks counted).
fn new_bar(stage: Stage, counter: &ProgressCounter) -> ProgressBar {
    match stage {
        Stage::Export | Stage::Load => ProgressBar::new(counter.planned_rows),
        Stage::Validate => ProgressBar::no_length(),
    }
}

fn style(stage: Stage) -> ProgressStyle {
    let template = match stage {
        Stage::Export | Stage::Load => "{prefix:32!} [{bar:24}] {pos}/{len} rows  {msg}  {rate}  ETA {eta}",
        Stage::Validate => "{prefix:32!} {spinner} {pos} checks, {msg}  {elapsed}",
    };
    ProgressStyle::with_template(template).expect("the progress templates are valid").progress_chars("=> ").with_key(
        "rate",
        |state: &ProgressState, out: &mut dyn std::fmt::Write| {
            let _ = write!(out, "{:.0} rows/s", state.per_sec());
        },
    )
}

/// stderr for log lines; with bars on screen, each line is written while they are cleared.
#[derive(Clone, Default)]
pub struct LogWriter {
    multi: Option<MultiProgress>,
}

impl Write for LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        match &self.multi {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(line)).map(|()| line.len()),
            None => std::io::stderr().write(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Pretty JSON on `out` (stdout), for `--json`.
fn write_json(out: &mut impl Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer_pretty(out, value).map_err(std::io::Error::from)
}

pub fn print_export(outcome: &ExportOutcome, json: bool) {
    let mut out = std::io::stdout().lock();
    let written = match (outcome, json) {
        (ExportOutcome::Planned(plan), true) => write_json(&mut out, plan),
        (ExportOutcome::Committed { manifest, manifest_uri, units }, true) => {
            write_json(&mut out, &committed_json(manifest, manifest_uri, units))
        }
        (ExportOutcome::Planned(plan), false) => out.write_all(plan_text(plan).as_bytes()),
        (ExportOutcome::Committed { manifest, manifest_uri, .. }, false) => {
            out.write_all(committed_text(manifest, manifest_uri).as_bytes())
        }
    };
    // A closed stdout (e.g. `| head`) is not an error.
    let _ = written.and_then(|()| writeln!(out));
}

/// `--json` after a committed export: the run, its manifest, each table's totals and a line
/// per unit (rows, bytes, seconds, attempts, snapshot; `resumed` when an earlier attempt of
/// the run recorded it).
fn committed_json(manifest: &Manifest, manifest_uri: &str, units: &[UnitReport]) -> serde_json::Value {
    serde_json::json!({
        "run_id": manifest.run_id,
        "manifest": manifest_uri,
        "mixed_snapshot": manifest.mixed_snapshot,
        "units": units,
        "tables": manifest.tables.iter().map(|t| serde_json::json!({
            "name": t.name,
            "rows": t.row_count,
            "files": t.files.len(),
            "bytes": t.files.iter().map(|f| f.bytes).sum::<u64>(),
        })).collect::<Vec<_>>(),
    })
}

/// Said wherever a mixed-snapshot run is reported.
const MIXED_SNAPSHOT_WARNING: &str = "warning: mixed snapshot: this run was resumed, so its units were read in more than one snapshot \
     (see the manifest's unit_snapshots); it is consistent only if the source did not change between them";

/// A committed export: one line per table.
fn committed_text(manifest: &Manifest, manifest_uri: &str) -> String {
    let mut text = format!("Committed run {} ({manifest_uri})\n", manifest.run_id);
    if manifest.mixed_snapshot {
        text.push_str(&format!("  {MIXED_SNAPSHOT_WARNING}\n"));
    }
    for t in &manifest.tables {
        let bytes: u64 = t.files.iter().map(|f| f.bytes).sum();
        text.push_str(&format!("  {:<32} {:>12} rows  {:>4} file(s)  {:>14} bytes\n", t.name, t.row_count, t.files.len(), bytes));
    }
    text
}

/// `--dry-run`: the destination, then each table's columns, partitions and notes.
fn plan_text(plan: &ExportPlan) -> String {
    let mut text = format!("Plan for run {} → {}\n", plan.run_id, plan.destination);
    for table in &plan.tables {
        text.push_str(&table_plan_text(table));
    }
    text
}

fn table_plan_text(table: &TablePlan) -> String {
    let mut text = format!(
        "\n{} → BigQuery table `{}`: {} rows, {} partition(s), ≥ {} file(s)\n",
        table.name,
        table.bq_table,
        table.row_count,
        table.partitions.len(),
        table.min_files
    );
    for column in &table.columns {
        let repeated = if column.repeated { " REPEATED" } else { "" };
        let note = column.note.as_deref().map(|n| format!("  ({n})")).unwrap_or_default();
        text.push_str(&format!(
            "  {:<24} {:<28} → {:<40} → {:?}{repeated}{note}\n",
            column.bq_name,
            column.pg_type,
            column.arrow_type.to_string(),
            column.bq_type
        ));
    }
    if let Some(tail) = &table.tail {
        let checked = match &tail.carried {
            None => "checked unchanged".to_string(),
            Some(c) => format!(
                "checked: carrying {} updated and {} inserted late by key, {} deleted to _deleted/keys.parquet",
                c.updated,
                c.keys.len() as u64 - c.updated,
                c.deleted
            ),
        };
        text.push_str(&format!(
            "  tail of run {}: rows where {} (the {} rows at or below it {checked})\n",
            tail.parent_run,
            tail.row_filter(),
            tail.rows_through
        ));
    }
    for partition in &table.partitions {
        text.push_str(&format!(
            "  partition {} [{}] {}: {} rows\n",
            partition.index, partition.method, partition.predicate, partition.rows
        ));
    }
    for n in &table.numeric_in_use {
        let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        text.push_str(&format!(
            "  numeric `{}` in use: up to {} integer digits, scale up to {}\n",
            n.column,
            show(n.max_integer_digits),
            show(n.max_scale)
        ));
    }
    for (column, rows) in &table.adjusted_rows {
        text.push_str(&format!("  note: {rows} row(s) of `{column}` will be adjusted by --out-of-range\n"));
    }
    text
}

pub fn print_load(outcome: &LoadOutcome, json: bool) {
    let mut out = std::io::stdout().lock();
    let written = match (outcome, json) {
        (LoadOutcome::Planned(plan), true) => write_json(&mut out, plan),
        (LoadOutcome::Loaded(report), true) => write_json(&mut out, report),
        (LoadOutcome::Planned(plan), false) => {
            let mut text = format!("Load plan for run {} → {}.{} ({:?})\n", plan.run_id, plan.project, plan.dataset, plan.mode);
            for table in &plan.tables {
                text.push_str(&table_load_text(table, plan.mode));
            }
            for problem in &plan.problems {
                text.push_str(&format!("\nrefused: {problem}\n"));
            }
            out.write_all(text.as_bytes())
        }
        (LoadOutcome::Loaded(report), false) => {
            let mut text = format!("Loaded run {} into {}.{}\n", report.run_id, report.project, report.dataset);
            for t in &report.tables {
                let again = match (t.done_before, t.reattached_jobs) {
                    (true, _) => " (done by an earlier run: checked only, nothing changed)".to_string(),
                    (false, 0) => String::new(),
                    (false, n) => format!(" ({n} job(s) re-attached)"),
                };
                text.push_str(&format!(
                    "  {:<32} {:>12} rows  {:>6.1} s  {} job(s){again}\n",
                    t.table_id,
                    t.rows,
                    t.seconds,
                    t.job_ids.len()
                ));
                text.push_str(&format!("  {:<32} {}\n", "", t.effect));
                if let Some(m) = &t.merged {
                    text.push_str(&format!(
                        "  {:<32} merged: {} inserted, {} already present ({} updated)\n",
                        "", m.inserted, m.already_present, m.updated
                    ));
                }
                if let Some(d) = &t.deleted {
                    text.push_str(&format!("  {:<32} deleted: {} row(s) by {} key(s) (--apply-deletes)\n", "", d.rows, d.keys));
                }
                for d in &t.defaults {
                    text.push_str(&format!(
                        "  {:<32} {}: {} NULL(s) replaced by {} (--default)\n",
                        "", d.column, d.replaced_nulls, d.value
                    ));
                }
                if !t.excluded_columns.is_empty() {
                    text.push_str(&format!("  {:<32} left out: {} (--exclude-column)\n", "", t.excluded_columns.join(", ")));
                }
            }
            out.write_all(text.as_bytes())
        }
    };
    let _ = written.and_then(|()| writeln!(out));
}

/// One table of a load plan: its columns (or, into an existing table or by merge, each
/// column's route), key, notes, layout, jobs and final statement.
fn table_load_text(table: &TableLoad, mode: LoadMode) -> String {
    let mut text = format!(
        "\n{} → {}: {} rows, {} bytes, {} load job(s) ({:.2}% of the daily per-table quota)\n",
        table.source,
        table.table_id,
        table.rows,
        table.bytes,
        table.load_jobs.len(),
        table.daily_quota_share * 100.0
    );
    if !table.effect.is_empty() {
        text.push_str(&format!("  {}\n", table.effect));
    }
    if table.into_existing || mode == LoadMode::Merge {
        for route in &table.routes {
            match &route.source {
                Some(source) => text.push_str(&format!("  {} ← {source}: {}\n", route.target, route.conversion)),
                None => text.push_str(&format!("  {}: {}\n", route.target, route.conversion)),
            }
        }
    } else {
        for field in &table.fields {
            text.push_str(&format!("  {:<24} {:<10} {}\n", field.name, field.field_type.sql_name(), field.mode));
        }
    }
    if !table.merge_key.is_empty() {
        text.push_str(&format!("  merge key: {}\n", table.merge_key.join(", ")));
    }
    for note in &table.notes {
        text.push_str(&format!("  note: {note}\n"));
    }
    if let Some(p) = &table.time_partitioning {
        text.push_str(&format!("  partitioned by {} ({:?})\n", p.field, p.unit));
    }
    if !table.clustering.is_empty() {
        text.push_str(&format!("  clustered by {}\n", table.clustering.join(", ")));
    }
    for job in &table.load_jobs {
        text.push_str(&format!(
            "  job {} → {} {}: {} file(s), {} bytes, {} rows\n",
            job.job_id,
            job.destination_table_id,
            job.write_disposition,
            job.uris.len(),
            job.bytes,
            job.rows
        ));
    }
    for job in table.finalize.iter().chain(&table.keep_keys) {
        text.push_str(&format!("  job {}: {}\n", job.job_id, job.sql));
    }
    if let Some(d) = &table.deletes {
        let job = &d.load_job;
        text.push_str(&format!("  job {} → {}: {} deleted key(s) from {}\n", job.job_id, job.destination_table_id, d.keys, job.files()));
        for job in [&d.keep_keys, &d.delete] {
            text.push_str(&format!("  job {}: {}\n", job.job_id, job.sql));
        }
    }
    text
}

/// One line per check: PASS/FAIL/SKIP, check, column, expected, actual, detail.
fn check_lines(checks: &[pg2bq::validate::Check], problems_only: bool) -> String {
    let clip = |t: &str| if t.chars().count() > 40 { format!("{}…", t.chars().take(39).collect::<String>()) } else { t.to_string() };
    let mut text = String::new();
    for c in checks.iter().filter(|c| !problems_only || !c.passed) {
        let detail = c.detail.as_deref().map(|d| format!("  ({d})")).unwrap_or_default();
        text.push_str(&format!(
            "  {}  {:<16} {:<20} expected {:<42} actual {}{detail}\n",
            c.status.label(),
            c.check,
            c.column.as_deref().unwrap_or("-"),
            clip(&c.expected),
            clip(&c.actual)
        ));
    }
    text
}

/// The rows a table's location found: counts, cost, then one line per listed row.
fn location_text(found: &pg2bq::validate::locate::RowLocation) -> String {
    let mut text = String::new();
    if found.ran {
        let bound = if found.complete { "" } else { "at least " };
        text.push_str(&format!(
            "  rows that differ, by {} ({} level(s), {} queries, {} bytes processed in BigQuery; {:.1} s in BigQuery, {:.1} s reading the files): {bound}{} missing in BigQuery, {bound}{} only in BigQuery, {bound}{} with other values\n",
            found.key.join(", "),
            found.levels,
            found.queries,
            found.bytes_processed,
            found.bigquery_seconds,
            found.files_seconds,
            found.missing,
            found.only_in_bigquery,
            found.differing
        ));
        for row in &found.rows {
            let line = format!("    {:<16} {}  {}", row.status.as_str(), row.key, row.columns.join(", "));
            text.push_str(&format!("{}\n", line.trim_end()));
        }
        let listed = found.rows.len() as u64;
        let total = found.missing + found.only_in_bigquery + found.differing;
        if listed < total {
            text.push_str(&format!("    … {} more (--locate-limit {listed})\n", total - listed));
        }
    }
    if let Some(note) = &found.note {
        text.push_str(&format!("  ({note})\n"));
    }
    text
}

/// The report per table and check; with `json`, the report as JSON instead. On stdout.
pub fn print_validation(report: &pg2bq::validate::ValidationReport, json: bool) {
    print_checked(&validation_text(report), json.then_some(report));
}

/// The human report: each table's checks, then the summary (with `validate --strict`, a
/// skipped check makes the report not passed).
fn validation_text(report: &pg2bq::validate::ValidationReport) -> String {
    let mut text = format!("Validation of run {} in {}.{}\n", report.run_id, report.project, report.dataset);
    if report.mixed_snapshot {
        text.push_str(&format!("{MIXED_SNAPSHOT_WARNING}\n"));
    }
    for table in &report.tables {
        let failed = table.checks.iter().filter(|c| c.failed()).count();
        let skipped = match table.skipped {
            0 => String::new(),
            n => format!(", {n} skipped"),
        };
        text.push_str(&format!("\n{} → {}: {} checks, {failed} failed{skipped}\n", table.table, table.bq_table, table.checks.len()));
        // Failed checks first, the others in their order.
        let (failing, others): (Vec<_>, Vec<_>) = table.checks.iter().cloned().partition(|c| c.failed());
        text.push_str(&check_lines(&[failing, others].concat(), false));
        text.push_str(&table.located.as_ref().map(location_text).unwrap_or_default());
    }
    if !report.probes.is_empty() {
        text.push_str("\nQuery probes\n");
        text.push_str(&check_lines(&report.probes, false));
    }
    let skipped = match report.skipped {
        0 => String::new(),
        n => format!(" {n} check(s) could not run (SKIP above, with the reason)."),
    };
    text.push_str(&match (report.dry_run, report.failed, report.skipped, report.passed) {
        (true, _, _, _) => "\nDry run: BigQuery's estimates only; nothing was compared.\n".to_string(),
        (false, 0, 0, _) => "\nAll checks passed.\n".to_string(),
        (false, 0, _, true) => format!("\nNo check failed.{skipped}\n"),
        (false, 0, _, false) => format!("\nNO CHECK FAILED, BUT WITH --strict A SKIPPED CHECK FAILS THE RUN:{skipped}\n"),
        (false, failed, _, _) => format!("\nSOME CHECKS FAILED: {failed} failed.{skipped}\n"),
    });
    text
}

pub fn print_verification(report: &pg2bq::verify::VerifyReport, json: bool) {
    let mut text = format!("Verification of run {}: {} file(s) checked\n", report.run_id, report.files_checked);
    text.push_str(&check_lines(&report.problems, true));
    text.push_str(if report.passed { "All files intact.\n" } else { "THE SNAPSHOT IS NOT INTACT.\n" });
    print_checked(&text, json.then_some(report));
}

/// `pg2bq work`: what this worker did; with `--json` the outcome as JSON. On stdout.
pub fn print_work(outcome: &pg2bq::export::sharded::worker::WorkOutcome, json: bool) {
    let mut text = format!(
        "Worker {} of {} (attempt {}), run {}: {} unit(s) exported now, {} recorded before, of {} in its share\n",
        outcome.worker,
        outcome.workers,
        outcome.attempt,
        outcome.run_id,
        outcome.units.len(),
        outcome.recorded_before,
        outcome.share
    );
    if outcome.removed_files > 0 {
        text.push_str(&format!("  removed {} file(s) an earlier attempt left for units it had not recorded\n", outcome.removed_files));
    }
    for unit in &outcome.units {
        text.push_str(&format!("  {:<32} unit {:>4} {:>12} rows {:>14} bytes\n", unit.table, unit.unit, unit.rows, unit.bytes));
    }
    print_checked(&text, json.then_some(outcome));
}

/// `pg2bq report`: where the report is, and what it found.
pub fn print_report(outcome: &pg2bq::audit::report::ReportOutcome, json: bool) {
    let files = if outcome.files_intact { "files intact" } else { "FILES NOT INTACT" };
    let days = match outcome.differing_days {
        0 => "no day differs".to_string(),
        n => format!("{n} day(s) differ"),
    };
    let text = format!(
        "Report of run {}: {} table(s), {} record(s), {files}, {days}\n{}\n",
        outcome.run_id, outcome.tables, outcome.records, outcome.report
    );
    print_checked(&text, json.then_some(outcome));
}

/// `pg2bq external`: the DDL (run, or with `--dry-run` to run) and the views written.
pub fn print_external(outcome: &pg2bq::audit::external::ExternalOutcome, json: bool) {
    let mut text = String::new();
    for ddl in &outcome.ddl {
        text.push_str(&format!("{ddl};\n\n"));
    }
    match outcome.dry_run {
        true => text.push_str(&format!("Dry run: {} external table(s) would be created; nothing was written.\n", outcome.ddl.len())),
        false => outcome.created.iter().for_each(|t| text.push_str(&format!("Created external table {t}\n"))),
    }
    if let Some(path) = &outcome.duckdb {
        let verb = if outcome.dry_run { "would write" } else { "wrote" };
        text.push_str(&format!("DuckDB views: {verb} {path} (run it with: duckdb -init {path})\n"));
    }
    print_checked(&text, json.then_some(outcome));
}

/// `pg2bq runs`: one block per run, newest first.
pub fn print_runs(runs: &[pg2bq::audit::runs::RunListing], json: bool) {
    let mut text = String::new();
    for run in runs {
        text.push_str(&format!(
            "{}  {}  {} table(s), {} rows, {} bytes in {} object(s)  started {}\n",
            run.run_id,
            run.state.as_str(),
            run.tables.len(),
            run.rows,
            run.bytes,
            run.objects,
            run.started_at.as_deref().unwrap_or("-")
        ));
        if !run.tables.is_empty() {
            text.push_str(&format!("    tables: {}\n", run.tables.join(", ")));
        }
        if let Some(parent) = &run.parent {
            text.push_str(&format!("    tail of: {parent}\n"));
        }
        if let Some(holder) = &run.claimed_by {
            text.push_str(&format!("    claimed by {holder}\n"));
        }
        if let Some(error) = &run.given_up {
            text.push_str(&format!("    given up: {error}\n"));
        }
        if !run.children.is_empty() {
            text.push_str(&format!("    tails: {}\n", run.children.join(", ")));
        }
        let loads = run.loads.iter().map(|r| ("load", "into", r));
        let mut records: Vec<_> = loads.chain(run.validations.iter().map(|r| ("validate", "in", r))).collect();
        records.sort_by(|a, b| a.2.recorded_at.cmp(&b.2.recorded_at));
        for (what, place, r) in records {
            let mode = r.mode.as_ref().map(|m| format!(" ({m})")).unwrap_or_default();
            text.push_str(&format!("    {} {what} {place} {}.{}{mode}: {}\n", r.recorded_at, r.project, r.dataset, r.verdict));
        }
    }
    if runs.is_empty() {
        text.push_str("No runs.\n");
    }
    print_checked(&text, json.then_some(&runs));
}

/// A report on stdout: its text, or with `json` the report as JSON.
fn print_checked(text: &str, json: Option<&impl serde::Serialize>) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not an error.
    let _ = match json {
        Some(report) => write_json(&mut out, report).and_then(|()| writeln!(out)),
        None => out.write_all(text.as_bytes()),
    };
}

/// `error: …` then one `Caused by:` line per source.
pub fn print_error(error: &pg2bq::Error) {
    let chain = pg2bq::model::error_chain(error);
    let mut text = format!("error: {}\n", chain[0]);
    for cause in &chain[1..] {
        text.push_str(&format!("  Caused by: {cause}\n"));
    }
    eprint!("{text}");
}

/// Where logs and progress go: the bars (when shown) and the log subscriber writing around them.
pub struct Output {
    board: Option<Arc<ProgressBoard>>,
}

impl Output {
    /// Installs the log subscriber on stderr, drawing bars unless `progress` says otherwise.
    pub fn start(progress: Progress, verbose: u8) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let board = match progress {
            Progress::On => true,
            Progress::Off => false,
            Progress::Auto => terminal,
        }
        .then(|| Arc::new(ProgressBoard::new(terminal)));
        let log_writer = board.as_ref().map(|board| board.log_writer()).unwrap_or_default();
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_filter(verbose)));
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(move || log_writer.clone()).with_ansi(terminal).init();
        Self { board }
    }

    /// A bar per table of `stage`, when bars are shown.
    pub fn reporter(&self, stage: Stage) -> Option<Box<ProgressReporter>> {
        let board = self.board.clone()?;
        Some(Box::new(move |table: &str, counter: &ProgressCounter| board.add(stage, table, counter)))
    }

    /// Draws the bars' final state before anything else is printed.
    pub fn finish(&self, succeeded: bool) {
        if let Some(board) = &self.board {
            board.finish(succeeded);
        }
    }
}

/// Without RUST_LOG: INFO from pg2bq and warnings from its dependencies; `-v` adds pg2bq's
/// DEBUG lines (per batch, per query) and the dependencies' INFO; `-vv` pg2bq's TRACE (SQL,
/// every check) and the dependencies' DEBUG.
fn default_log_filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "pg2bq=info,warn",
        1 => "pg2bq=debug,info",
        _ => "pg2bq=trace,debug",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pg2bq::model::progress::TableProgress;

    fn bar(stage: Stage, counter: &ProgressCounter) -> Bar {
        let bar = new_bar(stage, counter).with_prefix("public.t");
        bar.set_draw_target(ProgressDrawTarget::hidden());
        Bar { bar, counter: counter.clone(), stage }
    }

    #[test]
    fn an_export_line_counts_units_done_running_and_retried_and_is_done_with_its_last_unit() {
        let (rows, units, running_units, retries) = (10.into(), 1.into(), 2.into(), 1.into());
        let counter =
            Arc::new(TableProgress { planned_rows: 10, planned_units: 3, rows, units, running_units, retries, ..TableProgress::default() });
        let export = bar(Stage::Export, &counter);
        export.update(false);
        let line = export.plain_line("running");
        assert!(line.starts_with("public.t: 10/10 rows, 1/3 unit(s), 2 running, 1 retried, 0 B read, "), "{line}");
        assert!(!export.bar.is_finished(), "all rows counted, but two units are not in yet");
        counter.units.store(3, Ordering::Relaxed);
        counter.running_units.store(0, Ordering::Relaxed);
        export.update(false);
        assert!(export.bar.is_finished());
        let line = export.plain_line("done");
        assert!(
            line.starts_with("public.t: 10/10 rows, 3/3 unit(s), 0 running, 1 retried, 0 B read, ") && line.contains(" rows/s, done in "),
            "{line}"
        );
    }

    #[test]
    fn plain_lines_show_each_stages_counters() {
        let counter = Arc::new(TableProgress { planned_rows: 10, planned_jobs: 2, ..TableProgress::default() });
        counter.rows.store(4, Ordering::Relaxed);
        counter.jobs.store(1, Ordering::Relaxed);
        counter.bytes.store(2048, Ordering::Relaxed);
        let load = bar(Stage::Load, &counter);
        load.update(false);
        let line = load.plain_line("running");
        assert!(line.starts_with("public.t: 4/10 rows, 1/2 job(s), 2.00 KiB, ") && line.contains(" rows/s, ETA "), "{line}");
        counter.checks.store(7, Ordering::Relaxed);
        counter.failed_checks.store(1, Ordering::Relaxed);
        let validate = bar(Stage::Validate, &counter);
        validate.update(false);
        let line = validate.plain_line("running");
        assert!(line.starts_with("public.t: 7 checks, 1 failed, ") && line.ends_with(" so far"), "{line}");
        validate.complete(false, true);
        let line = validate.plain_line("done");
        assert!(line.starts_with("public.t: 7 checks, 1 failed, done in "), "{line}");
    }
}

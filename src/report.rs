//! What the binary prints: results on stdout (JSON with `--json`), progress and errors on stderr.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pg2bq::export::ProgressCounter;
use pg2bq::{ExportOutcome, LoadOutcome};

/// Prints a table's row count on stderr every second until it is complete.
pub fn spawn_progress(table: &str, total_rows: u64, counter: &ProgressCounter) {
    let (table, counter) = (table.to_string(), counter.clone());
    tokio::spawn(async move {
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let rows = counter.load(Ordering::Relaxed);
            let rate = rows as f64 / started.elapsed().as_secs_f64();
            let percent = if total_rows == 0 { 100.0 } else { rows as f64 * 100.0 / total_rows as f64 };
            eprint!("\r{table}: {rows}/{total_rows} rows ({percent:.0}%), {rate:.0} rows/s   ");
            if rows >= total_rows {
                eprintln!();
                return;
            }
        }
    });
}

/// Pretty JSON on `out` (stdout), for `--json`.
fn write_json(out: &mut impl Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer_pretty(out, value).map_err(std::io::Error::from)
}

pub fn print_export(outcome: &ExportOutcome, json: bool) {
    let mut out = std::io::stdout().lock();
    let written = match (outcome, json) {
        (ExportOutcome::Planned(plan), true) => write_json(&mut out, plan),
        (ExportOutcome::Committed { manifest, manifest_uri }, true) => {
            let summary = serde_json::json!({
                "run_id": manifest.run_id,
                "manifest": manifest_uri,
                "tables": manifest.tables.iter().map(|t| serde_json::json!({
                    "name": t.name,
                    "rows": t.row_count,
                    "files": t.files.len(),
                    "bytes": t.files.iter().map(|f| f.bytes).sum::<u64>(),
                })).collect::<Vec<_>>(),
            });
            write_json(&mut out, &summary)
        }
        (ExportOutcome::Planned(plan), false) => {
            let mut text = format!("Plan for run {} → {}\n", plan.run_id, plan.destination);
            for table in &plan.tables {
                text.push_str(&format!(
                    "\n{} → BigQuery table `{}`: {} rows, {} partition(s), ≥ {} file(s)\n",
                    table.name,
                    table.bq_table,
                    table.row_count,
                    table.partitions.len(),
                    table.min_files
                ));
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
            }
            out.write_all(text.as_bytes())
        }
        (ExportOutcome::Committed { manifest, manifest_uri }, false) => {
            let mut text = format!("Committed run {} ({manifest_uri})\n", manifest.run_id);
            for t in &manifest.tables {
                let bytes: u64 = t.files.iter().map(|f| f.bytes).sum();
                text.push_str(&format!("  {:<32} {:>12} rows  {:>4} file(s)  {:>14} bytes\n", t.name, t.row_count, t.files.len(), bytes));
            }
            out.write_all(text.as_bytes())
        }
    };
    // A closed stdout (e.g. `| head`) is not an error.
    let _ = written.and_then(|()| writeln!(out));
}

pub fn print_load(outcome: &LoadOutcome, json: bool) {
    let mut out = std::io::stdout().lock();
    let written = match (outcome, json) {
        (LoadOutcome::Planned(plan), true) => write_json(&mut out, plan),
        (LoadOutcome::Loaded(report), true) => write_json(&mut out, report),
        (LoadOutcome::Planned(plan), false) => {
            let mut text = format!("Load plan for run {} → {}.{} ({:?})\n", plan.run_id, plan.project, plan.dataset, plan.mode);
            for table in &plan.tables {
                text.push_str(&format!(
                    "\n{} → {}: {} rows, {} bytes, {} load job(s) ({:.2}% of the daily per-table quota)\n",
                    table.source,
                    table.table_id,
                    table.rows,
                    table.bytes,
                    table.load_jobs.len(),
                    table.daily_quota_share * 100.0
                ));
                for field in &table.fields {
                    text.push_str(&format!("  {:<24} {:<10} {}\n", field.name, field.field_type, field.mode));
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
                if let Some(finalize) = &table.finalize {
                    text.push_str(&format!("  job {}: {}\n", finalize.job_id, finalize.sql));
                }
            }
            out.write_all(text.as_bytes())
        }
        (LoadOutcome::Loaded(report), false) => {
            let mut text = format!("Loaded run {} into {}.{}\n", report.run_id, report.project, report.dataset);
            for t in &report.tables {
                let again = if t.reattached_jobs > 0 { format!(" ({} job(s) re-attached)", t.reattached_jobs) } else { String::new() };
                text.push_str(&format!(
                    "  {:<32} {:>12} rows  {:>6.1} s  {} job(s){again}\n",
                    t.table_id,
                    t.rows,
                    t.seconds,
                    t.job_ids.len()
                ));
            }
            out.write_all(text.as_bytes())
        }
    };
    let _ = written.and_then(|()| writeln!(out));
}

/// One line per check: PASS/FAIL, check, column, expected, actual, detail.
fn check_lines(checks: &[pg2bq::validate::Check], failed_only: bool) -> String {
    let clip = |t: &str| if t.chars().count() > 40 { format!("{}…", t.chars().take(39).collect::<String>()) } else { t.to_string() };
    let mut text = String::new();
    for c in checks.iter().filter(|c| !failed_only || !c.passed) {
        let status = if c.passed { "PASS" } else { "FAIL" };
        let detail = c.detail.as_deref().map(|d| format!("  ({d})")).unwrap_or_default();
        text.push_str(&format!(
            "  {status}  {:<16} {:<20} expected {:<42} actual {}{detail}\n",
            c.check,
            c.column.as_deref().unwrap_or("-"),
            clip(&c.expected),
            clip(&c.actual)
        ));
    }
    text
}

/// The table per table and check on stderr; JSON on stdout with `--json`.
pub fn print_validation(report: &pg2bq::validate::ValidationReport, json: bool) {
    let mut text = format!("Validation of run {} in {}.{}\n", report.run_id, report.project, report.dataset);
    for table in &report.tables {
        let failed = table.checks.iter().filter(|c| !c.passed).count();
        text.push_str(&format!("\n{} → {}: {} checks, {failed} failed\n", table.table, table.bq_table, table.checks.len()));
        text.push_str(&check_lines(&table.checks, false));
    }
    if !report.probes.is_empty() {
        text.push_str("\nQuery probes\n");
        text.push_str(&check_lines(&report.probes, false));
    }
    text.push_str(if report.passed { "\nAll checks passed.\n" } else { "\nSOME CHECKS FAILED.\n" });
    eprint!("{text}");
    if json {
        let mut out = std::io::stdout().lock();
        let _ = write_json(&mut out, report).and_then(|()| writeln!(out));
    }
}

pub fn print_verification(report: &pg2bq::validate::verify::VerifyReport, json: bool) {
    let mut text = format!("Verification of run {}: {} file(s) checked\n", report.run_id, report.files_checked);
    text.push_str(&check_lines(&report.problems, true));
    text.push_str(if report.passed { "All files intact.\n" } else { "THE SNAPSHOT IS NOT INTACT.\n" });
    eprint!("{text}");
    if json {
        let mut out = std::io::stdout().lock();
        let _ = write_json(&mut out, report).and_then(|()| writeln!(out));
    }
}

/// `error: …` then one `Caused by:` line per source.
pub fn print_error(error: &pg2bq::Error) {
    let chain = pg2bq::error_chain(error);
    let mut text = format!("error: {}\n", chain[0]);
    for cause in &chain[1..] {
        text.push_str(&format!("  Caused by: {cause}\n"));
    }
    eprint!("{text}");
}

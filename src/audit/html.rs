//! The run's report as one self-contained HTML page: inline CSS and SVG, no script, and a
//! Content-Security-Policy that forbids the browser any request, so it reads the same offline
//! in any browser years later. Elements carry `data-*` attributes (rows, days, counts) so a
//! test, or an auditor's script, can read the figures back from the DOM.

use std::fmt::Write;

use arrow::datatypes::DataType;

use crate::audit::contents::{DayRow, RunReport, TableDays};
use crate::model::days::format_day;
use crate::model::manifest::{Manifest, TableManifest};
use crate::model::run_record::{RecordedTable, RunRecord};

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}\
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:2em}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#176f2c}.bad{color:#b00020;font-weight:bold}tr.differs td{background:#fde7ea}code{font-size:.9em}\
dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em}dt{font-weight:bold}details{margin:.5em 0}\
svg{background:#fafafa;border:1px solid #ddd}.legend span{margin-right:1.5em}";

/// The page for `report`.
pub fn render(report: &RunReport) -> String {
    let manifest = &report.manifest;
    let mut page = String::with_capacity(64 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <title>pg2bq run {id}</title><style>{STYLE}</style></head><body>\n<h1>pg2bq run <code>{id}</code></h1>\n",
        id = escape(&manifest.run_id)
    );
    page.push_str(&run_section(report));
    for (table, days) in manifest.tables.iter().zip(&report.days) {
        page.push_str(&table_section(table, days));
    }
    page.push_str(&records_section(&report.records));
    let _ = writeln!(
        page,
        "<p><small>Written by pg2bq {} at {}.</small></p></body></html>",
        env!("CARGO_PKG_VERSION"),
        escape(&report.generated_at)
    );
    page
}

fn run_section(report: &RunReport) -> String {
    let m = &report.manifest;
    let files = match report.files.intact {
        true => format!(
            "<span class=\"ok\" id=\"files-intact\">intact</span>: {} files match their size and CRC32C",
            report.files.files_checked
        ),
        false => format!(
            "<span class=\"bad\" id=\"files-intact\">NOT intact</span><ul>{}</ul>",
            report.files.problems.iter().map(|p| format!("<li>{}</li>", escape(p))).collect::<String>()
        ),
    };
    let source = source_shown(m);
    let rows = [
        ("Source", escape(&source)),
        ("Server", escape(&m.source.server_version)),
        ("Snapshot", format!("<code>{}</code> (txid {})", escape(&snapshot_id(m)), escape(&m.source.txid_snapshot))),
        ("WAL position", escape(m.source.wal_lsn.as_deref().unwrap_or("not recorded"))),
        ("Started", escape(&m.started_at)),
        ("Committed", escape(&m.completed_at)),
        ("Tool", format!("{} {}", escape(&m.tool), escape(&m.tool_version))),
        ("Destination", format!("<code>{}</code>", escape(&m.destination))),
        ("Manifest", format!("<code>{}</code>", escape(&report.manifest_uri))),
        ("Manifest SHA-256", format!("<code id=\"manifest-sha256\">{}</code>", report.manifest_sha256)),
        ("Files (verify)", files),
    ];
    let mut out = String::from("<h2>The run</h2><dl>");
    for (name, value) in rows {
        let _ = write!(out, "<dt>{name}</dt><dd>{value}</dd>");
    }
    let _ = write!(out, "</dl>{}", summary_table(m));
    out
}

/// Host, port and database of the recorded source URL: never its user or password.
fn source_shown(m: &Manifest) -> String {
    match url::Url::parse(&m.source.url) {
        Ok(url) => format!(
            "{}{} / {}",
            url.host_str().unwrap_or("(local socket)"),
            url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            url.path().trim_start_matches('/')
        ),
        Err(_) => "(not recorded)".into(),
    }
}

fn snapshot_id(m: &Manifest) -> String {
    let ids: Vec<&str> = m.unit_snapshots.iter().map(|u| u.snapshot_id.as_str()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    match unique.as_slice() {
        [] => "one snapshot".into(),
        [one] => one.to_string(),
        many => format!("{} snapshots (a resumed run): {}", many.len(), many.join(", ")),
    }
}

fn summary_table(m: &Manifest) -> String {
    let mut out = String::from(
        "<table id=\"tables\"><tr><th>table</th><th>BigQuery table</th><th>rows</th><th>files</th><th>bytes</th><th>set aside</th></tr>",
    );
    for t in &m.tables {
        let set_aside = t.rejected.as_ref().map_or(0, |r| r.reasons.values().sum::<u64>());
        let _ = write!(
            out,
            "<tr data-table=\"{name}\" data-rows=\"{rows}\"><td>{name}</td><td>{bq}</td><td class=\"n\">{rows}</td><td class=\"n\">{files}</td><td class=\"n\">{bytes}</td><td class=\"n\">{set_aside}</td></tr>",
            name = escape(&t.name),
            bq = escape(&t.bq_table),
            rows = t.row_count,
            files = t.files.len(),
            bytes = t.files.iter().map(|f| f.bytes).sum::<u64>(),
        );
    }
    out.push_str("</table>");
    out
}

fn table_section(t: &TableManifest, days: &TableDays) -> String {
    let mut out = format!(
        "<section class=\"table\" data-table=\"{name}\"><h2>{name}</h2><p><b class=\"rows\">{rows}</b> rows → <code>{bq}</code>{tail}</p>",
        name = escape(&t.name),
        rows = t.row_count,
        bq = escape(&t.bq_table),
        tail = t.tail.as_ref().map(|_| " (a tail: the rows since its parent run)").unwrap_or_default(),
    );
    out.push_str(&days_section(days));
    out.push_str("<details><summary>Columns: type routes and aggregates</summary><table><tr><th>column</th><th>Postgres</th><th>BigQuery</th><th>nulls</th><th>min</th><th>max</th><th>sum</th></tr>");
    for c in &t.columns {
        let a = &c.aggregates;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(&c.mapping.bq_name),
            escape(&c.mapping.pg_type),
            if c.mapping.repeated { "ARRAY<" } else { "" },
            c.mapping.bq_type.sql_name().to_string() + if c.mapping.repeated { ">" } else { "" },
            a.null_count,
            escape(&shown_bound(&c.mapping.arrow_type, a.min.as_deref())),
            escape(&shown_bound(&c.mapping.arrow_type, a.max.as_deref())),
            escape(a.sum.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table></details><details><summary>Files (CRC32C)</summary><table><tr><th>file</th><th>rows</th><th>bytes</th><th>CRC32C</th></tr>");
    for f in &t.files {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><code>{}</code></td></tr>",
            escape(&f.path),
            f.rows,
            f.bytes,
            escape(&f.crc32c)
        );
    }
    out.push_str("</table></details>");
    if let Some(rejected) = &t.rejected {
        out.push_str("<p>Rows set aside (<code>--on-bad-value quarantine</code>), per reason:</p><table>");
        for (reason, rows) in &rejected.reasons {
            let _ = write!(out, "<tr><td>{}</td><td class=\"n\">{rows}</td></tr>", escape(reason));
        }
        let _ = write!(out, "</table><p>in <code>{}</code></p>", escape(&rejected.file.path));
    }
    out.push_str("</section>\n");
    out
}

/// A recorded min or max as a reader expects it: dates and timestamps as calendar text (the
/// manifest keeps them as days and microseconds since 1970), the rest as recorded.
fn shown_bound(data_type: &DataType, recorded: Option<&str>) -> String {
    let Some(text) = recorded else { return String::new() };
    let shown = match data_type {
        DataType::Date32 => text.parse().ok().map(format_day),
        DataType::Timestamp(_, zone) => text.parse().ok().and_then(chrono::DateTime::from_timestamp_micros).map(|t| {
            let shown = t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            if zone.is_some() {
                shown + " UTC"
            } else {
                shown
            }
        }),
        _ => None,
    };
    shown.unwrap_or_else(|| text.to_string())
}

fn days_section(days: &TableDays) -> String {
    let Some(column) = &days.column else {
        return days.notes.iter().map(|n| format!("<p class=\"note\">{}</p>", escape(n))).collect();
    };
    let differing = days.differing_days();
    let mut out = format!(
        "<h3>Rows per day of <code>{}</code></h3><p class=\"{}\" data-differing-days=\"{differing}\">{}</p>",
        escape(column),
        if differing == 0 { "ok" } else { "bad" },
        match (differing, &days.bigquery_table) {
            (0, Some(bq)) => format!("Every day holds as many rows in <code>{}</code> as in the snapshot.", escape(bq)),
            (0, None) => "The snapshot's days (nothing counted beside them).".into(),
            (n, _) => format!("{n} day(s) differ from the snapshot, highlighted below."),
        }
    );
    out.extend(days.notes.iter().map(|n| format!("<p class=\"note\">{}</p>", escape(n))));
    out.push_str(&chart(&days.rows));
    let has = |side: fn(&DayRow) -> Option<u64>| days.rows.iter().any(|r| side(r).is_some());
    let (bigquery, postgres) = (has(|r| r.bigquery), has(|r| r.postgres));
    let header = format!(
        "<tr><th>day</th><th>snapshot</th>{}{}</tr>",
        if bigquery { "<th>BigQuery</th>" } else { "" },
        if postgres { "<th>Postgres now</th>" } else { "" }
    );
    let row_html = |r: &DayRow| {
        let cell = |v: Option<u64>| v.map(|v| format!("<td class=\"n\">{v}</td>")).unwrap_or_default();
        format!(
            "<tr{}><td>{}</td><td class=\"n\">{}</td>{}{}</tr>",
            if r.differs() { " class=\"differs\"" } else { "" },
            escape(&r.day),
            r.snapshot,
            if bigquery { cell(r.bigquery.or(Some(0))) } else { String::new() },
            if postgres { cell(r.postgres.or(Some(0))) } else { String::new() },
        )
    };
    if differing > 0 {
        out.push_str("<table class=\"differing-days\">");
        out.push_str(&header);
        days.rows.iter().filter(|r| r.differs()).for_each(|r| out.push_str(&row_html(r)));
        out.push_str("</table>");
    }
    let _ = write!(out, "<details><summary>All {} days</summary><table class=\"days\">{header}", days.rows.len());
    days.rows.iter().for_each(|r| out.push_str(&row_html(r)));
    out.push_str("</table></details>");
    out
}

/// The days as an SVG line chart: the snapshot's counts as a line, BigQuery's and Postgres's
/// as lines over it, one `<g class="day">` per day with its counts, red where a side differs.
fn chart(rows: &[DayRow]) -> String {
    let (width, height, pad) = (1000.0_f64, 240.0_f64, 40.0_f64);
    let top = rows.iter().flat_map(|r| [Some(r.snapshot), r.bigquery, r.postgres]).flatten().max().unwrap_or(0).max(1) as f64;
    let x = |i: usize| pad + (width - 2.0 * pad) * if rows.len() > 1 { i as f64 / (rows.len() - 1) as f64 } else { 0.5 };
    let y = |n: u64| height - pad - (height - 2.0 * pad) * n as f64 / top;
    let line = |side: &dyn Fn(&DayRow) -> Option<u64>, class: &str, color: &str, dash: &str| {
        let points: Vec<String> = rows.iter().enumerate().filter_map(|(i, r)| Some(format!("{:.1},{:.1}", x(i), y(side(r)?)))).collect();
        match points.is_empty() {
            true => String::new(),
            false => format!(
                "<polyline class=\"{class}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" {dash} points=\"{}\"/>",
                points.join(" ")
            ),
        }
    };
    let mut svg = format!("<svg class=\"days-chart\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\">");
    let _ = write!(
        svg,
        "<text x=\"{pad}\" y=\"{:.0}\" font-size=\"11\">{top} rows</text><text x=\"{pad}\" y=\"{:.0}\" font-size=\"11\">{}</text><text x=\"{:.0}\" y=\"{:.0}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
        pad - 8.0,
        height - 12.0,
        escape(rows.first().map_or("", |r| r.day.as_str())),
        width - pad,
        height - 12.0,
        escape(rows.last().map_or("", |r| r.day.as_str())),
    );
    svg.push_str(&line(&|r| Some(r.snapshot), "snapshot", "#1f5fbf", ""));
    svg.push_str(&line(&|r| r.bigquery, "bigquery", "#e08a00", "stroke-dasharray=\"5,3\""));
    svg.push_str(&line(&|r| r.postgres, "postgres", "#6a3d9a", "stroke-dasharray=\"2,2\""));
    for (i, r) in rows.iter().enumerate() {
        let attr = |name: &str, v: Option<u64>| v.map(|v| format!(" data-{name}=\"{v}\"")).unwrap_or_default();
        let (color, band) = match r.differs() {
            true => (
                "#b00020",
                format!(
                    "<rect x=\"{:.1}\" y=\"{pad}\" width=\"3\" height=\"{:.0}\" fill=\"#b00020\" opacity=\"0.25\"/>",
                    x(i) - 1.5,
                    height - 2.0 * pad
                ),
            ),
            false => ("#1f5fbf", String::new()),
        };
        let _ = write!(
            svg,
            "<g class=\"day{}\" data-day=\"{}\" data-snapshot=\"{}\"{}{}>{band}<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"><title>{}: {}</title></circle></g>",
            if r.differs() { " differs" } else { "" },
            escape(&r.day),
            r.snapshot,
            attr("bigquery", r.bigquery),
            attr("postgres", r.postgres),
            x(i),
            y(r.snapshot),
            escape(&r.day),
            counts_title(r),
        );
    }
    svg.push_str("</svg><div class=\"legend\"><span style=\"color:#1f5fbf\">— snapshot</span><span style=\"color:#e08a00\">- - BigQuery</span><span style=\"color:#6a3d9a\">··· Postgres now</span><span style=\"color:#b00020\">● differs</span></div>");
    svg
}

fn counts_title(r: &DayRow) -> String {
    let mut text = format!("snapshot {}", r.snapshot);
    if let Some(n) = r.bigquery {
        let _ = write!(text, ", BigQuery {n}");
    }
    if let Some(n) = r.postgres {
        let _ = write!(text, ", Postgres {n}");
    }
    text
}

fn records_section(records: &[RunRecord]) -> String {
    let mut out = format!("<h2>Loads and validations ({})</h2>", records.len());
    if records.is_empty() {
        out.push_str("<p>None recorded beside this run.</p>");
    }
    for r in records {
        let verdict = format!("{:?}", r.verdict).to_lowercase();
        let class = if matches!(r.verdict, crate::model::run_record::Verdict::Failed | crate::model::run_record::Verdict::Error) {
            "bad"
        } else {
            "ok"
        };
        let _ = write!(
            out,
            "<section class=\"record\" data-command=\"{cmd}\" data-verdict=\"{verdict}\"><h3>{cmd} into <code>{p}.{d}</code>{mode}: <span class=\"{class}\">{verdict}</span></h3><p>{at}, pg2bq {v}{counts}</p>",
            cmd = r.command.as_str(),
            p = escape(&r.project),
            d = escape(&r.dataset),
            mode = r.mode.as_ref().map(|m| format!(" ({})", escape(m))).unwrap_or_default(),
            at = escape(&r.recorded_at),
            v = escape(&r.tool_version),
            counts = match r.command {
                crate::model::run_record::RecordedCommand::Validate => format!("; {} failed, {} skipped", r.failed, r.skipped),
                crate::model::run_record::RecordedCommand::Load => String::new(),
            },
        );
        if let Some(error) = &r.error {
            let _ = write!(out, "<p class=\"bad\">{}</p>", escape(error));
        }
        r.tables.iter().for_each(|t| out.push_str(&recorded_table(t)));
        out.push_str("</section>");
    }
    out
}

/// A recorded table: a load's rows and effect, or a validation's checks, failing ones first,
/// and the rows it located.
fn recorded_table(t: &RecordedTable) -> String {
    let mut out = format!("<p><b>{}</b> → <code>{}</code>", escape(&t.table), escape(&t.bq_table));
    if let Some(rows) = t.rows {
        let _ = write!(out, ": {rows} rows");
    }
    if let Some(effect) = &t.effect {
        let _ = write!(out, " ({})", escape(effect));
    }
    out.push_str("</p>");
    if !t.checks.is_empty() {
        let (failing, others): (Vec<_>, Vec<_>) = t.checks.iter().partition(|c| c.failed());
        let _ = write!(out, "<details{}><summary>{} checks, {} failed</summary><table><tr><th>status</th><th>check</th><th>column</th><th>expected</th><th>actual</th><th>detail</th></tr>", if failing.is_empty() { "" } else { " open" }, t.checks.len(), failing.len());
        for c in failing.into_iter().chain(others) {
            let _ = write!(
                out,
                "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if c.failed() { " class=\"differs\"" } else { "" },
                escape(&c.status.to_uppercase()),
                escape(&c.check),
                escape(c.column.as_deref().unwrap_or("")),
                escape(&c.expected),
                escape(&c.actual),
                escape(c.detail.as_deref().unwrap_or("")),
            );
        }
        out.push_str("</table></details>");
    }
    if let Some(l) = &t.located {
        let _ = write!(
            out,
            "<p>Rows located by <code>{}</code>: {} missing, {} only in BigQuery, {} with other values{}</p><table>",
            escape(&l.key.join(", ")),
            l.missing,
            l.only_in_bigquery,
            l.differing,
            if l.complete { "" } else { " (at least)" }
        );
        for row in &l.rows {
            let _ = write!(
                out,
                "<tr class=\"located\"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(&row.key),
                escape(&row.status),
                escape(&row.columns.join(", "))
            );
        }
        out.push_str("</table>");
    }
    out
}

/// Text for HTML, in an element or a quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::contents::FilesCheck;

    #[test]
    fn dates_and_timestamps_show_as_calendar_text() {
        let zoned = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(shown_bound(&zoned, Some("1709251200000001")), "2024-03-01 00:00:00.000001 UTC");
        assert_eq!(shown_bound(&DataType::Date32, Some("-1")), "1969-12-31");
        assert_eq!(shown_bound(&DataType::Int64, Some("42")), "42");
        assert_eq!(shown_bound(&DataType::Date32, None), "");
    }

    /// Names, reasons and values from the database reach the page as text, never as markup,
    /// and the page asks the browser for nothing outside itself.
    #[test]
    fn database_text_is_escaped_and_the_page_requests_nothing() {
        let mut manifest = Manifest { run_id: "r1".into(), ..Default::default() };
        manifest.source.url = "postgres://app:s3cret@db.internal:5432/app?sslmode=require".into();
        let table = TableManifest { name: "public.<script>x</script>".into(), row_count: 3, ..Default::default() };
        manifest.tables.push(table);
        let days = TableDays {
            table: "t".into(),
            column: Some("at\"x".into()),
            rows: vec![
                DayRow { day: "2024-03-01".into(), snapshot: 2, bigquery: Some(2), postgres: None },
                DayRow { day: "2024-03-02".into(), snapshot: 1, bigquery: Some(0), postgres: None },
            ],
            ..Default::default()
        };
        let report = RunReport {
            manifest_uri: "gs://b/r1/manifest.json".into(),
            manifest_sha256: "ab".into(),
            manifest,
            files: FilesCheck { intact: true, files_checked: 0, problems: Vec::new() },
            records: Vec::new(),
            days: vec![days],
            generated_at: "now".into(),
        };
        let page = render(&report);
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("public.&lt;script&gt;x&lt;/script&gt;"));
        assert!(!page.contains("s3cret") && !page.contains("app:"), "no credentials, no user");
        assert!(page.contains("db.internal:5432 / app"));
        assert!(page.contains("default-src 'none'"));
        assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("src="));
        assert_eq!(page.matches("<g class=\"day").count(), 2);
        assert_eq!(page.matches("<g class=\"day differs\" data-day=\"2024-03-02\"").count(), 1);
    }
}

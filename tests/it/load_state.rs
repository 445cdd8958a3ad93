//! What `load` and `verify` do in each state a table, a run and a manifest can be in
//! (docs/load.md, "What a re-run does in each state"): a run is never loaded into a table twice,
//! an edited manifest is refused before any job, a failing store is an error rather than a
//! missing file, a copied run loads from its new place, and NULLABLE table columns take the
//! snapshot's REQUIRED ones.

use crate::support::*;
use crate::{emulators, skip_unless};

const ROWS: i64 = 300;

async fn fixture(s: &Emulators) -> TestDb {
    TestDb::new(
        &s.pg_url,
        "CREATE TABLE a (id int PRIMARY KEY, v text NOT NULL); INSERT INTO a SELECT i, md5(i::text) FROM generate_series(1, 300) i;
         CREATE TABLE j (id int PRIMARY KEY, doc jsonb); INSERT INTO j SELECT i, jsonb_build_object('i', i) FROM generate_series(1, 300) i;",
    )
    .await
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `COUNT(*)` and `COUNT(DISTINCT id)` of a loaded table.
async fn counts(s: &Emulators, table: &str) -> (i64, Option<String>) {
    let distinct = s.python_rows(&format!("SELECT COUNT(DISTINCT id) FROM `{}.{}.{table}`", s.project, s.dataset));
    (s.count(table).await, distinct[0][0].clone())
}

#[tokio::test]
async fn a_run_already_in_a_table_is_never_appended_again() {
    let s = emulators!();
    let db = fixture(&s).await;
    // The staged path (JSON) first: there the old guard let truncate-then-append double the rows.
    for name in ["j", "a"] {
        let manifest = s.export(&[db.table(name)], &[]);
        let table = format!("{}__{name}", db.schema);
        // Truncate, then append the same run: refused, the table keeps one copy.
        let truncate = s.load(&manifest, &[]);
        assert!(truncate.status.success(), "{name}: {}", stderr(&truncate));
        let append = s.load(&manifest, &["--mode", "append"]);
        assert_eq!(append.status.code(), Some(2), "{name}: {}", stderr(&append));
        assert!(stderr(&append).contains(&format!("was already loaded into table `{table}`")), "{}", stderr(&append));
        assert_eq!(counts(&s, &table).await, (ROWS, Some(ROWS.to_string())), "{name} after truncate, append");

        // Append, append again: the second attaches to the first's jobs; then truncate: exactly the snapshot.
        let args = |mode: &'static str| ["--mode", mode, "--table-prefix", "ap_"];
        let appended = format!("ap_{table}");
        let first = s.load(&manifest, &args("append"));
        assert!(first.status.success(), "{name}: {}", stderr(&first));
        let second = s.load(&manifest, &args("append"));
        assert!(second.status.success(), "{name}: {}", stderr(&second));
        assert_eq!(s.count(&appended).await, ROWS, "{name} after append, append");
        let truncate = s.load(&manifest, &args("truncate"));
        assert!(truncate.status.success(), "{name}: {}", stderr(&truncate));
        assert_eq!(counts(&s, &appended).await, (ROWS, Some(ROWS.to_string())), "{name} after append, append, truncate");
    }
    // A direct truncate load that crashed before its label: its job is found by id, append refused.
    let manifest = s.export(&[db.table("a")], &[]);
    let table = format!("unlabelled_{}__a", db.schema);
    let truncate = s.load(&manifest, &["--table-prefix", "unlabelled_"]);
    assert!(truncate.status.success(), "{}", stderr(&truncate));
    let url = format!("{}/bigquery/v2/projects/{}/datasets/{}/tables/{table}", s.bq_host, s.project, s.dataset);
    let unlabel =
        reqwest::Client::new().patch(url).json(&serde_json::json!({ "labels": { "pg2bq_run_run1": null } })).send().await.unwrap();
    assert!(unlabel.status().is_success(), "{}", unlabel.text().await.unwrap());
    let labels = s.bigquery().await.table(&s.dataset, &table).await.unwrap().unwrap()["labels"].clone();
    assert!(labels.get("pg2bq_run_run1").is_none(), "the label is gone: {labels}");
    let append = s.load(&manifest, &["--mode", "append", "--table-prefix", "unlabelled_"]);
    assert_eq!(append.status.code(), Some(2), "{}", stderr(&append));
    assert!(stderr(&append).contains(&format!("was already loaded into table `{table}`")), "{}", stderr(&append));
    assert_eq!(s.count(&table).await, ROWS, "after an unlabelled truncate, append");
    db.drop().await;
}

/// Rewrites the committed manifest on fake-gcs with `change` applied to its JSON.
async fn edit_manifest(s: &Emulators, manifest: &str, change: impl FnOnce(&mut serde_json::Value)) {
    let name = s.object_name(manifest);
    let mut value: serde_json::Value = serde_json::from_slice(&s.download(name).await).unwrap();
    change(&mut value);
    s.upload(name, serde_json::to_vec_pretty(&value).unwrap()).await;
}

#[tokio::test]
async fn an_edited_manifest_fails_verify_and_load_before_any_job() {
    let s = emulators!();
    let db = fixture(&s).await;
    let manifest = s.export(&[db.table("a")], &[]);
    let original = s.download(s.object_name(&manifest)).await;
    let table = format!("{}__a", db.schema);
    let edits = [
        ("row_count", "/tables/0/row_count", ROWS + 1),
        ("columns[v].aggregates.value_count", "/tables/0/columns/1/aggregates/value_count", ROWS - 1),
    ];
    for (field, pointer, value) in edits {
        edit_manifest(&s, &manifest, |m| *m.pointer_mut(pointer).unwrap() = value.into()).await;
        let named = format!("tables[{}].{field}", db.table("a"));
        let verify = pg2bq(&["verify", "--manifest", &manifest]);
        assert_eq!(verify.status.code(), Some(1), "{field}: {}", stderr(&verify));
        let report = String::from_utf8_lossy(&verify.stdout);
        assert!(report.contains(&named) && report.contains("THE SNAPSHOT IS NOT INTACT"), "{report}");
        let load = s.load(&manifest, &[]);
        assert_eq!(load.status.code(), Some(2), "{field}: {}", stderr(&load));
        assert!(stderr(&load).contains(&named) && stderr(&load).contains("nothing was submitted"), "{}", stderr(&load));
        assert!(s.bigquery().await.table(&s.dataset, &table).await.unwrap().is_none(), "{field}: no job may have created the table");
        s.upload(s.object_name(&manifest), original.clone()).await;
    }
    let verify = pg2bq(&["verify", "--manifest", &manifest]);
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
    db.drop().await;
}

/// A GCS front that forwards everything to fake-gcs but answers 403 (as an expired or
/// revoked credential would) to every read of a Parquet file's data.
async fn forbidding_parquet_reads(upstream: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let (client, upstream) = (client.clone(), upstream.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = if target.contains(".parquet") && target.contains("alt=media") {
                    (403, br#"{"error":{"code":403,"message":"Permission denied"}}"#.to_vec())
                } else {
                    let response = client.get(format!("{upstream}{target}")).send().await.unwrap();
                    (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn verify_reports_a_failing_store_as_an_error_not_a_missing_file() {
    let s = emulators!();
    let db = fixture(&s).await;
    let manifest = s.export(&[db.table("a")], &[]);
    let front = forbidding_parquet_reads(s.gcs_host.clone()).await;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pg2bq"))
            .args(["verify", "--manifest", &manifest])
            .env("STORAGE_EMULATOR_HOST", front)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot read") && stderr.contains("403") && !stderr.contains("NOT INTACT"), "{stderr}");
    db.drop().await;
}

#[tokio::test]
async fn a_run_copied_to_another_prefix_loads_from_there() {
    let s = emulators!();
    let db = fixture(&s).await;
    let manifest = s.export(&[db.table("j"), db.table("a")], &[]);
    let old_run = s.object_name(&manifest).trim_end_matches("manifest.json").to_string();
    let new_run = format!("moved-{:08x}/run1/", rand::random::<u32>());
    for name in s.object_names(&old_run).await {
        let data = s.download(&name).await;
        s.upload(&name.replacen(&old_run, &new_run, 1), data).await;
        s.delete_object(&name).await;
    }
    let moved = format!("gs://{}/{new_run}manifest.json", s.bucket);
    let out = s.load(&moved, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["a", "j"] {
        assert_eq!(counts(&s, &format!("{}__{name}", db.schema)).await, (ROWS, Some(ROWS.to_string())), "{name}");
    }
    db.drop().await;
}

#[tokio::test]
async fn nullable_table_columns_take_the_snapshots_required_columns() {
    let s = emulators!();
    let db = fixture(&s).await;
    let manifest = s.export(&[db.table("a")], &[]);
    let table = format!("{}__a", db.schema);
    // Twice in truncate mode: the emulator leaves the table's columns NULLABLE after a load.
    for attempt in 1..=2 {
        let out = s.load(&manifest, &[]);
        assert!(out.status.success(), "load {attempt}: {}", stderr(&out));
        assert_eq!(s.count(&table).await, ROWS, "load {attempt}");
    }
    // A table an application created with NULLABLE columns: loaded, its modes kept.
    let bq = s.bigquery().await;
    let created = format!("app_{table}");
    use pg2bq::gcp::schema::{table_resource, Field, FieldMode};
    use pg2bq::model::types::BigQueryType;
    let nullable = |name: &str, field_type| Field { name: name.into(), field_type, mode: FieldMode::Nullable, description: None };
    let fields = [nullable("id", BigQueryType::Int64), nullable("v", BigQueryType::String)];
    bq.create_table(&s.dataset, &created, &table_resource(&s.project, &s.dataset, &created, &fields, None, &[])).await.unwrap();
    for attempt in 1..=2 {
        let out = s.load(&manifest, &["--table-prefix", "app_", "--replace-existing-rows"]);
        assert!(out.status.success(), "load {attempt} into a NULLABLE table: {}", stderr(&out));
        assert_eq!(counts(&s, &created).await, (ROWS, Some(ROWS.to_string())), "load {attempt} into a NULLABLE table");
    }
    let schema = bq.table(&s.dataset, &created).await.unwrap().unwrap()["schema"]["fields"].clone();
    let modes: Vec<&str> = schema.as_array().unwrap().iter().map(|f| f["mode"].as_str().unwrap_or("NULLABLE")).collect();
    assert_eq!(modes, ["NULLABLE", "NULLABLE"], "{schema}");
    db.drop().await;
}

/// A load killed at a seeded random point, then re-run, in one mode into a fresh table.
struct KillTrial {
    table: &'static str,
    mode: &'static str,
    delay_ms: u64,
}

/// `kill -9` of `load` at 20 seeded random points across a measured load, for a table that
/// goes through staging (JSON) and one loaded directly, in truncate mode and in append mode
/// (into an empty table); then a re-run. Every table must end as exactly the snapshot: all ids,
/// each once.
#[tokio::test]
async fn killed_loads_rerun_to_exactly_the_snapshot_at_20_seeded_points() {
    use rand::{Rng, SeedableRng};
    use std::time::{Duration, Instant};
    const SEED: u64 = 20261127;
    // Small: the emulator's FARM_FINGERPRINT, run on the staged JSON, takes ~1 ms a value.
    const TRIAL_ROWS: i64 = 200;
    let s = emulators!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE kj (id int PRIMARY KEY, doc jsonb); INSERT INTO kj SELECT i, jsonb_build_object('i', i) FROM generate_series(1, 200) i;
         CREATE TABLE kp (id int PRIMARY KEY, v text); INSERT INTO kp SELECT i, md5(i::text) FROM generate_series(1, 200) i;",
    )
    .await;
    let sizes = ["--file-size", "16KiB", "--row-group-size", "16KiB"];
    let manifests = [("kj", s.export(&[db.table("kj")], &sizes)), ("kp", s.export(&[db.table("kp")], &sizes))];
    let manifest_of = |table: &str| manifests.iter().find(|(t, _)| *t == table).map(|(_, m)| m.clone()).unwrap();
    // A load's duration, per table, measured here (the emulator's speed varies with the machine).
    let mut duration_ms = std::collections::HashMap::new();
    for (table, manifest) in &manifests {
        let started = Instant::now();
        let out = s.load(manifest, &["--table-prefix", "measure_"]);
        assert!(out.status.success(), "{}", stderr(&out));
        duration_ms.insert(*table, started.elapsed().as_millis() as u64);
        eprintln!("measured {table}: {} ms", duration_ms[table]);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let trials: Vec<KillTrial> = (0..20)
        .map(|i| {
            let table = ["kj", "kp"][i % 2];
            KillTrial { table, mode: ["truncate", "append"][(i / 2) % 2], delay_ms: rng.gen_range(0..duration_ms[table].max(1)) }
        })
        .collect();
    let mut failures = Vec::new();
    let (mut reattached, mut refused) = (0, 0);
    for (index, trial) in trials.iter().enumerate() {
        let trial_started = Instant::now();
        let prefix = format!("kill{index:02}_");
        let args = ["--mode", trial.mode, "--table-prefix", &prefix];
        let manifest = manifest_of(trial.table);
        let mut child =
            s.load_command(&manifest, &args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(trial.delay_ms));
        let _ = child.kill();
        let killed = child.wait_with_output().unwrap();
        // The emulator registers a query job only when it is done, so a final statement the
        // killed run sent may still be running: a re-run would not attach to it (NOTES.md). Wait
        // for it, briefly, when the killed run got that far.
        let table_id = format!("{prefix}{}__{}", db.schema, trial.table);
        if trial.table == "kj" && String::from_utf8_lossy(&killed.stderr).contains("Load job done") {
            let finalize = format!("pg2bq_run1_{}_{table_id}_{}_finalize", s.dataset, trial.mode);
            let deadline = Instant::now() + Duration::from_secs(4);
            // A fresh client each time: the emulator closes idle connections.
            while !s.bigquery().await.succeeded_job(&finalize).await.unwrap() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let rerun = s.load(&manifest, &[&args[..], &["--json"]].concat());
        // An append the killed run had finished and labelled is refused (docs/load.md); the
        // table must still hold exactly one copy.
        let finished_before = trial.mode == "append" && stderr(&rerun).contains("was already appended to table");
        if !rerun.status.success() && !finished_before {
            failures.push(format!(
                "trial {index} ({} {}, killed at {} ms): re-run failed: {}",
                trial.table,
                trial.mode,
                trial.delay_ms,
                stderr(&rerun)
            ));
            continue;
        }
        refused += usize::from(finished_before);
        if let Ok(report) = serde_json::from_slice::<serde_json::Value>(&rerun.stdout) {
            reattached += report["tables"][0]["reattached_jobs"].as_u64().unwrap_or(0);
        }
        let sql = format!("SELECT COUNT(*), COUNT(DISTINCT id), MIN(id), MAX(id) FROM `{}.{}.{table_id}`", s.project, s.dataset);
        let row = s.bigquery().await.query_one_row(&sql).await.unwrap();
        let figures: Vec<i64> = row.iter().map(|v| v.as_deref().and_then(|t| t.parse().ok()).unwrap_or(-1)).collect();
        eprintln!(
            "trial {index}: {} {} killed at {} ms, {:.1} s",
            trial.table,
            trial.mode,
            trial.delay_ms,
            trial_started.elapsed().as_secs_f64()
        );
        // N rows, N distinct ids, all within 1..=N: exactly Postgres' ids, each once.
        if figures != [TRIAL_ROWS, TRIAL_ROWS, 1, TRIAL_ROWS] {
            failures.push(format!(
                "trial {index} ({} {}, killed at {} ms): COUNT(*), COUNT(DISTINCT id), MIN(id), MAX(id) = {figures:?}",
                trial.table, trial.mode, trial.delay_ms
            ));
        }
    }
    let converged = trials.len() - failures.len();
    crate::support::report_line(&format!(
        "load kill trials: {converged}/{} converged (seed {SEED}; staged and direct, truncate and append; kills at {:?} ms; {reattached} jobs re-attached on re-run, {refused} finished appends refused)",
        trials.len(),
        trials.iter().map(|t| t.delay_ms).collect::<Vec<_>>()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    db.drop().await;
}

/// Two loads of one run started together: the one whose table was created under it by the other
/// stops with a clear error before loading anything, and the table holds exactly one copy.
#[tokio::test]
async fn a_table_created_under_a_concurrent_load_stops_it_cleanly() {
    let s = emulators!();
    let proxy = crate::fault_proxy!();
    let db = fixture(&s).await;
    let manifest = s.export(&[db.table("a")], &[]);
    let table = format!("{}__a", db.schema);
    // The first load's table creation waits 5 s before reaching BigQuery; the second creates the
    // table meanwhile.
    let create = format!("/datasets/{}/tables$", s.dataset);
    proxy.set(serde_json::json!({ "rules": [{ "upstream": "bq", "method": "POST", "path": create, "fraction": 1.0, "limit": 1, "faults": [{ "delay_ms": 5000 }] }] })).await;
    let first = s
        .load_command(&manifest, &["--mode", "append"])
        .env("BIGQUERY_EMULATOR_HOST", &proxy.bq_host)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let second = s.load(&manifest, &["--mode", "append"]);
    let first = first.wait_with_output().unwrap();
    proxy.set(serde_json::json!({})).await;
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(first.status.code(), Some(2), "{}", stderr(&first));
    assert!(stderr(&first).contains("was created by someone else while this load started"), "{}", stderr(&first));
    assert_eq!(counts(&s, &table).await, (ROWS, Some(ROWS.to_string())));
    db.drop().await;
}

//! Through scripts/fault_proxy.py: BigQuery answers that are unfinished, paged or failing, and
//! GCS uploads cut by 5xx and connection resets, give the results direct answers give — or a
//! clear failure with nothing committed, never a wrong or partial result.

use std::process::Command;

use bytes::Bytes;
use pg2bq::storage::gcs::{GcsClient, GcsOptions};
use serde_json::{json, Value};

use crate::support::*;
use crate::{emulators, fault_proxy, skip_unless};

const TABLE: &str = "CREATE TABLE f (id int PRIMARY KEY, label text, n numeric(10,2), doc jsonb);
    INSERT INTO f SELECT i, 'label ' || i, i * 1.25, jsonb_build_object('i', i) FROM generate_series(1, 30) i;";

/// Every query answers `jobComplete: false` 3 times, then 2 rows a page; 15% of BigQuery calls
/// meet a fault: rate limit, server error, a 0.2 s delay, a connection reset before the emulator
/// sees the request, or after it acted on it (the answer is lost).
pub(crate) fn failing_bigquery(seed: u64) -> Value {
    json!({
        "seed": seed,
        "bq_async_polls": 3,
        "bq_page_rows": 2,
        "rules": [{ "upstream": "bq", "fraction": 0.15,
                    "faults": [{ "status": 503 }, { "status": 429 }, { "delay_ms": 200 }, { "reset": "before" }, { "reset": "after" }] }],
    })
}

#[tokio::test]
async fn load_and_validate_through_unfinished_paged_and_failing_answers_give_the_direct_verdicts() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let db = TestDb::new(&s.pg_url, TABLE).await;
    let manifest = s.export(&[db.table("f")], &[]);
    let table = format!("{}__f", db.schema);

    proxy.set(failing_bigquery(1)).await;
    let out = s.load_command(&manifest, &[]).env("BIGQUERY_EMULATOR_HOST", &proxy.bq_host).output().unwrap();
    assert!(out.status.success(), "load through the proxy: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s.count(&table).await, 30);
    // Sampling compares 10 rows with Postgres: multi-row answers, 2 rows a page.
    let (code, report, stderr) = s.validate_through(&proxy.bq_host, &manifest, &["--source", &s.pg_url]);
    assert_eq!(code, Some(0), "clean run through the proxy: {stderr}\n{report:#}");

    s.python_rows(&format!("UPDATE `{}.{}.{table}` SET label = 'changed' WHERE id = 3", s.project, s.dataset));
    let (direct_code, direct_report, _) = s.validate_through(&s.bq_host, &manifest, &[]);
    let (code, report, stderr) = s.validate_through(&proxy.bq_host, &manifest, &[]);
    assert_eq!((direct_code, code), (Some(1), Some(1)), "{stderr}");
    assert_eq!(failed_checks(&report), failed_checks(&direct_report));
    let named = |(check, column): &(String, String)| column == "label" || check == "row_fingerprint";
    assert!(failed_checks(&report).iter().all(named) && failed_checks(&report).len() > 1, "{report:#}");

    let stats = proxy.stats().await;
    assert!(stats["injected"][0].as_u64().unwrap() > 0, "no fault was injected: {stats}");
    eprintln!("validate through the proxy (last run): {stats}");
    db.drop().await;
}

/// Regression: validate read an unfinished `jobs.query` answer as "no row" and exited 2.
#[tokio::test]
async fn validate_waits_for_unfinished_query_answers() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let db = TestDb::new(&s.pg_url, TABLE).await;
    let manifest = s.export(&[db.table("f")], &[]);
    let out = s.load(&manifest, &[]);
    assert!(out.status.success(), "load: {}", String::from_utf8_lossy(&out.stderr));
    proxy.set(json!({ "bq_async_polls": 3 })).await;
    let (code, report, stderr) = s.validate_through(&proxy.bq_host, &manifest, &[]);
    assert_eq!(code, Some(0), "{stderr}\n{report:#}");
    assert!(failed_checks(&report).is_empty());
    db.drop().await;
}

/// Regression: the SAFE.PARSE_JSON pre-check passed when its answer was unfinished, so JSON
/// BigQuery cannot hold slipped into the table.
#[tokio::test]
async fn json_pre_check_refuses_unrepresentable_json_when_answers_are_unfinished() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE j (id int PRIMARY KEY, doc jsonb); INSERT INTO j VALUES (1, '{\"n\": 1}'), (2, '{\"n\": 12345678901234567890123}');",
    )
    .await;
    let manifest = s.export(&[db.table("j")], &[]);
    proxy.set(json!({ "bq_async_polls": 3, "bq_page_rows": 2 })).await;
    let out = s.load_command(&manifest, &[]).env("BIGQUERY_EMULATOR_HOST", &proxy.bq_host).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("column `doc`: 1 row(s) hold JSON that BigQuery's JSON type cannot store exactly"), "{stderr}");
    assert!(s.bigquery().await.table(&s.dataset, &format!("{}__j", db.schema)).await.unwrap().is_none(), "no table");
    db.drop().await;
}

/// 5xx and connection resets (before the request reaches GCS, after GCS acted on it, and
/// halfway through its answer) on `fraction` of the requests matching `path`.
pub(crate) fn failing_uploads(seed: u64, path: &str, fraction: f64) -> Value {
    json!({
        "seed": seed,
        "rules": [{ "upstream": "gcs", "path": path, "fraction": fraction,
                    "faults": [{ "status": 503 }, { "status": 500 }, { "reset": "before" }, { "reset": "after" }, { "reset": "mid_body" }] }],
    })
}

/// A resumable upload of several chunks, with a fault on half of its chunk requests, resumes
/// from the range the session persisted and stores exactly the bytes sent.
#[tokio::test]
async fn resumable_uploads_resume_from_the_persisted_range() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let through_proxy =
        GcsClient::new(&s.bucket, &GcsOptions { emulator_host: Some(proxy.gcs_host.clone()), application_credentials: None }).unwrap();
    let direct = GcsClient::new(&s.bucket, &GcsOptions { emulator_host: Some(s.gcs_host.clone()), application_credentials: None }).unwrap();
    let data: Vec<u8> = (0..4 * 256 * 1024 + 100).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    for seed in 1..=3 {
        let object = format!("resume-{:08x}/part.bin", rand::random::<u32>());
        let session = through_proxy.start_upload(&object).await.unwrap();
        proxy.set(failing_uploads(seed, "upload_id=", 0.5)).await;
        let chunks: Vec<&[u8]> = data.chunks(256 * 1024).collect();
        let mut offset = 0u64;
        let mut stored = None;
        for (index, chunk) in chunks.iter().enumerate() {
            let total = (index + 1 == chunks.len()).then_some(data.len() as u64);
            stored = through_proxy.upload_chunk(&session, &object, offset, Bytes::copy_from_slice(chunk), total).await.unwrap();
            offset += chunk.len() as u64;
        }
        let stats = proxy.stats().await;
        proxy.set(json!({})).await;
        assert!(stats["injected"][0].as_u64().unwrap() > 0, "seed {seed}: no fault injected");
        let meta = stored.expect("the last chunk returns the object");
        assert_eq!(
            (meta.size, meta.crc32c.as_deref()),
            (data.len() as u64, Some(pg2bq::storage::store::crc32c_base64(crc32c::crc32c(&data)).as_str()))
        );
        assert_eq!(direct.get(&object).await.unwrap().as_ref(), &data[..], "seed {seed}");
        eprintln!("seed {seed}: {stats}");
    }
}

/// An export to gs:// with 5xx and resets on 20% of its upload requests, over several seeds:
/// every run either commits files whose CRC32C match and that pyarrow reads back exactly, or
/// fails with exit 2 and no manifest. With retries, every run commits.
#[tokio::test]
async fn exports_through_failing_uploads_commit_intact_files_or_nothing() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let python = skip_unless!("PG2BQ_TEST_PYTHON");
    let db = TestDb::new(
        &s.pg_url,
        "CREATE TABLE u (id int PRIMARY KEY, body text); INSERT INTO u SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 6000) i;",
    )
    .await;
    let direct = GcsClient::new(&s.bucket, &GcsOptions { emulator_host: Some(s.gcs_host.clone()), application_credentials: None }).unwrap();
    let seeds = 1..=5u64;
    let mut outcomes = Vec::new();
    for seed in seeds.clone() {
        let prefix = format!("faults-{:08x}", rand::random::<u32>());
        let dest = format!("gs://{}/{prefix}", s.bucket);
        proxy.set(failing_uploads(seed, "^/upload/", 0.2)).await;
        let out = Command::new(env!("CARGO_BIN_EXE_pg2bq"))
            .args(["export", "--source", &s.pg_url, "--dest", &dest, "--run-id", "run1", "--progress", "off", "--table", &db.table("u")])
            .args(["--file-size", "16KiB", "--row-group-size", "16KiB", "--batch-rows", "500", "--partitions", "2"])
            .env("STORAGE_EMULATOR_HOST", &proxy.gcs_host)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stats = proxy.stats().await;
        proxy.set(json!({})).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let manifest = direct.head(&format!("{prefix}/run1/manifest.json")).await.unwrap();
        match out.status.code() {
            Some(0) => {
                assert!(manifest.is_some(), "seed {seed}: exit 0 without a manifest");
                let verify = pg2bq(&["verify", "--manifest", &format!("{dest}/run1/manifest.json")]);
                assert!(verify.status.success(), "seed {seed}: verify: {}", String::from_utf8_lossy(&verify.stderr));
                let dir = tempfile::tempdir().unwrap();
                for object in direct.list(&format!("{prefix}/run1/")).await.unwrap().iter().filter(|o| o.name.ends_with(".parquet")) {
                    let path = dir.path().join(object.name.replace('/', "_"));
                    std::fs::write(path, direct.get(&object.name).await.unwrap()).unwrap();
                }
                let ids: Vec<String> = read_with_pyarrow(&python, dir.path())["id"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                assert_eq!(ids, (1..=6000).map(|i| i.to_string()).collect::<Vec<_>>(), "seed {seed}: rows read back");
            }
            Some(2) => assert!(manifest.is_none(), "seed {seed}: exit 2 but a manifest was committed: {stderr}"),
            other => panic!("seed {seed}: exit {other:?}: {stderr}"),
        }
        outcomes.push((seed, out.status.code(), stats["faults"].clone(), stats["requests"]["gcs"].clone()));
    }
    let committed = outcomes.iter().filter(|(_, code, ..)| *code == Some(0)).count();
    let injected: u64 =
        outcomes.iter().flat_map(|(_, _, faults, _)| faults.as_object().unwrap().values()).map(|n| n.as_u64().unwrap()).sum();
    crate::support::report_line(&format!(
        "export through upload faults: {} seeds, {committed} committed (CRC32C verified, rows read back by pyarrow), {} failed with exit 2 and no manifest; {injected} faults injected",
        outcomes.len(),
        outcomes.len() - committed
    ));
    for (seed, code, faults, requests) in &outcomes {
        crate::support::report_line(&format!("  seed {seed}: exit {code:?}, {requests} GCS requests, faults {faults}"));
    }
    assert!(injected > 0);
    assert_eq!(committed, outcomes.len(), "retries and resumes should carry every run through");
    db.drop().await;
}

/// The create-only manifest upload whose answer is lost: the retry meets 412, reads the object
/// back and knows it is its own; different bytes under the same name stay a conflict.
#[tokio::test]
async fn a_lost_create_answer_is_told_apart_from_a_conflict() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let through_proxy =
        GcsClient::new(&s.bucket, &GcsOptions { emulator_host: Some(proxy.gcs_host.clone()), application_credentials: None }).unwrap();
    let object = format!("create-{:08x}/manifest.json", rand::random::<u32>());
    let lose_the_answer =
        json!({ "rules": [{ "upstream": "gcs", "path": "uploadType=multipart", "limit": 1, "faults": [{ "reset": "after" }] }] });

    proxy.set(lose_the_answer.clone()).await;
    assert!(through_proxy.put_if_absent(&object, Bytes::from_static(b"{\"run\": 1}")).await.unwrap(), "our own create");
    assert_eq!(proxy.stats().await["injected"][0], 1);
    proxy.set(lose_the_answer).await;
    assert!(!through_proxy.put_if_absent(&object, Bytes::from_static(b"{\"run\": 2}")).await.unwrap(), "another writer's object");
    proxy.set(json!({})).await;
    assert_eq!(through_proxy.get(&object).await.unwrap().as_ref(), b"{\"run\": 1}");
}

//! The calls made through gcp-bigquery-client keep the retries of the raw ones: an answer the
//! library cannot read (an HTML 502 from a front end hides its status) is retried, not fatal.

use serde_json::json;

use crate::support::*;
use crate::{emulators, fault_proxy, skip_unless};

#[tokio::test]
async fn html_error_pages_on_client_library_calls_are_retried() {
    let s = emulators!();
    let proxy = fault_proxy!();
    let db = TestDb::new(&s.pg_url, "CREATE TABLE h (id int PRIMARY KEY); INSERT INTO h SELECT generate_series(1, 7);").await;
    let manifest = s.export(&[db.table("h")], &[]);
    // Half the GETs (datasets.get, jobs.get, jobs.getQueryResults), at most 12, meet an HTML 502.
    let html_502 = json!({ "seed": 3, "rules": [{ "upstream": "bq", "method": "GET", "fraction": 0.5, "limit": 12,
                                                    "faults": [{ "status": 502, "html": true }] }] });
    proxy.set(html_502.clone()).await;
    let out = s.load_command(&manifest, &[]).env("BIGQUERY_EMULATOR_HOST", &proxy.bq_host).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "load through HTML 502s: {stderr}");
    assert_eq!(s.count(&format!("{}__h", db.schema)).await, 7);
    let stats = proxy.stats().await;
    assert!(stats["faults"]["status 502"].as_u64().unwrap() > 0, "no HTML 502 was injected: {stats}");

    proxy.set(html_502).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2bq"))
        .args(["validate", "--manifest", &manifest, "--project", &s.project, "--dataset", &s.dataset])
        .env("BIGQUERY_EMULATOR_HOST", &proxy.bq_host)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "validate through HTML 502s: {}", String::from_utf8_lossy(&out.stderr));
    assert!(proxy.stats().await["faults"]["status 502"].as_u64().unwrap() > 0);
    db.drop().await;
}

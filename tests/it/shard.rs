//! Sharded export (issue 11, groundwork): a worker's session joins the coordinator's exported
//! snapshot and sees exactly it; once the coordinator's transaction ended, joining fails by
//! name and reads nothing newer.

use pg2bq::source::postgres::SnapshotSession;
use pg2bq::source::SourceError;

use crate::support::*;
use crate::{emulators, skip_unless};

#[tokio::test]
async fn a_worker_joins_the_coordinators_snapshot_and_never_a_newer_one() {
    let s = emulators!();
    let db = TestDb::new(&s.pg_url, "CREATE TABLE w (id int PRIMARY KEY); INSERT INTO w SELECT generate_series(1, 100);").await;
    let table = db.table("w");
    let coordinator = SnapshotSession::open(&s.pg_url).await.unwrap();
    db.client
        .batch_execute(&format!("INSERT INTO {table} SELECT generate_series(101, 150); DELETE FROM {table} WHERE id <= 10"))
        .await
        .unwrap();

    let worker = SnapshotSession::import(&s.pg_url, &coordinator.snapshot_id).await.unwrap();
    let seen: (i64, i32, i32) = {
        let row = worker.query_one(&format!("SELECT count(*), min(id), max(id) FROM {table}"), &[]).await.unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(seen, (100, 1, 100), "the coordinator's snapshot, not the rows written since");
    // Its transaction holds the table until it ends.
    drop(worker);

    let snapshot_id = coordinator.snapshot_id.clone();
    drop(coordinator);
    let mut error = None;
    for _ in 0..50 {
        // The coordinator's backend ends its transaction when the connection closes.
        match SnapshotSession::import(&s.pg_url, &snapshot_id).await {
            Err(gone) => {
                error = Some(gone);
                break;
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let error = error.expect("the snapshot outlived its coordinator");
    assert!(matches!(error, SourceError::SnapshotGone { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("snapshot {snapshot_id} no longer exists (the coordinator's transaction ended): restart the run")
    );
    db.drop().await;
}

//! The command line itself: help text and errors that need no services.

use crate::support::pg2bq;

#[test]
fn help_lists_every_export_flag() {
    let out = pg2bq(&["export", "--help"]);
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

#[test]
fn help_lists_every_load_flag() {
    let out = pg2bq(&["load", "--help"]);
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

#[test]
fn help_lists_every_validate_flag() {
    let out = pg2bq(&["validate", "--help"]);
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

#[test]
fn missing_source_is_a_clear_error_with_exit_code_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg2bq"))
        .args(["export", "--dest", "/tmp/pg2bq-never", "--table", "t"])
        .env_remove("PG2BQ_SOURCE")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
}

#[test]
fn unreachable_source_names_the_redacted_url() {
    let out = pg2bq(&["export", "--source", "postgresql://u:hunter2@127.0.0.1:1/db", "--dest", "/tmp/pg2bq-never", "--table", "t"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("postgresql://u:***@127.0.0.1:1/db"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

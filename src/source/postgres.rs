//! The snapshot session: one connection that holds a REPEATABLE READ transaction open for the
//! whole export, exports its snapshot for the partition connections to share, and answers
//! every catalog, count and check query inside it.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayBuilder, ArrayRef, Int64Builder, StringBuilder};

use postgres_openssl::MakeTlsConnector;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};
use tracing::{debug, info, warn};

use super::{redact_url, PgStep, SourceError};
use crate::model::manifest::{ForeignKey, SourceInfo};
use crate::model::shard::ConnectionBudget;
use crate::model::table_ref::TableRef;
use crate::model::types::{quote_ident, PgColumn};

/// Session settings every connection of a run uses, so text output is deterministic, and so
/// row-level security raises an error instead of hiding rows (as pg_dump does).
pub const SESSION_SETTINGS: [&str; 4] = [
    "SET LOCAL intervalstyle = 'iso_8601'",
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL row_security = off",
];

/// How long a connection may take (TCP, TLS and startup) when the URL sets no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT_S: u64 = 30;
/// Idle seconds before TCP keepalive probes start when the URL sets no `keepalives_idle`, so a
/// long stream over a dropped link fails instead of waiting forever.
pub const DEFAULT_KEEPALIVES_IDLE_S: u64 = 60;

/// The statements a connection runs to join exported snapshot `snapshot_id` (a unit's
/// connection, on this machine or a worker's).
pub fn snapshot_setup(snapshot_id: &str) -> Vec<String> {
    let mut setup = vec![
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".to_string(),
        format!("SET TRANSACTION SNAPSHOT '{}'", snapshot_id.replace('\'', "''")),
    ];
    setup.extend(SESSION_SETTINGS.iter().map(|s| s.to_string()));
    setup
}

/// The URL a unit's connections use (ConnectorX opens one to describe the query, one to read
/// it): named after the run's snapshot, and waiting at most `lock_wait` for any lock (zero:
/// 1 ms, as pg_dump's workers ask with NOWAIT). The snapshot's session holds ACCESS SHARE on
/// every exported table, so an ACCESS EXCLUSIVE request queued on one waits for the whole run,
/// and a unit queued behind it would wait forever. Set at connection start, so the describe
/// step is bounded too.
pub fn unit_url(url: &str, snapshot_id: &str, lock_wait: Duration) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else { return url.to_string() };
    let lock_timeout = format!("-c lock_timeout={}ms", lock_wait.as_millis().max(1));
    let mut pairs: Vec<(String, String)> =
        parsed.query_pairs().filter(|(k, _)| k != "application_name").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    match pairs.iter_mut().find(|(k, _)| k == "options") {
        Some((_, options)) => *options = format!("{options} {lock_timeout}"),
        None => pairs.push(("options".to_string(), lock_timeout)),
    }
    pairs.push(("application_name".to_string(), application_name(snapshot_id)));
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    // The postgres crate decodes `%20`, not the form encoding's `+`, to a space.
    let query = parsed.query().map(|q| q.replace('+', "%20"));
    parsed.set_query(query.as_deref());
    parsed.to_string()
}

/// The `application_name` of every connection reading snapshot `snapshot_id` (the snapshot's
/// own session included), by which the lock diagnostics find the run's backends.
pub fn application_name(snapshot_id: &str) -> String {
    format!("pg2bq-{snapshot_id}")
}

/// When the first look at the run's lock waits comes, then how often; a wait shorter than
/// `LOCK_NOTE_MIN` then is not reported (a unit's usual moment).
pub const LOCK_NOTE_AFTER: Duration = Duration::from_secs(3);
const LOCK_NOTE_EVERY: Duration = Duration::from_secs(5);
const LOCK_NOTE_MIN: Duration = Duration::from_secs(2);

/// The sessions holding or queued for a lock, one per line of [`render_lock_rows`]: pid, mode,
/// granted, state, seconds, statement, relation.
const LOCK_ROW_COLUMNS: &str = "a.pid, l.mode, l.granted, coalesce(a.state, ''), \
    extract(epoch FROM now() - coalesce(a.xact_start, a.query_start, now()))::float8, \
    left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 300), l.relation::regclass::text";

/// `AccessExclusiveLock` → `ACCESS EXCLUSIVE`, as the LOCK TABLE documentation names modes.
fn lock_mode(mode: &str) -> String {
    mode.strip_suffix("Lock").unwrap_or(mode).chars().fold(String::new(), |mut out, c| {
        if c.is_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_uppercase());
        out
    })
}

/// `pid 42 waits for ACCESS EXCLUSIVE on public.t (active, transaction open 3 s): ALTER TABLE …`,
/// joined by `; `.
fn render_lock_rows(rows: &[tokio_postgres::Row]) -> String {
    rows.iter()
        .map(|r| {
            let (pid, mode, granted, state) = (r.get::<_, i32>(0), lock_mode(r.get(1)), r.get::<_, bool>(2), r.get::<_, String>(3));
            let (seconds, relation) = (r.get::<_, f64>(4), r.get::<_, Option<String>>(6).unwrap_or_default());
            let query = r.get::<_, String>(5);
            let query = query.trim().trim_end_matches(';');
            let how = if granted { "holds" } else { "waits for" };
            format!("pid {pid} {how} {mode} on {relation} ({state}, transaction open {seconds:.0} s): {query}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What keeps a lock on `oid` (or a relation under it) from being granted to us: every other
/// session holding or queued for ACCESS EXCLUSIVE, the only mode ACCESS SHARE conflicts with.
async fn exclusive_lockers(url: &str, oid: u32) -> Result<String, SourceError> {
    let client = connect(url).await?;
    let sql = format!(
        "WITH RECURSIVE tree(relid) AS (SELECT $1::oid UNION SELECT i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.relid) \
         SELECT {LOCK_ROW_COLUMNS} FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'relation' AND l.relation IN (SELECT relid FROM tree) AND l.mode = 'AccessExclusiveLock' \
           AND l.pid <> pg_backend_pid() ORDER BY l.granted DESC, a.pid"
    );
    let rows = client.query(&sql, &[&oid]).await.map_err(query_error(PgStep::ReadLockHolders))?;
    Ok(render_lock_rows(&rows))
}

/// The statements queued for a lock behind a session of the run reading snapshot `snapshot_id`
/// (its snapshot's session holds ACCESS SHARE on every exported table until the run ends): an
/// `ALTER TABLE`, `VACUUM FULL` or `LOCK TABLE` that cannot proceed before the run does. Empty
/// when none waits now.
///
/// # Errors
/// [`SourceError`] when the server cannot be asked.
pub async fn queued_behind_run(url: &str, snapshot_id: &str) -> Result<String, SourceError> {
    let client = connect(url).await?;
    let sql = format!(
        "SELECT {LOCK_ROW_COLUMNS} FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'relation' AND NOT l.granted AND EXISTS ( \
           SELECT FROM pg_stat_activity o WHERE o.application_name = $1 AND o.pid = ANY(pg_blocking_pids(l.pid))) \
         ORDER BY a.pid"
    );
    let rows = client.query(&sql, &[&application_name(snapshot_id)]).await.map_err(query_error(PgStep::ReadQueuedBehindRun))?;
    Ok(render_lock_rows(&rows))
}

/// Every session of the run reading snapshot `snapshot_id` that has waited for a lock longer
/// than [`LOCK_NOTE_MIN`]: `(pid, seconds waited, relations it waits for, who it waits for)`.
async fn run_lock_waits(client: &Client, snapshot_id: &str) -> Result<Vec<(i32, f64, String, String)>, SourceError> {
    let rows = client
        .query(
            "SELECT w.pid, extract(epoch FROM now() - w.query_start)::float8, \
               coalesce((SELECT string_agg(l.relation::regclass::text, ', ') FROM pg_locks l WHERE l.pid = w.pid AND NOT l.granted), ''), \
               string_agg(format('pid %s (%s): %s', b.pid, b.state, left(regexp_replace(b.query, '\\s+', ' ', 'g'), 300)), '; ') \
             FROM pg_stat_activity w CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid) \
             JOIN pg_stat_activity b ON b.pid = bp.pid \
             WHERE w.application_name = $1 AND w.wait_event_type = 'Lock' AND now() - w.query_start > $2::float8 * interval '1 s' \
             GROUP BY w.pid, w.query_start ORDER BY w.pid",
            &[&application_name(snapshot_id), &LOCK_NOTE_MIN.as_secs_f64()],
        )
        .await
        .map_err(query_error(PgStep::ReadRunLockWaits))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
}

/// Runs `future` and, every few seconds, logs what the run's sessions wait for, so a statement
/// queued behind a lock never waits silently. Uses one more connection, opened at the first
/// look.
pub async fn noting_lock_waits<T>(url: &str, snapshot_id: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(future);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + LOCK_NOTE_AFTER, LOCK_NOTE_EVERY);
    let mut watcher: Option<Client> = None;
    loop {
        tokio::select! {
            output = &mut future => return output,
            _ = ticks.tick() => {
                if watcher.is_none() {
                    watcher = connect(url).await.ok();
                }
                let Some(client) = &watcher else { continue };
                match run_lock_waits(client, snapshot_id).await {
                    Ok(waits) => for (pid, seconds, relation, blockers) in waits {
                        warn!(pid, seconds = format!("{seconds:.0}"), relation = %relation, blocked_by = %blockers, "Waiting for a lock held or requested by another session");
                    },
                    Err(error) => debug!(error = %error, "Could not read the lock waits"),
                }
            }
        }
    }
}

/// Text that is valid UTF-8, byte by byte (a regular expression over a SQL_ASCII database's
/// bytes): ASCII without NUL, then the well-formed 2-, 3- and 4-byte sequences (no overlongs,
/// no surrogates, nothing above U+10FFFF).
const VALID_UTF8: &str = r"^([\x01-\x7f]|[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2})*$";

/// What keeps the session's role from reading every row of a table
/// ([`SnapshotSession::access_problems`]), with the way out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessProblem {
    /// No SELECT on the table, or on `columns` of it (`None`: on every column).
    #[error(
        "table `{table}`: permission denied for {} to role `{role}`; GRANT SELECT ON {table} TO {role} \
         (or SELECT on those columns), or export with a role that may read them",
        match columns {
            None => format!("table `{table}`"),
            Some(columns) => format!("column(s) {} of table `{table}`", columns.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")),
        }
    )]
    Denied { table: String, columns: Option<Vec<String>>, role: String },
    /// Row-level security applies to the role: rows would be left out.
    #[error(
        "table `{table}`: row-level security is enabled ({}{}) and applies to role `{role}`, so rows would be \
         left out; pg2bq runs with row_security = off (as pg_dump does) and refuses instead: export with a role that has \
         BYPASSRLS, or as the table's owner (unless FORCE ROW LEVEL SECURITY is set)",
        match policies.is_empty() {
            true => "no policy, so every row is hidden".to_string(),
            false => format!("policies: {}", policies.join(", ")),
        },
        if *forced { ", FORCE ROW LEVEL SECURITY" } else { "" }
    )]
    RowSecurity { table: String, policies: Vec<String>, forced: bool, role: String },
}

/// The first row holding text that is not UTF-8 ([`SnapshotSession::first_invalid_text`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidText {
    pub column: String,
    /// The value, bytes above 127 as octal escapes (`caf\351`), cut at 80 characters.
    pub value: String,
    /// `id = 7`, `(a, b) = (1,x)`, `ctid = (0,7)`; `None` for a query without a key.
    pub key: Option<String>,
    /// Rows holding such text in any checked column.
    pub rows: u64,
}

/// An open snapshot.
pub struct SnapshotSession {
    client: Client,
    url: String,
    /// The role every query of the run runs as (`current_user`).
    pub role: String,
    /// `pg_export_snapshot()`: partitions `SET TRANSACTION SNAPSHOT` to it.
    pub snapshot_id: String,
    pub info: SourceInfo,
    /// `server_version_num`, e.g. 150004.
    pub server_version_num: i32,
}

/// The first `server_version_num` with TID range scans: a `ctid` range reads only its blocks.
const TID_RANGE_SCANS_SINCE: i32 = 140_000;

/// The first `server_version_num` with `hash_record_extended`.
const HASH_RECORD_EXTENDED_SINCE: i32 = 140_000;

/// One relation of a table's inheritance tree (the table itself at level 0, declarative
/// partitions at any depth, inheritance children such as TimescaleDB chunks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRelation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// 0 for the table itself, 1 for its children, and so on.
    pub level: i32,
    /// `pg_class.relkind`: `r` table, `p` partitioned table (no storage), `f` foreign table.
    pub kind: char,
    /// Heap blocks now (`None` without storage).
    pub blocks: Option<i64>,
    /// A `DETACH PARTITION … CONCURRENTLY` of this relation is under way (PostgreSQL 14+).
    pub detach_pending: bool,
}

/// What one counting scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanCounts {
    /// Rows in all, then the rows passing each filter.
    pub counts: Vec<u64>,
    /// Each statistic's maximum (`None` when no row had a value).
    pub stats: Vec<Option<i64>>,
    /// `(schema, name, rows)` per relation holding rows, when the scan was grouped by relation.
    pub per_relation: Vec<(String, String, u64)>,
}

/// A compressed TimescaleDB chunk: its relation and its dimension constraints as one predicate
/// over the hypertable's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedChunk {
    pub schema: String,
    pub name: String,
    /// `(t >= '…') AND (t < '…')`, from the chunk's `constraint_<slice id>` CHECKs.
    pub predicate: String,
}

/// A table as the catalog names it.
#[derive(Debug, Clone)]
pub struct TableIdentity {
    pub schema: String,
    pub name: String,
    pub oid: u32,
}

/// The URL with [`DEFAULT_CONNECT_TIMEOUT_S`] and [`DEFAULT_KEEPALIVES_IDLE_S`] added where it
/// sets neither, so every connection of a run (ours and ConnectorX's) is bounded.
pub fn with_connection_defaults(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else { return url.to_string() };
    let has = |key: &str| parsed.query_pairs().any(|(k, _)| k == key);
    let missing: Vec<(&str, u64)> = [("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S), ("keepalives_idle", DEFAULT_KEEPALIVES_IDLE_S)]
        .into_iter()
        .filter(|(key, _)| !has(key))
        .collect();
    for (key, value) in missing {
        parsed.query_pairs_mut().append_pair(key, &value.to_string());
    }
    parsed.to_string()
}

/// Rows per day of `column` of `table` as the source holds them now, `YYYY-MM-DD` in order: a
/// timestamp `with_zone` by its UTC day (BigQuery's `DATE(ts)`), a `timestamp` or `date` by the day it
/// names; NULLs and infinities are not counted.
///
/// # Errors
/// [`SourceError`] when the connection or the query fails.
pub async fn source_day_counts(url: &str, table: &TableRef, column: &str, with_zone: bool) -> Result<Vec<(String, u64)>, SourceError> {
    let column = quote_ident(column);
    let day = match with_zone {
        true => format!("({column} AT TIME ZONE 'UTC')::date"),
        false => format!("{column}::date"),
    };
    let sql = format!(
        "SELECT to_char(day, 'YYYY-MM-DD'), count(*)::int8 FROM (SELECT {day} AS day FROM {} WHERE isfinite({column})) AS days GROUP BY day ORDER BY day",
        table.quoted()
    );
    let client = connect(url).await?;
    let step = || PgStep::CountRows { of: table.to_string() };
    let rows = client.query(&sql, &[]).await.map_err(query_error(step()))?;
    Ok(rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64)).collect())
}

/// Connects with TLS as the URL's sslmode asks (libpq semantics: `require` encrypts without
/// verifying the certificate). The URL's `connect_timeout` (default
/// [`DEFAULT_CONNECT_TIMEOUT_S`]) bounds the whole handshake, not only the TCP connect.
pub async fn connect(url: &str) -> Result<Client, SourceError> {
    let redacted = redact_url(url);
    let config: Config = url.parse().map_err(|source| SourceError::InvalidUrl { url: redacted.clone(), source })?;
    let timeout = config.get_connect_timeout().copied().unwrap_or(std::time::Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_S));
    let timed_out = || SourceError::ConnectTimeout { url: redacted.clone(), seconds: timeout.as_secs_f64() };
    let connect_error = |source: tokio_postgres::Error| SourceError::Connect { url: redacted.clone(), source: Box::new(source) };
    if config.get_ssl_mode() == SslMode::Disable {
        let (client, connection) =
            tokio::time::timeout(timeout, config.connect(NoTls)).await.map_err(|_| timed_out())?.map_err(connect_error)?;
        drive(connection, redacted);
        return Ok(client);
    }
    let mut builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
        .map_err(|source| SourceError::Tls { url: redacted.clone(), source })?;
    builder.set_verify(openssl::ssl::SslVerifyMode::NONE);
    let (client, connection) = tokio::time::timeout(timeout, config.connect(MakeTlsConnector::new(builder.build())))
        .await
        .map_err(|_| timed_out())?
        .map_err(connect_error)?;
    drive(connection, redacted);
    Ok(client)
}

/// Runs a connection's I/O in the background. Its queries fail with "connection closed" when
/// it breaks; the reason is only here, so it is logged.
fn drive<C>(connection: C, url: String)
where
    C: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(url = %url, error = %error, "Postgres connection broke");
        }
    });
}

/// Key and hash columns being filled by [`SnapshotSession::copy_key_hashes`].
#[derive(Default)]
struct KeyHashChunk {
    keys: StringBuilder,
    key_hashes: Int64Builder,
    row_hashes: Int64Builder,
}

impl KeyHashChunk {
    fn finish(&mut self) -> [ArrayRef; 3] {
        [Arc::new(self.keys.finish()), Arc::new(self.key_hashes.finish()), Arc::new(self.row_hashes.finish())]
    }
}

fn query_error(step: PgStep) -> impl FnOnce(tokio_postgres::Error) -> SourceError {
    move |source| SourceError::Query { step, source }
}

impl SnapshotSession {
    /// Opens the session and takes the snapshot.
    ///
    /// # Errors
    /// [`SourceError`] when the server cannot be reached or refuses the transaction.
    pub async fn open(url: &str) -> Result<Self, SourceError> {
        let client = connect(url).await?;
        // The transaction holds the snapshot for the whole run, idle between catalog queries
        // (for hours, as a sharded run's coordinator): a server-wide idle timeout must not end it.
        let begin = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL idle_in_transaction_session_timeout = 0; {};",
            SESSION_SETTINGS.join("; ")
        );
        client.batch_execute(&begin).await.map_err(query_error(PgStep::OpenTransaction))?;
        let row = client
            .query_one(
                "SELECT pg_export_snapshot(), txid_current_snapshot()::text, \
                 (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text, \
                 current_setting('server_version'), current_user::text, current_setting('server_version_num')::int4, \
                 (extract(epoch FROM least(now(), (SELECT min(xact_start) FROM pg_stat_activity WHERE pid <> pg_backend_pid()))) * 1000000)::int8",
                &[],
            )
            .await
            .map_err(query_error(PgStep::ExportSnapshot))?;
        let info = SourceInfo {
            url: redact_url(url),
            server_version: row.get(3),
            txid_snapshot: row.get(1),
            wal_lsn: row.get(2),
            changes_since: row.get(6),
        };
        let snapshot_id: String = row.get(0);
        client
            .batch_execute(&format!("SET application_name = '{}'", application_name(&snapshot_id).replace('\'', "''")))
            .await
            .map_err(query_error(PgStep::NameSession))?;
        Ok(Self { client, url: url.to_string(), role: row.get(4), snapshot_id, info, server_version_num: row.get(5) })
    }

    /// A worker's session inside a coordinator's exported snapshot (`SET TRANSACTION SNAPSHOT`),
    /// never a newer one: a snapshot that no longer exists is [`SourceError::SnapshotGone`].
    pub async fn import(url: &str, snapshot_id: &str) -> Result<Client, SourceError> {
        let client = connect(url).await?;
        let join = format!("{};", snapshot_setup(snapshot_id).join("; "));
        client.batch_execute(&join).await.map_err(|source| match source.code() {
            Some(&tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE) => {
                SourceError::SnapshotGone { snapshot_id: snapshot_id.to_string(), source }
            }
            _ => SourceError::Query { step: PgStep::JoinSnapshot { snapshot_id: snapshot_id.to_string() }, source },
        })?;
        Ok(client)
    }

    /// Checks that no relation of `tables` was rewritten, truncated or dropped between the
    /// snapshot and its lock: the snapshot would see such a relation empty. The snapshot's
    /// catalog rows give the file a relation had then; `pg_relation_filenode` the one it has
    /// now that the lock is held.
    async fn unchanged_since_snapshot(&self, tables: &[TableRef]) -> Result<(), SourceError> {
        for table in tables {
            let qualified = table.quoted();
            let rows = self
                .client
                .query(
                    "WITH RECURSIVE tree(relid) AS (SELECT to_regclass($1)::oid UNION SELECT i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.relid) \
                     SELECT format('%I.%I', n.nspname, c.relname) FROM tree JOIN pg_class c ON c.oid = tree.relid JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.relkind IN ('r', 'm', 't') AND c.relfilenode <> 0 AND c.relfilenode IS DISTINCT FROM pg_relation_filenode(c.oid) ORDER BY 1",
                    &[&qualified],
                )
                .await
                .map_err(query_error(PgStep::CheckAgainstSnapshot { table: table.to_string() }))?;
            if !rows.is_empty() {
                let relations = rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join(", ");
                return Err(SourceError::ChangedSinceSnapshot { table: table.to_string(), relations });
            }
        }
        Ok(())
    }

    /// Whether `hash_record_extended` exists (PostgreSQL 14+): rows hashed by their types.
    pub fn hash_records(&self) -> bool {
        self.server_version_num >= HASH_RECORD_EXTENDED_SINCE
    }

    /// Whether a `ctid` range reads only its blocks (PostgreSQL 14+); before, every block range
    /// would scan the whole relation.
    pub fn tid_range_scans(&self) -> bool {
        self.server_version_num >= TID_RANGE_SCANS_SINCE
    }

    /// The table and every relation under it (recursive `pg_inherits`), parents before
    /// children, with their kind and size now.
    pub async fn relation_tree(&self, oid: u32, what: &str) -> Result<Vec<TreeRelation>, SourceError> {
        // `inhdetachpending` exists from PostgreSQL 14 on.
        let detach_pending = if self.tid_range_scans() { "i.inhdetachpending" } else { "false" };
        let sql = format!(
            "WITH RECURSIVE tree(relid, level, detach_pending) AS ( \
               SELECT $1::oid, 0, false \
               UNION ALL SELECT i.inhrelid, t.level + 1, {detach_pending} FROM tree t JOIN pg_inherits i ON i.inhparent = t.relid) \
             SELECT c.oid, n.nspname::text, c.relname::text, t.level, c.relkind::text, \
               CASE WHEN c.relkind IN ('r', 'm', 't') THEN (pg_relation_size(c.oid) / current_setting('block_size')::int8)::int8 END, \
               t.detach_pending \
             FROM tree t JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace \
             ORDER BY t.level, n.nspname, c.relname"
        );
        let rows = self.client.query(&sql, &[&oid]).await.map_err(query_error(PgStep::ReadChildren { of: what.to_string() }))?;
        Ok(rows
            .iter()
            .map(|r| TreeRelation {
                oid: r.get(0),
                schema: r.get(1),
                name: r.get(2),
                level: r.get(3),
                kind: r.get::<_, String>(4).chars().next().unwrap_or('r'),
                blocks: r.get(5),
                detach_pending: r.get(6),
            })
            .collect())
    }

    /// The compressed chunks of `schema`.`table` when it is a TimescaleDB hypertable (through
    /// the `timescaledb_information` views, stable across TimescaleDB 2.x catalog changes);
    /// empty when TimescaleDB is not installed or the table is not a hypertable.
    pub async fn compressed_chunks(&self, schema: &str, table: &str, what: &str) -> Result<Vec<CompressedChunk>, SourceError> {
        let action = || query_error(PgStep::ReadChunks { of: what.to_string() });
        let installed = self.client.query_opt("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'", &[]).await.map_err(action())?;
        if installed.is_none() {
            return Ok(Vec::new());
        }
        let rows = self
            .client
            .query(
                "SELECT c.chunk_schema::text, c.chunk_name::text, \
                   (SELECT string_agg('(' || pg_get_expr(k.conbin, k.conrelid) || ')', ' AND ' ORDER BY k.conname) \
                    FROM pg_constraint k WHERE k.conrelid = format('%I.%I', c.chunk_schema, c.chunk_name)::regclass \
                      AND k.contype = 'c' AND k.conislocal AND k.conname ~ '^constraint_[0-9]+$') \
                 FROM timescaledb_information.chunks c \
                 WHERE c.hypertable_schema = $1 AND c.hypertable_name = $2 AND c.is_compressed \
                 ORDER BY c.range_start NULLS LAST, c.range_start_integer",
                &[&schema, &table],
            )
            .await
            .map_err(action())?;
        Ok(rows
            .iter()
            .map(|r| CompressedChunk { schema: r.get(0), name: r.get(1), predicate: r.get::<_, Option<String>>(2).unwrap_or_default() })
            .collect())
    }

    /// The statements a partition connection runs before its query to join this snapshot.
    pub fn partition_setup(&self) -> Vec<String> {
        snapshot_setup(&self.snapshot_id)
    }

    /// Takes ACCESS SHARE on each table of `tables` and on every relation under it (partitions, inheritance children, chunks), as
    /// pg_dump does right after its snapshot: from then on no `ALTER TABLE`, `VACUUM FULL` or
    /// `DROP` can change them before the run ends. The session then keeps `lock_timeout` set.
    /// A table that does not exist, is not a table, or that this role may not SELECT is left
    /// to the plan, which refuses it by name. Then checks that no table changed between the
    /// snapshot and its lock.
    ///
    /// # Errors
    /// [`SourceError::LockTimeout`] naming the table and the sessions holding or queued for an
    /// ACCESS EXCLUSIVE lock on it when the lock is not granted within `timeout`;
    /// [`SourceError::ChangedSinceSnapshot`].
    pub async fn lock_tables(&self, tables: &[TableRef], timeout: Duration) -> Result<(), SourceError> {
        let timeout_text = humantime::format_duration(timeout).to_string();
        self.client
            .batch_execute(&format!("SET LOCAL lock_timeout = '{}ms'", timeout.as_millis().max(1)))
            .await
            .map_err(query_error(PgStep::SetLockTimeout))?;
        let mut locked = 0;
        for table in tables {
            let (qualified, name) = (table.quoted(), table.to_string());
            let row = self
                .client
                .query_opt(
                    "SELECT c.oid FROM pg_class c WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p') \
                     AND has_table_privilege(c.oid, 'SELECT')",
                    &[&qualified],
                )
                .await
                .map_err(query_error(PgStep::LookUpTable { table: name.to_string() }))?;
            let Some(row) = row else { continue };
            let oid: u32 = row.get(0);
            self.client.batch_execute("SAVEPOINT pg2bq_lock").await.map_err(query_error(PgStep::Savepoint))?;
            let statement = format!("LOCK TABLE {qualified} IN ACCESS SHARE MODE");
            let lock = self.client.batch_execute(&statement);
            match noting_lock_waits(&self.url, &self.snapshot_id, lock).await {
                Ok(()) => {
                    self.client.batch_execute("RELEASE SAVEPOINT pg2bq_lock").await.map_err(query_error(PgStep::ReleaseSavepoint))?;
                    locked += 1;
                }
                Err(source) if source.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                    let blockers = match exclusive_lockers(&self.url, oid).await {
                        Ok(found) if !found.is_empty() => found,
                        Ok(_) => "the session that held it has let go since".to_string(),
                        Err(error) => format!("the sessions holding it could not be read ({error})"),
                    };
                    return Err(SourceError::LockTimeout { table: name, timeout: timeout_text, blockers, source });
                }
                // A child this role may not read: the plan names it with the way out.
                Err(source) if source.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                    self.client
                        .batch_execute("ROLLBACK TO SAVEPOINT pg2bq_lock")
                        .await
                        .map_err(query_error(PgStep::RollBackToSavepoint))?;
                }
                Err(source) => return Err(SourceError::Lock { table: name, source }),
            }
        }
        self.unchanged_since_snapshot(tables).await?;
        info!(tables = locked, lock_timeout = %timeout_text, "Locked the exported tables (ACCESS SHARE) in the snapshot's session");
        Ok(())
    }

    /// Checks the session's connection still answers: its transaction holds the snapshot every
    /// worker of a sharded run joins.
    ///
    /// # Errors
    /// [`SourceError::Query`] when the connection broke.
    pub async fn ping(&self) -> Result<(), SourceError> {
        self.client.batch_execute("SELECT 1").await.map_err(query_error(PgStep::KeepAlive))
    }

    /// `max_connections`, `superuser_reserved_connections` and the client connections open now.
    pub async fn connection_budget(&self) -> Result<ConnectionBudget, SourceError> {
        let row = self
            .client
            .query_one(
                "SELECT current_setting('max_connections')::int4, current_setting('superuser_reserved_connections')::int4, \
                 (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int4",
                &[],
            )
            .await
            .map_err(query_error(PgStep::ReadConnections))?;
        let number = |i: usize| u32::try_from(row.get::<_, i32>(i)).unwrap_or(0);
        Ok(ConnectionBudget { max_connections: number(0), superuser_reserved: number(1), in_use: number(2) })
    }

    /// Finds `schema`.`table` (both as the catalog spells them) in the catalog.
    pub async fn resolve_table(&self, schema: &str, table: &str) -> Result<TableIdentity, SourceError> {
        let qualified = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let row = self
            .client
            .query_one(
                "SELECT n.nspname::text, c.relname::text, c.oid, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::text::regclass",
                &[&qualified],
            )
            .await
            .map_err(|source| SourceError::TableNotFound { table: TableRef::new(schema, table).to_string(), source })?;
        let identity = TableIdentity { schema: row.get(0), name: row.get(1), oid: row.get(2) };
        let kind = match row.get::<_, String>(3).as_str() {
            "v" => "view",
            "m" => "materialized view",
            "f" => "foreign table",
            _ => return Ok(identity),
        };
        let foreign = if kind == "foreign table" {
            " (its rows live on another server, outside the run's snapshot: the query reads them as they are then)"
        } else {
            ""
        };
        let name = identity.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let from = format!("{}.{}", quote_ident(&identity.schema), quote_ident(&identity.name));
        Err(SourceError::NotATable { table: TableRef::new(&identity.schema, &identity.name).to_string(), kind, name, from, foreign })
    }

    /// Columns of a relation, in order, with domains resolved to their base types.
    pub async fn columns(&self, oid: u32) -> Result<Vec<PgColumn>, SourceError> {
        columns_of(&self.client, oid, PgStep::ReadColumns).await
    }

    /// Primary key columns, in key order.
    pub async fn primary_key(&self, oid: u32) -> Result<Vec<String>, SourceError> {
        let rows = self
            .client
            .query(
                "SELECT a.attname::text FROM pg_constraint k CROSS JOIN LATERAL unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum \
                 WHERE k.conrelid = $1 AND k.contype = 'p' ORDER BY u.ord",
                &[&oid],
            )
            .await
            .map_err(query_error(PgStep::ReadPrimaryKey))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Foreign keys declared on a table. Not the copies Postgres (for each partition of a
    /// partitioned referenced table) and TimescaleDB (for each chunk of a referenced hypertable)
    /// derive from one of them on the same table: their parent constraint stands for them.
    pub async fn foreign_keys(&self, oid: u32) -> Result<Vec<ForeignKey>, SourceError> {
        let rows = self
            .client
            .query(
                "SELECT k.conname::text, \
                   (SELECT array_agg(a.attname::text ORDER BY u.ord) FROM unnest(k.conkey) WITH ORDINALITY u(n, ord) JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n), \
                   (SELECT array_agg(a.attname::text ORDER BY u.ord) FROM unnest(k.confkey) WITH ORDINALITY u(n, ord) JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n), \
                   n.nspname::text, c.relname::text \
                 FROM pg_constraint k JOIN pg_class c ON c.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE k.conrelid = $1 AND k.contype = 'f' \
                   AND NOT EXISTS (SELECT FROM pg_constraint p WHERE p.oid = k.conparentid AND p.conrelid = k.conrelid) ORDER BY k.conname",
                &[&oid],
            )
            .await
            .map_err(query_error(PgStep::ReadForeignKeys))?;
        Ok(rows
            .iter()
            .map(|r| ForeignKey {
                name: r.get(0),
                columns: r.get(1),
                references_table: TableRef::new(r.get::<_, String>(3), r.get::<_, String>(4)).to_string(),
                references_columns: r.get(2),
            })
            .collect())
    }

    /// Runs one scan, `SELECT count(*), count(*) FILTER (…), …, <stats> [WHERE row_filter]`,
    /// and returns every count and every statistic (int8 maxima, NULL on an empty table). With `per_relation`
    /// (tables only) the scan is grouped by `tableoid`, which also gives the rows stored in
    /// each relation of the table's tree, at no cost per relation.
    pub async fn counts(
        &self,
        from: &str,
        per_relation: bool,
        filters: &[String],
        stats: &[String],
        row_filter: Option<&str>,
        what: &str,
    ) -> Result<ScanCounts, SourceError> {
        let from = match row_filter {
            Some(filter) => format!("{from} WHERE {filter}"),
            None => from.to_string(),
        };
        let mut select = vec!["count(*)".to_string()];
        select.extend(filters.iter().map(|f| format!("count(*) FILTER (WHERE {f})")));
        select.extend(stats.iter().map(|s| format!("({s})::int8")));
        let sql = if per_relation {
            // The names are looked up outside the scan: a sub-select beside the aggregates
            // is parallel-restricted and would keep Postgres from scanning in parallel.
            let columns = (0..select.len()).map(|i| format!("s.c{i}")).collect::<Vec<_>>().join(", ");
            let aggregates = select.iter().enumerate().map(|(i, a)| format!("{a} AS c{i}")).collect::<Vec<_>>().join(", ");
            format!(
                "SELECT {columns}, (SELECT ARRAY[n.nspname::text, c.relname::text] FROM pg_class c \
                   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = s.relation) \
                 FROM (SELECT tableoid AS relation, {aggregates} FROM {from} GROUP BY tableoid) s"
            )
        } else {
            format!("SELECT {} FROM {from}", select.join(", "))
        };
        let rows = self.client.query(&sql, &[]).await.map_err(query_error(PgStep::CountRows { of: what.to_string() }))?;
        let mut scan = ScanCounts { counts: vec![0; filters.len() + 1], stats: vec![None; stats.len()], per_relation: Vec::new() };
        for row in &rows {
            for (i, total) in scan.counts.iter_mut().enumerate() {
                *total += row.get::<_, i64>(i) as u64;
            }
            for (i, max) in scan.stats.iter_mut().enumerate() {
                *max = (*max).max(row.get::<_, Option<i64>>(filters.len() + 1 + i));
            }
            if let Some([schema, name]) = per_relation.then(|| row.get::<_, Option<Vec<String>>>(select.len())).flatten().as_deref() {
                scan.per_relation.push((schema.clone(), name.clone(), row.get::<_, i64>(0) as u64));
            }
        }
        Ok(scan)
    }

    /// `min(key)`, `max(key)` as int8, `None` for an empty table.
    pub async fn key_range(&self, from: &str, key: &str, what: &str) -> Result<Option<(i64, i64)>, SourceError> {
        let sql = format!("SELECT min({key})::int8, max({key})::int8 FROM {from}");
        let row = self.client.query_one(&sql, &[]).await.map_err(query_error(PgStep::ReadKeyRange { of: what.to_string() }))?;
        Ok(row.get::<_, Option<i64>>(0).zip(row.get::<_, Option<i64>>(1)))
    }

    /// What keeps this session's role from reading every row of a table: missing SELECT
    /// privileges (table or columns) and row-level security that applies to the role. Each
    /// problem names the table, the role and the way out.
    pub async fn access_problems(&self, oid: u32, table: &str, column_count: usize) -> Result<Vec<AccessProblem>, SourceError> {
        let row = self
            .client
            .query_one(
                "SELECT has_table_privilege(c.oid, 'SELECT'), \
                   ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                         AND NOT has_column_privilege(c.oid, a.attnum, 'SELECT') ORDER BY a.attnum), \
                   c.relrowsecurity AND NOT r.rolbypassrls AND NOT r.rolsuper \
                     AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE')), \
                   c.relforcerowsecurity, \
                   ARRAY(SELECT p.polname::text FROM pg_policy p WHERE p.polrelid = c.oid ORDER BY p.polname) \
                 FROM pg_class c JOIN pg_roles r ON r.rolname = current_user WHERE c.oid = $1",
                &[&oid],
            )
            .await
            .map_err(query_error(PgStep::ReadPrivileges { table: table.to_string() }))?;
        let (table, role) = (table.to_string(), self.role.clone());
        let mut problems = Vec::new();
        let denied_columns: Vec<String> = row.get(1);
        if !row.get::<_, bool>(0) && !denied_columns.is_empty() {
            let columns = (denied_columns.len() < column_count).then_some(denied_columns);
            problems.push(AccessProblem::Denied { table: table.clone(), columns, role: role.clone() });
        }
        if row.get::<_, bool>(2) {
            problems.push(AccessProblem::RowSecurity { table, policies: row.get(4), forced: row.get(3), role });
        }
        Ok(problems)
    }

    /// Runs `select` with `LIMIT 0` inside the snapshot: privileges, row-level security and
    /// every expression are checked before any data moves.
    /// Every row of `sql`, in the snapshot, each value as text (`sql` selects text).
    pub async fn text_rows(&self, sql: &str, step: PgStep) -> Result<Vec<Vec<Option<String>>>, SourceError> {
        let rows = self.client.query(sql, &[]).await.map_err(query_error(step))?;
        Ok(rows.iter().map(|row| (0..row.len()).map(|i| row.get::<_, Option<String>>(i)).collect()).collect())
    }

    /// The rows of `sql`, whose columns are a key (text) and two hashes (int8), in the
    /// snapshot: one binary COPY, handed to `each` `chunk_rows` at a time as Arrow arrays, so
    /// memory holds one chunk, never the whole result.
    ///
    /// # Errors
    /// [`SourceError::Query`] when the COPY fails or a value is NULL.
    pub async fn copy_key_hashes(
        &self,
        sql: &str,
        chunk_rows: usize,
        step: PgStep,
        mut each: impl FnMut([ArrayRef; 3]),
    ) -> Result<(), SourceError> {
        use futures::{pin_mut, TryStreamExt};
        use tokio_postgres::binary_copy::BinaryCopyOutStream;
        use tokio_postgres::types::Type;
        let copy = self.client.copy_out(&format!("COPY ({sql}) TO STDOUT (FORMAT binary)")).await.map_err(query_error(step.clone()))?;
        let rows = BinaryCopyOutStream::new(copy, &[Type::TEXT, Type::INT8, Type::INT8]);
        pin_mut!(rows);
        let mut chunk = KeyHashChunk::default();
        while let Some(row) = rows.try_next().await.map_err(query_error(step.clone()))? {
            let read = || Ok::<_, tokio_postgres::Error>((row.try_get::<&str>(0)?, row.try_get::<i64>(1)?, row.try_get::<i64>(2)?));
            let (key, key_hash, row_hash) = read().map_err(query_error(step.clone()))?;
            chunk.keys.append_value(key);
            chunk.key_hashes.append_value(key_hash);
            chunk.row_hashes.append_value(row_hash);
            if chunk.key_hashes.len() == chunk_rows {
                each(chunk.finish());
            }
        }
        if !chunk.key_hashes.is_empty() {
            each(chunk.finish());
        }
        Ok(())
    }

    /// In a SQL_ASCII database, which stores any bytes, the first row (in `key` order) of
    /// `from` where one of `columns` (`(name, select expression)`) holds text that is not
    /// valid UTF-8: Postgres refuses to send it to a UTF-8 client, so a unit would fail without
    /// naming the column. `None` in any other database (Postgres checks text on the way in).
    ///
    /// # Errors
    /// [`SourceError::Query`] when the scan fails.
    pub async fn first_invalid_text(
        &self,
        from: &str,
        key: &[String],
        columns: &[(String, String)],
        what: &str,
    ) -> Result<Option<InvalidText>, SourceError> {
        let encoding = self.client.query_one("SELECT current_setting('server_encoding')", &[]).await;
        if columns.is_empty() || encoding.map_err(query_error(PgStep::ReadEncoding))?.get::<_, String>(0) != "SQL_ASCII" {
            return Ok(None);
        }
        let valid = |expr: &str| format!("coalesce(({expr})::text ~ $1, true)");
        let escaped = |expr: &str| format!("left(encode(convert_to(({expr})::text, 'SQL_ASCII'), 'escape'), 80)");
        let when = |then: &dyn Fn(usize, &str) -> String| {
            let arms: Vec<String> =
                columns.iter().enumerate().map(|(i, (_, e))| format!("WHEN NOT {} THEN {}", valid(e), then(i, e))).collect();
            format!("CASE {} END", arms.join(" "))
        };
        // The key's name, and its value's and the sort order's SQL.
        let quoted: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
        let (key_name, key_value, order) = match key {
            [] if from.starts_with('(') => (None, "NULL::text".to_string(), "1".to_string()),
            [] => (Some("ctid".to_string()), "ctid::text".to_string(), "ctid".to_string()),
            [one] => (Some(one.clone()), escaped(&quoted[0]), quoted.join(", ")),
            _ => (Some(format!("({})", key.join(", "))), escaped(&format!("ROW({})", quoted.join(", "))), quoted.join(", ")),
        };
        let all_valid: Vec<String> = columns.iter().map(|(_, e)| valid(e)).collect();
        let sql = format!(
            "SELECT {}::int4, {}, {key_value}, count(*) OVER () FROM {from} WHERE NOT ({}) ORDER BY {order} LIMIT 1",
            when(&|i, _| i.to_string()),
            when(&|_, e| escaped(e)),
            all_valid.join(" AND ")
        );
        let row =
            self.client.query_opt(&sql, &[&VALID_UTF8]).await.map_err(query_error(PgStep::FindInvalidText { of: what.to_string() }))?;
        Ok(row.map(|row| InvalidText {
            column: columns[row.get::<_, i32>(0) as usize].0.clone(),
            value: row.get(1),
            key: key_name.zip(row.get::<_, Option<String>>(2)).map(|(name, value)| format!("{name} = {value}")),
            rows: row.get::<_, i64>(3) as u64,
        }))
    }

    pub async fn probe(&self, select: &str, what: &str) -> Result<(), SourceError> {
        self.client.query(&format!("SELECT * FROM ({select}\n) AS probe LIMIT 0"), &[]).await.map_err(|source| {
            let hint = if source.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                "it needs SELECT on everything it reads, and where row-level security is on, a role with BYPASSRLS or the \
                 table's owner (pg2bq never exports part of a table)"
            } else {
                "check the SQL"
            };
            SourceError::Probe { what: what.to_string(), role: self.role.clone(), hint, source }
        })?;
        Ok(())
    }

    /// Columns a query returns, by describing it through a temporary view on a separate
    /// connection (the snapshot transaction is read-only). The view is created through the
    /// extended protocol, which takes exactly one statement, and rolled back.
    pub async fn query_columns(&self, sql: &str, name: &str) -> Result<Vec<PgColumn>, SourceError> {
        let client = connect(&self.url).await?;
        let describe_error = |source| SourceError::DescribeQuery { name: name.to_string(), source };
        client.batch_execute("BEGIN").await.map_err(query_error(PgStep::DescribeQuery { name: name.to_string() }))?;
        client.execute(&format!("CREATE TEMPORARY VIEW pg2bq_query AS {sql}\n"), &[]).await.map_err(describe_error)?;
        let oid: u32 = client
            .query_one("SELECT 'pg2bq_query'::regclass::oid", &[])
            .await
            .map_err(query_error(PgStep::DescribeQuery { name: name.to_string() }))?
            .get(0);
        let columns = columns_of(&client, oid, PgStep::DescribeQueryColumns).await;
        let _ = client.batch_execute("ROLLBACK").await;
        columns
    }
}

async fn columns_of(client: &Client, oid: u32, step: PgStep) -> Result<Vec<PgColumn>, SourceError> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, t.typtype::text, \
               e.typname::text, CASE WHEN t0.typtype = 'd' THEN t0.typtypmod ELSE a.atttypmod END, \
               a.attnotnull OR (t0.typtype = 'd' AND t0.typnotnull), col_description(a.attrelid, a.attnum) \
             FROM pg_attribute a \
             JOIN pg_type t0 ON t0.oid = a.atttypid \
             JOIN pg_type t ON t.oid = CASE WHEN t0.typtype = 'd' THEN t0.typbasetype ELSE t0.oid END \
             LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(query_error(step))?;
    Ok(rows
        .iter()
        .map(|r| PgColumn {
            name: r.get(0),
            type_display: r.get(1),
            type_name: r.get(2),
            type_kind: r.get::<_, String>(3).chars().next().unwrap_or('b'),
            element_type: r.get(4),
            type_modifier: r.get(5),
            not_null: r.get(6),
            comment: r.get(7),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_units_url_names_the_run_and_bounds_its_lock_waits_keeping_the_users_options() {
        let url = unit_url("postgresql://u@h/db?connect_timeout=30&application_name=app", "00000003-0000001B-1", Duration::ZERO);
        assert_eq!(
            url,
            "postgresql://u@h/db?connect_timeout=30&options=-c%20lock_timeout%3D1ms&application_name=pg2bq-00000003-0000001B-1"
        );
        let url = unit_url("postgresql://u@h/db?options=-c%20work_mem%3D64MB", "s", Duration::from_secs(300));
        let config: Config = url.parse().unwrap();
        assert_eq!(config.get_options(), Some("-c work_mem=64MB -c lock_timeout=300000ms"));
        assert_eq!(config.get_application_name(), Some("pg2bq-s"));
    }
}

//! Row hashes: how a tail sees rows changed, deleted or inserted late below its watermark.
//!
//! Every export of a table with a primary key records, in its snapshot, one Postgres-side hash
//! per row, `hash_record_extended(ROW(<exported columns>), 0)` (each value hashed by its type's
//! own hash function; a column whose type may have none is hashed as its text; before
//! PostgreSQL 14, `hashtextextended(ROW(..)::text, 0)`), with its key (as [`key_json`] prints
//! it) and the key's own hash, in `<table dir>/_rowhash/rows.pq`; the manifest records the
//! file, how the rows were hashed and the exact sum of the row hashes. The file holds the whole
//! table as the snapshot saw it: after a tail whose check passed, that is what the chain holds.
//! Hashing by type follows equality: `1.0` changed to `1.00` in a numeric is not a change.
//!
//! A later tail sums the hashes of the rows at or below the parent's watermark in its own
//! snapshot (one aggregate in the scan that counts them). When count or sum differ, both sides
//! are cut into buckets by the key's hash (`key_hash & mask`, about 256 rows a bucket): one
//! `GROUP BY` in Postgres, one pass over the parent's file; the rows of the buckets that differ
//! are then read from both and compared by key. Buckets by key hash need no ordering of keys
//! outside Postgres (text collations, composite keys), and memory holds the bucket totals and
//! the rows of a batch of differing buckets, never a side's whole key set.

use std::collections::{BTreeMap, HashMap};

use crate::model::manifest::HashMethod;
use crate::model::tail::key_json;
use crate::model::types::quote_ident;

/// The file's name under the table's directory.
/// A Parquet file, named `.pq` so that a `**/*.parquet` glob over a run reads only its data.
pub const ROW_HASH_FILE: &str = "_rowhash/rows.pq";

/// Rows a bucket holds on average (the mask is chosen from the parent's rows).
const ROWS_PER_BUCKET: u64 = 256;

/// The most buckets a table is cut into (a larger table has larger buckets).
const MAX_BUCKETS: u64 = 1 << 16;

/// How many keys of each kind a refusal names.
pub const KEYS_NAMED: usize = 10;

/// The most changed keys (updated, deleted and inserted late together) a tail carries: each is
/// a literal in every unit's SELECT and travels in the plan; past this, export the table whole.
/// Also the most keys of one kind held in memory while locating changes.
pub const MAX_CARRIED_KEYS: u64 = 100_000;

/// Whether a column of `pg_type` (as `format_type` names it) is hashed by its type's own hash
/// function: the built-in types known to have one; any other (an array, a domain, `json`,
/// geometry, an extension's type) is hashed as its text.
pub fn hashed_by_type(pg_type: &str) -> bool {
    let base = match (pg_type.find('('), pg_type.find(')')) {
        (Some(open), Some(close)) if open < close => format!("{}{}", &pg_type[..open], &pg_type[close + 1..]),
        _ => pg_type.to_string(),
    };
    matches!(
        base.as_str(),
        "smallint"
            | "integer"
            | "bigint"
            | "numeric"
            | "real"
            | "double precision"
            | "text"
            | "character varying"
            | "character"
            | "boolean"
            | "date"
            | "timestamp without time zone"
            | "timestamp with time zone"
            | "time without time zone"
            | "interval"
            | "uuid"
            | "bytea"
            | "jsonb"
            | "inet"
            | "oid"
    )
}

/// The SQL of one table's row hashes: what is read and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashQuery {
    /// What the SELECT reads (the quoted table).
    pub from: String,
    pub key: Vec<String>,
    pub method: HashMethod,
    pub columns: Vec<String>,
    pub text_columns: Vec<String>,
    /// The rows compared (a tail's earlier rows); `None`: every row.
    pub filter: Option<String>,
}

impl HashQuery {
    fn row_hash(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| match self.method == HashMethod::Record && self.text_columns.contains(c) {
                true => format!("{}::text", quote_ident(c)),
                false => quote_ident(c),
            })
            .collect();
        match self.method {
            HashMethod::Record => format!("hash_record_extended(ROW({}), 0)", columns.join(", ")),
            HashMethod::Text => format!("hashtextextended(ROW({})::text, 0)", columns.join(", ")),
        }
    }

    fn key(&self) -> String {
        key_json(&self.key).unwrap_or_else(|| "NULL::text".to_string())
    }

    fn where_clause(&self, more: Option<String>) -> String {
        let filters: Vec<String> = self.filter.iter().cloned().chain(more).map(|f| format!("({f})")).collect();
        if filters.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", filters.join(" AND "))
        }
    }

    /// `key, key_hash, row_hash` of every row, each as text.
    pub fn rows_sql(&self) -> String {
        self.rows_with("::text")
    }

    /// The file's rows: `key` (text), `key_hash` and `row_hash` (int8).
    pub fn typed_rows_sql(&self) -> String {
        self.rows_with("")
    }

    /// `OFFSET 0` keeps the subquery whole: pulled up, its key expression would run twice a row.
    fn rows_with(&self, cast: &str) -> String {
        let key = self.key();
        format!(
            "SELECT k, hashtextextended(k, 0){cast}, h{cast} FROM (SELECT {key} AS k, {} AS h FROM {}{} OFFSET 0) r",
            self.row_hash(),
            self.from,
            self.where_clause(None)
        )
    }

    /// `count, sum(row_hash)`, as text.
    pub fn totals_sql(&self) -> String {
        format!("SELECT count(*)::text, COALESCE(sum({})::numeric, 0)::text FROM {}{}", self.row_hash(), self.from, self.where_clause(None))
    }

    /// `bucket, count, sum(row_hash)` per bucket of `mask`, as text.
    pub fn buckets_sql(&self, mask: i64) -> String {
        format!(
            "SELECT b::text, count(*)::text, sum(h)::text FROM (SELECT hashtextextended({}, 0) & {mask} AS b, {} AS h FROM {}{}) r GROUP BY b",
            self.key(),
            self.row_hash(),
            self.from,
            self.where_clause(None)
        )
    }

    /// `key, row_hash` of the rows in `buckets` of `mask`, as text.
    pub fn bucket_rows_sql(&self, mask: i64, buckets: &[i64]) -> String {
        let list: Vec<String> = buckets.iter().map(i64::to_string).collect();
        let key = self.key();
        let inside = format!("hashtextextended({key}, 0) & {mask} = ANY('{{{}}}'::int8[])", list.join(","));
        format!("SELECT {key}, {}::text FROM {}{}", self.row_hash(), self.from, self.where_clause(Some(inside)))
    }
}

/// The bucket mask for a side of `rows` rows: a power of two minus one.
pub fn bucket_mask(rows: u64) -> i64 {
    let buckets = (rows / ROWS_PER_BUCKET).clamp(1, MAX_BUCKETS).next_power_of_two();
    buckets as i64 - 1
}

/// One bucket's rows and exact hash sum.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub rows: u64,
    pub sum: i128,
}

/// Adds a row to its bucket.
pub fn add_row(buckets: &mut BTreeMap<i64, Bucket>, key_hash: i64, mask: i64, row_hash: i64) {
    let bucket = buckets.entry(key_hash & mask).or_default();
    bucket.rows += 1;
    bucket.sum += i128::from(row_hash);
}

/// Keys of one kind of change: how many, exactly; the first [`KEYS_NAMED`] in key order (a
/// refusal names them); and every key up to [`MAX_CARRIED_KEYS`] (`--carry-changes` uses them
/// all, and refuses more). Memory stays bounded however many rows changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listed {
    count: u64,
    first: Vec<String>,
    keys: Vec<String>,
}

impl Listed {
    fn add(&mut self, key: &str) {
        self.count += 1;
        if self.keys.len() < MAX_CARRIED_KEYS as usize {
            self.keys.push(key.to_string());
        }
        let at = self.first.partition_point(|k| k.as_str() < key);
        if at < KEYS_NAMED {
            self.first.insert(at, key.to_string());
            self.first.truncate(KEYS_NAMED);
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Every key, when there are at most [`MAX_CARRIED_KEYS`]; else the first that many found.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    fn describe(&self, what: &str) -> Option<String> {
        (self.count > 0).then(|| {
            let more = if self.count > self.first.len() as u64 { ", …" } else { "" };
            format!("{} {what} ({}{more})", self.count, self.first.join(", "))
        })
    }
}

/// The rows that differ between the parent's rows and the snapshot's, by key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// In both, with another hash.
    pub updated: Listed,
    /// In the parent's rows only.
    pub deleted: Listed,
    /// In the snapshot's rows only: inserted below the watermark after the parent's snapshot.
    pub inserted_late: Listed,
}

impl Changes {
    /// Compares the rows of some buckets, `key → row_hash` on each side.
    pub fn compare(&mut self, parent: &HashMap<String, i64>, now: &HashMap<String, i64>) {
        for (key, hash) in parent {
            match now.get(key) {
                None => self.deleted.add(key),
                Some(other) if other != hash => self.updated.add(key),
                Some(_) => {}
            }
        }
        for key in now.keys().filter(|k| !parent.contains_key(*k)) {
            self.inserted_late.add(key);
        }
    }

    /// `1 updated ({"id" : 5}); 2 deleted (…)`; empty when nothing changed.
    pub fn describe(&self) -> String {
        let parts = [self.updated.describe("updated"), self.deleted.describe("deleted"), self.inserted_late.describe("inserted late")];
        parts.into_iter().flatten().collect::<Vec<_>>().join("; ")
    }

    pub fn is_empty(&self) -> bool {
        self.updated.count + self.deleted.count + self.inserted_late.count == 0
    }

    /// The keys whose rows a tail carries: those updated and those inserted late, in key order.
    pub fn carried(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.updated.keys().iter().chain(self.inserted_late.keys()).cloned().collect();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::locate::differing_buckets;

    fn query(filter: Option<&str>) -> HashQuery {
        HashQuery {
            from: r#""public"."t""#.into(),
            key: vec!["a".into(), "b".into()],
            method: HashMethod::Text,
            columns: vec!["a".into(), "b".into(), "note".into()],
            text_columns: vec!["note".into()],
            filter: filter.map(str::to_string),
        }
    }

    #[test]
    fn the_sql_hashes_the_exported_columns_and_buckets_by_the_keys_hash() {
        let q = query(Some(r#""id" <= 5"#));
        let row = r#"hashtextextended(ROW("a", "b", "note")::text, 0)"#;
        assert_eq!(
            q.totals_sql(),
            format!(r#"SELECT count(*)::text, COALESCE(sum({row})::numeric, 0)::text FROM "public"."t" WHERE ("id" <= 5)"#)
        );
        let key = key_json(&["a".into(), "b".into()]).unwrap();
        assert_eq!(
            q.bucket_rows_sql(3, &[0, 2]),
            format!(
                r#"SELECT {key}, {row}::text FROM "public"."t" WHERE ("id" <= 5) AND (hashtextextended({key}, 0) & 3 = ANY('{{0,2}}'::int8[]))"#
            )
        );
        assert!(query(None).rows_sql().ends_with(r#"FROM "public"."t" OFFSET 0) r"#), "{}", query(None).rows_sql());
        assert!(q.buckets_sql(255).contains("& 255 AS b"), "{}", q.buckets_sql(255));
        let by_type = HashQuery { method: HashMethod::Record, ..query(None) };
        assert!(by_type.totals_sql().contains(r#"sum(hash_record_extended(ROW("a", "b", "note"::text), 0))"#), "{}", by_type.totals_sql());
    }

    #[test]
    fn types_without_a_known_hash_function_are_hashed_as_text() {
        let by_type = ["numeric(12,2)", "timestamp(3) with time zone", "character varying(20)", "jsonb", "bigint", "uuid"];
        assert!(by_type.iter().all(|t| hashed_by_type(t)), "{by_type:?}");
        let as_text = ["json", "integer[]", "point", "xml", "public.my_domain", "tsvector", "money"];
        assert!(as_text.iter().all(|t| !hashed_by_type(t)), "{as_text:?}");
    }

    #[test]
    fn masks_grow_with_the_rows_up_to_65536_buckets() {
        assert_eq!([bucket_mask(0), bucket_mask(256), bucket_mask(1_000_000), bucket_mask(u64::MAX)], [0, 0, 4095, 65535]);
    }

    #[test]
    fn an_update_a_delete_and_a_late_insert_are_found_in_their_buckets_and_named() {
        let (mut parent, mut now) = (BTreeMap::new(), BTreeMap::new());
        for (key, hash) in [(1, 10), (2, 20), (3, 30), (4, 40)] {
            add_row(&mut parent, key, 3, hash);
        }
        for (key, hash) in [(1, 10), (2, 21), (4, 40), (8, 80)] {
            add_row(&mut now, key, 3, hash);
        }
        // Key hash 8 falls into bucket 0 with key 4: its bucket differs by count.
        assert_eq!(differing_buckets(&parent, &now), [0, 2, 3]);
        let side = |rows: &[(&str, i64)]| rows.iter().map(|(k, h)| (k.to_string(), *h)).collect::<HashMap<_, _>>();
        let mut changes = Changes::default();
        changes.compare(&side(&[("{\"id\" : 2}", 20), ("{\"id\" : 3}", 30)]), &side(&[("{\"id\" : 2}", 21), ("{\"id\" : 8}", 80)]));
        assert_eq!(changes.describe(), r#"1 updated ({"id" : 2}); 1 deleted ({"id" : 3}); 1 inserted late ({"id" : 8})"#);
        let mut many = Listed::default();
        (0..12).rev().for_each(|i| many.add(&format!("k{i:02}")));
        assert_eq!(many.describe("deleted").unwrap(), "12 deleted (k00, k01, k02, k03, k04, k05, k06, k07, k08, k09, …)");
        assert_eq!((many.count(), many.keys().len()), (12, 12));
        // Past the most a tail carries, the count stays exact and the memory bounded.
        let mut lots = Listed::default();
        (0..=MAX_CARRIED_KEYS).rev().for_each(|i| lots.add(&format!("k{i:06}")));
        assert_eq!((lots.count(), lots.keys().len()), (MAX_CARRIED_KEYS + 1, MAX_CARRIED_KEYS as usize));
        assert_eq!(
            lots.describe("updated").unwrap(),
            "100001 updated (k000000, k000001, k000002, k000003, k000004, k000005, k000006, k000007, k000008, k000009, …)"
        );
        assert_eq!(changes.carried(), [r#"{"id" : 2}"#, r#"{"id" : 8}"#]);
        assert!(Changes::default().is_empty());
    }
}

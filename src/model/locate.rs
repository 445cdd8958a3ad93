//! Locating the rows that differ (the arithmetic; `validate::locate` does the reading): rows
//! fall into buckets by the high bits of their key's fingerprint (the row fingerprint of the
//! key columns alone, [`crate::model::row_fingerprint`]), which BigQuery and the snapshot's
//! files compute alike, whatever the key's type or collation. Per bucket, the count, XOR and
//! exact sum of the rows' fingerprints are compared; buckets that agree are dropped, the others
//! split by the next bits, until a bucket holds about [`ROWS_PER_BUCKET`] rows. Then the rows of
//! those buckets are compared by key, column by column ([`diff_rows`]).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::row_fingerprint::FingerprintSums;

/// The rows a bucket of the last level holds, about.
pub const ROWS_PER_BUCKET: u64 = 256;
/// The most buckets one level groups by (one `GROUP BY` query, one map of aggregates).
pub const MAX_BUCKETS: usize = 4096;
/// The most rows fetched from each side to compare by key.
pub const MAX_FETCHED_ROWS: u64 = 65_536;

/// The bits of the key fingerprint whose buckets hold about [`ROWS_PER_BUCKET`] of `rows`.
pub fn leaf_bits(rows: u64) -> u32 {
    let buckets = rows.div_ceil(ROWS_PER_BUCKET);
    if buckets <= 1 {
        0
    } else {
        64 - (buckets - 1).leading_zeros()
    }
}

/// The bucket of a key fingerprint: its `bits` high bits (0 with no bits).
pub fn bucket(key_fingerprint: u64, bits: u32) -> u64 {
    match bits {
        0 => 0,
        bits => key_fingerprint >> (64 - bits),
    }
}

/// One level of the descent: rows grouped by `bits` high bits of the key fingerprint, of the
/// rows whose `within.0` high bits are one of `within.1` (sorted; all rows at the first level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub bits: u32,
    pub within: Option<(u32, Vec<u64>)>,
}

impl Level {
    /// The first level of a table of `rows`: up to [`MAX_BUCKETS`] buckets, `None` when one
    /// bucket holds them all (the rows are then compared at once).
    pub fn first(rows: u64) -> Option<Level> {
        let leaf = leaf_bits(rows);
        (leaf > 0).then(|| Level { bits: leaf.min(MAX_BUCKETS.ilog2()), within: None })
    }

    /// Whether a row with this key fingerprint is in the level.
    pub fn contains(&self, key_fingerprint: u64) -> bool {
        self.within.as_ref().is_none_or(|(bits, prefixes)| prefixes.binary_search(&bucket(key_fingerprint, *bits)).is_ok())
    }

    /// The level splitting this one's `differing` buckets (sorted) by the next bits, up to
    /// [`MAX_BUCKETS`] buckets; `None` when they hold few enough rows to compare (`leaf` bits).
    /// The second value is false when prefixes were dropped to stay within the bound.
    pub fn next(&self, differing: &[u64], leaf: u32) -> Option<(Level, bool)> {
        if self.bits >= leaf || differing.is_empty() {
            return None;
        }
        let room = (MAX_BUCKETS / differing.len()).max(2);
        let bits = (self.bits + room.ilog2()).min(leaf);
        let kept = differing.len().min(MAX_BUCKETS >> (bits - self.bits));
        Some((Level { bits, within: Some((self.bits, differing[..kept].to_vec())) }, kept == differing.len()))
    }
}

/// The buckets whose sums differ (a bucket absent on one side holds no rows there), sorted:
/// of row fingerprints here, of Postgres row hashes for a tail (`model::row_hash`).
pub fn differing_buckets<B: Ord + Copy, S: Copy + Default + PartialEq>(expected: &BTreeMap<B, S>, actual: &BTreeMap<B, S>) -> Vec<B> {
    let buckets: BTreeSet<B> = expected.keys().chain(actual.keys()).copied().collect();
    let sums = |side: &BTreeMap<B, S>, b: &B| side.get(b).copied().unwrap_or_default();
    buckets.into_iter().filter(|b| sums(expected, b) != sums(actual, b)).collect()
}

/// The first of `differing` buckets whose rows, on the larger side, add up to at most
/// [`MAX_FETCHED_ROWS`] (at least one); the second value is false when some were left out.
pub fn fetched_buckets(
    differing: &[u64],
    expected: &BTreeMap<u64, FingerprintSums>,
    actual: &BTreeMap<u64, FingerprintSums>,
) -> (Vec<u64>, bool) {
    let rows = |b: &u64| [expected, actual].iter().map(|side| side.get(b).map_or(0, |s| s.rows)).max().unwrap_or(0);
    let mut total = 0;
    let kept: Vec<u64> = differing
        .iter()
        .take_while(|b| {
            total += rows(b);
            total <= MAX_FETCHED_ROWS
        })
        .copied()
        .collect();
    let kept = if kept.is_empty() { differing.iter().take(1).copied().collect() } else { kept };
    let complete = kept.len() == differing.len();
    (kept, complete)
}

/// Encodings of a row's cells, in order (`None`: NULL).
pub type Cells = Vec<Option<String>>;

/// A row as both sides give it: its key's and its columns' encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideRow {
    pub key: Cells,
    pub values: Cells,
}

/// How a located row differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    /// In the snapshot, not in BigQuery.
    Missing,
    /// In BigQuery, not in the snapshot (or once more than in it).
    OnlyInBigquery,
    /// Under the same key, other values in `columns`.
    Differs,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::OnlyInBigquery => "only_in_bigquery",
            Self::Differs => "differs",
        }
    }
}

/// One row that differs: its key (`id=5`, `a=1, b=x`), how, and the columns that differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocatedRow {
    pub key: String,
    pub status: RowStatus,
    pub columns: Vec<String>,
}

/// The rows compared by key: how many differ each way, and the first `limit` of them by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowDiff {
    pub missing: u64,
    pub only_in_bigquery: u64,
    pub differing: u64,
    pub rows: Vec<LocatedRow>,
}

/// Compares the snapshot's rows (`expected`) with BigQuery's (`actual`) by key; rows equal on
/// both sides (as many times) are not listed. Keys are listed in order (integers by value).
pub fn diff_rows(key_names: &[String], column_names: &[String], expected: Vec<SideRow>, actual: Vec<SideRow>, limit: usize) -> RowDiff {
    let mut by_key: BTreeMap<OrderedKey, (Vec<Cells>, Vec<Cells>)> = BTreeMap::new();
    for row in expected {
        by_key.entry(OrderedKey(row.key)).or_default().0.push(row.values);
    }
    for row in actual {
        by_key.entry(OrderedKey(row.key)).or_default().1.push(row.values);
    }
    let mut diff = RowDiff::default();
    for (key, (mut expected, mut actual)) in by_key {
        expected.retain(|values| match actual.iter().position(|a| a == values) {
            Some(i) => {
                actual.swap_remove(i);
                false
            }
            None => true,
        });
        let paired = expected.len().min(actual.len());
        let mut found = Vec::new();
        for (e, a) in expected.iter().zip(&actual) {
            let columns = column_names.iter().zip(e.iter().zip(a)).filter(|(_, (e, a))| e != a).map(|(n, _)| n.clone()).collect();
            found.push((RowStatus::Differs, columns));
        }
        found.extend(expected[paired..].iter().map(|_| (RowStatus::Missing, Vec::new())));
        found.extend(actual[paired..].iter().map(|_| (RowStatus::OnlyInBigquery, Vec::new())));
        for (status, columns) in found {
            *match status {
                RowStatus::Missing => &mut diff.missing,
                RowStatus::OnlyInBigquery => &mut diff.only_in_bigquery,
                RowStatus::Differs => &mut diff.differing,
            } += 1;
            if diff.rows.len() < limit {
                diff.rows.push(LocatedRow { key: show_key(key_names, &key.0), status, columns });
            }
        }
    }
    diff
}

/// `id=5`; `a=1, b=x`; a NULL part as `NULL`.
fn show_key(names: &[String], key: &[Option<String>]) -> String {
    let parts: Vec<String> = names.iter().zip(key).map(|(n, v)| format!("{n}={}", v.as_deref().unwrap_or("NULL"))).collect();
    parts.join(", ")
}

/// A key ordered part by part, integers by value, then text.
#[derive(Debug, PartialEq, Eq)]
struct OrderedKey(Cells);

impl Ord for OrderedKey {
    fn cmp(&self, other: &Self) -> Ordering {
        let part =
            |a: &Option<String>, b: &Option<String>| match (a.as_deref().map(str::parse::<i128>), b.as_deref().map(str::parse::<i128>)) {
                (Some(Ok(x)), Some(Ok(y))) => x.cmp(&y),
                _ => a.cmp(b),
            };
        self.0.iter().zip(&other.0).map(|(a, b)| part(a, b)).find(|o| o.is_ne()).unwrap_or_else(|| self.0.len().cmp(&other.0.len()))
    }
}

impl PartialOrd for OrderedKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_buckets_hold_at_most_256_rows_on_average() {
        assert_eq!([0, 1, 256, 257, 512, 513, 200_000, 1_000_000].map(leaf_bits), [0, 0, 0, 1, 1, 2, 10, 12]);
        assert_eq!(leaf_bits(50_000_000), 18);
        assert!(50_000_000u64.div_ceil(1 << 18) <= ROWS_PER_BUCKET);
    }

    #[test]
    fn buckets_are_the_high_bits_as_bigquery_shifts_them() {
        // BigQuery's `>>` fills with zeros: FARM_FINGERPRINT('a') >> 52 is 2868 there.
        let a = -5_528_939_962_900_187_677i64 as u64;
        assert_eq!((bucket(a, 12), bucket(a, 0), bucket(u64::MAX, 1), bucket(a, 64)), (2868, 0, 1, a));
    }

    #[test]
    fn levels_descend_to_the_leaf_within_the_bucket_bound() {
        assert_eq!(Level::first(200), None);
        assert_eq!(Level::first(200_000), Some(Level { bits: 10, within: None }));
        let first = Level::first(50_000_000).unwrap();
        assert_eq!(first.bits, 12);
        // Three buckets differ: each is split into 1024 (4096 / 3 rounded down to a power of 2),
        // but no further than the leaf (18 bits).
        let (second, complete) = first.next(&[3, 70, 900], 18).unwrap();
        assert_eq!((second.bits, complete), (18, true));
        assert!(second.contains(70 << 52) && !second.contains(71 << 52));
        assert_eq!(second.next(&[3 << 6], 18), None);
        // Everything differs: split in two, keeping 2048 prefixes (not all: lower bounds).
        let all: Vec<u64> = (0..4096).collect();
        let (wide, complete) = first.next(&all, 18).unwrap();
        assert_eq!((wide.bits, wide.within.as_ref().unwrap().1.len(), complete), (13, 2048, false));
    }

    #[test]
    fn buckets_differ_by_count_xor_or_sum_and_absence() {
        let sums = |fingerprints: &[u64]| {
            let mut s = FingerprintSums::default();
            fingerprints.iter().for_each(|f| s.add(*f));
            s
        };
        let expected = BTreeMap::from([(1, sums(&[5, 9])), (2, sums(&[7])), (3, sums(&[1]))]);
        let actual = BTreeMap::from([(1, sums(&[9, 5])), (2, sums(&[7, 7, 7])), (4, sums(&[2]))]);
        assert_eq!(differing_buckets(&expected, &actual), [2, 3, 4]);
        // The sum sees what the count and XOR do not.
        let (a, b) = (sums(&[1, 2, 3]), sums(&[0, 0, 0]));
        assert_eq!((a.rows, a.xor), (b.rows, b.xor));
        assert_ne!(a, b);
    }

    #[test]
    fn fetching_stops_at_the_row_budget_keeping_at_least_one_bucket() {
        let side = |rows: u64| {
            BTreeMap::from([(1, FingerprintSums { rows, ..Default::default() }), (2, FingerprintSums { rows, ..Default::default() })])
        };
        assert_eq!(fetched_buckets(&[1, 2], &side(300), &side(200)), (vec![1, 2], true));
        assert_eq!(fetched_buckets(&[1, 2], &side(40_000), &BTreeMap::new()), (vec![1], false));
        assert_eq!(fetched_buckets(&[1, 2], &side(90_000), &BTreeMap::new()), (vec![1], false));
    }

    fn row(key: &[&str], values: &[Option<&str>]) -> SideRow {
        SideRow { key: key.iter().map(|k| Some(k.to_string())).collect(), values: values.iter().map(|v| v.map(str::to_string)).collect() }
    }

    #[test]
    fn rows_are_diffed_by_key_column_by_column_in_key_order() {
        let names = ["id".to_string(), "title".to_string(), "n".to_string()];
        let expected = vec![
            row(&["10"], &[Some("10"), Some("a"), Some("1")]),
            row(&["9"], &[Some("9"), Some("x"), Some("2")]),
            row(&["5"], &[Some("5"), Some("y"), Some("2")]),
            row(&["7"], &[Some("7"), None, Some("3")]),
        ];
        let actual = vec![
            row(&["5"], &[Some("5"), Some("x"), Some("2")]),
            row(&["9"], &[Some("9"), Some("y"), Some("2")]),
            row(&["10"], &[Some("10"), Some("a"), Some("1")]),
            row(&["11"], &[Some("11"), Some("b"), None]),
        ];
        let diff = diff_rows(&names[..1], &names, expected.clone(), actual.clone(), 20);
        let listed: Vec<(&str, RowStatus, Vec<String>)> = diff.rows.iter().map(|r| (r.key.as_str(), r.status, r.columns.clone())).collect();
        let title = vec!["title".to_string()];
        assert_eq!(
            listed,
            [
                ("id=5", RowStatus::Differs, title.clone()),
                ("id=7", RowStatus::Missing, vec![]),
                ("id=9", RowStatus::Differs, title),
                ("id=11", RowStatus::OnlyInBigquery, vec![]),
            ]
        );
        assert_eq!((diff.missing, diff.only_in_bigquery, diff.differing), (1, 1, 2));
        let limited = diff_rows(&names[..1], &names, expected, actual, 1);
        assert_eq!((limited.rows.len(), limited.differing, limited.rows[0].key.as_str()), (1, 2, "id=5"));
    }

    #[test]
    fn a_duplicated_row_is_once_more_in_bigquery_and_composite_keys_name_every_part() {
        let names = ["a".to_string(), "b".to_string()];
        let once = row(&["1", "x"], &[Some("1"), Some("x")]);
        let diff = diff_rows(&names, &names, vec![once.clone()], vec![once.clone(), once], 20);
        assert_eq!((diff.only_in_bigquery, diff.rows[0].key.as_str()), (1, "a=1, b=x"));
        let null_key = SideRow { key: vec![Some("2".into()), None], values: vec![Some("2".into()), None] };
        let diff = diff_rows(&names, &names, vec![null_key], vec![], 20);
        assert_eq!((diff.missing, diff.rows[0].key.as_str()), (1, "a=2, b=NULL"));
    }
}

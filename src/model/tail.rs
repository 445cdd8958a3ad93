//! Tail exports (`export --since <manifest>`): only the rows added after an earlier run, by a
//! watermark column that only grows (`created_at`, or an append-only table's integer key).
//!
//! A tail's bound is the highest watermark value the earlier run (and the runs it continued)
//! holds; the tail reads the rows above it. Before any data moves, the rows at or below the
//! bound (or with no watermark) are counted in the new snapshot: they must be exactly the rows
//! the chain of runs holds, else rows were added below the bound, changed or deleted, and a tail
//! would miss them.
//!
//! Rows an earlier run set aside (`--on-bad-value quarantine`) are held by the chain too: they
//! count in `rows_through`, and since a set-aside row's watermark may lie above the bound (its
//! watermark may be the very value BigQuery cannot hold, year 12000), the tail leaves out the
//! rows whose primary key is one of theirs. Without a primary key such rows cannot be told
//! apart: the check counts them below the bound, and refuses the tail if one is above it.

use serde::{Deserialize, Serialize};

use crate::model::types::{quote_ident, ColumnMapping};

/// One table's tail: which earlier run it continues and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tail {
    /// The run this one continues.
    pub parent_run: String,
    /// The watermark column (Postgres name) and its Postgres type.
    pub column: String,
    pub pg_type: String,
    /// The highest watermark value the runs up to the parent hold, in the manifest's form (the
    /// integer, or days / microseconds since 1970-01-01); `None` when they hold no row with one.
    pub after: Option<String>,
    /// The rows the runs up to the parent hold: those at or below `after`, or without a value,
    /// and those they set aside.
    pub rows_through: u64,
    /// The primary key that tells set-aside and carried rows apart (empty without one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    /// The keys (as [`key_json`] prints them) of the rows the runs up to the parent set aside:
    /// held by the chain wherever their watermark is, so never read again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_aside: Vec<String>,
    /// `--carry-changes`: the rows at or below the bound that changed since the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<Carried>,
}

/// The changes below a tail's bound it carries (`--carry-changes`): the rows updated or
/// inserted late are read again with the tail's rows, by key; the deleted ones' keys go to the
/// run's `_deleted/keys.parquet`, which `load --mode merge --apply-deletes` deletes by key.
/// The keys travel in the plan (each unit's row filter holds them, so a worker on another
/// machine needs nothing else); [`crate::model::row_hash::MAX_CARRIED_KEYS`] bounds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carried {
    /// The keys (as [`key_json`] prints them) of the rows updated or inserted late, in order.
    pub keys: Vec<String>,
    /// Of those, the rows updated: the runs up to the parent held them already.
    pub updated: u64,
    /// The rows deleted since the parent: the runs up to it held them, the snapshot does not.
    pub deleted: u64,
}

/// What a tail reads of its table in the parent run's manifest
/// (`TableManifest::tail_parent` builds it).
#[derive(Debug, Clone, Copy)]
pub struct Parent<'a> {
    /// The parent run's id and the table's name in it.
    pub run: &'a str,
    pub table: &'a str,
    /// The watermark column as the parent exported it: its Postgres type and highest value;
    /// `None` when the parent did not export the column.
    pub watermark: Option<(&'a str, Option<&'a str>)>,
    /// The parent's own tail, when it was one.
    pub tail: Option<&'a Tail>,
    /// The rows the runs up to the parent hold.
    pub rows: u64,
}

/// Why a column cannot be a tail's watermark.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table `{table}`: column `{column}` cannot be the watermark of a tail: {reason}")]
pub struct WatermarkRefused {
    pub table: String,
    pub column: String,
    pub reason: WatermarkReason,
}

/// What keeps a column from being a watermark.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatermarkReason {
    #[error("it is {pg_type}; a watermark is an integer, date or timestamp that only grows")]
    NotOrdered { pg_type: String },
    #[error("run `{parent_run}` did not export it")]
    NotExported { parent_run: String },
    #[error("run `{parent_run}` exported it as {was}, it is now {now}")]
    TypeChanged { parent_run: String, was: String, now: String },
}

impl Tail {
    /// The tail of `column` after `parent`; `key` is the table's primary key now and
    /// `set_aside` the keys of the rows the parent set aside (read from its `_rejected` file;
    /// none without a key).
    ///
    /// # Errors
    /// Why the column cannot be a watermark, naming table, column and type.
    pub fn after_run(parent: Parent<'_>, column: &ColumnMapping, key: &[String], set_aside: &[String]) -> Result<Self, WatermarkRefused> {
        let parent_run = parent.run;
        let refuse = |reason| WatermarkRefused { table: parent.table.to_string(), column: column.name.clone(), reason };
        if literal(&column.pg_type, "0").is_none() || column.repeated {
            return Err(refuse(WatermarkReason::NotOrdered { pg_type: column.pg_type.clone() }));
        }
        let Some((earlier_type, earlier_max)) = parent.watermark else {
            return Err(refuse(WatermarkReason::NotExported { parent_run: parent_run.into() }));
        };
        if earlier_type != column.pg_type {
            let (was, now) = (earlier_type.to_string(), column.pg_type.clone());
            return Err(refuse(WatermarkReason::TypeChanged { parent_run: parent_run.into(), was, now }));
        }
        // A tail's carried rows lie below its own bound: the bound never goes down.
        let (after, mut held_apart) = match parent.tail {
            Some(tail) => (highest(earlier_max, tail.after.as_deref()), tail.set_aside.clone()),
            None => (earlier_max.map(str::to_string), Vec::new()),
        };
        if !key.is_empty() {
            held_apart.extend(set_aside.iter().cloned());
            held_apart.sort();
            held_apart.dedup();
        } else {
            held_apart.clear();
        }
        Ok(Self {
            parent_run: parent_run.to_string(),
            column: column.name.clone(),
            pg_type: column.pg_type.clone(),
            after,
            rows_through: parent.rows,
            key: if held_apart.is_empty() { Vec::new() } else { key.to_vec() },
            set_aside: held_apart,
            carried: None,
        })
    }

    /// The tail carrying `carried` (read again by `key`, the table's primary key).
    pub fn carrying(self, key: &[String], carried: Carried) -> Self {
        Self { key: key.to_vec(), carried: Some(carried), ..self }
    }

    /// The rows of the runs up to the parent that this tail's snapshot no longer holds as they
    /// were: those it carries updated, and those deleted.
    pub fn replaced_rows(&self) -> u64 {
        self.carried.as_ref().map_or(0, |c| c.updated + c.deleted)
    }

    /// The rows of the tail: `"column" > <after>`, or every row with a value when the earlier
    /// runs hold none; in both cases without the rows the earlier runs set aside; and the rows
    /// it carries, by key.
    pub fn row_filter(&self) -> String {
        let new_rows = self.new_rows_filter();
        match (key_json(&self.key), &self.carried) {
            (Some(key), Some(carried)) if !carried.keys.is_empty() => {
                format!("({new_rows}) OR {key} = ANY(ARRAY[{}]::text[])", text_literals(&carried.keys))
            }
            _ => new_rows,
        }
    }

    /// The rows above the bound, without those set aside.
    fn new_rows_filter(&self) -> String {
        let column = quote_ident(&self.column);
        let above = match self.after.as_deref().and_then(|after| literal(&self.pg_type, after)) {
            Some(after) => format!("{column} > {after}"),
            None => format!("{column} IS NOT NULL"),
        };
        match key_json(&self.key) {
            Some(key) if !self.set_aside.is_empty() => {
                format!("{above} AND {key} <> ALL (ARRAY[{}]::text[])", text_literals(&self.set_aside))
            }
            _ => above,
        }
    }

    /// The rows the earlier runs hold: the others (at or below the bound, or without a value).
    pub fn earlier_rows_filter(&self) -> String {
        format!("NOT COALESCE({}, false)", self.new_rows_filter())
    }
}

/// `--updated-at`: the rows of a `timestamp with time zone` column `column` updated at or after
/// `micros` (µs since 1970, the server's clock); `None` for another type.
pub fn updated_since(column: &ColumnMapping, micros: i64) -> Option<String> {
    let at = literal(&column.pg_type, &micros.to_string()).filter(|_| column.pg_type == "timestamp with time zone")?;
    Some(format!("{} >= {at}", quote_ident(&column.name)))
}

/// Postgres text literals, `'a', 'b'`, quotes doubled.
fn text_literals(values: &[String]) -> String {
    values.iter().map(|v| format!("'{}'", v.replace('\'', "''"))).collect::<Vec<_>>().join(", ")
}

/// The higher of two watermark values of the manifest's form (integers).
fn highest(a: Option<&str>, b: Option<&str>) -> Option<String> {
    let value = |v: Option<&str>| v.and_then(|v| v.parse::<i64>().ok());
    match (value(a), value(b)) {
        (Some(x), Some(y)) => Some(x.max(y).to_string()),
        _ => a.or(b).map(str::to_string),
    }
}

/// A row's primary key as JSON text, `{"id" : 7}`: byte for byte what
/// `json_build_object('id', "id")::text` prints (each value by `to_json`, names escaped as JSON
/// does), built by concatenation at under two thirds of its cost per row. What the `_rejected`
/// file records as `key`, what the row hashes are keyed by, and how a tail leaves rows out.
/// `None` without a key.
pub fn key_json(key: &[String]) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let pairs: Vec<String> = key
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = serde_json::to_string(c).expect("a string serialises to JSON");
            let before = format!("{}{name} : ", if i == 0 { "{" } else { ", " });
            format!("'{}' || COALESCE(to_json({})::text, 'null')", before.replace('\'', "''"), quote_ident(c))
        })
        .collect();
    Some(format!("({} || '}}')", pairs.join(" || ")))
}

/// A watermark value of the manifest's form as a Postgres literal of `pg_type` (as
/// `format_type` names it); `None` for a type that cannot be a watermark. Temporal values go through an interval of whole days or
/// microseconds, which Postgres parses exactly.
fn literal(pg_type: &str, value: &str) -> Option<String> {
    let value: i64 = value.parse().ok()?;
    match pg_type {
        "smallint" | "integer" | "bigint" => Some(value.to_string()),
        "date" => Some(format!("(date '1970-01-01' + {value})")),
        "timestamp without time zone" => Some(format!("(timestamp '1970-01-01 00:00:00' + interval '{value} microseconds')")),
        "timestamp with time zone" => Some(format!("(timestamptz '1970-01-01 00:00:00+00' + interval '{value} microseconds')")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::aggregates::ColumnAggregates;
    use crate::model::manifest::{ColumnManifest, FileManifest, RejectedRows, TableManifest};
    use crate::model::types::{map_column, OutOfRange, PgColumn};

    /// A column as the catalog describes it: `pg_type` is `format_type`'s name.
    fn mapping(name: &str, pg_type: &str) -> ColumnMapping {
        let type_name = match pg_type {
            "bigint" => "int8",
            "timestamp with time zone" => "timestamptz",
            other => other,
        };
        let column = PgColumn { type_display: pg_type.into(), ..PgColumn::base(name, type_name, -1) };
        map_column(&column, None, OutOfRange::Refuse).unwrap()
    }

    fn table(columns: Vec<(ColumnMapping, Option<&str>)>, rows: u64, tail: Option<Tail>) -> TableManifest {
        let columns = columns
            .into_iter()
            .map(|(mapping, max)| ColumnManifest {
                mapping,
                adjusted_rows: 0,
                aggregates: ColumnAggregates { max: max.map(str::to_string), ..ColumnAggregates::default() },
            })
            .collect();
        TableManifest {
            day_counts: Vec::new(),
            name: "public.events".into(),
            table: None,
            bq_table: "events".into(),
            source_query: String::new(),
            primary_key: vec![],
            foreign_keys: vec![],
            columns,
            partitions: vec![],
            files: vec![],
            row_count: rows,
            tail,
            rejected: None,
            row_hashes: None,
            deleted_keys: None,
            row_fingerprint: None,
        }
    }

    fn with_rejected(mut table: TableManifest, rows: u64) -> TableManifest {
        let file = FileManifest {
            path: "public.events/_rejected/rows.parquet".into(),
            uri: String::new(),
            partition: 0,
            rows,
            bytes: 0,
            crc32c: String::new(),
            aggregates: vec![],
            row_fingerprint: None,
        };
        table.rejected = Some(RejectedRows { file, reasons: Default::default() });
        table
    }

    /// A backfill of 17 kept rows that set 3 aside (their watermarks may be anywhere, even the
    /// year 12000): its tail's check counts all 20, and the tail leaves the 3 out by key; the
    /// tail of that tail (which set 1 more aside) carries them on.
    #[test]
    fn rows_set_aside_count_in_the_chain_and_are_left_out_of_every_later_tail_by_key() {
        let at = mapping("happened_at", "timestamp with time zone");
        let key = ["id".to_string()];
        let backfill = with_rejected(table(vec![(at.clone(), Some("1704067200000000"))], 17, None), 3);
        let set_aside = [r#"{"id" : 12}"#.to_string(), r#"{"id" : 7}"#.to_string(), r#"{"id" : 9}"#.to_string()];
        let tail = Tail::after_run(backfill.tail_parent("backfill", &at.name), &at, &key, &set_aside).unwrap();
        assert_eq!((tail.rows_through, tail.set_aside.len(), tail.key.as_slice()), (20, 3, &key[..]));
        assert_eq!(
            tail.row_filter(),
            r#""happened_at" > (timestamptz '1970-01-01 00:00:00+00' + interval '1704067200000000 microseconds') AND ('{"id" : ' || COALESCE(to_json("id")::text, 'null') || '}') <> ALL (ARRAY['{"id" : 12}', '{"id" : 7}', '{"id" : 9}']::text[])"#
        );
        assert!(tail.earlier_rows_filter().starts_with("NOT COALESCE(\"happened_at\" > "), "{}", tail.earlier_rows_filter());

        let first = with_rejected(table(vec![(at.clone(), Some("1704153600000000"))], 5, Some(tail)), 1);
        let next = Tail::after_run(first.tail_parent("tail1", &at.name), &at, &key, &[r#"{"id" : 23}"#.to_string()]).unwrap();
        assert_eq!(next.rows_through, 26);
        assert_eq!(next.set_aside, [r#"{"id" : 12}"#, r#"{"id" : 23}"#, r#"{"id" : 7}"#, r#"{"id" : 9}"#]);
        // A key's quote is doubled in the literal.
        let odd = Tail::after_run(first.tail_parent("tail1", &at.name), &at, &key, &[r#"{"id" : "o'k"}"#.to_string()]).unwrap();
        assert!(odd.row_filter().contains(r#"'{"id" : "o''k"}'"#), "{}", odd.row_filter());
        // Without a key nothing is left out: the check counts the set-aside rows below the bound.
        let keyless = Tail::after_run(backfill.tail_parent("backfill", &at.name), &at, &[], &[]).unwrap();
        assert_eq!((keyless.rows_through, keyless.set_aside.len()), (20, 0));
        assert!(!keyless.row_filter().contains("ALL"));
        assert_eq!(
            key_json(&["a".into(), "o'k".into()]).unwrap(),
            r#"('{"a" : ' || COALESCE(to_json("a")::text, 'null') || ', "o''k" : ' || COALESCE(to_json("o'k")::text, 'null') || '}')"#
        );
    }

    #[test]
    fn the_bound_is_the_earlier_runs_maximum_and_the_chain_counts_its_rows() {
        let at = mapping("created_at", "timestamp with time zone");
        let full = table(vec![(at.clone(), Some("1704067200000001"))], 300, None);
        let tail = Tail::after_run(full.tail_parent("r1", &at.name), &at, &[], &[]).unwrap();
        assert_eq!((tail.after.as_deref(), tail.rows_through), (Some("1704067200000001"), 300));
        assert_eq!(
            tail.row_filter(),
            r#""created_at" > (timestamptz '1970-01-01 00:00:00+00' + interval '1704067200000001 microseconds')"#
        );
        // A tail with no rows keeps its bound; the next one continues from it.
        let empty = table(vec![(at.clone(), None)], 0, Some(tail.clone()));
        let next = Tail::after_run(empty.tail_parent("r2", &at.name), &at, &[], &[]).unwrap();
        assert_eq!((next.after, next.rows_through, next.parent_run.as_str()), (tail.after.clone(), 300, "r2"));
        let grown = table(vec![(at.clone(), Some("1704067300000000"))], 200, Some(tail));
        assert_eq!(Tail::after_run(grown.tail_parent("r3", &at.name), &at, &[], &[]).unwrap().rows_through, 500);
    }

    #[test]
    fn integer_and_date_watermarks_and_refusals() {
        let id = mapping("id", "bigint");
        let tail = Tail::after_run(table(vec![(id.clone(), Some("300"))], 300, None).tail_parent("r1", &id.name), &id, &[], &[]).unwrap();
        assert_eq!(tail.row_filter(), r#""id" > 300"#);
        assert_eq!(tail.earlier_rows_filter(), r#"NOT COALESCE("id" > 300, false)"#);
        let day = mapping("day", "date");
        let tail =
            Tail::after_run(table(vec![(day.clone(), Some("19723"))], 1, None).tail_parent("r1", &day.name), &day, &[], &[]).unwrap();
        assert_eq!(tail.row_filter(), r#""day" > (date '1970-01-01' + 19723)"#);
        // The earlier run held no value: every row with one is new; rows without one are old.
        let nothing = Tail::after_run(table(vec![(id.clone(), None)], 0, None).tail_parent("r1", &id.name), &id, &[], &[]).unwrap();
        assert_eq!(nothing.earlier_rows_filter(), r#"NOT COALESCE("id" IS NOT NULL, false)"#);

        let note = mapping("note", "text");
        let error = Tail::after_run(table(vec![(note.clone(), None)], 0, None).tail_parent("r1", &note.name), &note, &[], &[]).unwrap_err();
        assert_eq!(error.reason, WatermarkReason::NotOrdered { pg_type: "text".into() });
        assert_eq!(
            error.to_string(),
            "table `public.events`: column `note` cannot be the watermark of a tail: it is text; a watermark is an integer, date or timestamp that only grows"
        );
        let error = Tail::after_run(table(vec![], 0, None).tail_parent("r1", &id.name), &id, &[], &[]).unwrap_err();
        assert_eq!(error.to_string(), "table `public.events`: column `id` cannot be the watermark of a tail: run `r1` did not export it");
    }

    /// A tail carrying 1 updated row, 1 inserted late and 1 deleted: its units read the new rows
    /// and the carried ones by key, its check still reads only the rows below the bound; the
    /// chain counts each row once, and the next bound does not go down to a carried row's.
    #[test]
    fn carried_rows_are_read_by_key_and_counted_once_along_the_chain() {
        let at = mapping("created_at", "timestamp with time zone");
        let key = ["id".to_string()];
        let backfill = table(vec![(at.clone(), Some("1000"))], 100, None);
        let carried = Carried { keys: vec![r#"{"id" : 1000}"#.into(), r#"{"id" : 5}"#.into()], updated: 1, deleted: 1 };
        let tail = Tail::after_run(backfill.tail_parent("backfill", &at.name), &at, &key, &[]).unwrap().carrying(&key, carried);
        let above = r#""created_at" > (timestamptz '1970-01-01 00:00:00+00' + interval '1000 microseconds')"#;
        assert_eq!(
            tail.row_filter(),
            format!(
                r#"({above}) OR ('{{"id" : ' || COALESCE(to_json("id")::text, 'null') || '}}') = ANY(ARRAY['{{"id" : 1000}}', '{{"id" : 5}}']::text[])"#
            )
        );
        assert_eq!(tail.earlier_rows_filter(), format!("NOT COALESCE({above}, false)"));
        // 12 rows, the 2 carried and 10 whose highest watermark is below the bound (as if only
        // carried rows had one): the snapshot held 100 - 1 deleted + 1 late + 10.
        let first = table(vec![(at.clone(), Some("900"))], 12, Some(tail));
        assert_eq!(first.snapshot_rows(), 110);
        let next = Tail::after_run(first.tail_parent("t1", &at.name), &at, &key, &[]).unwrap();
        assert_eq!((next.rows_through, next.after.as_deref(), next.carried), (110, Some("1000"), None));
    }
}

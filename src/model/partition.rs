//! Which rows of a table one partition (a unit of work) holds, typed, so that the relation and
//! Postgres predicate export reads with, the filter the plan counts with, and the BigQuery
//! predicate validate narrows a mismatch with all come from one value.

use serde::{Deserialize, Serialize};

use crate::model::table_ref::TableRef;
use crate::model::types::quote_ident;

/// The rows of one partition. Open ends (`None`) are unbounded, so the outer partitions also
/// take rows beyond the range seen when planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PartitionBounds {
    /// Every row: queries, tables with nothing to split on.
    Whole,
    /// Rows whose integer key is in `[from, to)`; NULL keys are never in a range.
    KeyRange { key: KeyColumn, from: Option<i64>, to: Option<i64> },
    /// Rows whose key is NULL.
    KeyNull { key: KeyColumn },
    /// Rows in heap blocks `[from, to)`, by `ctid`: a Postgres notion with no BigQuery form.
    BlockRange { from: Option<i64>, to: Option<i64> },
    /// The rows stored in one relation of the table's tree (a partition, an inheritance child
    /// such as a TimescaleDB chunk, or the parent's own rows), read `FROM ONLY` it; `blocks`
    /// narrows them to heap blocks `[from, to)` of that relation.
    Child { relation: Relation, blocks: Option<BlockSpan> },
    /// A compressed TimescaleDB chunk: read through the table (the hypertable) with the chunk's
    /// dimension constraints as the predicate, so TimescaleDB decompresses its rows.
    ChunkRange { relation: Relation, predicate: String },
}

/// Heap blocks `[from, to)` of one relation; open ends (`None`) are unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSpan {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// A relation (a table's child, a chunk) as the catalog spells it: one [`TableRef`].
pub type Relation = TableRef;

/// The integer column a table is split on, under its name on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyColumn {
    pub postgres: String,
    /// Its BigQuery column name (`[A-Za-z0-9_]` only, see [`crate::model::types::bigquery_column_names`]).
    pub bigquery: String,
}

impl PartitionBounds {
    /// The manifest's name of the split: `whole`, `key_range`, `key_null`, `block_range`,
    /// `child`, `child_block_range` or `chunk_range`.
    pub fn method(&self) -> &'static str {
        match self {
            PartitionBounds::Whole => "whole",
            PartitionBounds::KeyRange { .. } => "key_range",
            PartitionBounds::KeyNull { .. } => "key_null",
            PartitionBounds::BlockRange { .. } => "block_range",
            PartitionBounds::Child { blocks: None, .. } => "child",
            PartitionBounds::Child { blocks: Some(_), .. } => "child_block_range",
            PartitionBounds::ChunkRange { .. } => "chunk_range",
        }
    }

    /// The relation read `FROM ONLY` instead of the table, for [`Self::Child`].
    pub fn only_relation(&self) -> Option<&Relation> {
        match self {
            PartitionBounds::Child { relation, .. } => Some(relation),
            _ => None,
        }
    }

    /// The child relation these rows are stored in, for the manifest's record.
    pub fn relation(&self) -> Option<&Relation> {
        match self {
            PartitionBounds::Child { relation, .. } | PartitionBounds::ChunkRange { relation, .. } => Some(relation),
            _ => None,
        }
    }

    /// The WHERE condition selecting these rows in what the unit reads (the table, or the
    /// relation of [`Self::only_relation`]); empty when it reads all of it:
    /// `"id" >= 10 AND "id" < 20`, `"id" IS NULL`, `ctid >= '(10,0)'::tid`.
    pub fn postgres_predicate(&self) -> String {
        match self {
            PartitionBounds::Whole | PartitionBounds::Child { blocks: None, .. } => String::new(),
            PartitionBounds::KeyRange { key, from, to } => key_range(&quote_ident(&key.postgres), *from, *to),
            PartitionBounds::KeyNull { key } => format!("{} IS NULL", quote_ident(&key.postgres)),
            PartitionBounds::BlockRange { from, to } => block_range(*from, *to),
            PartitionBounds::Child { blocks: Some(span), .. } => block_range(span.from, span.to),
            PartitionBounds::ChunkRange { predicate, .. } => predicate.clone(),
        }
    }

    /// The condition selecting these rows in one scan of the whole table (its children
    /// included), for counting every partition at once. `None` for [`Self::Whole`] (all rows)
    /// and for a whole child, whose rows the scan counts per relation (`tableoid`). Block
    /// ranges of a child name the child by `tableoid`, as block numbers belong to one relation.
    pub fn scan_filter(&self) -> Option<String> {
        match self {
            PartitionBounds::Whole | PartitionBounds::Child { blocks: None, .. } => None,
            PartitionBounds::Child { relation, blocks: Some(span) } => {
                let literal = format!("'{}'", relation.quoted().replace('\'', "''"));
                Some(format!("tableoid = {literal}::regclass AND {}", block_range(span.from, span.to)))
            }
            _ => Some(self.postgres_predicate()),
        }
    }

    /// The same condition over the loaded BigQuery table, for partitions that narrow a query
    /// there: key ranges and NULL keys. `None` for heap blocks (no BigQuery form) and for the
    /// whole table (nothing to narrow).
    pub fn bigquery_predicate(&self) -> Option<String> {
        // BigQuery column names need no escaping inside back-quotes.
        match self {
            PartitionBounds::KeyRange { key, from, to } => Some(key_range(&format!("`{}`", key.bigquery), *from, *to)),
            PartitionBounds::KeyNull { key } => Some(format!("`{}` IS NULL", key.bigquery)),
            PartitionBounds::Whole
            | PartitionBounds::BlockRange { .. }
            | PartitionBounds::Child { .. }
            | PartitionBounds::ChunkRange { .. } => None,
        }
    }

    /// The inclusive lower and exclusive upper bound as the manifest records them: key values,
    /// or `(block,0)` tuple ids.
    pub fn recorded_ends(&self) -> (Option<String>, Option<String>) {
        let tid = |block: Option<i64>| block.map(|b| format!("({b},0)"));
        match self {
            PartitionBounds::KeyRange { from, to, .. } => (from.map(|v| v.to_string()), to.map(|v| v.to_string())),
            PartitionBounds::BlockRange { from, to } => (tid(*from), tid(*to)),
            PartitionBounds::Child { blocks: Some(span), .. } => (tid(span.from), tid(span.to)),
            _ => (None, None),
        }
    }
}

/// `ctid >= '(10,0)'::tid AND ctid < '(20,0)'::tid`; open ends are left out.
fn block_range(from: Option<i64>, to: Option<i64>) -> String {
    let block = |op: &str, b: i64| format!("ctid {op} '({b},0)'::tid");
    match (from.map(|a| block(">=", a)), to.map(|b| block("<", b))) {
        (None, None) => "true".into(),
        (Some(low), None) => low,
        (None, Some(high)) => high,
        (Some(low), Some(high)) => format!("{low} AND {high}"),
    }
}

/// `k >= 10 AND k < 20` over the quoted key `k`; open ends are left out, and a range open at
/// both ends still excludes NULL keys.
fn key_range(quoted: &str, from: Option<i64>, to: Option<i64>) -> String {
    match (from, to) {
        (None, None) => format!("{quoted} IS NOT NULL"),
        (Some(a), None) => format!("{quoted} >= {a}"),
        (None, Some(b)) => format!("{quoted} < {b}"),
        (Some(a), Some(b)) => format!("{quoted} >= {a} AND {quoted} < {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyColumn {
        KeyColumn { postgres: "Order Id".into(), bigquery: "Order_Id".into() }
    }

    #[test]
    fn both_predicates_come_from_one_bound() {
        let range = PartitionBounds::KeyRange { key: key(), from: Some(-5), to: Some(20) };
        assert_eq!(range.postgres_predicate(), r#""Order Id" >= -5 AND "Order Id" < 20"#);
        assert_eq!(range.bigquery_predicate().as_deref(), Some("`Order_Id` >= -5 AND `Order_Id` < 20"));
        let open = PartitionBounds::KeyRange { key: key(), from: None, to: None };
        assert_eq!(open.bigquery_predicate().as_deref(), Some("`Order_Id` IS NOT NULL"));
        let null = PartitionBounds::KeyNull { key: key() };
        assert_eq!(null.postgres_predicate(), r#""Order Id" IS NULL"#);
        assert_eq!(null.bigquery_predicate().as_deref(), Some("`Order_Id` IS NULL"));
    }

    #[test]
    fn blocks_and_whole_tables_have_no_bigquery_predicate() {
        let blocks = PartitionBounds::BlockRange { from: Some(5), to: None };
        assert_eq!(blocks.postgres_predicate(), "ctid >= '(5,0)'::tid");
        assert_eq!(blocks.recorded_ends(), (Some("(5,0)".into()), None));
        assert_eq!(blocks.bigquery_predicate(), None);
        assert_eq!(PartitionBounds::Whole.postgres_predicate(), "");
        assert_eq!(PartitionBounds::Whole.bigquery_predicate(), None);
    }

    fn chunk() -> Relation {
        Relation { schema: "_timescaledb_internal".into(), name: "_hyper_1_2_chunk's".into() }
    }

    #[test]
    fn children_are_read_alone_and_their_block_ranges_counted_by_tableoid() {
        let whole = PartitionBounds::Child { relation: chunk(), blocks: None };
        assert_eq!((whole.method(), whole.postgres_predicate()), ("child", String::new()));
        assert_eq!(whole.only_relation(), Some(&chunk()));
        assert_eq!(whole.scan_filter(), None, "counted per relation");
        let span = BlockSpan { from: Some(4), to: None };
        let blocks = PartitionBounds::Child { relation: chunk(), blocks: Some(span) };
        assert_eq!((blocks.method(), blocks.postgres_predicate().as_str()), ("child_block_range", "ctid >= '(4,0)'::tid"));
        let filter = r#"tableoid = '"_timescaledb_internal"."_hyper_1_2_chunk''s"'::regclass AND ctid >= '(4,0)'::tid"#;
        assert_eq!(blocks.scan_filter().as_deref(), Some(filter));
        assert_eq!(blocks.recorded_ends(), (Some("(4,0)".into()), None));
        assert_eq!((whole.bigquery_predicate(), blocks.bigquery_predicate()), (None, None));
        assert_eq!(chunk().to_string(), r#"_timescaledb_internal."_hyper_1_2_chunk's""#);
    }

    #[test]
    fn compressed_chunks_are_read_through_the_table_by_their_range() {
        let predicate =
            "((t >= '2024-01-01 00:00:00+00'::timestamp with time zone) AND (t < '2024-02-01 00:00:00+00'::timestamp with time zone))";
        let range = PartitionBounds::ChunkRange { relation: chunk(), predicate: predicate.into() };
        assert_eq!((range.method(), range.only_relation(), range.relation()), ("chunk_range", None, Some(&chunk())));
        assert_eq!(range.postgres_predicate(), predicate);
        assert_eq!(range.scan_filter().as_deref(), Some(predicate));
        assert_eq!(range.bigquery_predicate(), None);
    }

    #[test]
    fn bounds_serialise_tagged_by_kind() {
        let range = PartitionBounds::KeyRange { key: key(), from: Some(1), to: None };
        let json = serde_json::to_value(&range).unwrap();
        assert_eq!(json["kind"], "key_range");
        assert_eq!(json["key"]["postgres"], "Order Id");
        assert_eq!(serde_json::from_value::<PartitionBounds>(json).unwrap(), range);
        let child = PartitionBounds::Child { relation: chunk(), blocks: Some(BlockSpan { from: None, to: Some(9) }) };
        let json = serde_json::to_value(&child).unwrap();
        assert_eq!(
            (json["kind"].as_str(), json["relation"]["name"].as_str(), json["blocks"]["to"].as_i64()),
            (Some("child"), Some("_hyper_1_2_chunk's"), Some(9))
        );
        assert_eq!(serde_json::from_value::<PartitionBounds>(json).unwrap(), child);
    }
}

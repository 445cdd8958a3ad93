//! Which rows of a table one partition holds, typed, so that the Postgres predicate export
//! reads with and the BigQuery predicate validate narrows a mismatch with come from one value.

use serde::{Deserialize, Serialize};

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
}

/// The integer column a table is split on, under its name on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyColumn {
    pub postgres: String,
    /// Its BigQuery column name (`[A-Za-z0-9_]` only, see [`crate::model::types::bigquery_column_names`]).
    pub bigquery: String,
}

impl PartitionBounds {
    /// The manifest's name of the split: `whole`, `key_range`, `key_null` or `block_range`.
    pub fn method(&self) -> &'static str {
        match self {
            PartitionBounds::Whole => "whole",
            PartitionBounds::KeyRange { .. } => "key_range",
            PartitionBounds::KeyNull { .. } => "key_null",
            PartitionBounds::BlockRange { .. } => "block_range",
        }
    }

    /// The WHERE condition selecting these rows in Postgres (empty for [`Self::Whole`]):
    /// `"id" >= 10 AND "id" < 20`, `"id" IS NULL`, `ctid >= '(10,0)'::tid`.
    pub fn postgres_predicate(&self) -> String {
        match self {
            PartitionBounds::Whole => String::new(),
            PartitionBounds::KeyRange { key, from, to } => key_range(&quote_ident(&key.postgres), *from, *to),
            PartitionBounds::KeyNull { key } => format!("{} IS NULL", quote_ident(&key.postgres)),
            PartitionBounds::BlockRange { from, to } => {
                let block = |op: &str, b: i64| format!("ctid {op} '({b},0)'::tid");
                match (from.map(|a| block(">=", a)), to.map(|b| block("<", b))) {
                    (None, None) => "true".into(),
                    (Some(low), None) => low,
                    (None, Some(high)) => high,
                    (Some(low), Some(high)) => format!("{low} AND {high}"),
                }
            }
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
            PartitionBounds::Whole | PartitionBounds::BlockRange { .. } => None,
        }
    }

    /// The inclusive lower and exclusive upper bound as the manifest records them: key values,
    /// or `(block,0)` tuple ids.
    pub fn recorded_ends(&self) -> (Option<String>, Option<String>) {
        match self {
            PartitionBounds::Whole | PartitionBounds::KeyNull { .. } => (None, None),
            PartitionBounds::KeyRange { from, to, .. } => (from.map(|v| v.to_string()), to.map(|v| v.to_string())),
            PartitionBounds::BlockRange { from, to } => (from.map(|b| format!("({b},0)")), to.map(|b| format!("({b},0)"))),
        }
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

    #[test]
    fn bounds_serialise_tagged_by_kind() {
        let range = PartitionBounds::KeyRange { key: key(), from: Some(1), to: None };
        let json = serde_json::to_value(&range).unwrap();
        assert_eq!(json["kind"], "key_range");
        assert_eq!(json["key"]["postgres"], "Order Id");
        assert_eq!(serde_json::from_value::<PartitionBounds>(json).unwrap(), range);
    }
}

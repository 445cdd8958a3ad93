//! A BigQuery table's schema as we create and compare it: fields, time partitioning, their
//! JSON form, and whether an existing table can take a snapshot.

use serde::Serialize;
use serde_json::{json, Value};

/// Time-partitioning granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PartitionUnit {
    Hour,
    Day,
    Month,
    Year,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: String,
    /// BigQuery standard SQL type name.
    pub field_type: String,
    /// NULLABLE, REQUIRED or REPEATED.
    pub mode: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimePartitioning {
    pub field: String,
    pub unit: PartitionUnit,
}

/// `{"fields": [...]}` in BigQuery's JSON form.
pub fn schema_json(fields: &[Field]) -> Value {
    let fields: Vec<Value> = fields
        .iter()
        .map(|f| {
            let mut field = json!({ "name": f.name, "type": f.field_type, "mode": f.mode });
            if let Some(description) = &f.description {
                field["description"] = json!(description);
            }
            field
        })
        .collect();
    json!({ "fields": fields })
}

/// How an existing table's schema compares with the one we would load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaComparison {
    /// One line per column that cannot take the snapshot; empty when compatible.
    pub differences: Vec<String>,
    /// Columns REQUIRED in the snapshot and NULLABLE in the table: safe (non-NULL values fit a
    /// NULLABLE column), loaded with the table's mode.
    pub nullable_in_table: Vec<String>,
}

/// Compares an existing table's schema with the one we would load. Legacy type names
/// (INTEGER, FLOAT, BOOLEAN) count as their standard ones; descriptions are not compared. A
/// NULLABLE table column takes a REQUIRED snapshot column; the other direction (the snapshot
/// may hold NULLs), REPEATED against not, another type or position is a difference.
pub fn schema_differences(existing: &Value, fields: &[Field]) -> SchemaComparison {
    let normalise = |t: &str| match t {
        "INTEGER" => "INT64".to_string(),
        "FLOAT" => "FLOAT64".to_string(),
        "BOOLEAN" => "BOOL".to_string(),
        other => other.to_string(),
    };
    let existing: Vec<(String, String, String)> = existing
        .pointer("/schema/fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| {
            let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let mode = text("mode");
            (text("name"), normalise(&text("type")), if mode.is_empty() { "NULLABLE".into() } else { mode })
        })
        .collect();
    let mut differences = Vec::new();
    let mut nullable_in_table = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        match existing.iter().position(|(name, _, _)| name.eq_ignore_ascii_case(&field.name)) {
            None => differences.push(format!("column `{}` {} {} is missing from the table", field.name, field.mode, field.field_type)),
            Some(j) => {
                let (_, ty, mode) = &existing[j];
                let relaxed = *ty == field.field_type && mode == "NULLABLE" && field.mode == "REQUIRED";
                if (*ty != field.field_type || *mode != field.mode) && !relaxed {
                    differences
                        .push(format!("column `{}`: table has {mode} {ty}, snapshot has {} {}", field.name, field.mode, field.field_type));
                } else if i != j {
                    differences.push(format!("column `{}` is at position {} in the table, {} in the snapshot", field.name, j + 1, i + 1));
                } else if relaxed {
                    nullable_in_table.push(field.name.clone());
                }
            }
        }
    }
    for (name, ty, mode) in &existing {
        if !fields.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
            differences.push(format!("column `{name}` {mode} {ty} is in the table but not in the snapshot"));
        }
    }
    SchemaComparison { differences, nullable_in_table }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, field_type: &str, mode: &str) -> Field {
        Field { name: name.into(), field_type: field_type.into(), mode: mode.into(), description: None }
    }

    #[test]
    fn schema_differences_name_every_column_that_differs() {
        let existing = json!({"schema": {"fields": [
            {"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
            {"name": "score", "type": "FLOAT"},
            {"name": "extra", "type": "STRING"}
        ]}});
        let ours = [field("id", "INT64", "REQUIRED"), field("score", "NUMERIC", "NULLABLE"), field("title", "STRING", "NULLABLE")];
        assert_eq!(
            schema_differences(&existing, &ours).differences,
            [
                "column `score`: table has NULLABLE FLOAT64, snapshot has NULLABLE NUMERIC",
                "column `title` NULLABLE STRING is missing from the table",
                "column `extra` NULLABLE STRING is in the table but not in the snapshot",
            ]
        );
        assert_eq!(
            schema_differences(
                &existing,
                &[field("id", "INT64", "REQUIRED"), field("score", "FLOAT64", "NULLABLE"), field("extra", "STRING", "NULLABLE")]
            ),
            SchemaComparison::default()
        );
    }

    #[test]
    fn a_nullable_table_column_takes_a_required_snapshot_column_but_not_the_reverse() {
        let existing = json!({"schema": {"fields": [
            {"name": "id", "type": "INTEGER", "mode": "NULLABLE"},
            {"name": "title", "type": "STRING"},
            {"name": "at", "type": "TIMESTAMP", "mode": "REQUIRED"},
            {"name": "tags", "type": "STRING", "mode": "REPEATED"},
            {"name": "score", "type": "FLOAT", "mode": "NULLABLE"}
        ]}});
        let ours = [
            field("id", "INT64", "REQUIRED"),
            field("title", "STRING", "REQUIRED"),
            field("at", "TIMESTAMP", "NULLABLE"),
            field("tags", "STRING", "NULLABLE"),
            field("score", "NUMERIC", "REQUIRED"),
        ];
        assert_eq!(
            schema_differences(&existing, &ours),
            SchemaComparison {
                differences: vec![
                    "column `at`: table has REQUIRED TIMESTAMP, snapshot has NULLABLE TIMESTAMP".into(),
                    "column `tags`: table has REPEATED STRING, snapshot has NULLABLE STRING".into(),
                    "column `score`: table has NULLABLE FLOAT64, snapshot has REQUIRED NUMERIC".into(),
                ],
                nullable_in_table: vec!["id".into(), "title".into()],
            }
        );
        let required = json!({"schema": {"fields": [{"name": "id", "type": "INT64", "mode": "REQUIRED"}]}});
        assert_eq!(schema_differences(&required, &[field("id", "INT64", "REQUIRED")]), SchemaComparison::default());
    }
}

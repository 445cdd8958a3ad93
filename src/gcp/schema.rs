//! A BigQuery table's schema as we create and compare it: fields, time partitioning, their
//! JSON form, and whether an existing table can take a snapshot.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::settings::{QualifiedColumn, SettingError};
use crate::model::table_ref::split_outside_quotes;
use crate::model::types::{BigQueryType, ColumnMapping};

/// Time-partitioning granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PartitionUnit {
    Hour,
    Day,
    Month,
    Year,
}

impl FromStr for PartitionUnit {
    type Err = SettingError;

    /// `DAY`, `HOUR`, `MONTH` or `YEAR`, any case.
    fn from_str(unit: &str) -> Result<Self, SettingError> {
        match unit.to_ascii_uppercase().as_str() {
            "DAY" => Ok(Self::Day),
            "HOUR" => Ok(Self::Hour),
            "MONTH" => Ok(Self::Month),
            "YEAR" => Ok(Self::Year),
            _ => Err(SettingError::PartitionUnit { unit: unit.to_string() }),
        }
    }
}

/// A table's time partitioning as the config file writes it: `column[:DAY|HOUR|MONTH|YEAR]`
/// (default DAY; the column as written).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PartitionSpec {
    pub column: String,
    pub unit: PartitionUnit,
}

impl FromStr for PartitionSpec {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        let (column, unit) = split_outside_quotes(text, ':').unwrap_or((text, "DAY"));
        Ok(Self { column: column.to_string(), unit: unit.parse()? })
    }
}

impl TryFrom<String> for PartitionSpec {
    type Error = SettingError;

    fn try_from(text: String) -> Result<Self, SettingError> {
        text.parse()
    }
}

/// `--partition-by TABLE.COLUMN[:UNIT]`: a table's load key and its [`PartitionSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePartition {
    pub table: String,
    pub spec: PartitionSpec,
}

impl FromStr for TablePartition {
    type Err = SettingError;

    fn from_str(text: &str) -> Result<Self, SettingError> {
        let (target, unit) = split_outside_quotes(text, ':').unwrap_or((text, "DAY"));
        let QualifiedColumn { table, column } = target
            .parse()
            .map_err(|_| SettingError::Malformed { value: text.to_string(), expected: "TABLE.COLUMN[:DAY|HOUR|MONTH|YEAR]" })?;
        Ok(Self { table, spec: PartitionSpec { column, unit: unit.parse()? } })
    }
}

/// A column's mode, displayed and serialised as BigQuery names it ([`FieldMode::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldMode {
    Nullable,
    Required,
    Repeated,
}

impl FieldMode {
    /// The mode a snapshot column loads with: REPEATED for an array, REQUIRED for NOT NULL.
    pub fn of(column: &ColumnMapping) -> Self {
        match (column.repeated, column.nullable) {
            (true, _) => FieldMode::Repeated,
            (false, true) => FieldMode::Nullable,
            (false, false) => FieldMode::Required,
        }
    }

    /// BigQuery's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            FieldMode::Nullable => "NULLABLE",
            FieldMode::Required => "REQUIRED",
            FieldMode::Repeated => "REPEATED",
        }
    }

    /// The mode of a table resource's field; BigQuery leaves out NULLABLE.
    fn parse(name: &str) -> Option<Self> {
        match name {
            "" | "NULLABLE" => Some(FieldMode::Nullable),
            "REQUIRED" => Some(FieldMode::Required),
            "REPEATED" => Some(FieldMode::Repeated),
            _ => None,
        }
    }
}

impl std::fmt::Display for FieldMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for FieldMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: String,
    pub field_type: BigQueryType,
    pub mode: FieldMode,
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

/// A table resource as `tables.insert` takes it: reference, schema, partitioning, clustering.
pub fn table_resource(
    project: &str,
    dataset: &str,
    table_id: &str,
    fields: &[Field],
    partitioning: Option<&TimePartitioning>,
    clustering: &[String],
) -> Value {
    let mut resource = json!({ "tableReference": table_reference(project, dataset, table_id), "schema": schema_json(fields) });
    set_layout(&mut resource, partitioning, clustering);
    resource
}

/// `{projectId, datasetId, tableId}`, as table resources and load jobs name a table.
pub fn table_reference(project: &str, dataset: &str, table_id: &str) -> Value {
    json!({ "projectId": project, "datasetId": dataset, "tableId": table_id })
}

/// Sets `timePartitioning` and `clustering` of a table resource or load job configuration.
pub fn set_layout(resource: &mut Value, partitioning: Option<&TimePartitioning>, clustering: &[String]) {
    if let Some(p) = partitioning {
        resource["timePartitioning"] = json!({ "type": p.unit, "field": p.field });
    }
    if !clustering.is_empty() {
        resource["clustering"] = json!({ "fields": clustering });
    }
}

/// The type of a table resource's field: legacy names (INTEGER, FLOAT, BOOLEAN) as their
/// standard ones; `None` for a type pg2bq never loads (RECORD, GEOGRAPHY …).
fn parse_type(name: &str) -> Option<BigQueryType> {
    let standard = match name {
        "INTEGER" => "INT64",
        "FLOAT" => "FLOAT64",
        "BOOLEAN" => "BOOL",
        other => other,
    };
    serde_json::from_value(json!(standard)).ok()
}

/// A column of a table resource, its type and mode parsed; what cannot be parsed stays as
/// BigQuery's text, and differs from every field we load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    pub name: String,
    pub field_type: Result<BigQueryType, String>,
    pub mode: Result<FieldMode, String>,
}

impl TableColumn {
    /// `MODE TYPE`, as BigQuery names them (or the text it answered when unknown).
    pub fn describe(&self) -> String {
        let mode = self.mode.as_ref().map_or_else(|text| text.as_str(), |mode| mode.name());
        let field_type = self.field_type.as_ref().map_or_else(|text| text.as_str(), |t| t.sql_name());
        format!("{mode} {field_type}")
    }
}

/// The columns of a table resource (`schema.fields`), in order.
pub fn table_columns(resource: &Value) -> Vec<TableColumn> {
    let fields = resource.pointer("/schema/fields").and_then(Value::as_array);
    fields
        .into_iter()
        .flatten()
        .map(|f| {
            let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let (field_type, mode) = (text("type"), text("mode"));
            TableColumn {
                name: text("name"),
                field_type: parse_type(&field_type).ok_or(field_type),
                mode: FieldMode::parse(&mode).ok_or(mode),
            }
        })
        .collect()
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
    let existing = table_columns(existing);
    let mut differences = Vec::new();
    let mut nullable_in_table = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        let ours = format!("{} {}", field.mode, field.field_type.sql_name());
        match existing.iter().position(|column| column.name.eq_ignore_ascii_case(&field.name)) {
            None => differences.push(format!("column `{}` {ours} is missing from the table", field.name)),
            Some(j) => {
                let column = &existing[j];
                let same_type = column.field_type == Ok(field.field_type);
                let relaxed = same_type && column.mode == Ok(FieldMode::Nullable) && field.mode == FieldMode::Required;
                if (!same_type || column.mode != Ok(field.mode)) && !relaxed {
                    differences.push(format!("column `{}`: table has {}, snapshot has {ours}", field.name, column.describe()));
                } else if i != j {
                    differences.push(format!("column `{}` is at position {} in the table, {} in the snapshot", field.name, j + 1, i + 1));
                } else if relaxed {
                    nullable_in_table.push(field.name.clone());
                }
            }
        }
    }
    for column in &existing {
        if !fields.iter().any(|f| f.name.eq_ignore_ascii_case(&column.name)) {
            differences.push(format!("column `{}` {} is in the table but not in the snapshot", column.name, column.describe()));
        }
    }
    SchemaComparison { differences, nullable_in_table }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitioning_is_a_column_and_a_unit() {
        let spec = |column: &str, unit| PartitionSpec { column: column.into(), unit };
        assert_eq!("created_at".parse(), Ok(spec("created_at", PartitionUnit::Day)));
        assert_eq!("created_at:month".parse(), Ok(spec("created_at", PartitionUnit::Month)));
        assert_eq!("\"at:x\":HOUR".parse(), Ok(spec("\"at:x\"", PartitionUnit::Hour)));
        assert_eq!(
            "at:WEEK".parse::<PartitionSpec>().unwrap_err().to_string(),
            "unknown partitioning unit `WEEK` (use DAY, HOUR, MONTH or YEAR)"
        );
        let flag: TablePartition = "\"sales.eu\".orders.\"at:x\":MONTH".parse().unwrap();
        assert_eq!((flag.table.as_str(), flag.spec), ("\"sales.eu\".orders", spec("at:x", PartitionUnit::Month)));
        assert_eq!("public.events.at".parse::<TablePartition>().unwrap().spec, spec("at", PartitionUnit::Day));
        assert_eq!(
            "at:DAY".parse::<TablePartition>().unwrap_err().to_string(),
            "`at:DAY` is not of the form TABLE.COLUMN[:DAY|HOUR|MONTH|YEAR]"
        );
    }

    fn field(name: &str, field_type: &str, mode: &str) -> Field {
        Field { name: name.into(), field_type: parse_type(field_type).unwrap(), mode: FieldMode::parse(mode).unwrap(), description: None }
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

    #[test]
    fn types_pg2bq_never_loads_and_unknown_modes_are_differences_named_as_bigquery_names_them() {
        let existing = json!({"schema": {"fields": [
            {"name": "place", "type": "GEOGRAPHY"},
            {"name": "flag", "type": "BOOLEAN", "mode": "SOMETIMES"},
            {"name": "n", "type": "BIGNUMERIC", "mode": "REQUIRED"}
        ]}});
        let ours = [field("place", "STRING", "NULLABLE"), field("flag", "BOOL", "NULLABLE"), field("n", "BIGNUMERIC", "REQUIRED")];
        assert_eq!(
            schema_differences(&existing, &ours).differences,
            [
                "column `place`: table has NULLABLE GEOGRAPHY, snapshot has NULLABLE STRING",
                "column `flag`: table has SOMETIMES BOOL, snapshot has NULLABLE BOOL",
            ]
        );
    }

    #[test]
    fn modes_and_partitioning_have_bigquerys_json_form() {
        assert_eq!(serde_json::to_value(FieldMode::Repeated).unwrap(), json!("REPEATED"));
        let schema = schema_json(&[field("id", "INTEGER", "REQUIRED")]);
        assert_eq!(schema, json!({ "fields": [{ "name": "id", "type": "INT64", "mode": "REQUIRED" }] }));
        let partitioning = TimePartitioning { field: "at".into(), unit: PartitionUnit::Month };
        let resource = table_resource("p", "d", "t", &[], Some(&partitioning), &["at".to_string()]);
        assert_eq!(resource["timePartitioning"], json!({ "type": "MONTH", "field": "at" }));
        assert_eq!(resource["clustering"], json!({ "fields": ["at"] }));
        assert_eq!(resource["tableReference"], json!({ "projectId": "p", "datasetId": "d", "tableId": "t" }));
    }
}

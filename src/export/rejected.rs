//! `--on-bad-value quarantine`: the rows of a table BigQuery cannot hold, read in the snapshot
//! as Postgres prints them and written create-only to `<run>/<table>/_rejected/rows.parquet`
//! (zstd): `key` (the primary key as JSON), `row` (`row_to_json` of the whole row) and `reason`
//! (every check the row fails). Load never reads it; the manifest lists it apart from the data.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::export::parquet::{writer_properties, ParquetSettings};
use crate::export::plan::{and_all, Quarantine, TablePlan};
use crate::export::side_file::store_side_file;
use crate::export::ExportError;
use crate::model::manifest::RejectedRows;
use crate::model::tail::{key_json, Tail};
use crate::source::postgres::SnapshotSession;
use crate::source::PgStep;
use crate::storage::store::Store;

/// The file's name under the table's directory.
pub const REJECTED_FILE: &str = "_rejected/rows.parquet";

/// Reads the table's bad rows in `session`'s snapshot and writes them; a file already there
/// (written between the attempt's start, which removes an earlier attempt's, and its commit) is
/// kept and described as it is, its rows read from its own metadata.
///
/// # Errors
/// [`ExportError`] when the rows cannot be read, encoded or stored.
pub async fn write_rejected(
    session: &SnapshotSession,
    store: &Store,
    run_id: &str,
    table: &TablePlan,
    quarantine: &Quarantine,
    settings: &ParquetSettings,
) -> Result<RejectedRows, ExportError> {
    let rows = session.text_rows(&rejected_rows_sql(table, quarantine), PgStep::ReadRejectedRows { table: table.name.clone() }).await?;
    let data = match encode(&rows, settings) {
        Ok(data) => data,
        Err(source) => return Err(ExportError::Rejected { table: table.name.clone(), source }),
    };
    let stored = store_side_file(store, run_id, &table.directory(), REJECTED_FILE, data).await?;
    // A file already there is described by its own rows, not by the rows read now.
    let file_rows = match stored.fresh {
        true => rows.len() as u64,
        false => SerializedFileReader::new(stored.data.clone())
            .map(|reader| reader.metadata().file_metadata().num_rows().unsigned_abs())
            .map_err(|source| ExportError::Rejected { table: table.name.clone(), source })?,
    };
    let file = stored.manifest(file_rows);
    let reasons = quarantine.reasons.iter().map(|r| (r.reason.clone(), r.rows)).collect();
    Ok(RejectedRows { file, reasons })
}

/// `SELECT key, row, reason` of the rows failing any check (and, in a tail, above its bound).
fn rejected_rows_sql(table: &TablePlan, quarantine: &Quarantine) -> String {
    // A later tail leaves these rows out by this very text (`model::tail`).
    let key = key_json(&table.primary_key).unwrap_or_else(|| "NULL::text".to_string());
    let reasons: Vec<String> = quarantine
        .reasons
        .iter()
        .map(|r| format!("CASE WHEN COALESCE(({}), false) THEN '{}' END", r.predicate, r.reason.replace('\'', "''")))
        .collect();
    let filters: Vec<String> = table.tail.iter().map(Tail::row_filter).chain([quarantine.bad_rows_filter()]).collect();
    format!(
        "SELECT {key}, row_to_json(r)::text, concat_ws('; ', {}) FROM (SELECT * FROM {} WHERE {}) r",
        reasons.join(", "),
        table.from,
        and_all(&filters).unwrap_or_default()
    )
}

/// The rows as one zstd Parquet file of three text columns.
fn encode(rows: &[Vec<Option<String>>], settings: &ParquetSettings) -> Result<Bytes, parquet::errors::ParquetError> {
    let schema = Arc::new(Schema::new(["key", "row", "reason"].map(|name| Field::new(name, DataType::Utf8, name == "key")).to_vec()));
    let column = |i: usize| -> ArrayRef { Arc::new(rows.iter().map(|r| r[i].clone()).collect::<StringArray>()) };
    let batch = RecordBatch::try_new(schema.clone(), vec![column(0), column(1), column(2)])?;
    let mut data = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut data, schema.clone(), Some(writer_properties(settings, &schema)?))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(Bytes::from(data))
}

/// The `key` of every row in a `_rejected/rows.parquet` file (NULL without a primary key).
///
/// # Errors
/// The file is not such a Parquet file.
pub fn rejected_keys(data: Bytes) -> Result<Vec<Option<String>>, parquet::errors::ParquetError> {
    use arrow::array::AsArray;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data)?.build()?;
    let mut keys = Vec::new();
    for batch in reader {
        let batch = batch?;
        let column = batch.column_by_name("key").ok_or_else(|| parquet::errors::ParquetError::General("no `key` column".into()))?;
        let Some(strings) = column.as_string_opt::<i32>() else {
            return Err(parquet::errors::ParquetError::General("the `key` column is not text".into()));
        };
        keys.extend(strings.iter().map(|k| k.map(str::to_string)));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_written_are_the_keys_read_back() {
        let rows = vec![
            vec![Some(r#"{"id" : 7}"#.to_string()), Some("{}".into()), Some("r".into())],
            vec![None, Some("{}".into()), Some("r".into())],
        ];
        let data = encode(&rows, &ParquetSettings::default()).unwrap();
        assert_eq!(rejected_keys(data).unwrap(), [Some(r#"{"id" : 7}"#.to_string()), None]);
    }
}

//! Parquet files from pinned batches: zstd, row groups sized by bytes (BigQuery wants
//! ≥ 16 MiB), files rolled at a target size, each streamed to the store as it is written.
//!
//! Input: normalized batches of one partition. Output: [`FileManifest`]s with rows, bytes,
//! CRC32C and per-file aggregates. It never buffers a whole file: chunks go to the upload
//! task through a bounded channel, so a slow store slows the writer instead of filling memory.

use std::io::Write;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::{Bytes, BytesMut};
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Type as PhysicalType, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::export::dictionary::plain_columns;
use crate::model::aggregates::ColumnAccumulator;
use crate::model::manifest::FileManifest;
use crate::model::row_fingerprint::RowAccumulator;
use crate::model::unit_record::unit_file_prefix;
use crate::storage::gcs::CHUNK_BYTES;
use crate::storage::store::{Chunk, Store, StoreError, StoredObject};

/// How files are encoded and cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParquetSettings {
    pub zstd_level: i32,
    /// Uncompressed Arrow bytes per row group. The writer holds about this much per open file,
    /// so it bounds memory (docs/benchmarks.md); BigQuery wants row groups of ≥ 16 MiB.
    pub row_group_bytes: usize,
    /// Compressed bytes after which a file is closed and the next one started.
    pub file_bytes: u64,
    /// Upload chunks queued between the encoder and the upload task (set per worker by
    /// [`crate::export::memory::WorkerMemory`]).
    #[serde(skip)]
    pub upload_chunks: usize,
}

impl Default for ParquetSettings {
    fn default() -> Self {
        Self { zstd_level: 1, row_group_bytes: 64 << 20, file_bytes: 256 << 20, upload_chunks: 2 }
    }
}

/// Longest min/max kept in Parquet statistics and column indexes. The writer keeps them whole
/// by default: a 10 MB value made a 21 MB footer pyarrow refuses. Our manifest keeps exact ones.
pub const STATISTICS_TRUNCATE_BYTES: usize = 64;

/// Parquet writer settings for every file: zstd, row groups cut by us (by bytes), not by rows,
/// and bounded min/max statistics. Byte-array columns keep statistics per column chunk only:
/// parquet 54 writes page statistics into page headers untruncated.
///
/// # Errors
/// [`ParquetError`] when `schema` has no Parquet form.
pub fn writer_properties(settings: &ParquetSettings, schema: &SchemaRef) -> Result<WriterProperties, ParquetError> {
    Ok(properties_builder(settings, schema)?.build())
}

/// [`writer_properties`] with dictionary encoding off for the `plain` columns (top-level
/// names, from [`plain_columns`]).
pub fn data_file_properties(settings: &ParquetSettings, schema: &SchemaRef, plain: &[String]) -> Result<WriterProperties, ParquetError> {
    let builder = properties_builder(settings, schema)?;
    Ok(plain.iter().fold(builder, |builder, name| builder.set_column_dictionary_enabled(ColumnPath::from(name.as_str()), false)).build())
}

fn properties_builder(settings: &ParquetSettings, schema: &SchemaRef) -> Result<WriterPropertiesBuilder, ParquetError> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(settings.zstd_level).unwrap_or_default()))
        .set_max_row_group_size(usize::MAX)
        .set_created_by(format!("pg2bq {}", env!("CARGO_PKG_VERSION")))
        .set_statistics_truncate_length(Some(STATISTICS_TRUNCATE_BYTES))
        .set_column_index_truncate_length(Some(STATISTICS_TRUNCATE_BYTES));
    for column in ArrowSchemaConverter::new().convert(schema)?.columns() {
        if column.physical_type() == PhysicalType::BYTE_ARRAY {
            builder = builder.set_column_statistics_enabled(column.path().clone(), EnabledStatistics::Chunk);
        }
    }
    Ok(builder)
}

/// A failed file write, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ParquetSinkError {
    #[error("failed to encode `{uri}`")]
    Encode {
        uri: String,
        #[source]
        source: ParquetError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("upload task of `{uri}` stopped unexpectedly")]
    UploadTask {
        uri: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("upload of `{uri}` stopped taking data before the file was complete")]
    UploadStopped { uri: String },
}

/// A file written, with its columns' accumulators for merging into the table's totals.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    pub manifest: FileManifest,
    pub accumulators: Vec<ColumnAccumulator>,
}

/// Streams encoded bytes to an upload task in fixed-size chunks.
struct ChunkSender {
    buffer: BytesMut,
    sender: mpsc::Sender<Chunk>,
}

impl ChunkSender {
    fn send(&mut self, data: Bytes) -> std::io::Result<()> {
        self.sender.blocking_send(Chunk::Data(data)).map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload stopped"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        while self.buffer.len() >= CHUNK_BYTES {
            let chunk = self.buffer.split_to(CHUNK_BYTES).freeze();
            self.send(chunk)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct OpenFile {
    writer: ArrowWriter<ChunkSender>,
    index: usize,
    upload: JoinHandle<Result<StoredObject, StoreError>>,
    rows: u64,
    row_group_bytes: usize,
    accumulators: Vec<ColumnAccumulator>,
    rows_fingerprint: RowAccumulator,
}

/// Writes one partition's batches into rolled files under `<run>/<table>/`.
pub struct PartitionFiles {
    store: Store,
    runtime: tokio::runtime::Handle,
    schema: SchemaRef,
    /// Empty accumulators, one per column, cloned for every file.
    fresh_accumulators: Vec<ColumnAccumulator>,
    /// An empty row fingerprint accumulator, cloned for every file.
    fresh_rows: RowAccumulator,
    settings: ParquetSettings,
    /// `<run-id>/<table>`.
    directory: String,
    partition: usize,
    /// Sequence number of the partition's next file.
    next_file: usize,
    /// Columns written without a dictionary, judged on the partition's first batch.
    plain: Option<Vec<String>>,
    open: Option<OpenFile>,
    finished: Vec<WrittenFile>,
}

impl PartitionFiles {
    pub fn new(
        store: Store,
        runtime: tokio::runtime::Handle,
        schema: SchemaRef,
        (fresh_accumulators, fresh_rows): (Vec<ColumnAccumulator>, RowAccumulator),
        settings: ParquetSettings,
        directory: String,
        partition: usize,
    ) -> Self {
        Self {
            store,
            runtime,
            schema,
            fresh_accumulators,
            fresh_rows,
            settings,
            directory,
            partition,
            next_file: 0,
            plain: None,
            open: None,
            finished: Vec::new(),
        }
    }

    /// `<run-id>/<table>/part-p0002-s00001.parquet`: partition 2's second file.
    fn path(&self, index: usize) -> String {
        format!("{}s{index:05}.parquet", unit_file_prefix(&self.directory, self.partition))
    }

    fn start_file(&mut self, batch: &RecordBatch) -> Result<OpenFile, ParquetSinkError> {
        let index = self.next_file;
        self.next_file += 1;
        let path = self.path(index);
        let (sender, receiver) = mpsc::channel(self.settings.upload_chunks.max(1));
        let store = self.store.clone();
        let upload_path = path.clone();
        let upload = self.runtime.spawn(async move { store.upload(&upload_path, receiver).await });
        let plain = self.plain.get_or_insert_with(|| plain_columns(batch));
        tracing::debug!(path, plain = ?plain, "Columns without a dictionary");
        let properties = data_file_properties(&self.settings, &self.schema, plain)
            .map_err(|source| ParquetSinkError::Encode { uri: self.store.uri(&path), source })?;
        let sink = ChunkSender { buffer: BytesMut::with_capacity(CHUNK_BYTES), sender };
        let writer = ArrowWriter::try_new(sink, self.schema.clone(), Some(properties))
            .map_err(|source| ParquetSinkError::Encode { uri: self.store.uri(&path), source })?;
        Ok(OpenFile {
            writer,
            index,
            upload,
            rows: 0,
            row_group_bytes: 0,
            accumulators: self.fresh_accumulators.clone(),
            rows_fingerprint: self.fresh_rows.clone(),
        })
    }

    /// Appends a batch, flushing row groups and rolling files as the sizes say. Returns the
    /// batch's Arrow memory size, the measure row groups are cut by.
    ///
    /// # Errors
    /// [`ParquetSinkError`] naming the file when encoding or uploading fails.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<usize, ParquetSinkError> {
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        let mut file = match self.open.take() {
            Some(file) => file,
            None => self.start_file(batch)?,
        };
        for (accumulator, column) in file.accumulators.iter_mut().zip(batch.columns()) {
            accumulator.update(column);
        }
        file.rows_fingerprint.update(batch.columns());
        // The URI is only built when encoding fails, not for every batch.
        let index = file.index;
        let encode = |source| ParquetSinkError::Encode { uri: self.store.uri(&self.path(index)), source };
        file.writer.write(batch).map_err(encode)?;
        file.rows += batch.num_rows() as u64;
        let batch_bytes = batch.get_array_memory_size();
        file.row_group_bytes += batch_bytes;
        if file.row_group_bytes >= self.settings.row_group_bytes {
            file.writer.flush().map_err(encode)?;
            file.row_group_bytes = 0;
        }
        if file.writer.bytes_written() as u64 >= self.settings.file_bytes {
            self.close(file)?;
        } else {
            self.open = Some(file);
        }
        Ok(batch_bytes)
    }

    fn close(&mut self, file: OpenFile) -> Result<(), ParquetSinkError> {
        let path = self.path(file.index);
        let uri = self.store.uri(&path);
        // `into_inner` writes the footer and hands back the chunk sender.
        let mut sink = file.writer.into_inner().map_err(|source| ParquetSinkError::Encode { uri: uri.clone(), source })?;
        let rest = sink.buffer.split().freeze();
        let sent = (rest.is_empty() || sink.send(rest).is_ok()) && sink.sender.blocking_send(Chunk::Finish).is_ok();
        drop(sink);
        let stored = self.runtime.block_on(file.upload).map_err(|source| ParquetSinkError::UploadTask { uri: uri.clone(), source })??;
        if !sent {
            return Err(ParquetSinkError::UploadStopped { uri });
        }
        let manifest = FileManifest {
            path: path.split_once('/').map(|(_, rel)| rel.to_string()).unwrap_or(path.clone()),
            uri,
            partition: self.partition,
            rows: file.rows,
            bytes: stored.bytes,
            crc32c: stored.crc32c,
            aggregates: file.accumulators.iter().map(ColumnAccumulator::finish).collect(),
            row_fingerprint: Some(file.rows_fingerprint.finish()),
        };
        tracing::info!(path = %manifest.path, rows = manifest.rows, bytes = manifest.bytes, partition = self.partition, "Wrote file");
        self.finished.push(WrittenFile { manifest, accumulators: file.accumulators });
        Ok(())
    }

    /// Closes the open file and returns every file written, with its accumulators.
    ///
    /// # Errors
    /// [`ParquetSinkError`] when the last file cannot be finished.
    pub fn finish(mut self) -> Result<Vec<WrittenFile>, ParquetSinkError> {
        if let Some(file) = self.open.take() {
            self.close(file)?;
        }
        Ok(std::mem::take(&mut self.finished))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::*;
    use arrow::datatypes::{i256, DataType, Field, Schema, TimeUnit};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use proptest::prelude::*;

    use super::*;
    use crate::model::types::UTC;

    /// Every pinned Arrow type, written with our writer settings and read back, is unchanged:
    /// NULLs, NaN and -0.0, decimal scale, µs timestamps before 1970 and up to year 9999.
    fn round_trip(batch: &RecordBatch) -> RecordBatch {
        let mut buffer = Vec::new();
        let mut writer = ArrowWriter::try_new(
            &mut buffer,
            batch.schema(),
            Some(writer_properties(&ParquetSettings::default(), &batch.schema()).unwrap()),
        )
        .unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(buffer)).unwrap().build().unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        arrow::compute::concat_batches(&batch.schema(), &batches).unwrap()
    }

    // Years 1–9999 in µs since 1970, and days.
    const MIN_MICROS: i64 = -62_135_596_800_000_000;
    const MAX_MICROS: i64 = 253_402_300_799_999_999;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn pinned_types_survive_parquet(
            ints in proptest::collection::vec(proptest::option::of(any::<i64>()), 1..40),
            floats in proptest::collection::vec(proptest::option::of(prop_oneof![any::<f64>(), Just(f64::NAN), Just(-0.0), Just(f64::INFINITY)]), 1..40),
            micros in proptest::collection::vec(proptest::option::of(MIN_MICROS..=MAX_MICROS), 1..40),
            text in proptest::collection::vec(proptest::option::of(".{0,40}"), 1..40),
            big in proptest::collection::vec(proptest::option::of(any::<i128>()), 1..40),
        ) {
            let n = ints.len().min(floats.len()).min(micros.len()).min(text.len()).min(big.len());
            let days: Vec<Option<i32>> = micros[..n].iter().map(|m| m.map(|m| (m / 86_400_000_000) as i32)).collect();
            let columns: Vec<(&str, ArrayRef)> = vec![
                ("i16", Arc::new(Int16Array::from(ints[..n].iter().map(|v| v.map(|v| v as i16)).collect::<Vec<_>>()))),
                ("i32", Arc::new(Int32Array::from(ints[..n].iter().map(|v| v.map(|v| v as i32)).collect::<Vec<_>>()))),
                ("i64", Arc::new(Int64Array::from(ints[..n].to_vec()))),
                ("f32", Arc::new(Float32Array::from(floats[..n].iter().map(|v| v.map(|v| v as f32)).collect::<Vec<_>>()))),
                ("f64", Arc::new(Float64Array::from(floats[..n].to_vec()))),
                ("dec", Arc::new(Decimal128Array::from(ints[..n].iter().map(|v| v.map(|v| (v % 1_000_000_000_000) as i128)).collect::<Vec<_>>()).with_precision_and_scale(12, 2).unwrap())),
                ("big", Arc::new(Decimal256Array::from(big[..n].iter().map(|v| v.map(i256::from_i128)).collect::<Vec<_>>()).with_precision_and_scale(76, 38).unwrap())),
                ("text", Arc::new(StringArray::from(text[..n].to_vec()))),
                ("bytes", Arc::new(BinaryArray::from(text[..n].iter().map(|t| t.as_deref().map(str::as_bytes)).collect::<Vec<_>>()))),
                ("date", Arc::new(Date32Array::from(days))),
                ("time", Arc::new(Time64MicrosecondArray::from(micros[..n].iter().map(|m| m.map(|m| m.rem_euclid(86_400_000_000))).collect::<Vec<_>>()))),
                ("ts", Arc::new(TimestampMicrosecondArray::from(micros[..n].to_vec()).with_timezone(UTC))),
                ("naive", Arc::new(TimestampMicrosecondArray::from(micros[..n].to_vec()))),
                ("list", Arc::new(ListArray::from_iter_primitive::<arrow::datatypes::Int32Type, _, _>(
                    ints[..n].iter().map(|v| v.map(|v| vec![Some(v as i32), Some((v >> 32) as i32)])),
                ))),
            ];
            let fields: Vec<Field> = columns.iter().map(|(name, array)| Field::new(*name, array.data_type().clone(), true)).collect();
            let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.into_iter().map(|(_, a)| a).collect()).unwrap();
            let back = round_trip(&batch);
            for (i, field) in batch.schema().fields().iter().enumerate() {
                let (a, b) = (batch.column(i), back.column(i));
                prop_assert_eq!(b.data_type(), a.data_type(), "{}", field.name());
                // Compare through the raw data so NaN == NaN and -0.0 keeps its sign.
                prop_assert_eq!(a.to_data(), b.to_data(), "{}", field.name());
            }
        }
    }

    #[test]
    fn timestamp_columns_keep_their_zone_or_its_absence() {
        let schema = Schema::new(vec![
            Field::new("utc", DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())), true),
            Field::new("naive", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![MIN_MICROS]).with_timezone(UTC)),
                Arc::new(TimestampMicrosecondArray::from(vec![MAX_MICROS])),
            ],
        )
        .unwrap();
        assert_eq!(round_trip(&batch), batch);
    }
}

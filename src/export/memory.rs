//! How much memory one export worker may use, from a budget for the whole process.
//!
//! Input: the process budget, how many units run at once and an estimate of a row's Arrow
//! bytes. Output: [`WorkerMemory`], the settings that bound what one worker holds: rows per
//! ConnectorX batch, bytes per Parquet row group and upload chunks queued.

use arrow::datatypes::{DataType, Schema};

use crate::export::parquet::ParquetSettings;
use crate::storage::gcs::CHUNK_BYTES;

/// Peak resident memory an export aims to stay under, whatever the number of workers.
pub const DEFAULT_MEMORY_BUDGET_BYTES: usize = 256 << 20;

/// What the process holds whatever its workers do: code, runtimes, connections, allocator
/// slack. Measured at 25 MB for an export of a 10-row table in 4 partitions.
const PROCESS_BASE_BYTES: usize = 48 << 20;

/// Batches a worker holds at worst: the one ConnectorX is building (its buffers grow by
/// doubling, so up to twice its size), the one queued in the bounded hand-off, and the one
/// being encoded.
const BATCHES_HELD: usize = 4;

/// BigQuery wants row groups of at least 16 MiB; a smaller budget shrinks batches instead.
const MIN_ROW_GROUP_BYTES: usize = 16 << 20;

/// Fewer rows per batch than this costs more per-batch work than it saves memory.
const MIN_BATCH_ROWS: usize = 512;

/// Upload chunks held besides the queued ones: the one being filled, the one a GCS upload holds
/// back until it knows whether it is the last, the one on the wire.
const UPLOAD_CHUNKS_HELD: usize = 3;

/// The least a worker can run in: one upload chunk queued, a minimal row group, small batches.
const MIN_WORKER_BYTES: usize = (UPLOAD_CHUNKS_HELD + 1) * CHUNK_BYTES + MIN_ROW_GROUP_BYTES + (4 << 20);

/// Allocations from this size on get a memory map of their own, returned to the system when
/// freed. glibc's default threshold climbs to 32 MiB as large blocks are freed; batch buffers
/// and upload chunks of workers running side by side then come from the heap and fragment it:
/// a 5M-row export in 4 partitions to a throttled sink peaked at 308 MB, and at 205 MB with
/// this threshold; in 1 partition 219–241 MB without it, 177 MB with it. It costs page faults:
/// 12% more CPU for a 5M-row export in 1 partition.
const MMAP_THRESHOLD_BYTES: i32 = 4 << 20;

/// Free memory an allocator arena keeps at its top before giving it back. glibc's 128 KiB
/// default (fixed once the mmap threshold is set) returned every finished batch's buffers and
/// faulted them in again for the next: on 1M rows at 2 units, 8 MiB halves the page faults and
/// cuts 0.2–1.1 s of system time (events, long_text), for 6–15 MB more peak RSS; 16 MiB took
/// `bench_wide` at 4 units to 245 MB, too close to the budget.
const TRIM_THRESHOLD_BYTES: i32 = 8 << 20;

/// Assumed Arrow bytes of a variable-width value (text, bytes, lists) when nothing better is
/// known: generous, so a wide table gets smaller batches rather than a larger peak.
const VARIABLE_VALUE_BYTES: usize = 1024;

/// One worker's share of the budget, applied where a unit starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerMemory {
    /// Rows per ConnectorX batch.
    pub batch_rows: usize,
    /// Uncompressed Arrow bytes after which the Parquet writer flushes a row group.
    pub row_group_bytes: usize,
    /// Upload chunks ([`CHUNK_BYTES`] each) queued between the encoder and the upload task.
    pub upload_chunks: usize,
}

impl WorkerMemory {
    /// Splits `budget` bytes between `workers` units running at once.
    ///
    /// Each worker gets `share = (budget − PROCESS_BASE_BYTES) / workers` and spends it on:
    /// - uploads: `(upload_chunks + 3) × CHUNK_BYTES` (the chunk being filled, the queued ones,
    ///   the one GCS holds back, the one on the wire); two queued when the share allows, else one;
    /// - one open row group: `row_group_bytes` (its encoded pages stay in memory until it is
    ///   flushed; their compressed size is below the Arrow bytes it is cut by);
    /// - batches: `BATCHES_HELD × batch_rows × row_bytes`.
    ///
    /// The row group takes half of what uploads leave, between 16 MiB and `limits`; batches
    /// take the rest, between `MIN_BATCH_ROWS` and `max_batch_rows` rows (so rows wider than
    /// 2 KB at 4 workers go past the share by their floor). With the 256 MB default and 4
    /// workers: share 52 MiB, uploads 32 MiB, row group 16 MiB, batches 4 × 1 MiB.
    pub fn split(budget: usize, workers: usize, row_bytes: usize, limits: &ParquetSettings, max_batch_rows: usize) -> Self {
        let share = budget.saturating_sub(PROCESS_BASE_BYTES) / workers.max(1);
        let upload_chunks = if share >= 128 << 20 { 2 } else { 1 };
        let left = share.saturating_sub((upload_chunks + UPLOAD_CHUNKS_HELD) * CHUNK_BYTES);
        let row_group_bytes =
            (left / 2).clamp(MIN_ROW_GROUP_BYTES, limits.row_group_bytes.max(MIN_ROW_GROUP_BYTES)).min(limits.row_group_bytes);
        let batch_bytes = left.saturating_sub(row_group_bytes) / BATCHES_HELD;
        let batch_rows = (batch_bytes / row_bytes.max(1)).clamp(MIN_BATCH_ROWS.min(max_batch_rows), max_batch_rows);
        Self { batch_rows, row_group_bytes, upload_chunks }
    }

    /// How many workers `budget` holds at once: 4 for the 256 MB default. More run past it.
    pub fn max_workers(budget: usize) -> usize {
        (budget.saturating_sub(PROCESS_BASE_BYTES) / MIN_WORKER_BYTES).max(1)
    }

    /// `parquet` with this worker's row-group size and upload queue.
    pub fn parquet(&self, parquet: ParquetSettings) -> ParquetSettings {
        ParquetSettings { row_group_bytes: self.row_group_bytes, upload_chunks: self.upload_chunks, ..parquet }
    }
}

/// Makes glibc map large buffers on their own (see `MMAP_THRESHOLD_BYTES`), so memory freed by
/// a finished batch or chunk goes back to the system instead of fragmenting the heap, and keep
/// a little freed memory for the next batch (`TRIM_THRESHOLD_BYTES`). Call once before
/// exporting; elsewhere than glibc it does nothing.
pub fn map_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::raw::c_int;
        extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        const M_TRIM_THRESHOLD: c_int = -1;
        const M_MMAP_THRESHOLD: c_int = -3;
        // SAFETY: mallopt only sets glibc's allocation policy; it takes any value and answers
        // 0 when it refuses one, which leaves the default in place.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
        }
    }
}

/// Arrow bytes of one row of `schema`: fixed widths exactly, variable-width values at a
/// generous guess, plus a validity bit rounded up to a byte per column.
pub fn estimated_row_bytes(schema: &Schema) -> usize {
    schema.fields().iter().map(|field| value_bytes(field.data_type()) + 1).sum()
}

fn value_bytes(data_type: &DataType) -> usize {
    match data_type {
        DataType::Boolean => 1,
        DataType::Decimal128(..) => 16,
        DataType::Decimal256(..) => 32,
        other => other.primitive_width().unwrap_or(VARIABLE_VALUE_BYTES),
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Field, TimeUnit};

    use super::*;

    const MIB: usize = 1 << 20;

    fn split(workers: usize, row_bytes: usize) -> WorkerMemory {
        WorkerMemory::split(DEFAULT_MEMORY_BUDGET_BYTES, workers, row_bytes, &ParquetSettings::default(), 16_384)
    }

    /// What one worker may hold by the doc comment's arithmetic.
    fn worst_case(memory: &WorkerMemory, row_bytes: usize) -> usize {
        (memory.upload_chunks + UPLOAD_CHUNKS_HELD) * CHUNK_BYTES + memory.row_group_bytes + BATCHES_HELD * memory.batch_rows * row_bytes
    }

    #[test]
    fn workers_together_stay_within_the_budget() {
        for workers in 1..=WorkerMemory::max_workers(DEFAULT_MEMORY_BUDGET_BYTES) {
            for row_bytes in [16, 500, 1000] {
                let memory = split(workers, row_bytes);
                let total = PROCESS_BASE_BYTES + workers * worst_case(&memory, row_bytes);
                assert!(total <= DEFAULT_MEMORY_BUDGET_BYTES, "{workers} workers of {row_bytes} B rows: {memory:?} needs {total}");
            }
        }
    }

    #[test]
    fn the_default_budget_holds_four_workers() {
        assert_eq!(WorkerMemory::max_workers(DEFAULT_MEMORY_BUDGET_BYTES), 4);
    }

    #[test]
    fn more_workers_get_smaller_shares() {
        assert_eq!(split(1, 1000), WorkerMemory { batch_rows: 16_384, row_group_bytes: 64 * MIB, upload_chunks: 2 });
        assert_eq!(split(2, 1000), WorkerMemory { batch_rows: 9 * MIB / 1000, row_group_bytes: 36 * MIB, upload_chunks: 1 });
        assert_eq!(split(4, 1000), WorkerMemory { batch_rows: MIB / 1000, row_group_bytes: 16 * MIB, upload_chunks: 1 });
    }

    #[test]
    fn batches_never_shrink_below_the_floor_or_grow_past_the_flag() {
        assert_eq!(split(4, 100_000).batch_rows, MIN_BATCH_ROWS);
        assert_eq!(WorkerMemory::split(DEFAULT_MEMORY_BUDGET_BYTES, 1, 8, &ParquetSettings::default(), 100).batch_rows, 100);
    }

    #[test]
    fn a_smaller_row_group_flag_is_kept() {
        let limits = ParquetSettings { row_group_bytes: 4 * MIB, ..ParquetSettings::default() };
        assert_eq!(WorkerMemory::split(DEFAULT_MEMORY_BUDGET_BYTES, 1, 100, &limits, 16_384).row_group_bytes, 4 * MIB);
    }

    #[test]
    fn row_bytes_count_fixed_widths_and_guess_variable_ones() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("body", DataType::Utf8, true),
            Field::new("ok", DataType::Boolean, true),
        ]);
        assert_eq!(estimated_row_bytes(&schema), 9 + 9 + VARIABLE_VALUE_BYTES + 1 + 2);
    }
}

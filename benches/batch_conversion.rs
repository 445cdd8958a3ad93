//! Batch conversion throughput without a database: ConnectorX-shaped batches → our pinned
//! types (`normalize_batch`), → Parquet (zstd, into `io::sink()`), and → manifest aggregates
//! (typed loops for text, bytes and integer-like columns; value by value for floats, decimals,
//! booleans and lists), and → row fingerprints (each row's values encoded and hashed once). One group per schema shape; throughput is the input batch's Arrow bytes.
//!
//! `cargo bench --bench batch_conversion`; `cargo test --benches` runs each once (CI).

use std::hint::black_box;
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, LargeStringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use parquet::arrow::ArrowWriter;

use pg2bq::export::batches::{normalize_batch, pinned_schema};
use pg2bq::export::parquet::{writer_properties, ParquetSettings};
use pg2bq::model::aggregates::ColumnAccumulator;
use pg2bq::model::row_fingerprint::RowAccumulator;
use pg2bq::model::types::{map_column, BigQueryType, ColumnMapping, OutOfRange, PgColumn};

const ROWS: usize = 16_384;

fn mapping(name: &str, type_name: &str, typmod: i32) -> ColumnMapping {
    map_column(&PgColumn::base(name, type_name, typmod), None, OutOfRange::Refuse).expect("benchmark types are mappable")
}

/// A deterministic pseudo-random sequence (no RNG dependency, same data every run).
fn sequence(seed: u64) -> impl Iterator<Item = u64> {
    (0..).map(move |i: u64| (i ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
}

/// `(name, ConnectorX-shaped batch, mappings)` for each schema shape.
fn shapes() -> Vec<(&'static str, RecordBatch, Vec<ColumnMapping>)> {
    // `shift` keeps values in the column type's range (int4 arrives widened to Int64).
    let ints = |seed, nulls: bool, shift: u32| -> ArrayRef {
        Arc::new(
            sequence(seed)
                .take(ROWS)
                .enumerate()
                .map(|(i, v)| (!nulls || i % 10 != 0).then_some(v as i64 >> shift))
                .collect::<Int64Array>(),
        )
    };
    let text = |width: usize| -> ArrayRef {
        Arc::new(
            sequence(7)
                .take(ROWS)
                .map(|v| Some(format!("{v:016x}").repeat(width / 16 + 1)[..width].to_string()))
                .collect::<LargeStringArray>(),
        )
    };
    let numerics: ArrayRef = Arc::new(
        sequence(3).take(ROWS).map(|v| Some(format!("{}.{:09}", v % 10_000_000_000, v % 1_000_000_000))).collect::<LargeStringArray>(),
    );
    // As ConnectorX hands timestamptz over: microseconds, UTC.
    let micros: ArrayRef = Arc::new(
        sequence(5)
            .take(ROWS)
            .map(|v| Some((v % 4_000_000_000_000_000) as i64 - 1_000_000_000_000_000))
            .collect::<TimestampMicrosecondArray>()
            .with_timezone("+00:00"),
    );
    // Values a float4 holds exactly, so the narrowing cast is exact.
    let floats: ArrayRef = Arc::new(sequence(6).take(ROWS).map(|v| Some((v % 1_000_000) as f32 as f64 / 64.0)).collect::<Float64Array>());
    let days: ArrayRef = Arc::new(sequence(8).take(ROWS).map(|v| Some((v % 80_000) as i32 - 20_000)).collect::<Date32Array>());
    let batch = |columns: Vec<(&str, ArrayRef)>| RecordBatch::try_from_iter(columns).expect("columns have equal length");
    let json_text = |mut m: ColumnMapping| {
        m.bq_type = BigQueryType::Json;
        m
    };
    vec![
        (
            "ints",
            batch(vec![("a", ints(1, false, 8)), ("b", ints(2, false, 33)), ("c", ints(3, false, 8))]),
            vec![mapping("a", "int8", -1), mapping("b", "int4", -1), mapping("c", "int8", -1)],
        ),
        (
            "wide_text",
            batch(vec![("title", text(60)), ("content", text(720)), ("metadata", text(200))]),
            vec![mapping("title", "text", -1), mapping("content", "text", -1), json_text(mapping("metadata", "jsonb", -1))],
        ),
        ("numeric", batch(vec![("amount", numerics)]), vec![mapping("amount", "numeric", ((38 << 16) | 9) + 4)]),
        ("timestamps", batch(vec![("at", micros)]), vec![mapping("at", "timestamptz", -1)]),
        (
            // Widened by ConnectorX (int2/int4 as Int64, float4 as Float64): normalize narrows them.
            "narrow_numbers_and_dates",
            batch(vec![("small", ints(4, false, 49)), ("mid", ints(5, false, 33)), ("ratio", floats), ("day", days)]),
            vec![mapping("small", "int2", -1), mapping("mid", "int4", -1), mapping("ratio", "float4", -1), mapping("day", "date", -1)],
        ),
        (
            "ints_10pct_nulls",
            batch(vec![("a", ints(1, true, 8)), ("b", ints(2, true, 8))]),
            vec![mapping("a", "int8", -1), mapping("b", "int8", -1)],
        ),
    ]
}

fn bench(c: &mut Criterion) {
    for (name, input, columns) in shapes() {
        let schema = pinned_schema(&columns);
        let pinned = normalize_batch(&input, &columns, &schema).expect("benchmark data converts");
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(input.get_array_memory_size() as u64));
        group.bench_function("normalize", |b| b.iter(|| normalize_batch(black_box(&input), &columns, &schema).unwrap()));
        group.bench_function("parquet_zstd1", |b| {
            let properties = writer_properties(&ParquetSettings::default(), &schema).expect("the pinned schema has a Parquet form");
            b.iter(|| {
                let mut writer = ArrowWriter::try_new(std::io::sink(), schema.clone(), Some(properties.clone())).unwrap();
                writer.write(black_box(&pinned)).unwrap();
                writer.close().unwrap()
            })
        });
        group.bench_function("aggregates", |b| {
            b.iter(|| {
                let mut accumulators: Vec<ColumnAccumulator> = columns.iter().map(ColumnAccumulator::for_column).collect();
                for (accumulator, column) in accumulators.iter_mut().zip(black_box(&pinned).columns()) {
                    accumulator.update(column);
                }
                accumulators.iter().map(ColumnAccumulator::finish).count()
            })
        });
        group.bench_function("row_fingerprints", |b| {
            b.iter(|| {
                let mut rows = RowAccumulator::for_columns(&columns);
                rows.update(black_box(&pinned).columns());
                rows.finish()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

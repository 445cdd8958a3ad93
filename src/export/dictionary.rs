//! Which columns skip Parquet's dictionary encoding, judged on a partition's first batch.
//!
//! The Parquet writer interns every value of a column chunk until the column's dictionary
//! passes 1 MiB: for a column whose values rarely repeat (keys, timestamps, measurements, long
//! text) that is hashing and copying for pages that end up plain, or a dictionary as large as
//! the data, and one more buffer per column held until the row group is flushed. A column
//! whose first batch holds more than half distinct values is written plain from the start;
//! the others keep the dictionary (a status, a tag, a country).

use std::collections::HashSet;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;

/// Fewer non-null values than this say nothing about a column: it keeps the dictionary.
const MIN_VALUES: usize = 64;

/// The names of `batch`'s columns whose values are mostly distinct.
pub fn plain_columns(batch: &RecordBatch) -> Vec<String> {
    let schema = batch.schema();
    schema.fields().iter().zip(batch.columns()).filter(|(_, array)| mostly_distinct(array)).map(|(field, _)| field.name().clone()).collect()
}

/// More than half of the non-null values distinct; text, bytes and fixed-width values only
/// (booleans have no dictionary, lists keep the writer's default).
fn mostly_distinct(array: &ArrayRef) -> bool {
    let values = array.len() - array.null_count();
    if values < MIN_VALUES {
        return false;
    }
    let data = array.to_data();
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(values);
    let valid = (0..array.len()).filter(|&row| array.is_valid(row));
    match array.data_type() {
        DataType::Utf8 => seen.extend(valid.map(|row| array.as_string::<i32>().value(row).as_bytes())),
        DataType::Binary => seen.extend(valid.map(|row| array.as_binary::<i32>().value(row))),
        DataType::Boolean => return false,
        data_type => {
            let Some(width) = data_type.primitive_width() else { return false };
            let Some(buffer) = data.buffers().first() else { return false };
            let bytes = &buffer.as_slice()[data.offset() * width..];
            seen.extend(valid.map(|row| &bytes[row * width..(row + 1) * width]));
        }
    }
    seen.len() * 2 > values
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Float64Array, Int32Array, StringArray, TimestampMicrosecondArray};

    use super::*;

    #[test]
    fn unique_values_go_plain_and_repeated_ones_keep_the_dictionary() {
        let n = 1000;
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int32Array::from_iter_values(0..n)) as ArrayRef),
            ("status", Arc::new(Int32Array::from_iter_values((0..n).map(|i| i % 5)))),
            ("x", Arc::new(Float64Array::from_iter_values((0..n).map(|i| f64::from(i) / 7.0)))),
            ("at", Arc::new(TimestampMicrosecondArray::from_iter_values((0..n).map(i64::from)).with_timezone("+00:00"))),
            ("body", Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("report {i}"))))),
            ("tag", Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("tag-{}", i % 97))))),
            ("flag", Arc::new(BooleanArray::from_iter((0..n).map(|i| Some(i % 2 == 0))))),
        ])
        .unwrap();
        assert_eq!(plain_columns(&batch), ["id", "x", "at", "body"]);
    }

    /// A sliced array is judged by its own rows; NULLs and short columns keep the dictionary.
    #[test]
    fn slices_nulls_and_short_columns_are_judged_by_their_values() {
        let repeated_then_unique = Int32Array::from_iter_values((0..1000).map(|i| if i < 500 { 1 } else { i }));
        let batch = RecordBatch::try_from_iter([
            ("tail", Arc::new(repeated_then_unique.slice(500, 500)) as ArrayRef),
            ("head", Arc::new(repeated_then_unique.slice(0, 500))),
            ("nulls", Arc::new(Int32Array::from_iter((0..500).map(|i| (i < 10).then_some(i))))),
        ])
        .unwrap();
        assert_eq!(plain_columns(&batch), ["tail"]);
    }
}

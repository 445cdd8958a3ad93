//! Row fingerprints: one 64-bit `FARM_FINGERPRINT` per row over its columns' canonical values
//! (the encodings of the column fingerprints, [`encode_value`]), in column order, and per file
//! and table their count, XOR and exact sum. A value swapped or moved between rows, or a row
//! duplicated while another is lost, leaves every column's aggregates unchanged but not these.
//!
//! A row's bytes: per column, `-` for NULL (and an empty list, which BigQuery holds as NULL),
//! else `<byte length>:<encoding>` (bytes as lower-case hex, so that BigQuery builds the row as
//! STRING); no row's bytes can be read two ways. BigQuery computes the
//! same with one `FARM_FINGERPRINT` per row (`gcp::sql::row_encoding`). JSON columns are left
//! out ([`covers`]): BigQuery holds them in its own serialisation, not the snapshot's text.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Time64MicrosecondType, TimeUnit,
    TimestampMicrosecondType,
};
use serde::{Deserialize, Serialize};

use crate::model::aggregates::{append_length_prefixed, encode_value};
use crate::model::fingerprint::fingerprint64;
use crate::model::g17::write_g17;
use crate::model::types::{BigQueryType, ColumnMapping};

/// The row fingerprints of a file (or of a table's rows, merged from its files).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowFingerprint {
    pub rows: u64,
    /// BIT_XOR of the rows' fingerprints, as a signed 64-bit decimal (BigQuery INT64).
    pub xor: String,
    /// SUM of the rows' fingerprints as signed 64-bit integers, exact.
    pub sum: String,
}

/// A table's row fingerprints and the columns they cover (by BigQuery name, in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRowFingerprint {
    pub columns: Vec<String>,
    #[serde(flatten)]
    pub total: RowFingerprint,
}

/// Whether a column is part of the row fingerprint: every column except JSON ones.
pub fn covers(column: &ColumnMapping) -> bool {
    column.bq_type != BigQueryType::Json
}

/// Running row fingerprints over the covered columns of a pinned schema's batches.
#[derive(Debug, Clone, Default)]
pub struct RowAccumulator {
    /// Positions of the covered columns in the batch.
    columns: Vec<usize>,
    sums: FingerprintSums,
    /// One buffer per row of the batch being folded in, reused across batches.
    buffers: Vec<Vec<u8>>,
    scratch: Vec<u8>,
}

impl RowAccumulator {
    /// Row fingerprints over the columns at `positions` (in that order).
    pub fn new(positions: Vec<usize>) -> Self {
        Self { columns: positions, ..Self::default() }
    }

    /// Row fingerprints over the [`covers`]ed columns of a table.
    pub fn for_columns(columns: &[ColumnMapping]) -> Self {
        Self::new(columns.iter().enumerate().filter(|(_, c)| covers(c)).map(|(i, _)| i).collect())
    }

    /// Folds in one batch's columns (all of them, in schema order).
    pub fn update(&mut self, columns: &[ArrayRef]) {
        let rows = self.encode_rows(columns);
        for buffer in &self.buffers[..rows] {
            self.sums.add(fingerprint64(buffer));
        }
    }

    /// Each row's fingerprint over the covered columns of one batch, without folding them in.
    pub fn fingerprints(&mut self, columns: &[ArrayRef]) -> Vec<u64> {
        let rows = self.encode_rows(columns);
        self.buffers[..rows].iter().map(|b| fingerprint64(b)).collect()
    }

    /// Writes each row's bytes into `buffers`; returns the batch's rows.
    fn encode_rows(&mut self, columns: &[ArrayRef]) -> usize {
        let rows = columns.first().map_or(0, |c| c.len());
        if self.buffers.len() < rows {
            self.buffers.resize_with(rows, Vec::new);
        }
        self.buffers[..rows].iter_mut().for_each(Vec::clear);
        for &position in &self.columns {
            encode_column(&columns[position], &mut self.buffers[..rows], &mut self.scratch);
        }
        rows
    }

    /// The manifest form.
    pub fn finish(&self) -> RowFingerprint {
        self.sums.finish()
    }
}

/// The count, XOR and exact sum of row fingerprints (a file's, a table's, a bucket's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FingerprintSums {
    pub rows: u64,
    pub xor: u64,
    pub sum: i128,
}

impl FingerprintSums {
    pub fn add(&mut self, row_fingerprint: u64) {
        self.rows += 1;
        self.xor ^= row_fingerprint;
        self.sum += row_fingerprint as i64 as i128;
    }

    /// The manifest form.
    pub fn finish(&self) -> RowFingerprint {
        RowFingerprint { rows: self.rows, xor: (self.xor as i64).to_string(), sum: self.sum.to_string() }
    }
}

/// Appends one column's cells to the rows' bytes: one typed loop for integer-like, float and
/// text columns, cell by cell ([`write_cell`]) for the others.
fn encode_column(array: &ArrayRef, buffers: &mut [Vec<u8>], scratch: &mut Vec<u8>) {
    match array.data_type() {
        DataType::Int16 => append_integers::<Int16Type>(array, buffers, scratch),
        DataType::Int32 => append_integers::<Int32Type>(array, buffers, scratch),
        DataType::Int64 => append_integers::<Int64Type>(array, buffers, scratch),
        DataType::Date32 => append_integers::<Date32Type>(array, buffers, scratch),
        DataType::Time64(TimeUnit::Microsecond) => append_integers::<Time64MicrosecondType>(array, buffers, scratch),
        DataType::Timestamp(TimeUnit::Microsecond, _) => append_integers::<TimestampMicrosecondType>(array, buffers, scratch),
        DataType::Float32 => {
            append_each(array, buffers, scratch, |row, out| write_g17(array.as_primitive::<Float32Type>().value(row).into(), out))
        }
        DataType::Float64 => {
            append_each(array, buffers, scratch, |row, out| write_g17(array.as_primitive::<Float64Type>().value(row), out))
        }
        DataType::Utf8 => {
            let text = array.as_string::<i32>();
            for (row, buffer) in buffers.iter_mut().enumerate() {
                match text.is_null(row) {
                    true => buffer.push(b'-'),
                    false => append_length_prefixed(buffer, text.value(row).as_bytes()),
                }
            }
        }
        _ => {
            for (row, buffer) in buffers.iter_mut().enumerate() {
                match write_cell(array, row, scratch) {
                    None => buffer.push(b'-'),
                    Some(value) => append_length_prefixed(buffer, value),
                }
            }
        }
    }
}

/// An integer-like column's cells: their decimal integer.
fn append_integers<T: ArrowPrimitiveType>(array: &ArrayRef, buffers: &mut [Vec<u8>], scratch: &mut Vec<u8>)
where
    T::Native: Into<i64>,
{
    let values = array.as_primitive::<T>();
    let mut digits = itoa::Buffer::new();
    append_each(array, buffers, scratch, |row, out| out.extend_from_slice(digits.format(values.value(row).into()).as_bytes()));
}

/// Appends each row's cell, `-` for NULL, else the bytes `encode` writes, with their length.
fn append_each(array: &ArrayRef, buffers: &mut [Vec<u8>], scratch: &mut Vec<u8>, mut encode: impl FnMut(usize, &mut Vec<u8>)) {
    for (row, buffer) in buffers.iter_mut().enumerate() {
        if array.is_null(row) {
            buffer.push(b'-');
        } else {
            scratch.clear();
            encode(row, scratch);
            append_length_prefixed(buffer, scratch);
        }
    }
}

/// A cell's encoding in a row's bytes (`None` when absent: NULL or an empty list), written in
/// `scratch` unless it is the value's own text.
fn write_cell<'a>(array: &'a ArrayRef, row: usize, scratch: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    if is_absent(array, row) {
        return None;
    }
    scratch.clear();
    if let Some(integer) = integer_value(array, row) {
        scratch.extend_from_slice(itoa::Buffer::new().format(integer).as_bytes());
        return Some(scratch);
    }
    Some(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).as_bytes(),
        DataType::Binary => {
            write_hex(array.as_binary::<i32>().value(row), scratch);
            scratch
        }
        _ => {
            encode_value(array, row, scratch);
            scratch
        }
    })
}

/// A cell's encoding as text, as BigQuery's row encoding gives each column (bytes as hex);
/// `None` when absent.
pub fn cell_encoding(array: &ArrayRef, row: usize) -> Option<String> {
    let mut scratch = Vec::new();
    write_cell(array, row, &mut scratch).map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

/// `FARM_FINGERPRINT` of a cell's encoding (as [`cell_encoding`]), as signed decimal text;
/// `None` when absent.
pub fn cell_fingerprint(array: &ArrayRef, row: usize) -> Option<String> {
    let mut scratch = Vec::new();
    write_cell(array, row, &mut scratch).map(|bytes| (fingerprint64(bytes) as i64).to_string())
}

/// The value of an integer-like column (integers, dates, times, timestamps), whose encoding is
/// its decimal integer; `None` for other types.
fn integer_value(array: &ArrayRef, row: usize) -> Option<i64> {
    Some(match array.data_type() {
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row),
        DataType::Date32 => array.as_primitive::<Date32Type>().value(row).into(),
        DataType::Time64(TimeUnit::Microsecond) => array.as_primitive::<Time64MicrosecondType>().value(row),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array.as_primitive::<TimestampMicrosecondType>().value(row),
        _ => return None,
    })
}

/// Lower-case hex, as BigQuery's `TO_HEX`.
fn write_hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.extend_from_slice(&[DIGITS[(b >> 4) as usize], DIGITS[(b & 15) as usize]]);
    }
}

/// NULL, or an empty list (BigQuery loads NULL and empty arrays alike).
fn is_absent(array: &ArrayRef, row: usize) -> bool {
    array.is_null(row) || (matches!(array.data_type(), DataType::List(_)) && array.as_list::<i32>().value_length(row) == 0)
}

impl RowFingerprint {
    /// The merge of recorded row fingerprints (e.g. a partition's files); `None` when one is
    /// not a number.
    pub fn merged<'a>(parts: impl IntoIterator<Item = &'a RowFingerprint>) -> Option<RowFingerprint> {
        let (mut rows, mut xor, mut sum) = (0u64, 0u64, 0i128);
        for part in parts {
            rows += part.rows;
            xor ^= part.xor.parse::<i64>().ok()? as u64;
            sum += part.sum.parse::<i128>().ok()?;
        }
        Some(RowFingerprint { rows, xor: (xor as i64).to_string(), sum: sum.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BinaryArray, Int64Array, ListArray, StringArray};
    use arrow::datatypes::Int32Type;

    use super::*;

    fn fingerprint(columns: Vec<ArrayRef>) -> RowFingerprint {
        let mut accumulator = RowAccumulator::new((0..columns.len()).collect());
        accumulator.update(&columns);
        accumulator.finish()
    }

    fn texts(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    /// One row's fingerprint is FARM_FINGERPRINT of its length-prefixed values.
    #[test]
    fn a_row_is_its_length_prefixed_values() {
        let row = fingerprint(vec![Arc::new(Int64Array::from(vec![5])), texts(&[None]), texts(&[Some("a:b")])]);
        let expected = fingerprint64(b"1:5-3:a:b") as i64;
        assert_eq!(row, RowFingerprint { rows: 1, xor: expected.to_string(), sum: expected.to_string() });
    }

    #[test]
    fn null_empty_text_and_separators_are_told_apart() {
        let rows = [
            vec![texts(&[None]), texts(&[Some("")])],
            vec![texts(&[Some("")]), texts(&[None])],
            vec![texts(&[Some("")]), texts(&[Some("")])],
            vec![texts(&[None]), texts(&[None])],
            vec![texts(&[Some("-")]), texts(&[None])],
            vec![texts(&[Some("1:a")]), texts(&[Some("")])],
            vec![texts(&[Some("")]), texts(&[Some("1:a")])],
            vec![texts(&[Some("1:a0:")]), texts(&[None])],
        ];
        let fingerprints: Vec<String> = rows.into_iter().map(|row| fingerprint(row).xor).collect();
        let mut unique = fingerprints.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), fingerprints.len(), "{fingerprints:?}");
    }

    #[test]
    fn bytes_are_lower_case_hex() {
        let bytes: ArrayRef = Arc::new(BinaryArray::from(vec![Some(b"\x00\xab".as_slice()), None]));
        let expected = fingerprint64(b"4:00ab") ^ fingerprint64(b"-");
        assert_eq!(fingerprint(vec![bytes]).xor, (expected as i64).to_string());
    }

    /// The typed loops write what `encode_value` writes, for every type they cover, and `-`
    /// for NULL.
    #[test]
    fn typed_loops_encode_as_encode_value_does() {
        use arrow::array::{
            Date32Array, Float32Array, Float64Array, Int16Array, Int32Array, Time64MicrosecondArray, TimestampMicrosecondArray,
        };
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int16Array::from(vec![Some(-7), None])),
            Arc::new(Int32Array::from(vec![Some(i32::MIN), None])),
            Arc::new(Int64Array::from(vec![Some(i64::MAX), None])),
            Arc::new(Date32Array::from(vec![Some(-719_162), None])),
            Arc::new(Time64MicrosecondArray::from(vec![Some(86_399_999_999), None])),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(i64::MIN), None]).with_timezone("+00:00")),
            Arc::new(Float32Array::from(vec![Some(0.1f32), None])),
            Arc::new(Float64Array::from(vec![Some(-1.0 / 3.0), None])),
            Arc::new(Float64Array::from(vec![Some(f64::NAN), None])),
        ];
        for array in arrays {
            let mut text = Vec::new();
            encode_value(&array, 0, &mut text);
            let expected = fingerprint64(&[format!("{}:", text.len()).into_bytes(), text].concat()) ^ fingerprint64(b"-");
            assert_eq!(fingerprint(vec![array.clone()]).xor, (expected as i64).to_string(), "{}", array.data_type());
        }
    }

    #[test]
    fn cells_give_their_encoding_and_its_fingerprint() {
        let bytes: ArrayRef = Arc::new(BinaryArray::from(vec![Some(b"\x00\xab".as_slice()), None]));
        assert_eq!((cell_encoding(&bytes, 0).as_deref(), cell_encoding(&bytes, 1)), (Some("00ab"), None));
        assert_eq!(cell_fingerprint(&bytes, 0), Some((fingerprint64(b"00ab") as i64).to_string()));
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![-42]));
        assert_eq!(cell_encoding(&ints, 0).as_deref(), Some("-42"));
    }

    #[test]
    fn column_order_matters() {
        let (a, b) = (texts(&[Some("x")]), texts(&[Some("y")]));
        assert_ne!(fingerprint(vec![a.clone(), b.clone()]), fingerprint(vec![b, a]));
    }

    /// Column fingerprints cannot see a swap between rows; row fingerprints do.
    #[test]
    fn a_swap_between_rows_changes_the_table_fingerprint() {
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![5, 9]));
        let before = fingerprint(vec![ids.clone(), texts(&[Some("five"), Some("nine")])]);
        let after = fingerprint(vec![ids, texts(&[Some("nine"), Some("five")])]);
        assert_ne!((before.xor, before.sum), (after.xor, after.sum));
    }

    #[test]
    fn an_empty_list_is_null() {
        let lists: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![]), None, Some(vec![Some(7)])]));
        let mut accumulator = RowAccumulator::new(vec![0]);
        accumulator.update(&[lists]);
        let expected = [b"-".as_slice(), b"-", b"3:1:7"].iter().fold(0u64, |x, row| x ^ fingerprint64(row));
        assert_eq!(accumulator.finish().xor, (expected as i64).to_string());
    }

    proptest::proptest! {
        /// Equal to a naive oracle that writes each row's text by hand.
        #[test]
        fn rows_match_a_naive_oracle(rows in proptest::collection::vec((proptest::option::of(proptest::prelude::any::<i64>()), proptest::option::of(".{0,12}")), 0..40)) {
            let ints: ArrayRef = Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>()));
            let strings: ArrayRef = Arc::new(StringArray::from(rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>()));
            let field = |v: Option<String>| v.map_or("-".to_string(), |v| format!("{}:{v}", v.len()));
            let (mut xor, mut sum) = (0u64, 0i128);
            for (int, text) in &rows {
                let fingerprint = fingerprint64(format!("{}{}", field(int.map(|i| i.to_string())), field(text.clone())).as_bytes());
                xor ^= fingerprint;
                sum += fingerprint as i64 as i128;
            }
            let expected = RowFingerprint { rows: rows.len() as u64, xor: (xor as i64).to_string(), sum: sum.to_string() };
            proptest::prop_assert_eq!(fingerprint(vec![ints, strings]), expected);
        }
    }

    #[test]
    fn batches_and_files_merge_to_one_pass() {
        let (first, second) = (texts(&[Some("a"), None]), texts(&[Some("b")]));
        let mut whole = RowAccumulator::new(vec![0]);
        whole.update(std::slice::from_ref(&first));
        whole.update(std::slice::from_ref(&second));
        let parts = [fingerprint(vec![first]), fingerprint(vec![second])];
        assert_eq!(RowFingerprint::merged(&parts), Some(whole.finish()));
    }
}

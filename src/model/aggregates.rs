//! Per-column aggregates computed from Arrow batches as they stream, recorded in the manifest
//! and later recomputed by BigQuery SQL (validate) or from the Parquet files (verify).
//!
//! For every column: null count, min and max, an exact sum for integers and decimals (floats:
//! an f64 sum plus a NaN count), and an order-independent fingerprint: the XOR *and* the
//! exact sum of `FARM_FINGERPRINT(encoding(value))` over non-null values. XOR alone cancels a
//! duplicated value; the sum does not. The encoding per type is in docs/manifest.md ("The
//! fingerprint") and in [`encode_value`]; it uses integers for temporal types so that BigQuery
//! can reproduce it with `UNIX_MICROS`, `UNIX_DATE` and `TIME_DIFF` instead of locale-dependent
//! formatting.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    i256, DataType, Date32Type, Decimal128Type, Decimal256Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use serde::{Deserialize, Serialize};

use crate::model::days::DayCounter;
use crate::model::decimal::{format_decimal, write_decimal};
use crate::model::g17::{format_g17, write_g17};
use crate::model::types::ColumnMapping;

/// Aggregates of one column, as the manifest records them (numbers as exact decimal strings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnAggregates {
    pub null_count: u64,
    /// Non-null values that went into the fingerprint.
    pub value_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// Exact for integers and decimals; f64 for floats (compare with a relative tolerance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nan_count: Option<u64>,
    /// Lists only: empty (non-NULL) lists, which are left out of `value_count` and the
    /// fingerprint (BigQuery loads NULL and empty arrays alike as empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_count: Option<u64>,
    /// BIT_XOR of the fingerprints, as a signed 64-bit decimal (BigQuery INT64).
    pub fingerprint_xor: String,
    /// SUM of the fingerprints as signed 64-bit integers, exact.
    pub fingerprint_sum: String,
}

/// Running aggregates for one column of a pinned schema.
#[derive(Debug, Clone)]
pub struct ColumnAccumulator {
    data_type: DataType,
    orderable: bool,
    null_count: u64,
    value_count: u64,
    min: Option<Bound>,
    max: Option<Bound>,
    sum: Sum,
    nan_count: u64,
    empty_count: u64,
    fingerprint_xor: u64,
    fingerprint_sum: i128,
    /// Rows per day, for DATE and TIMESTAMP columns (kept out of the per-file aggregates).
    days: Option<DayCounter>,
    scratch: Vec<u8>,
}

/// A min/max candidate, compared within one column's type.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Bound {
    Int(i64),
    Float(f64),
    Decimal(i256),
    Bool(bool),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Sum {
    None,
    Int(i128),
    Float(f64),
    /// `None` once the sum left i256 (BigQuery's SUM overflows there too).
    Decimal(Option<i256>),
}

impl ColumnAccumulator {
    /// Running aggregates for a column of the type table (its pinned type; min/max if orderable).
    pub fn for_column(column: &ColumnMapping) -> Self {
        Self::new(&column.arrow_type, column.orderable())
    }

    /// `orderable: false` skips min/max (JSON columns: BigQuery cannot order JSON).
    pub fn new(data_type: &DataType, orderable: bool) -> Self {
        let sum = match data_type {
            DataType::Int16 | DataType::Int32 | DataType::Int64 => Sum::Int(0),
            DataType::Float32 | DataType::Float64 => Sum::Float(0.0),
            DataType::Decimal128(..) | DataType::Decimal256(..) => Sum::Decimal(Some(i256::ZERO)),
            _ => Sum::None,
        };
        Self {
            data_type: data_type.clone(),
            orderable,
            null_count: 0,
            value_count: 0,
            min: None,
            max: None,
            sum,
            nan_count: 0,
            empty_count: 0,
            fingerprint_xor: 0,
            fingerprint_sum: 0,
            days: matches!(data_type, DataType::Date32 | DataType::Timestamp(..)).then(DayCounter::default),
            scratch: Vec::new(),
        }
    }

    /// Folds one array (of this accumulator's type) in: one typed loop per array for text,
    /// bytes, floats and integer-like columns, value by value for the rest.
    pub fn update(&mut self, array: &ArrayRef) {
        self.null_count += array.null_count() as u64;
        match array.data_type() {
            DataType::Utf8 => self.update_bytes(array.as_string::<i32>().iter().flatten().map(str::as_bytes)),
            DataType::Binary => self.update_bytes(array.as_binary::<i32>().iter().flatten()),
            DataType::Int16 => self.update_integers(array.as_primitive::<Int16Type>().iter().flatten().map(i64::from)),
            DataType::Int32 => self.update_integers(array.as_primitive::<Int32Type>().iter().flatten().map(i64::from)),
            DataType::Int64 => self.update_integers(array.as_primitive::<Int64Type>().iter().flatten()),
            DataType::Date32 => {
                let dates = array.as_primitive::<Date32Type>();
                self.update_integers(dates.iter().flatten().map(i64::from));
                if let Some(days) = &mut self.days {
                    days.add_dates(dates.iter().flatten());
                }
            }
            DataType::Time64(TimeUnit::Microsecond) => self.update_integers(array.as_primitive::<Time64MicrosecondType>().iter().flatten()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let timestamps = array.as_primitive::<TimestampMicrosecondType>();
                self.update_integers(timestamps.iter().flatten());
                if let Some(days) = &mut self.days {
                    days.add_timestamps(timestamps.iter().flatten());
                }
            }
            DataType::Float32 => self.update_floats(array.as_primitive::<Float32Type>().iter().flatten().map(f64::from)),
            DataType::Float64 => self.update_floats(array.as_primitive::<Float64Type>().iter().flatten()),
            _ => self.update_rows(array),
        }
    }

    /// Floats: NaN counted and left out of min, max and sum; encoded as `%.17g`.
    fn update_floats(&mut self, values: impl Iterator<Item = f64>) {
        for value in values {
            self.value_count += 1;
            if value.is_nan() {
                self.nan_count += 1;
            } else {
                if let Sum::Float(sum) = &mut self.sum {
                    *sum += value;
                }
                self.observe(Bound::Float(value));
            }
            self.scratch.clear();
            write_g17(value, &mut self.scratch);
            self.add_fingerprint(crate::model::fingerprint::fingerprint64(&self.scratch));
        }
    }

    /// Text or bytes: fingerprinted as they are, min/max compared in place.
    fn update_bytes<'a>(&mut self, values: impl Iterator<Item = &'a [u8]>) {
        for bytes in values {
            self.value_count += 1;
            if self.orderable {
                self.observe_bytes(bytes);
            }
            self.add_fingerprint(crate::model::fingerprint::fingerprint64(bytes));
        }
    }

    /// Integers, dates, times and timestamps: all encoded as their decimal integer.
    fn update_integers(&mut self, values: impl Iterator<Item = i64>) {
        let mut digits = itoa::Buffer::new();
        for value in values {
            self.value_count += 1;
            if let Sum::Int(sum) = &mut self.sum {
                *sum += value as i128;
            }
            if self.min.as_ref().is_none_or(|min| Bound::Int(value) < *min) {
                self.min = Some(Bound::Int(value));
            }
            if self.max.as_ref().is_none_or(|max| Bound::Int(value) > *max) {
                self.max = Some(Bound::Int(value));
            }
            self.add_fingerprint(crate::model::fingerprint::fingerprint64(digits.format(value).as_bytes()));
        }
    }

    /// Any pinned type, value by value: booleans, decimals and lists (and, as the
    /// reference the typed loops are tested against, the others).
    fn update_rows(&mut self, array: &ArrayRef) {
        for row in 0..array.len() {
            if array.is_null(row) {
                continue;
            }
            if let DataType::List(_) = array.data_type() {
                if array.as_list::<i32>().value_length(row) == 0 {
                    self.empty_count += 1;
                    continue;
                }
            }
            self.value_count += 1;
            if let Some(bound) = self.bound_of(array, row) {
                self.observe(bound);
            }
            self.scratch.clear();
            encode_value(array, row, &mut self.scratch);
            if self.orderable && matches!(array.data_type(), DataType::Utf8 | DataType::Binary) {
                let bytes = std::mem::take(&mut self.scratch);
                self.observe_bytes(&bytes);
                self.scratch = bytes;
            }
            self.add_fingerprint(crate::model::fingerprint::fingerprint64(&self.scratch));
        }
    }

    fn add_fingerprint(&mut self, fingerprint: u64) {
        self.fingerprint_xor ^= fingerprint;
        self.fingerprint_sum += fingerprint as i64 as i128;
    }

    /// Min/max for strings and bytes without copying every value.
    fn observe_bytes(&mut self, value: &[u8]) {
        if !matches!(&self.min, Some(Bound::Bytes(min)) if value >= min.as_slice()) {
            self.min = Some(Bound::Bytes(value.to_vec()));
        }
        if !matches!(&self.max, Some(Bound::Bytes(max)) if value <= max.as_slice()) {
            self.max = Some(Bound::Bytes(value.to_vec()));
        }
    }

    fn bound_of(&mut self, array: &ArrayRef, row: usize) -> Option<Bound> {
        let bound = match array.data_type() {
            DataType::Boolean => Bound::Bool(array.as_boolean().value(row)),
            DataType::Int16 => Bound::Int(array.as_primitive::<Int16Type>().value(row) as i64),
            DataType::Int32 => Bound::Int(array.as_primitive::<Int32Type>().value(row) as i64),
            DataType::Int64 => Bound::Int(array.as_primitive::<Int64Type>().value(row)),
            DataType::Date32 => Bound::Int(array.as_primitive::<Date32Type>().value(row) as i64),
            DataType::Time64(TimeUnit::Microsecond) => Bound::Int(array.as_primitive::<Time64MicrosecondType>().value(row)),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Bound::Int(array.as_primitive::<TimestampMicrosecondType>().value(row)),
            DataType::Float32 => Bound::Float(array.as_primitive::<Float32Type>().value(row) as f64),
            DataType::Float64 => Bound::Float(array.as_primitive::<Float64Type>().value(row)),
            DataType::Decimal128(..) => Bound::Decimal(i256::from_i128(array.as_primitive::<Decimal128Type>().value(row))),
            DataType::Decimal256(..) => Bound::Decimal(array.as_primitive::<Decimal256Type>().value(row)),
            _ => return None,
        };
        match (&bound, &mut self.sum) {
            (Bound::Int(v), Sum::Int(sum)) => *sum += *v as i128,
            (Bound::Decimal(v), Sum::Decimal(sum)) => *sum = sum.and_then(|s| s.checked_add(*v)),
            (Bound::Float(v), Sum::Float(sum)) => {
                if v.is_nan() {
                    self.nan_count += 1;
                    return None;
                }
                *sum += v;
            }
            _ => {}
        }
        Some(bound)
    }

    fn observe(&mut self, bound: Bound) {
        // Strings are compared as UTF-8 bytes, which is code-point order, as BigQuery does.
        if self.min.as_ref().is_none_or(|min| bound < *min) {
            self.min = Some(bound.clone());
        }
        if self.max.as_ref().is_none_or(|max| bound > *max) {
            self.max = Some(bound);
        }
    }

    /// Folds in another accumulator of the same column (e.g. another file's).
    pub fn merge(&mut self, other: &ColumnAccumulator) {
        self.null_count += other.null_count;
        self.value_count += other.value_count;
        self.nan_count += other.nan_count;
        self.empty_count += other.empty_count;
        self.fingerprint_xor ^= other.fingerprint_xor;
        self.fingerprint_sum += other.fingerprint_sum;
        match (&mut self.sum, &other.sum) {
            (Sum::Int(a), Sum::Int(b)) => *a += b,
            (Sum::Float(a), Sum::Float(b)) => *a += b,
            (Sum::Decimal(a), Sum::Decimal(b)) => *a = a.zip(*b).and_then(|(a, b)| a.checked_add(b)),
            _ => {}
        }
        for bound in [&other.min, &other.max].into_iter().flatten() {
            self.observe(bound.clone());
        }
        if let (Some(days), Some(other)) = (&mut self.days, &other.days) {
            days.merge(other);
        }
    }

    /// Rows per day so far, for DATE and TIMESTAMP columns.
    pub fn days(&self) -> Option<&DayCounter> {
        self.days.as_ref()
    }

    /// Sets the rows per day (a recorded unit's, which its files' aggregates do not hold).
    pub fn set_days(&mut self, counter: DayCounter) {
        if self.days.is_some() {
            self.days = Some(counter);
        }
    }

    /// The accumulator a recorded [`ColumnAggregates`] stands for (e.g. a file's, from the
    /// manifest), so recorded figures merge by the same rule as streamed ones. `None` when a
    /// recorded figure is not a value of the column's type.
    pub fn from_recorded(column: &ColumnMapping, recorded: &ColumnAggregates) -> Option<Self> {
        let mut accumulator = Self::for_column(column);
        let bound = |text: &Option<String>| -> Option<Option<Bound>> {
            let Some(text) = text else { return Some(None) };
            let bound = match &accumulator.data_type {
                DataType::Boolean => Bound::Bool(text.parse().ok()?),
                DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Date32 | DataType::Time64(_) | DataType::Timestamp(..) => {
                    Bound::Int(text.parse().ok()?)
                }
                DataType::Float32 | DataType::Float64 => Bound::Float(text.parse().ok()?),
                DataType::Decimal128(..) | DataType::Decimal256(..) => {
                    Bound::Decimal(parse_decimal(text, decimal_scale(&accumulator.data_type))?)
                }
                DataType::Binary => Bound::Bytes(from_hex(text)?),
                _ => Bound::Bytes(text.as_bytes().to_vec()),
            };
            Some(Some(bound))
        };
        let (min, max) = (bound(&recorded.min)?, bound(&recorded.max)?);
        accumulator.sum = match (&accumulator.sum, &recorded.sum) {
            (Sum::None, _) => Sum::None,
            (Sum::Int(_), Some(text)) => Sum::Int(text.parse().ok()?),
            (Sum::Float(_), Some(text)) => Sum::Float(text.parse().ok()?),
            (Sum::Decimal(_), Some(text)) => Sum::Decimal(Some(parse_decimal(text, decimal_scale(&accumulator.data_type))?)),
            (Sum::Decimal(_), None) => Sum::Decimal(None),
            (_, None) => return None,
        };
        accumulator.min = min;
        accumulator.max = max;
        // A file's days are not recorded: its unit's are, and join through `set_days`.
        accumulator.days = accumulator.days.map(|_| DayCounter::unknown());
        accumulator.null_count = recorded.null_count;
        accumulator.value_count = recorded.value_count;
        accumulator.nan_count = recorded.nan_count.unwrap_or(0);
        accumulator.empty_count = recorded.empty_count.unwrap_or(0);
        accumulator.fingerprint_xor = recorded.fingerprint_xor.parse::<i64>().ok()? as u64;
        accumulator.fingerprint_sum = recorded.fingerprint_sum.parse().ok()?;
        Some(accumulator)
    }

    /// The manifest form.
    pub fn finish(&self) -> ColumnAggregates {
        let is_float = matches!(self.data_type, DataType::Float32 | DataType::Float64);
        // JSON is not orderable in BigQuery: its min/max are not recorded.
        ColumnAggregates {
            null_count: self.null_count,
            value_count: self.value_count,
            min: self.min.as_ref().map(|b| self.display(b)),
            max: self.max.as_ref().map(|b| self.display(b)),
            sum: match &self.sum {
                Sum::None => None,
                Sum::Int(v) => Some(v.to_string()),
                Sum::Float(v) => Some(format_g17(*v)),
                Sum::Decimal(v) => v.map(|v| format_decimal(v, decimal_scale(&self.data_type))),
            },
            nan_count: is_float.then_some(self.nan_count),
            empty_count: matches!(self.data_type, DataType::List(_)).then_some(self.empty_count),
            fingerprint_xor: (self.fingerprint_xor as i64).to_string(),
            fingerprint_sum: self.fingerprint_sum.to_string(),
        }
    }

    fn display(&self, bound: &Bound) -> String {
        match bound {
            Bound::Int(v) => v.to_string(),
            Bound::Float(v) => format_g17(*v),
            Bound::Decimal(v) => format_decimal(*v, decimal_scale(&self.data_type)),
            Bound::Bool(v) => v.to_string(),
            Bound::Bytes(v) if self.data_type == DataType::Binary => to_hex(v),
            Bound::Bytes(v) => String::from_utf8_lossy(v).into_owned(),
        }
    }
}

fn decimal_scale(data_type: &DataType) -> u8 {
    match data_type {
        DataType::Decimal128(_, s) | DataType::Decimal256(_, s) => *s as u8,
        _ => 0,
    }
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// The unscaled integer of a decimal text at `scale` (the inverse of `format_decimal`).
fn parse_decimal(text: &str, scale: u8) -> Option<i256> {
    let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > scale as usize || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    i256::from_string(&format!("{integer}{fraction:0<width$}", width = scale as usize))
}

/// Appends `<byte length>:<value>`: a list element's encoding, and a cell's in a row's bytes.
pub(crate) fn append_length_prefixed(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(itoa::Buffer::new().format(value.len()).as_bytes());
    out.push(b':');
    out.extend_from_slice(value);
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends the fingerprint encoding of `array[row]` (not null) to `out`.
///
/// | Arrow type | encoding | BigQuery expression |
/// |---|---|---|
/// | Boolean | `true` / `false` | `CASE WHEN x THEN 'true' WHEN NOT x THEN 'false' END` |
/// | Int16/32/64 | decimal | `CAST(x AS STRING)` |
/// | Float32/64 | C `%.17g` (`nan`, `inf`, `-inf`) | `FORMAT('%.17g', x)` |
/// | Decimal | minimal decimal text | `CAST(x AS STRING)` |
/// | Utf8 (STRING, JSON text) | the UTF-8 bytes | `x` |
/// | Binary | the bytes | `x` |
/// | Date32 | days since 1970-01-01 | `CAST(UNIX_DATE(x) AS STRING)` |
/// | Time64 µs | µs since midnight | `CAST(TIME_DIFF(x, '00:00:00', MICROSECOND) AS STRING)` |
/// | Timestamp µs (with or without zone) | µs since epoch | `CAST(UNIX_MICROS(x) AS STRING)` (DATETIME: `UNIX_MICROS(TIMESTAMP(x))`) |
/// | List (non-empty) | per element: `<byte length>:<element encoding>`, concatenated | `ARRAY_TO_STRING` over `UNNEST … WITH OFFSET` |
pub fn encode_value(array: &ArrayRef, row: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = match array.data_type() {
        DataType::Boolean => write!(out, "{}", array.as_boolean().value(row)),
        DataType::Int16 => write!(out, "{}", array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => write!(out, "{}", array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => write!(out, "{}", array.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => {
            write_g17(array.as_primitive::<Float32Type>().value(row) as f64, out);
            Ok(())
        }
        DataType::Float64 => {
            write_g17(array.as_primitive::<Float64Type>().value(row), out);
            Ok(())
        }
        DataType::Decimal128(_, s) => {
            write_decimal(i256::from_i128(array.as_primitive::<Decimal128Type>().value(row)), *s as u8, out);
            Ok(())
        }
        DataType::Decimal256(_, s) => {
            write_decimal(array.as_primitive::<Decimal256Type>().value(row), *s as u8, out);
            Ok(())
        }
        DataType::Utf8 => out.write_all(array.as_string::<i32>().value(row).as_bytes()),
        DataType::Binary => out.write_all(array.as_binary::<i32>().value(row)),
        DataType::Date32 => write!(out, "{}", array.as_primitive::<Date32Type>().value(row)),
        DataType::Time64(TimeUnit::Microsecond) => write!(out, "{}", array.as_primitive::<Time64MicrosecondType>().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => write!(out, "{}", array.as_primitive::<TimestampMicrosecondType>().value(row)),
        DataType::List(_) => {
            // The row's elements by offset into the list's values: no sliced array per row.
            let list = array.as_list::<i32>();
            let (elements, offsets) = (list.values(), list.value_offsets());
            let mut element = Vec::new();
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                element.clear();
                if !elements.is_null(i) {
                    encode_value(elements, i, &mut element);
                }
                append_length_prefixed(out, &element);
            }
            Ok(())
        }
        other => unreachable!("the type table pins no {other} column"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A list's elements are read by offset: a sliced list array encodes its rows as the
    /// whole one does, NULL elements as empty.
    #[test]
    fn list_rows_encode_by_offset_in_sliced_arrays_too() {
        use arrow::array::ListArray;
        use arrow::datatypes::Int32Type;
        let lists: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1)]),
            Some(vec![Some(-20), None, Some(300)]),
            Some(vec![Some(4)]),
        ]));
        let encoded = |array: &ArrayRef, row| {
            let mut out = Vec::new();
            encode_value(array, row, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(encoded(&lists, 1), "3:-200:3:300");
        assert_eq!(encoded(&lists.slice(1, 2), 0), "3:-200:3:300");
        assert_eq!(encoded(&lists.slice(1, 2), 1), "1:4");
    }

    /// The fingerprint must see a duplicated value even though XOR cancels it.
    #[test]
    fn duplicate_changes_the_fingerprint_sum() {
        let once: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let twice: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "b", "b"]));
        let (mut a, mut b) = (ColumnAccumulator::new(&DataType::Utf8, true), ColumnAccumulator::new(&DataType::Utf8, true));
        a.update(&once);
        b.update(&twice);
        let (a, b) = (a.finish(), b.finish());
        assert_eq!(a.fingerprint_xor, b.fingerprint_xor);
        assert_ne!(a.fingerprint_sum, b.fingerprint_sum);
    }

    #[test]
    fn floats_count_nan_and_skip_it_in_min_max_and_sum() {
        let array: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN), None, Some(-2.0)]));
        let mut acc = ColumnAccumulator::new(&DataType::Float64, true);
        acc.update(&array);
        let out = acc.finish();
        assert_eq!((out.null_count, out.value_count, out.nan_count), (1, 3, Some(1)));
        assert_eq!((out.min.as_deref(), out.max.as_deref(), out.sum.as_deref()), (Some("-2"), Some("1.5"), Some("-0.5")));
    }

    #[test]
    fn merging_files_equals_one_pass() {
        let (a, b): (ArrayRef, ArrayRef) = (Arc::new(Int64Array::from(vec![Some(3), None])), Arc::new(Int64Array::from(vec![-7, 9])));
        let mut whole = ColumnAccumulator::new(&DataType::Int64, true);
        whole.update(&a);
        whole.update(&b);
        let (mut first, mut second) = (ColumnAccumulator::new(&DataType::Int64, true), ColumnAccumulator::new(&DataType::Int64, true));
        first.update(&a);
        second.update(&b);
        first.merge(&second);
        assert_eq!(first.finish(), whole.finish());
    }

    /// Every pinned Arrow type, as the type table produces them.
    fn pinned_types() -> Vec<DataType> {
        vec![
            DataType::Boolean,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::Float32,
            DataType::Float64,
            DataType::Decimal128(12, 2),
            DataType::Decimal256(76, 38),
            DataType::Utf8,
            DataType::Binary,
            DataType::Date32,
            DataType::Time64(TimeUnit::Microsecond),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            DataType::new_list(DataType::Int32, true),
        ]
    }

    /// What an all-NULL (or empty) column of `data_type` must record: no value, no min/max,
    /// a zero sum for summable types, and the empty fingerprint.
    fn no_value_aggregates(data_type: &DataType, nulls: u64) -> ColumnAggregates {
        let summable = matches!(
            data_type,
            DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
        );
        let is_float = matches!(data_type, DataType::Float32 | DataType::Float64);
        ColumnAggregates {
            null_count: nulls,
            value_count: 0,
            min: None,
            max: None,
            sum: summable.then(|| "0".to_string()),
            nan_count: is_float.then_some(0),
            empty_count: matches!(data_type, DataType::List(_)).then_some(0),
            fingerprint_xor: "0".into(),
            fingerprint_sum: "0".into(),
        }
    }

    #[test]
    fn all_null_columns_of_every_type_record_no_value() {
        for data_type in pinned_types() {
            let mut acc = ColumnAccumulator::new(&data_type, !matches!(data_type, DataType::List(_)));
            acc.update(&arrow::array::new_null_array(&data_type, 3));
            acc.update(&arrow::array::new_null_array(&data_type, 2));
            assert_eq!(acc.finish(), no_value_aggregates(&data_type, 5), "{data_type}");
        }
    }

    #[test]
    fn empty_columns_of_every_type_record_no_value() {
        for data_type in pinned_types() {
            let mut acc = ColumnAccumulator::new(&data_type, !matches!(data_type, DataType::List(_)));
            acc.update(&arrow::array::new_empty_array(&data_type));
            let mut merged = ColumnAccumulator::new(&data_type, true);
            merged.merge(&acc);
            assert_eq!(acc.finish(), no_value_aggregates(&data_type, 0), "{data_type}");
            assert_eq!(merged.finish(), no_value_aggregates(&data_type, 0), "merged {data_type}");
        }
    }

    #[test]
    fn all_nan_floats_count_values_but_sum_nothing() {
        let array: ArrayRef = Arc::new(Float64Array::from(vec![Some(f64::NAN), None, Some(f64::NAN)]));
        let mut acc = ColumnAccumulator::new(&DataType::Float64, true);
        acc.update(&array);
        let out = acc.finish();
        assert_eq!((out.null_count, out.value_count, out.nan_count), (1, 2, Some(2)));
        assert_eq!((out.min, out.max, out.sum.as_deref()), (None, None, Some("0")));
    }

    /// Every column the typed loops take, as arrays of the same values with NULLs.
    fn typed_loop_arrays(values: &[Option<i64>], texts: &[Option<String>]) -> Vec<ArrayRef> {
        use arrow::array::*;
        let narrow = |f: fn(i64) -> Option<i64>| values.iter().map(|v| v.and_then(f)).collect::<Vec<_>>();
        let small = narrow(|v| i16::try_from(v % 30_000).ok().map(i64::from));
        let mid = narrow(|v| i32::try_from(v % 2_000_000_000).ok().map(i64::from));
        vec![
            Arc::new(Int16Array::from(small.iter().map(|v| v.map(|v| v as i16)).collect::<Vec<_>>())),
            Arc::new(Int32Array::from(mid.iter().map(|v| v.map(|v| v as i32)).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(values.to_vec())),
            Arc::new(Date32Array::from(mid.iter().map(|v| v.map(|v| v as i32)).collect::<Vec<_>>())),
            Arc::new(Time64MicrosecondArray::from(narrow(|v| Some(v.rem_euclid(86_400_000_000))))),
            Arc::new(TimestampMicrosecondArray::from(values.to_vec()).with_timezone(crate::model::types::UTC)),
            Arc::new(TimestampMicrosecondArray::from(values.to_vec())),
            Arc::new(Float64Array::from(values.iter().map(|v| v.map(|v| f64::from_bits(v as u64))).collect::<Vec<_>>())),
            Arc::new(Float32Array::from(values.iter().map(|v| v.map(|v| f32::from_bits(v as u32))).collect::<Vec<_>>())),
            Arc::new(StringArray::from(texts.to_vec())),
            Arc::new(BinaryArray::from(texts.iter().map(|t| t.as_deref().map(str::as_bytes)).collect::<Vec<_>>())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn typed_loops_agree_with_the_value_by_value_path(
            values in proptest::collection::vec(proptest::option::of(prop_oneof![any::<i64>(), Just(i64::MIN), -5i64..5]), 0..60),
            texts in proptest::collection::vec(proptest::option::of(".{0,20}"), 0..60),
        ) {
            let n = values.len().min(texts.len());
            for array in typed_loop_arrays(&values[..n], &texts[..n]) {
                for orderable in [true, false] {
                    let mut typed = ColumnAccumulator::new(array.data_type(), orderable);
                    typed.update(&array);
                    let mut by_value = ColumnAccumulator::new(array.data_type(), orderable);
                    by_value.null_count += array.null_count() as u64;
                    by_value.update_rows(&array);
                    prop_assert_eq!(typed.finish(), by_value.finish(), "{}", array.data_type());
                }
            }
        }
    }

    proptest! {
        /// Aggregates equal a naive oracle, however the rows are split into batches.
        #[test]
        fn int_aggregates_match_a_naive_oracle(values in proptest::collection::vec(proptest::option::of(any::<i64>()), 0..200), split in 0usize..200) {
            let split = split.min(values.len());
            let mut acc = ColumnAccumulator::new(&DataType::Int64, true);
            for part in [&values[..split], &values[split..]] {
                let array: ArrayRef = Arc::new(Int64Array::from(part.to_vec()));
                acc.update(&array);
            }
            let out = acc.finish();
            let present: Vec<i64> = values.iter().flatten().copied().collect();
            prop_assert_eq!(out.null_count as usize, values.len() - present.len());
            prop_assert_eq!(out.min, present.iter().min().map(|v| v.to_string()));
            prop_assert_eq!(out.max, present.iter().max().map(|v| v.to_string()));
            prop_assert_eq!(out.sum, Some(present.iter().map(|v| *v as i128).sum::<i128>().to_string()));
            let xor = present.iter().fold(0u64, |x, v| x ^ crate::model::fingerprint::fingerprint64(v.to_string().as_bytes()));
            prop_assert_eq!(out.fingerprint_xor, (xor as i64).to_string());
        }
    }
}

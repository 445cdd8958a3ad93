//! Pure `RecordBatch → RecordBatch`: ConnectorX's output cast to the schema we pinned.
//!
//! Input: a batch whose columns follow the plan's SELECT list, in ConnectorX's Arrow types
//! (widened integers, large offsets, nanosecond times, numerics as text). Output: the same rows
//! in the pinned Arrow types under BigQuery-safe names. It never rounds, truncates or turns a
//! bad value into NULL: anything that does not convert exactly is an error naming the column
//! and value.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Builder, Decimal256Builder, GenericListArray, ListArray, OffsetSizeTrait};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::model::decimal::{parse_decimal, DecimalError};
use crate::model::types::ColumnMapping;

/// A column that did not convert exactly.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("column `{column}`: expected {expected} columns from the source, got {actual}")]
    ColumnCount { column: String, expected: usize, actual: usize },
    #[error("column `{column}`: cannot convert {from} to {to} exactly")]
    Cast {
        column: String,
        from: DataType,
        to: DataType,
        #[source]
        source: ArrowError,
    },
    #[error("column `{column}`: value does not fit {to}; export it as text with `--cast {column}=text`")]
    Decimal {
        column: String,
        to: DataType,
        #[source]
        source: DecimalError,
    },
    #[error("the converted columns do not form a batch of the pinned schema")]
    Assemble {
        #[source]
        source: ArrowError,
    },
    #[error("column `{column}`: ConnectorX delivered {actual}, expected {expected}")]
    UnexpectedType { column: String, expected: &'static str, actual: DataType },
}

/// The Arrow schema every batch of a table is cast to (BigQuery names, pinned types).
pub fn pinned_schema(columns: &[ColumnMapping]) -> SchemaRef {
    let fields: Vec<Field> = columns.iter().map(|c| Field::new(&c.bq_name, c.arrow_type.clone(), c.nullable)).collect();
    Arc::new(Schema::new(fields))
}

/// Casts one ConnectorX batch to `schema`.
///
/// # Errors
/// [`BatchError`] naming the column when a value does not convert exactly.
pub fn normalize_batch(batch: &RecordBatch, columns: &[ColumnMapping], schema: &SchemaRef) -> Result<RecordBatch, BatchError> {
    if batch.num_columns() != columns.len() {
        return Err(BatchError::ColumnCount {
            column: columns.first().map(|c| c.name.clone()).unwrap_or_default(),
            expected: columns.len(),
            actual: batch.num_columns(),
        });
    }
    let arrays =
        batch.columns().iter().zip(columns).map(|(array, column)| normalize_column(array, column)).collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), arrays).map_err(|source| BatchError::Assemble { source })
}

fn normalize_column(array: &ArrayRef, column: &ColumnMapping) -> Result<ArrayRef, BatchError> {
    use crate::model::types::Conversion;
    match column.conversion {
        Conversion::Cast => exact_cast(array, &column.arrow_type, &column.name),
        Conversion::ParseDecimal => {
            let text = exact_cast(array, &DataType::Utf8, &column.name)?;
            parse_decimals(text.as_string::<i32>().iter(), text.len(), &column.arrow_type, &column.name)
        }
        Conversion::ParseDecimalList => {
            let DataType::List(item) = &column.arrow_type else { unreachable!("ParseDecimalList is only planned for list columns") };
            match array.data_type() {
                DataType::LargeList(_) => decimal_list(array.as_list::<i64>(), item, &column.name),
                DataType::List(_) => decimal_list(array.as_list::<i32>(), item, &column.name),
                other => Err(BatchError::UnexpectedType { column: column.name.clone(), expected: "a list of text", actual: other.clone() }),
            }
        }
    }
}

fn exact_cast(array: &ArrayRef, to: &DataType, column: &str) -> Result<ArrayRef, BatchError> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    let options = CastOptions { safe: false, ..Default::default() };
    cast_with_options(array, to, &options).map_err(|source| BatchError::Cast {
        column: column.to_string(),
        from: array.data_type().clone(),
        to: to.clone(),
        source,
    })
}

fn parse_decimals<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    len: usize,
    to: &DataType,
    column: &str,
) -> Result<ArrayRef, BatchError> {
    let fail = |source| BatchError::Decimal { column: column.to_string(), to: to.clone(), source };
    match *to {
        DataType::Decimal128(p, s) => {
            let mut builder = Decimal128Builder::with_capacity(len);
            for value in values {
                match value {
                    Some(text) => builder.append_value(parse_decimal(text, p, s as u8).map_err(fail)?.as_i128()),
                    None => builder.append_null(),
                }
            }
            Ok(Arc::new(builder.finish().with_precision_and_scale(p, s).expect("valid decimal type")))
        }
        DataType::Decimal256(p, s) => {
            let mut builder = Decimal256Builder::with_capacity(len);
            for value in values {
                match value {
                    Some(text) => builder.append_value(parse_decimal(text, p, s as u8).map_err(fail)?),
                    None => builder.append_null(),
                }
            }
            Ok(Arc::new(builder.finish().with_precision_and_scale(p, s).expect("valid decimal type")))
        }
        _ => unreachable!("decimal parsing is only planned for decimal columns"),
    }
}

fn decimal_list<O: OffsetSizeTrait>(list: &GenericListArray<O>, item: &Arc<Field>, column: &str) -> Result<ArrayRef, BatchError> {
    let text = exact_cast(list.values(), &DataType::Utf8, column)?;
    let values = parse_decimals(text.as_string::<i32>().iter(), text.len(), item.data_type(), column)?;
    let offsets: Vec<i32> = list.value_offsets().iter().map(|o| o.as_usize() as i32).collect();
    let offsets = arrow::buffer::OffsetBuffer::new(offsets.into());
    Ok(Arc::new(ListArray::new(item.clone(), offsets, values, list.nulls().cloned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::types::{map_column, OutOfRange, PgColumn};
    use arrow::array::{Int64Array, LargeStringArray, TimestampMicrosecondArray};
    use arrow::datatypes::TimeUnit;

    fn mapping(type_name: &str, typmod: i32) -> ColumnMapping {
        map_column(&PgColumn::base("c", type_name, typmod), None, OutOfRange::Refuse).unwrap()
    }

    fn run(array: ArrayRef, m: &ColumnMapping) -> Result<RecordBatch, BatchError> {
        let input = RecordBatch::try_from_iter([("c", array)]).unwrap();
        normalize_batch(&input, std::slice::from_ref(m), &pinned_schema(std::slice::from_ref(m)))
    }

    #[test]
    fn narrows_widened_integers_exactly() {
        let m = mapping("int2", -1);
        let out = run(Arc::new(Int64Array::from(vec![Some(-32768), None, Some(32767)])), &m).unwrap();
        assert_eq!(out.column(0).data_type(), &DataType::Int16);
        assert_eq!(out.column(0).null_count(), 1);
        assert!(run(Arc::new(Int64Array::from(vec![40000])), &m).is_err());
    }

    #[test]
    fn numeric_text_becomes_an_exact_decimal() {
        let m = mapping("numeric", ((12 << 16) | 2) + 4);
        let out = run(Arc::new(LargeStringArray::from(vec![Some("1234567890.12"), None])), &m).unwrap();
        let decimals = out.column(0).as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(decimals.value(0), 123456789012);
        let err = run(Arc::new(LargeStringArray::from(vec!["NaN"])), &m).unwrap_err();
        assert!(err.to_string().contains("--cast c=text"), "{err}");
    }

    #[test]
    fn a_batch_the_schema_refuses_keeps_arrows_reason() {
        let m = mapping("int2", -1);
        let strict = Arc::new(Schema::new(vec![Field::new("c", DataType::Int16, false)]));
        let input = RecordBatch::try_from_iter([("c", Arc::new(Int64Array::from(vec![None, Some(1)])) as ArrayRef)]).unwrap();
        let err = normalize_batch(&input, std::slice::from_ref(&m), &strict).unwrap_err();
        assert!(matches!(err, BatchError::Assemble { .. }), "{err:?}");
        let cause = std::error::Error::source(&err).expect("a cause").to_string();
        assert!(cause.contains("non-nullable"), "{cause}");
    }

    #[test]
    fn timestamps_over_years_1_to_9999_pass_exactly() {
        let m = mapping("timestamptz", -1);
        let micros = vec![Some(-62135596800000000), None, Some(253402300799999999)];
        let input = TimestampMicrosecondArray::from(micros.clone()).with_timezone("+00:00");
        let out = run(Arc::new(input), &m).unwrap();
        assert_eq!(out.column(0).data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())));
        let values: Vec<Option<i64>> = out.column(0).as_primitive::<arrow::datatypes::TimestampMicrosecondType>().iter().collect();
        assert_eq!(values, micros);
    }
}

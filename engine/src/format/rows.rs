//! Eddy's own encoding of whole rows (`Format::Rows`, the bytes of [`crate::state_codec`]) a
//! batch at a time: what an internal topic (a repartition topic) carries.
//!
//! Every row of such a topic goes through it twice, written by one stage and read by the next,
//! so neither side makes a `ScalarValue` per cell: [`encode_batch`] writes each cell straight
//! from its column ([`encode_at`]) into one buffer that the records share, and [`decode_batch`]
//! appends each cell to a builder of its column. Nested columns are kept as JSON text; the
//! usual one, a record's headers, is an empty list, which is read without parsing.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{
    new_empty_array, new_null_array, ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder,
    Date32Builder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder, ListArray,
    StringBuilder, Time32MillisecondBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::ScalarValue;

use super::{Codec, Format};
use crate::state_codec::{encode_at, fixed, length_prefixed, take, EMPTY_LIST};
use crate::value::from_json;

/// Each row's bytes of `columns` (the codec's fields, in order), if the codec is
/// `Format::Rows`; `None` otherwise, or if a cell cannot be kept.
pub fn encode_batch(codec: &Codec, columns: &[&ArrayRef]) -> Option<Vec<Bytes>> {
    if codec.format != Format::Rows || columns.is_empty() {
        return None;
    }
    let rows = columns[0].len();
    let mut buffer = Vec::with_capacity(rows * 16 * columns.len());
    let mut ends = Vec::with_capacity(rows);
    for row in 0..rows {
        for column in columns {
            encode_at(column, row, &mut buffer).ok()?;
        }
        ends.push(buffer.len());
    }
    Some(super::split_rows(buffer, ends))
}

/// The columns of `fields` from many rows' bytes; `None` if a row is missing or does not
/// decode, for the caller to read row by row and report it.
pub fn decode_batch<'a>(
    fields: &[Field],
    rows: impl ExactSizeIterator<Item = Option<&'a [u8]>>,
) -> Option<Vec<ArrayRef>> {
    let n = rows.len();
    let mut columns: Vec<Column> = fields
        .iter()
        .map(|f| Column::new(f.data_type(), n))
        .collect();
    for bytes in rows {
        let mut input = bytes?;
        for column in &mut columns {
            column.push(&mut input).ok()?;
        }
        if !input.is_empty() {
            return None;
        }
    }
    columns.into_iter().map(Column::finish).collect()
}

/// One column being decoded.
enum Column<'a> {
    Builder(Box<dyn ArrayBuilder>, DataType),
    /// A nested column: each row's JSON text (`None` for null).
    Nested(DataType, Vec<Option<&'a [u8]>>),
}

impl<'a> Column<'a> {
    fn new(t: &DataType, n: usize) -> Column<'a> {
        let builder: Box<dyn ArrayBuilder> = match t {
            DataType::Boolean => Box::new(BooleanBuilder::with_capacity(n)),
            DataType::Int32 => Box::new(Int32Builder::with_capacity(n)),
            DataType::Int64 => Box::new(Int64Builder::with_capacity(n)),
            DataType::Float64 => Box::new(Float64Builder::with_capacity(n)),
            DataType::Decimal128(p, s) => Box::new(
                Decimal128Builder::with_capacity(n)
                    .with_precision_and_scale(*p, *s)
                    .expect("a decimal type's own precision"),
            ),
            DataType::Utf8 => Box::new(StringBuilder::with_capacity(n, n * 16)),
            DataType::Binary => Box::new(BinaryBuilder::with_capacity(n, n * 16)),
            DataType::Timestamp(TimeUnit::Millisecond, tz) => Box::new(
                TimestampMillisecondBuilder::with_capacity(n).with_timezone_opt(tz.clone()),
            ),
            DataType::Date32 => Box::new(Date32Builder::with_capacity(n)),
            DataType::Time32(TimeUnit::Millisecond) => {
                Box::new(Time32MillisecondBuilder::with_capacity(n))
            }
            other => return Column::Nested(other.clone(), Vec::with_capacity(n)),
        };
        Column::Builder(builder, t.clone())
    }

    /// Reads one cell from the front of `input`.
    fn push(&mut self, input: &mut &'a [u8]) -> Result<(), String> {
        let present = take(input, 1)?[0] != 0;
        let (builder, t) = match self {
            Column::Nested(_, texts) => {
                texts.push(match present {
                    true => Some(length_prefixed(input)?),
                    false => None,
                });
                return Ok(());
            }
            Column::Builder(builder, t) => (builder.as_any_mut(), &*t),
        };
        macro_rules! append {
            ($builder:ty, $value:expr) => {{
                let b = builder
                    .downcast_mut::<$builder>()
                    .expect("the column's builder");
                match present {
                    true => b.append_value($value),
                    false => b.append_null(),
                }
            }};
        }
        match t {
            DataType::Boolean => append!(BooleanBuilder, take(input, 1)?[0] != 0),
            DataType::Int32 => append!(Int32Builder, i32::from_be_bytes(fixed(input)?)),
            DataType::Int64 => append!(Int64Builder, i64::from_be_bytes(fixed(input)?)),
            DataType::Float64 => append!(
                Float64Builder,
                f64::from_bits(u64::from_be_bytes(fixed(input)?))
            ),
            DataType::Decimal128(_, _) => {
                append!(Decimal128Builder, i128::from_be_bytes(fixed(input)?))
            }
            DataType::Utf8 => append!(
                StringBuilder,
                std::str::from_utf8(length_prefixed(input)?).map_err(|e| e.to_string())?
            ),
            DataType::Binary => append!(BinaryBuilder, length_prefixed(input)?),
            DataType::Timestamp(_, _) => {
                append!(
                    TimestampMillisecondBuilder,
                    i64::from_be_bytes(fixed(input)?)
                )
            }
            DataType::Date32 => append!(Date32Builder, i32::from_be_bytes(fixed(input)?)),
            DataType::Time32(_) => {
                append!(Time32MillisecondBuilder, i32::from_be_bytes(fixed(input)?))
            }
            other => return Err(format!("no builder for {other}")),
        }
        Ok(())
    }

    fn finish(self) -> Option<ArrayRef> {
        let (t, texts) = match self {
            Column::Builder(mut builder, _) => return Some(builder.finish()),
            Column::Nested(t, texts) => (t, texts),
        };
        if let DataType::List(item) = &t {
            if texts
                .iter()
                .all(|x| x.is_none_or(|text| text == EMPTY_LIST))
            {
                return Some(empty_lists(item.clone(), &texts));
            }
        }
        if texts.iter().all(Option::is_none) {
            return Some(new_null_array(&t, texts.len()));
        }
        let values = texts
            .into_iter()
            .map(|text| match text {
                Some(text) => {
                    let json: serde_json::Value = serde_json::from_slice(text).ok()?;
                    from_json(&json, &t).ok()
                }
                None => ScalarValue::try_from(&t).ok(),
            })
            .collect::<Option<Vec<_>>>()?;
        ScalarValue::iter_to_array(values).ok()
    }
}

/// A list column of empty lists, or nulls where `texts` has none.
fn empty_lists(item: Arc<Field>, texts: &[Option<&[u8]>]) -> ArrayRef {
    let nulls = texts
        .iter()
        .any(Option::is_none)
        .then(|| NullBuffer::from_iter(texts.iter().map(Option::is_some)));
    let values = new_empty_array(item.data_type());
    Arc::new(ListArray::new(
        item,
        OffsetBuffer::new_zeroed(texts.len()),
        values,
        nulls,
    ))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::RecordBatch;
    use proptest::prelude::*;

    use super::*;
    use crate::schema::no_headers;
    use crate::state_codec::encode_row;

    fn row() -> impl Strategy<Value = (Option<i64>, Option<String>, Option<bool>, Option<f64>)> {
        (
            any::<Option<i64>>(),
            any::<Option<String>>(),
            any::<Option<bool>>(),
            any::<Option<f64>>().prop_filter("NaN", |f| !f.is_some_and(f64::is_nan)),
        )
    }

    proptest! {
        /// A batch's rows encode to what `encode_row` writes for each, and decode back to the
        /// same columns.
        #[test]
        fn batches_round_trip_as_rows_do(rows in prop::collection::vec(row(), 1..20)) {
            let columns: Vec<ArrayRef> = vec![
                ScalarValue::iter_to_array(rows.iter().map(|r| ScalarValue::Int64(r.0))).unwrap(),
                ScalarValue::iter_to_array(rows.iter().map(|r| ScalarValue::Utf8(r.1.clone()))).unwrap(),
                ScalarValue::iter_to_array(rows.iter().map(|r| ScalarValue::Boolean(r.2))).unwrap(),
                ScalarValue::iter_to_array(rows.iter().map(|r| ScalarValue::Float64(r.3))).unwrap(),
                no_headers(rows.len()),
            ];
            let fields: Vec<Field> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
                .collect();
            let codec = Codec::new(Format::Rows, fields.clone(), false).unwrap();
            let refs: Vec<&ArrayRef> = columns.iter().collect();
            let encoded = encode_batch(&codec, &refs).unwrap();
            for (row, bytes) in encoded.iter().enumerate() {
                let cells: Vec<ScalarValue> = columns
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, row).unwrap())
                    .collect();
                let expected = encode_row(&cells).unwrap();
                prop_assert_eq!(bytes.as_ref(), expected.as_slice());
            }
            let decoded = decode_batch(&fields, encoded.iter().map(|b| Some(b.as_ref()))).unwrap();
            let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
            prop_assert_eq!(
                RecordBatch::try_new(schema.clone(), decoded).unwrap(),
                RecordBatch::try_new(schema, columns).unwrap()
            );
        }
    }

    #[test]
    fn a_truncated_row_is_left_to_the_row_by_row_reader() {
        let fields = vec![Field::new("c", DataType::Int64, true)];
        let rows = [Some(&[1u8, 0, 0][..])];
        assert!(decode_batch(&fields, rows.into_iter()).is_none());
    }
}

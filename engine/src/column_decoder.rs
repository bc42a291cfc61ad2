//! Arrow columns built from rows in [`crate::state_codec`]'s bytes, a cell at a time, with no
//! `ScalarValue` in between: how rows are read back in bulk (the records of a repartition
//! topic, the table rows a stream-table join looks up).
//!
//! A [`ColumnDecoder`] appends each cell to an Arrow builder of its column's type. Nested
//! values (ARRAY, MAP, STRUCT) are kept as JSON text and parsed when the column is finished;
//! the usual one, a record's headers, is an empty list, which is built without parsing.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{
    new_empty_array, new_null_array, ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder,
    Date32Builder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder, ListArray,
    StringBuilder, Time32MillisecondBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::ScalarValue;

use crate::state_codec::{fixed, length_prefixed, take, EMPTY_LIST};
use crate::value::from_json;

/// One column being decoded. `'a`: how long the nested cells it borrows live (`'static` when
/// they are copied, see [`ColumnDecoder::push_copied`]).
pub(crate) enum ColumnDecoder<'a> {
    Builder(Box<dyn ArrayBuilder>, DataType),
    /// A nested column: each row's JSON text (`None` for null).
    Nested(DataType, Vec<Option<Cow<'a, [u8]>>>),
}

impl<'a> ColumnDecoder<'a> {
    /// A column of type `t`, with room for `n` cells.
    pub(crate) fn new(t: &DataType, n: usize) -> ColumnDecoder<'a> {
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
            other => return ColumnDecoder::Nested(other.clone(), Vec::with_capacity(n)),
        };
        ColumnDecoder::Builder(builder, t.clone())
    }

    /// Reads one cell from the front of `input`, borrowing a nested cell's text.
    pub(crate) fn push(&mut self, input: &mut &'a [u8]) -> Result<(), String> {
        self.push_with(input, Cow::Borrowed)
    }

    /// Reads one cell from the front of `input`, copying a nested cell's text: for bytes that
    /// do not outlive the call (RocksDB's, during a lookup).
    pub(crate) fn push_copied(&mut self, input: &mut &[u8]) -> Result<(), String> {
        self.push_with(input, |text| Cow::Owned(text.to_vec()))
    }

    /// Appends a null cell.
    pub(crate) fn push_null(&mut self) {
        match self {
            ColumnDecoder::Nested(_, texts) => texts.push(None),
            ColumnDecoder::Builder(builder, t) => {
                // A null reads nothing from its input.
                append(builder.as_any_mut(), t, false, &mut &[][..])
                    .expect("a null cell reads no bytes");
            }
        }
    }

    fn push_with<'b>(
        &mut self,
        input: &mut &'b [u8],
        keep: impl FnOnce(&'b [u8]) -> Cow<'a, [u8]>,
    ) -> Result<(), String> {
        let present = take(input, 1)?[0] != 0;
        match self {
            ColumnDecoder::Nested(_, texts) => {
                texts.push(match present {
                    true => Some(keep(length_prefixed(input)?)),
                    false => None,
                });
                Ok(())
            }
            ColumnDecoder::Builder(builder, t) => append(builder.as_any_mut(), t, present, input),
        }
    }

    /// The column; `None` if a nested cell's text does not parse as a value of its type.
    pub(crate) fn finish(self) -> Option<ArrayRef> {
        let (t, texts) = match self {
            ColumnDecoder::Builder(mut builder, _) => return Some(builder.finish()),
            ColumnDecoder::Nested(t, texts) => (t, texts),
        };
        if let DataType::List(item) = &t {
            if texts
                .iter()
                .all(|x| x.as_ref().is_none_or(|text| text.as_ref() == EMPTY_LIST))
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
                    let json: serde_json::Value = serde_json::from_slice(&text).ok()?;
                    from_json(&json, &t).ok()
                }
                None => ScalarValue::try_from(&t).ok(),
            })
            .collect::<Option<Vec<_>>>()?;
        ScalarValue::iter_to_array(values).ok()
    }
}

/// Appends a cell of type `t` to `builder` (its builder): read from the front of `input` if
/// `present`, else a null.
fn append(
    builder: &mut dyn std::any::Any,
    t: &DataType,
    present: bool,
    input: &mut &[u8],
) -> Result<(), String> {
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

/// A list column of empty lists, or nulls where `texts` has none.
fn empty_lists(item: Arc<Field>, texts: &[Option<Cow<'_, [u8]>>]) -> ArrayRef {
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

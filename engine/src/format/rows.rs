//! Eddy's own encoding of whole rows (`Format::Rows`, the bytes of [`crate::state_codec`]) a
//! batch at a time: what an internal topic (a repartition topic) carries.
//!
//! Every row of such a topic goes through it twice, written by one stage and read by the next,
//! so neither side makes a `ScalarValue` per cell: [`encode_batch`] writes each cell straight
//! from its column ([`encode_at`]) into one buffer that the records share, and [`decode_batch`]
//! appends each cell to a builder of its column ([`ColumnDecoder`]).

use bytes::Bytes;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::Field;

use super::{Codec, Format};
use crate::column_decoder::ColumnDecoder;
use crate::state_codec::encode_at;

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
    let mut columns: Vec<ColumnDecoder> = fields
        .iter()
        .map(|f| ColumnDecoder::new(f.data_type(), n))
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
    columns.into_iter().map(ColumnDecoder::finish).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::RecordBatch;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
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

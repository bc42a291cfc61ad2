//! Bytes for the values operators keep in state stores.
//!
//! Group keys, accumulators and buffered rows are written to RocksDB as rows of typed scalars.
//! The encoding is positional and typed by the reader: a row is decoded with the list of types
//! it was written with. Each value is a presence byte (0 null, 1 present) and then a fixed-width
//! big-endian number or a length-prefixed byte string. Nested values (ARRAY, MAP, STRUCT) are
//! written as their ksqlDB JSON text, which the JSON reader reads back exactly.
//!
//! Encoded group keys are compared as bytes (they are hash-map and RocksDB keys), so a value
//! must always encode to the same bytes: there is exactly one encoding per value.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;

use crate::value::{from_json, null_of, write_json};

/// Appends `v` (of type `t`) to `out`.
pub fn encode(v: &ScalarValue, out: &mut Vec<u8>) -> Result<(), String> {
    if v.is_null() {
        out.push(0);
        return Ok(());
    }
    out.push(1);
    match v {
        ScalarValue::Boolean(Some(b)) => out.push(*b as u8),
        ScalarValue::Int32(Some(i)) => out.extend_from_slice(&i.to_be_bytes()),
        ScalarValue::Int64(Some(i)) => out.extend_from_slice(&i.to_be_bytes()),
        ScalarValue::Float64(Some(f)) => out.extend_from_slice(&f.to_bits().to_be_bytes()),
        ScalarValue::Decimal128(Some(d), _, _) => out.extend_from_slice(&d.to_be_bytes()),
        ScalarValue::Utf8(Some(s)) => bytes(out, s.as_bytes()),
        ScalarValue::Binary(Some(b)) => bytes(out, b),
        ScalarValue::TimestampMillisecond(Some(t), _) => out.extend_from_slice(&t.to_be_bytes()),
        ScalarValue::Date32(Some(d)) => out.extend_from_slice(&d.to_be_bytes()),
        ScalarValue::Time32Millisecond(Some(t)) => out.extend_from_slice(&t.to_be_bytes()),
        ScalarValue::List(_) | ScalarValue::Map(_) | ScalarValue::Struct(_) => {
            let mut text = String::new();
            write_json(&mut text, v)?;
            bytes(out, text.as_bytes());
        }
        other => return Err(format!("cannot keep a {} in state", other.data_type())),
    }
    Ok(())
}

/// Appends row `row` of `array` to `out`, as [`encode`] writes its value, without making a
/// `ScalarValue` but of nested values (the hot path of lookups by key and of whole rows
/// written to internal topics).
pub fn encode_at(
    array: &datafusion::arrow::array::ArrayRef,
    row: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{
        Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, Time32MillisecondType,
        TimestampMillisecondType,
    };
    if array.is_null(row) {
        out.push(0);
        return Ok(());
    }
    let present = |out: &mut Vec<u8>, b: &[u8]| {
        out.push(1);
        out.extend_from_slice(b);
    };
    match array.data_type() {
        DataType::Utf8 => {
            out.push(1);
            bytes(out, array.as_string::<i32>().value(row).as_bytes());
        }
        DataType::Binary => {
            out.push(1);
            bytes(out, array.as_binary::<i32>().value(row));
        }
        DataType::Boolean => present(out, &[array.as_boolean().value(row) as u8]),
        DataType::Int64 => present(
            out,
            &array.as_primitive::<Int64Type>().value(row).to_be_bytes(),
        ),
        DataType::Int32 => present(
            out,
            &array.as_primitive::<Int32Type>().value(row).to_be_bytes(),
        ),
        DataType::Float64 => {
            let f = array.as_primitive::<Float64Type>().value(row);
            present(out, &f.to_bits().to_be_bytes())
        }
        DataType::Decimal128(_, _) => {
            let d = array.as_primitive::<Decimal128Type>().value(row);
            present(out, &d.to_be_bytes())
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let t = array.as_primitive::<TimestampMillisecondType>().value(row);
            present(out, &t.to_be_bytes())
        }
        DataType::Date32 => present(
            out,
            &array.as_primitive::<Date32Type>().value(row).to_be_bytes(),
        ),
        DataType::Time32(TimeUnit::Millisecond) => {
            let t = array.as_primitive::<Time32MillisecondType>().value(row);
            present(out, &t.to_be_bytes())
        }
        // An empty list (a record's headers, most often) is `[]` whatever its element type.
        DataType::List(_) if array.as_list::<i32>().value_length(row) == 0 => {
            out.push(1);
            bytes(out, EMPTY_LIST);
        }
        _ => {
            let v = ScalarValue::try_from_array(array, row).map_err(|e| e.to_string())?;
            encode(&v, out)?;
        }
    }
    Ok(())
}

/// The JSON text an empty list is kept as.
pub(crate) const EMPTY_LIST: &[u8] = b"[]";

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Encodes a whole row.
pub fn encode_row<'a>(
    values: impl IntoIterator<Item = &'a ScalarValue>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for v in values {
        encode(v, &mut out)?;
    }
    Ok(out)
}

/// Reads one value of type `t` from the front of `input`, advancing it.
pub fn decode(t: &DataType, input: &mut &[u8]) -> Result<ScalarValue, String> {
    let present = take(input, 1)?[0];
    if present == 0 {
        return null_of(t);
    }
    Ok(match t {
        DataType::Boolean => ScalarValue::Boolean(Some(take(input, 1)?[0] != 0)),
        DataType::Int32 => ScalarValue::Int32(Some(i32::from_be_bytes(fixed(input)?))),
        DataType::Int64 => ScalarValue::Int64(Some(i64::from_be_bytes(fixed(input)?))),
        DataType::Float64 => {
            ScalarValue::Float64(Some(f64::from_bits(u64::from_be_bytes(fixed(input)?))))
        }
        DataType::Decimal128(p, s) => {
            ScalarValue::Decimal128(Some(i128::from_be_bytes(fixed(input)?)), *p, *s)
        }
        DataType::Utf8 => ScalarValue::Utf8(Some(
            String::from_utf8(length_prefixed(input)?.to_vec()).map_err(|e| e.to_string())?,
        )),
        DataType::Binary => ScalarValue::Binary(Some(length_prefixed(input)?.to_vec())),
        DataType::Timestamp(TimeUnit::Millisecond, tz) => {
            ScalarValue::TimestampMillisecond(Some(i64::from_be_bytes(fixed(input)?)), tz.clone())
        }
        DataType::Date32 => ScalarValue::Date32(Some(i32::from_be_bytes(fixed(input)?))),
        DataType::Time32(TimeUnit::Millisecond) => {
            ScalarValue::Time32Millisecond(Some(i32::from_be_bytes(fixed(input)?)))
        }
        DataType::List(_) | DataType::Map(_, _) | DataType::Struct(_) => {
            let text = length_prefixed(input)?;
            let json: serde_json::Value =
                serde_json::from_slice(text).map_err(|e| e.to_string())?;
            from_json(&json, t)?
        }
        other => return Err(format!("cannot read a {other} from state")),
    })
}

/// Decodes a row written by [`encode_row`] with these types.
pub fn decode_row(types: &[DataType], mut input: &[u8]) -> Result<Vec<ScalarValue>, String> {
    let row = types
        .iter()
        .map(|t| decode(t, &mut input))
        .collect::<Result<Vec<_>, _>>()?;
    if !input.is_empty() {
        return Err(format!("{} bytes left over after a row", input.len()));
    }
    Ok(row)
}

pub(crate) fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if input.len() < n {
        return Err("truncated state value".into());
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

pub(crate) fn fixed<const N: usize>(input: &mut &[u8]) -> Result<[u8; N], String> {
    Ok(take(input, N)?.try_into().expect("N bytes"))
}

pub(crate) fn length_prefixed<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let n = u32::from_be_bytes(fixed(input)?) as usize;
    take(input, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scalar() -> impl Strategy<Value = ScalarValue> {
        prop_oneof![
            any::<Option<bool>>().prop_map(ScalarValue::Boolean),
            any::<Option<i32>>().prop_map(ScalarValue::Int32),
            any::<Option<i64>>().prop_map(ScalarValue::Int64),
            any::<Option<f64>>()
                .prop_filter("NaN has many encodings", |f| !f.is_some_and(f64::is_nan))
                .prop_map(ScalarValue::Float64),
            any::<Option<i64>>().prop_map(|d| ScalarValue::Decimal128(d.map(i128::from), 20, 3)),
            any::<Option<String>>().prop_map(ScalarValue::Utf8),
            any::<Option<Vec<u8>>>().prop_map(ScalarValue::Binary),
            any::<Option<i64>>().prop_map(|t| ScalarValue::TimestampMillisecond(t, None)),
            any::<Option<i32>>().prop_map(ScalarValue::Date32),
            any::<Option<i32>>().prop_map(ScalarValue::Time32Millisecond),
            proptest::collection::vec(any::<Option<i64>>(), 0..5).prop_map(|v| {
                ScalarValue::List(ScalarValue::new_list_nullable(
                    &v.into_iter().map(ScalarValue::Int64).collect::<Vec<_>>(),
                    &DataType::Int64,
                ))
            }),
        ]
    }

    proptest! {
        #[test]
        fn rows_round_trip(row in proptest::collection::vec(scalar(), 0..6)) {
            let types: Vec<DataType> = row.iter().map(ScalarValue::data_type).collect();
            let bytes = encode_row(&row).unwrap();
            prop_assert_eq!(decode_row(&types, &bytes).unwrap(), row);
        }

        #[test]
        fn a_column_encodes_as_its_values(row in proptest::collection::vec(scalar(), 1..6)) {
            // Each value as a one-row column of its type.
            for v in &row {
                let array = v.to_array().unwrap();
                let mut at = Vec::new();
                encode_at(&array, 0, &mut at).unwrap();
                prop_assert_eq!(at, encode_row([v]).unwrap());
            }
        }

        #[test]
        fn truncated_rows_are_errors(row in proptest::collection::vec(scalar(), 1..6), cut in 1usize..8) {
            let types: Vec<DataType> = row.iter().map(ScalarValue::data_type).collect();
            let bytes = encode_row(&row).unwrap();
            let cut = cut.min(bytes.len());
            prop_assert!(decode_row(&types, &bytes[..bytes.len() - cut]).is_err());
        }
    }
}

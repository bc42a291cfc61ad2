//! The KAFKA format: one primitive as Kafka's own serializers write it (INT and BIGINT
//! big-endian two's complement, DOUBLE big-endian IEEE 754, STRING UTF-8, BYTES as is).

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

pub(super) fn check_type(t: &DataType) -> Result<(), String> {
    match t {
        DataType::Int32
        | DataType::Int64
        | DataType::Float64
        | DataType::Utf8
        | DataType::Binary => Ok(()),
        other => Err(format!(
            "the KAFKA format does not support {}",
            crate::schema::sql_type_name(other)
        )),
    }
}

pub(super) fn decode(t: &DataType, b: &[u8]) -> Result<ScalarValue, String> {
    let sized = |n: usize| -> Result<&[u8], String> {
        if b.len() == n {
            Ok(b)
        } else {
            Err(format!(
                "expected {n} bytes for {}, found {}",
                crate::schema::sql_type_name(t),
                b.len()
            ))
        }
    };
    Ok(match t {
        DataType::Int32 => {
            ScalarValue::Int32(Some(i32::from_be_bytes(sized(4)?.try_into().unwrap())))
        }
        DataType::Int64 => {
            ScalarValue::Int64(Some(i64::from_be_bytes(sized(8)?.try_into().unwrap())))
        }
        DataType::Float64 => {
            ScalarValue::Float64(Some(f64::from_be_bytes(sized(8)?.try_into().unwrap())))
        }
        DataType::Utf8 => ScalarValue::Utf8(Some(
            String::from_utf8(b.to_vec()).map_err(|_| "value is not UTF-8".to_string())?,
        )),
        DataType::Binary => ScalarValue::Binary(Some(b.to_vec())),
        other => return Err(format!("the KAFKA format does not support {other}")),
    })
}

/// A column of STRING values straight from their bytes (a null for a missing value), as
/// [`decode`] reads each; `None` if one is not UTF-8, for `decode` to report.
pub(super) fn decode_strings<'a>(
    values: impl ExactSizeIterator<Item = Option<&'a [u8]>>,
) -> Option<ArrayRef> {
    let mut builder = StringBuilder::with_capacity(values.len(), values.len() * 16);
    for v in values {
        match v {
            Some(b) => builder.append_value(std::str::from_utf8(b).ok()?),
            None => builder.append_null(),
        }
    }
    Some(Arc::new(builder.finish()))
}

/// Each string of a STRING column as its UTF-8 bytes (`None` for a null), as [`encode`]
/// writes each; `None` if the column holds no strings.
pub(super) fn encode_strings(column: &ArrayRef) -> Option<Vec<Option<Bytes>>> {
    let strings = column.as_string_opt::<i32>()?;
    Some(
        strings
            .iter()
            .map(|s| s.map(|s| Bytes::copy_from_slice(s.as_bytes())))
            .collect(),
    )
}

pub(super) fn encode(v: &ScalarValue) -> Result<Option<Bytes>, String> {
    Ok(match v {
        v if v.is_null() => None,
        ScalarValue::Int32(Some(i)) => Some(Bytes::copy_from_slice(&i.to_be_bytes())),
        ScalarValue::Int64(Some(i)) => Some(Bytes::copy_from_slice(&i.to_be_bytes())),
        ScalarValue::Float64(Some(f)) => Some(Bytes::copy_from_slice(&f.to_be_bytes())),
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Some(Bytes::from(s.clone())),
        ScalarValue::Binary(Some(b)) => Some(Bytes::from(b.clone())),
        other => {
            return Err(format!(
                "the KAFKA format cannot write {}",
                other.data_type()
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use proptest::prelude::*;

    proptest! {
        /// A column of strings read at once holds what `decode` reads from each value, and
        /// bytes that are not UTF-8 are left to `decode` to report.
        #[test]
        fn strings_read_at_once_as_one_by_one(values in proptest::collection::vec(
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)), 0..20)) {
            let bytes: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
            let one_by_one: Result<Vec<Option<ScalarValue>>, String> = bytes
                .iter()
                .map(|b| b.map(|b| decode(&DataType::Utf8, b)).transpose())
                .collect();
            match (decode_strings(bytes.iter().copied()), one_by_one) {
                (Some(column), Ok(each)) => {
                    let column = column.as_string::<i32>();
                    for (i, v) in each.iter().enumerate() {
                        match v {
                            Some(ScalarValue::Utf8(Some(s))) => prop_assert_eq!(column.value(i), s.as_str()),
                            _ => prop_assert!(column.is_null(i)),
                        }
                    }
                }
                (None, Err(_)) => {}
                (column, each) => prop_assert!(false, "{column:?} but {each:?}"),
            }
        }

        /// A column of strings written at once is written as `encode` writes each.
        #[test]
        fn strings_written_at_once_as_one_by_one(values in proptest::collection::vec(proptest::option::of(".{0,6}"), 0..20)) {
            let column: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(values.clone()));
            let written = encode_strings(&column).expect("a column of strings");
            for (v, bytes) in values.into_iter().zip(written) {
                prop_assert_eq!(bytes, encode(&ScalarValue::Utf8(v)).unwrap());
            }
        }
    }
}

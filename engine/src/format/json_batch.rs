//! JSON a batch at a time, for values whose columns are all BOOLEAN, INT, BIGINT, DOUBLE or
//! STRING: reading with arrow-json's decoder straight into Arrow columns, and writing rows
//! straight from Arrow columns into one buffer. These are the hot paths of a query over JSON;
//! the record-at-a-time codec in [`super::json`] (ksqlDB's full coercion rules, nested types,
//! case-insensitive field names) remains the reference.
//!
//! The fast reader only ever answers where it agrees with the reference: field names must
//! match exactly (strict mode: any other field is an error) and a value arrow-json would coerce
//! differently is an error; on any error the caller decodes the batch record by record, which
//! also reports bad records to the processing log.

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Int64Type, Schema};
use datafusion::arrow::json::ReaderBuilder;

use super::{Codec, Format};

/// Whether the batch paths handle these fields: an object of primitive columns (a single
/// column only where it is wrapped in one).
fn handled(codec: &Codec) -> bool {
    codec.format == Format::Json
        && (codec.fields.len() >= 2 || (codec.fields.len() == 1 && codec.wrap_single))
        && codec.fields.iter().all(|f: &Field| {
            matches!(
                f.data_type(),
                DataType::Boolean
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::Float64
                    | DataType::Utf8
            )
        })
}

/// The value columns of `values` (one JSON object each), or `None` where the record-at-a-time
/// codec must decide.
pub fn decode_batch(codec: &Codec, values: &[&[u8]]) -> Option<Vec<ArrayRef>> {
    // A single wrapped column is an object here too: a bare value, which ksqlDB also reads,
    // is not an object, so the decoder refuses it and the reference reads the batch.
    if values.is_empty() || !handled(codec) {
        return None;
    }
    let schema = Arc::new(Schema::new(codec.fields.clone()));
    let mut decoder = ReaderBuilder::new(schema)
        .with_strict_mode(true)
        .with_batch_size(values.len())
        .build_decoder()
        .ok()?;
    for v in values {
        let before = decoder.len();
        let mut rest: &[u8] = v;
        while !rest.is_empty() {
            let used = decoder.decode(rest).ok()?;
            if used == 0 {
                return None;
            }
            rest = &rest[used..];
        }
        // Exactly one object per record.
        if decoder.len() != before + 1 {
            return None;
        }
    }
    let batch = decoder.flush().ok()??;
    (batch.num_rows() == values.len()).then(|| batch.columns().to_vec())
}

/// Each row of `columns` (the codec's fields, in order) as a JSON object, or `None` where the
/// record-at-a-time codec must write them.
pub fn encode_batch(codec: &Codec, columns: &[&ArrayRef]) -> Option<Vec<Bytes>> {
    if !handled(codec) || columns.len() != codec.fields.len() {
        return None;
    }
    let rows = columns.first().map_or(0, |c| c.len());
    let names: Vec<Vec<u8>> = codec
        .fields
        .iter()
        .map(|f| {
            let mut n = serde_json::to_vec(f.name()).expect("strings serialize");
            n.push(b':');
            n
        })
        .collect();
    let mut buf: Vec<u8> = Vec::with_capacity(rows * 64);
    let mut ends = Vec::with_capacity(rows);
    for row in 0..rows {
        buf.push(b'{');
        for (i, (col, name)) in columns.iter().zip(&names).enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(name);
            if col.is_null(row) {
                buf.extend_from_slice(b"null");
                continue;
            }
            match col.data_type() {
                DataType::Boolean => {
                    let b = col.as_boolean().value(row);
                    buf.extend_from_slice(if b { b"true" } else { b"false" });
                }
                DataType::Int32 => {
                    let _ = write!(buf, "{}", col.as_primitive::<Int32Type>().value(row));
                }
                DataType::Int64 => {
                    let _ = write!(buf, "{}", col.as_primitive::<Int64Type>().value(row));
                }
                DataType::Float64 => {
                    write_double(&mut buf, col.as_primitive::<Float64Type>().value(row))
                }
                DataType::Utf8 => {
                    serde_json::to_writer(&mut buf, col.as_string::<i32>().value(row))
                        .expect("strings serialize");
                }
                _ => return None,
            }
        }
        buf.push(b'}');
        ends.push(buf.len());
    }
    Some(super::split_rows(buf, ends))
}

/// A double as ksqlDB writes it (see [`crate::value::java_double`]), without allocating in
/// the common range.
fn write_double(buf: &mut Vec<u8>, f: f64) {
    if f.is_finite() && f != 0.0 && (1e-3..1e7).contains(&f.abs()) {
        let start = buf.len();
        let _ = write!(buf, "{f}");
        if !buf[start..].contains(&b'.') {
            buf.extend_from_slice(b".0");
        }
        return;
    }
    let text = crate::value::java_double(f);
    if f.is_finite() {
        buf.extend_from_slice(text.as_bytes());
    } else {
        // Jackson writes the non-finite doubles as strings.
        buf.push(b'"');
        buf.extend_from_slice(text.as_bytes());
        buf.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::common::ScalarValue;
    use proptest::prelude::*;

    fn codec() -> Codec {
        Codec::new(
            Format::Json,
            vec![
                Field::new("ID", DataType::Int64, true),
                Field::new("NAME", DataType::Utf8, true),
                Field::new("AMOUNT", DataType::Float64, true),
                Field::new("OK", DataType::Boolean, true),
                Field::new("N", DataType::Int32, true),
            ],
            true,
        )
        .unwrap()
    }

    /// JSON texts of records, some of which only the reference reads.
    fn record() -> impl Strategy<Value = String> {
        let id = prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            Just("null".to_string()),
            Just("\"12\"".to_string()),
            Just("1.5".to_string()),
        ];
        let name = prop_oneof![
            "[a-z\"\\\\é ]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just("7".to_string()),
            Just("{\"a\":1}".to_string()),
        ];
        let amount = prop_oneof![
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| f.to_string()),
            Just("3".to_string()),
            Just("\"2.5\"".to_string()),
        ];
        let n = prop_oneof![
            any::<i32>().prop_map(|i| i.to_string()),
            Just("4294967296".to_string()),
        ];
        let field_name = prop_oneof![Just("OK"), Just("ok")];
        (id, name, amount, any::<bool>(), n, field_name).prop_map(|(i, s, a, b, n, f)| {
            format!(r#"{{"ID":{i},"NAME":{s},"AMOUNT":{a},"{f}":{b},"N":{n}}}"#)
        })
    }

    #[test]
    fn reads_exact_objects_and_leaves_the_rest_to_the_reference() {
        let codec = codec();
        let good: &[u8] = br#"{"ID":1,"NAME":"a","AMOUNT":2.5,"OK":true,"N":3}"#;
        let columns = decode_batch(&codec, &[good, good]).expect("read a batch at a time");
        assert_eq!(columns[0].len(), 2);
        assert_eq!(columns[1].as_string::<i32>().value(0), "a");
        // Another case of a name, a string where a number is due, two objects in one record.
        let lower: &[u8] = br#"{"id":1}"#;
        let text: &[u8] = br#"{"NAME":5}"#;
        let two: &[u8] = br#"{"ID":1}{"ID":2}"#;
        for bad in [lower, text, two] {
            assert!(decode_batch(&codec, &[good, bad]).is_none());
        }
    }

    proptest! {
        /// Whatever the fast reader reads, it reads as the reference does.
        #[test]
        fn the_batch_reader_agrees_with_the_reference(texts in proptest::collection::vec(record(), 1..20)) {
            let codec = codec();
            let values: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
            if let Some(columns) = decode_batch(&codec, &values) {
                for (row, text) in texts.iter().enumerate() {
                    let reference = codec.decode(Some(text.as_bytes())).expect("the reference reads it too");
                    for (col, want) in columns.iter().zip(reference) {
                        prop_assert_eq!(ScalarValue::try_from_array(col, row).unwrap(), want);
                    }
                }
            }
        }

        /// A single column: objects read a batch at a time, bare values by the reference.
        #[test]
        fn a_single_column_reads_as_the_reference_reads_it(texts in proptest::collection::vec(prop_oneof![
            any::<i64>().prop_map(|i| format!(r#"{{"V":{i}}}"#)),
            any::<i64>().prop_map(|i| i.to_string()),
            Just(r#"{"v":1}"#.to_string()),
            Just(r#"{"V":null}"#.to_string()),
            Just("null".to_string()),
            Just("{}".to_string()),
        ], 1..20)) {
            let codec = Codec::new(Format::Json, vec![Field::new("V", DataType::Int64, true)], true).unwrap();
            let values: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
            if let Some(columns) = decode_batch(&codec, &values) {
                for (row, text) in texts.iter().enumerate() {
                    let reference = codec.decode(Some(text.as_bytes())).expect("the reference reads it too");
                    prop_assert_eq!(ScalarValue::try_from_array(&columns[0], row).unwrap(), reference[0].clone());
                }
            }
        }

        /// The fast writer writes what the reference writes.
        #[test]
        fn the_batch_writer_agrees_with_the_reference(texts in proptest::collection::vec(record(), 1..20)) {
            let codec = codec();
            let rows: Vec<Vec<ScalarValue>> = texts
                .iter()
                .filter_map(|t| codec.decode(Some(t.as_bytes())).ok())
                .collect();
            prop_assume!(!rows.is_empty());
            let columns: Vec<ArrayRef> = (0..codec.fields.len())
                .map(|c| ScalarValue::iter_to_array(rows.iter().map(|r| r[c].clone())).unwrap())
                .collect();
            let refs: Vec<&ArrayRef> = columns.iter().collect();
            let written = encode_batch(&codec, &refs).expect("primitive columns");
            for (row, bytes) in rows.iter().zip(written) {
                prop_assert_eq!(Some(bytes), codec.encode(row).unwrap());
            }
        }
    }
}

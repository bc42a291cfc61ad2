//! The JSON format: an object of columns; a single unwrapped column is the bare value.

use datafusion::common::ScalarValue;
use serde_json::Value;

use super::Codec;
use crate::value::{from_json, lookup, write_json};

pub(super) fn decode(codec: &Codec, bytes: &[u8]) -> Result<Vec<ScalarValue>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let fields = &codec.fields;
    // A single column may be written bare; ksqlDB also reads a bare value when it expects a
    // wrapped one, as long as it is not an object.
    if fields.len() == 1 && (!codec.wrap_single || !v.is_object()) {
        return Ok(vec![from_json(&v, fields[0].data_type())?]);
    }
    let Value::Object(obj) = &v else {
        return Err(format!("expected a JSON object, found {}", kind(&v)));
    };
    fields
        .iter()
        .map(|f| {
            from_json(lookup(obj, f.name()).unwrap_or(&Value::Null), f.data_type())
                .map_err(|e| format!("column {}: {e}", f.name()))
        })
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn encode(codec: &Codec, values: &[ScalarValue]) -> Result<bytes::Bytes, String> {
    let mut out = String::new();
    if codec.fields.len() == 1 && !codec.wrap_single {
        write_json(&mut out, &values[0])?;
    } else {
        out.push('{');
        for (i, (f, v)) in codec.fields.iter().zip(values).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(f.name()).expect("strings serialize"));
            out.push(':');
            write_json(&mut out, v)?;
        }
        out.push('}');
    }
    Ok(bytes::Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use datafusion::arrow::datatypes::{DataType, Field};

    fn codec(wrap: bool, fields: &[(&str, DataType)]) -> Codec {
        Codec::new(
            Format::Json,
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect(),
            wrap,
        )
        .unwrap()
    }

    #[test]
    fn reads_fields_case_insensitively_and_writes_them_as_declared() {
        let c = codec(
            true,
            &[
                ("ID", DataType::Int64),
                ("NAME", DataType::Utf8),
                ("V", DataType::Float64),
            ],
        );
        let row = c.decode(Some(br#"{"id": "7", "name": "x"}"#)).unwrap();
        assert_eq!(
            row,
            vec![
                ScalarValue::Int64(Some(7)),
                ScalarValue::Utf8(Some("x".into())),
                ScalarValue::Float64(None)
            ]
        );
        assert_eq!(
            c.encode(&row).unwrap().unwrap(),
            r#"{"ID":7,"NAME":"x","V":null}"#
        );
        assert!(c.decode(Some(b"[1]")).is_err());
        assert!(c
            .decode(Some(b"{not json"))
            .unwrap_err()
            .contains("invalid JSON"));
    }

    #[test]
    fn single_values_can_be_unwrapped() {
        let c = codec(false, &[("C", DataType::Int32)]);
        assert_eq!(
            c.decode(Some(b"12")).unwrap(),
            vec![ScalarValue::Int32(Some(12))]
        );
        assert_eq!(
            c.encode(&[ScalarValue::Int32(Some(12))]).unwrap().unwrap(),
            "12"
        );
    }
}

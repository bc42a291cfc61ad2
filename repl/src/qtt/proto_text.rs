//! A pull query's protobuf rows as ksqlDB's REST test executor shows them: each row's bytes
//! decoded with the result's columns and printed in protobuf's text format (Java's
//! `TextFormat`): fields at their zero value left out, nested messages in braces indented by
//! two, a repeated field once per element, bytes and strings escaped as C does.

use base64::Engine;
use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::Field;
use datafusion::common::ScalarValue;
use eddy_engine::format::Nullable;
use eddy_engine::{Codec, Format};
use serde_json::{json, Value};

/// A `/query` answer in protobuf (a JSON array of messages) as the suite's `queryProto`
/// response: the header as sent, each row's `protobufBytes` as text.
pub fn response(messages: &[Value]) -> Result<Value, String> {
    let schema = messages
        .iter()
        .find_map(|m| m.pointer("/header/schema").and_then(Value::as_str))
        .ok_or("no header with a schema")?;
    let columns = eddy_sql::parse_schema(schema).map_err(|e| e.to_string())?;
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(c.name.as_str(), c.ty.to_arrow(), true))
        .collect();
    let codec = Codec::new(
        Format::ProtobufNoSr {
            nullable: Nullable::Default,
        },
        fields.clone(),
        false,
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for m in messages {
        let Some(encoded) = m.pointer("/row/protobufBytes").and_then(Value::as_str) else {
            out.push(m.clone());
            continue;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| e.to_string())?;
        let values = codec.decode(Some(&bytes))?;
        let mut text = String::new();
        for (f, v) in fields.iter().zip(&values) {
            field(&mut text, 0, f.name(), v);
        }
        out.push(json!({ "row": text }));
    }
    Ok(json!({ "queryProto": out }))
}

/// Appends field `name` holding `v` at `depth`, unless proto3 would leave it out.
fn field(out: &mut String, depth: usize, name: &str, v: &ScalarValue) {
    let pad = "  ".repeat(depth);
    match v {
        ScalarValue::List(list) => {
            let values = list.value(0);
            for i in 0..values.len() {
                if let Ok(item) = ScalarValue::try_from_array(&values, i) {
                    element(out, depth, name, &item);
                }
            }
        }
        ScalarValue::Map(map) => {
            let entries = map.value(0);
            for i in 0..entries.len() {
                let key = ScalarValue::try_from_array(entries.column(0), i);
                let value = ScalarValue::try_from_array(entries.column(1), i);
                if let (Ok(k), Ok(v)) = (key, value) {
                    out.push_str(&format!("{pad}{name} {{\n"));
                    field(out, depth + 1, "key", &k);
                    field(out, depth + 1, "value", &v);
                    out.push_str(&format!("{pad}}}\n"));
                }
            }
        }
        ScalarValue::Struct(s) if s.is_valid(0) => message(out, depth, name, v),
        v => match well_known(v) {
            Some(fields) => {
                let pad = "  ".repeat(depth);
                out.push_str(&format!("{pad}{name} {{\n"));
                for (f, v) in &fields {
                    field(out, depth + 1, f, v);
                }
                out.push_str(&format!("{pad}}}\n"));
            }
            None => {
                if let Some(text) = scalar(v) {
                    out.push_str(&format!("{pad}{name}: {text}\n"));
                }
            }
        },
    }
}

/// The fields of the message that the PROTOBUF format writes for a DATE (`google.type.Date`),
/// TIME (`google.type.TimeOfDay`), TIMESTAMP (`google.protobuf.Timestamp`) or DECIMAL
/// (`confluent.type.Decimal`); `None` for a scalar.
fn well_known(v: &ScalarValue) -> Option<Vec<(&'static str, ScalarValue)>> {
    let int = |n: i64| ScalarValue::Int64(Some(n));
    Some(match v {
        ScalarValue::Date32(Some(d)) => {
            let (year, month, day) = civil(i64::from(*d));
            vec![
                ("year", int(year)),
                ("month", int(month)),
                ("day", int(day)),
            ]
        }
        ScalarValue::Time32Millisecond(Some(ms)) => {
            let ms = i64::from(*ms);
            vec![
                ("hours", int(ms / 3_600_000)),
                ("minutes", int(ms / 60_000 % 60)),
                ("seconds", int(ms / 1000 % 60)),
                ("nanos", int(ms % 1000 * 1_000_000)),
            ]
        }
        ScalarValue::TimestampMillisecond(Some(t), _) => vec![
            ("seconds", int(t.div_euclid(1000))),
            ("nanos", int(t.rem_euclid(1000) * 1_000_000)),
        ],
        ScalarValue::Decimal128(Some(unscaled), p, s) => {
            // Big-endian two's complement, as short as the sign allows.
            let bytes = unscaled.to_be_bytes();
            let mut start = 0;
            while start < 15
                && ((bytes[start] == 0 && bytes[start + 1] < 0x80)
                    || (bytes[start] == 0xff && bytes[start + 1] >= 0x80))
            {
                start += 1;
            }
            vec![
                ("value", ScalarValue::Binary(Some(bytes[start..].to_vec()))),
                ("precision", int((*p).into())),
                ("scale", int((*s).into())),
            ]
        }
        _ => return None,
    })
}

/// The year, month and day of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// An element of a repeated field: printed even at its zero value.
fn element(out: &mut String, depth: usize, name: &str, v: &ScalarValue) {
    match v {
        ScalarValue::Struct(_) => message(out, depth, name, v),
        v => {
            let text = scalar(v).unwrap_or_else(|| zero_text(v));
            out.push_str(&format!("{}{name}: {text}\n", "  ".repeat(depth)));
        }
    }
}

/// A nested message: its fields in braces.
fn message(out: &mut String, depth: usize, name: &str, v: &ScalarValue) {
    let ScalarValue::Struct(s) = v else { return };
    let pad = "  ".repeat(depth);
    out.push_str(&format!("{pad}{name} {{\n"));
    for (i, f) in s.fields().iter().enumerate() {
        if let Ok(v) = ScalarValue::try_from_array(s.column(i), 0) {
            field(out, depth + 1, f.name(), &v);
        }
    }
    out.push_str(&format!("{pad}}}\n"));
}

/// A scalar's text, or `None` at its zero value (or null), which proto3 does not write.
fn scalar(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Int32(Some(n)) if *n != 0 => Some(n.to_string()),
        ScalarValue::Int64(Some(n)) if *n != 0 => Some(n.to_string()),
        ScalarValue::Float64(Some(x)) if *x != 0.0 => Some(java_double(*x)),
        ScalarValue::Boolean(Some(true)) => Some("true".into()),
        ScalarValue::Utf8(Some(s)) if !s.is_empty() => Some(quoted(s.as_bytes())),
        ScalarValue::Binary(Some(b)) if !b.is_empty() => Some(quoted(b)),
        _ => None,
    }
}

fn zero_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Utf8(_) | ScalarValue::Binary(_) => "\"\"".into(),
        ScalarValue::Boolean(_) => "false".into(),
        ScalarValue::Float64(_) => "0.0".into(),
        _ => "0".into(),
    }
}

/// A double as Java's `Double.toString` prints it in the common range.
fn java_double(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e7 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// Bytes as `TextFormat` quotes them: printable ASCII as is, the rest escaped.
fn quoted(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in bytes {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b'"' => s.push_str("\\\""),
            b'\'' => s.push_str("\\'"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\{b:03o}")),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_become_dates_and_values_print_as_text_format_does() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(-1), (1969, 12, 31));
        assert_eq!(civil(19_047), (2022, 2, 24));
        let mut out = String::new();
        field(&mut out, 0, "D", &ScalarValue::Date32(Some(-1)));
        field(&mut out, 0, "Z", &ScalarValue::Int32(Some(0)));
        field(
            &mut out,
            0,
            "B",
            &ScalarValue::Binary(Some(vec![b'!', 0, b'"'])),
        );
        field(&mut out, 0, "M", &ScalarValue::Decimal128(Some(-1), 4, 2));
        assert_eq!(
            out,
            "D {\n  year: 1969\n  month: 12\n  day: 31\n}\nB: \"!\\000\\\"\"\nM {\n  value: \"\\377\"\n  precision: 4\n  scale: 2\n}\n"
        );
    }
}

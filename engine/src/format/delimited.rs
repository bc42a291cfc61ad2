//! The DELIMITED format: one line of text, columns separated by a delimiter, quoted as CSV.
//!
//! Writing follows the minimal quoting of the Apache Commons CSV version ksqlDB uses: the first
//! field of a line is quoted unless it starts with a letter or digit (so `-10` first on a line
//! is written `"-10"`); any field is quoted when it starts with a character at or below `#`,
//! holds the delimiter, a quote or a line break, or ends with white space; an empty first field
//! is quoted. Nulls are empty fields.

use base64::Engine as _;
use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;

use crate::value::{decimal_text, java_double, null_of, parse_decimal};

pub(super) fn decode(
    fields: &[Field],
    delimiter: char,
    bytes: &[u8],
) -> Result<Vec<ScalarValue>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "value is not UTF-8 text".to_string())?;
    let parts = split(text, delimiter)?;
    if parts.len() != fields.len() {
        return Err(format!(
            "unexpected field count: the value has {} fields, the schema {}",
            parts.len(),
            fields.len()
        ));
    }
    fields
        .iter()
        .zip(parts)
        .map(|(f, p)| {
            parse_field(p.as_deref(), f.data_type())
                .map_err(|e| format!("column {}: {e}", f.name()))
        })
        .collect()
}

/// Splits a line into fields; `None` for an empty unquoted field.
fn split(text: &str, delimiter: char) -> Result<Vec<Option<String>>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        s.push('"');
                    }
                    Some('"') => break,
                    Some(c) => s.push(c),
                    None => return Err("unterminated quoted field".into()),
                }
            }
            out.push(Some(s));
            match chars.next() {
                None => return Ok(out),
                Some(c) if c == delimiter => continue,
                Some(c) => return Err(format!("unexpected '{c}' after a quoted field")),
            }
        }
        let mut s = String::new();
        loop {
            match chars.next() {
                None => {
                    out.push((!s.is_empty()).then_some(s));
                    return Ok(out);
                }
                Some(c) if c == delimiter => break,
                Some(c) => s.push(c),
            }
        }
        out.push((!s.is_empty()).then_some(s));
    }
}

fn parse_field(text: Option<&str>, t: &DataType) -> Result<ScalarValue, String> {
    let Some(s) = text else { return null_of(t) };
    let bad = || format!("cannot read '{s}' as {}", crate::schema::sql_type_name(t));
    Ok(match t {
        DataType::Boolean => ScalarValue::Boolean(Some(match s.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(bad()),
        })),
        DataType::Int32 => ScalarValue::Int32(Some(s.trim().parse().map_err(|_| bad())?)),
        DataType::Int64 => ScalarValue::Int64(Some(s.trim().parse().map_err(|_| bad())?)),
        DataType::Float64 => ScalarValue::Float64(Some(s.trim().parse().map_err(|_| bad())?)),
        DataType::Decimal128(p, sc) => ScalarValue::Decimal128(
            Some(parse_decimal(s.trim(), *p, *sc).ok_or_else(bad)?),
            *p,
            *sc,
        ),
        DataType::Utf8 => ScalarValue::Utf8(Some(s.to_string())),
        DataType::Binary => ScalarValue::Binary(Some(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| bad())?,
        )),
        DataType::Timestamp(_, tz) => ScalarValue::TimestampMillisecond(
            Some(s.trim().parse().map_err(|_| bad())?),
            tz.clone(),
        ),
        DataType::Date32 => ScalarValue::Date32(Some(s.trim().parse().map_err(|_| bad())?)),
        DataType::Time32(_) => {
            ScalarValue::Time32Millisecond(Some(s.trim().parse().map_err(|_| bad())?))
        }
        other => {
            return Err(format!(
                "the DELIMITED format does not support {}",
                crate::schema::sql_type_name(other)
            ))
        }
    })
}

pub(super) fn encode(values: &[ScalarValue], delimiter: char) -> Result<Bytes, String> {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        if v.is_null() {
            continue;
        }
        let text = match v {
            ScalarValue::Boolean(Some(b)) => b.to_string(),
            ScalarValue::Int32(Some(n)) => n.to_string(),
            ScalarValue::Int64(Some(n)) => n.to_string(),
            ScalarValue::Float64(Some(f)) => java_double(*f),
            ScalarValue::Decimal128(Some(u), _, s) => decimal_text(*u, *s),
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
            ScalarValue::Binary(Some(b)) => base64::engine::general_purpose::STANDARD.encode(b),
            ScalarValue::TimestampMillisecond(Some(t), _) => t.to_string(),
            ScalarValue::Date32(Some(d)) => d.to_string(),
            ScalarValue::Time32Millisecond(Some(t)) => t.to_string(),
            other => {
                return Err(format!(
                    "the DELIMITED format cannot write {}",
                    other.data_type()
                ))
            }
        };
        if needs_quotes(&text, i == 0, delimiter) {
            out.push('"');
            out.push_str(&text.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&text);
        }
    }
    Ok(Bytes::from(out))
}

fn needs_quotes(s: &str, first: bool, delimiter: char) -> bool {
    let Some(c0) = s.chars().next() else {
        return first;
    };
    if (first && !c0.is_ascii_alphanumeric()) || c0 <= '#' {
        return true;
    }
    if s.chars()
        .any(|c| c == delimiter || c == '"' || c == '\n' || c == '\r')
    {
        return true;
    }
    s.chars().last().is_some_and(|c| c <= ' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_quoted_fields() {
        let fields = vec![
            Field::new("A", DataType::Int64, true),
            Field::new("B", DataType::Utf8, true),
            Field::new("C", DataType::Float64, true),
        ];
        let row = decode(&fields, ',', b"1,\"x,\"\"y\",").unwrap();
        assert_eq!(row[1], ScalarValue::Utf8(Some("x,\"y".into())));
        assert!(row[2].is_null());
        assert_eq!(encode(&row, ',').unwrap(), "1,\"x,\"\"y\",");
        assert!(decode(&fields, ',', b"1,2")
            .unwrap_err()
            .contains("field count"));
        assert_eq!(
            encode(
                &[
                    ScalarValue::Float64(Some(0.0)),
                    ScalarValue::Utf8(Some("-1".into()))
                ],
                '|'
            )
            .unwrap(),
            "0.0|-1"
        );
    }
}

//! Conversions between JSON-shaped values and typed scalars, shared by the text formats.
//!
//! ksqlDB is lenient when reading (a JSON string holding digits is a fine INT; field names match
//! case-insensitively) and exact when writing (a DOUBLE always has a decimal point, a DECIMAL
//! keeps its scale). Both directions live here so that they stay each other's inverse.

use std::fmt::Write;
use std::sync::Arc;

use base64::Engine as _;
use datafusion::arrow::array::{Array, ArrayRef, MapArray, StructArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::common::ScalarValue;
use serde_json::Value;

pub(crate) fn null_of(t: &DataType) -> Result<ScalarValue, String> {
    ScalarValue::try_from(t).map_err(|e| e.to_string())
}

fn mismatch(v: &Value, t: &DataType) -> String {
    let shown = v.to_string();
    let shown = if shown.len() > 60 {
        format!("{}...", &shown[..60])
    } else {
        shown
    };
    format!("cannot read {shown} as {}", crate::schema::sql_type_name(t))
}

/// Reads a JSON value as a scalar of type `t`, with ksqlDB's coercions.
pub fn from_json(v: &Value, t: &DataType) -> Result<ScalarValue, String> {
    if v.is_null() {
        return null_of(t);
    }
    let bad = || mismatch(v, t);
    Ok(match t {
        DataType::Boolean => ScalarValue::Boolean(Some(match v {
            Value::Bool(b) => *b,
            Value::String(s) if s.eq_ignore_ascii_case("true") => true,
            Value::String(s) if s.eq_ignore_ascii_case("false") => false,
            _ => return Err(bad()),
        })),
        DataType::Int32 => ScalarValue::Int32(Some(
            i32::try_from(json_i64(v).ok_or_else(bad)?).map_err(|_| bad())?,
        )),
        DataType::Int64 => ScalarValue::Int64(Some(json_i64(v).ok_or_else(bad)?)),
        DataType::Float64 => ScalarValue::Float64(Some(match v {
            Value::Number(n) => n.as_f64().ok_or_else(bad)?,
            Value::String(s) => s.trim().parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        })),
        DataType::Decimal128(p, s) => {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.trim().to_string(),
                _ => return Err(bad()),
            };
            ScalarValue::Decimal128(Some(parse_decimal(&text, *p, *s).ok_or_else(bad)?), *p, *s)
        }
        DataType::Utf8 => ScalarValue::Utf8(Some(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })),
        DataType::Binary => match v {
            Value::String(s) => ScalarValue::Binary(Some(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|_| bad())?,
            )),
            _ => return Err(bad()),
        },
        DataType::Timestamp(TimeUnit::Millisecond, tz) => {
            ScalarValue::TimestampMillisecond(Some(json_i64(v).ok_or_else(bad)?), tz.clone())
        }
        DataType::Date32 => ScalarValue::Date32(Some(
            i32::try_from(json_i64(v).ok_or_else(bad)?).map_err(|_| bad())?,
        )),
        DataType::Time32(TimeUnit::Millisecond) => ScalarValue::Time32Millisecond(Some(
            i32::try_from(json_i64(v).ok_or_else(bad)?).map_err(|_| bad())?,
        )),
        DataType::List(item) => {
            let Value::Array(items) = v else {
                return Err(bad());
            };
            let values = items
                .iter()
                .map(|i| from_json(i, item.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            ScalarValue::List(ScalarValue::new_list_nullable(&values, item.data_type()))
        }
        DataType::Map(entries, _) => {
            let Value::Object(obj) = v else {
                return Err(bad());
            };
            let DataType::Struct(kv) = entries.data_type() else {
                return Err(bad());
            };
            // Entries by key: two maps with the same entries are then equal values (for
            // COLLECT_SET, GROUP BY, joins) whatever order their text had.
            let mut entries_in_order: Vec<(&String, &Value)> = obj.iter().collect();
            entries_in_order.sort_by(|a, b| a.0.cmp(b.0));
            let keys = entries_in_order
                .iter()
                .map(|(k, _)| from_json(&Value::String((*k).clone()), kv[0].data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            let values = entries_in_order
                .iter()
                .map(|(_, x)| from_json(x, kv[1].data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            ScalarValue::Map(Arc::new(map_array(entries.clone(), kv, keys, values)?))
        }
        DataType::Struct(fields) => {
            let Value::Object(obj) = v else {
                return Err(bad());
            };
            let values = fields
                .iter()
                .map(|f| from_json(lookup(obj, f.name()).unwrap_or(&Value::Null), f.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            ScalarValue::Struct(Arc::new(struct_array(fields, values)?))
        }
        other => return Err(format!("type {other} is not supported in JSON")),
    })
}

/// Finds a field by exact name, else case-insensitively (ksqlDB upper-cases column names, while
/// producers usually write lower case).
pub(crate) fn lookup<'v>(obj: &'v serde_json::Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn json_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        // Text reads as a number would: an integer, else a finite number truncated.
        Value::String(s) => {
            let s = s.trim();
            s.parse().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f as i64)
            })
        }
        _ => None,
    }
}

/// Parses decimal text into an unscaled value at `scale`, rounding half up; `None` if it does
/// not fit `precision`.
pub(crate) fn parse_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exp) = match digits.find(['e', 'E']) {
        Some(i) => (&digits[..i], digits[i + 1..].parse::<i32>().ok()?),
        None => (digits, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part
            .chars()
            .chain(frac_part.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let all: String = format!("{int_part}{frac_part}");
    // value = all * 10^(exp - frac_len); want unscaled = value * 10^scale
    let shift = exp - frac_part.len() as i32 + i32::from(scale);
    let mut unscaled: i128 = all.parse().ok()?;
    if shift >= 0 {
        unscaled = unscaled.checked_mul(10i128.checked_pow(shift as u32)?)?;
    } else {
        let div = 10i128.checked_pow((-shift) as u32).unwrap_or(i128::MAX);
        let (q, r) = (unscaled / div, unscaled % div);
        unscaled = if r * 2 >= div { q + 1 } else { q };
    }
    if unscaled.unsigned_abs() >= 10u128.pow(u32::from(precision)) {
        return None;
    }
    Some(if neg { -unscaled } else { unscaled })
}

pub(crate) fn struct_array(
    fields: &Fields,
    values: Vec<ScalarValue>,
) -> Result<StructArray, String> {
    let arrays = values
        .iter()
        .map(|v| v.to_array().map_err(|e| e.to_string()))
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    StructArray::try_new(fields.clone(), arrays, None).map_err(|e| e.to_string())
}

pub(crate) fn map_array(
    entries: Arc<Field>,
    kv: &Fields,
    keys: Vec<ScalarValue>,
    values: Vec<ScalarValue>,
) -> Result<MapArray, String> {
    let n = keys.len();
    let k = if n == 0 {
        datafusion::arrow::array::new_empty_array(kv[0].data_type())
    } else {
        ScalarValue::iter_to_array(keys).map_err(|e| e.to_string())?
    };
    let v = if n == 0 {
        datafusion::arrow::array::new_empty_array(kv[1].data_type())
    } else {
        ScalarValue::iter_to_array(values).map_err(|e| e.to_string())?
    };
    let entries_array =
        StructArray::try_new(kv.clone(), vec![k, v], None).map_err(|e| e.to_string())?;
    MapArray::try_new(
        entries,
        OffsetBuffer::new(vec![0i32, n as i32].into()),
        entries_array,
        None,
        false,
    )
    .map_err(|e| e.to_string())
}

/// Writes a scalar as ksqlDB's JSON serializer does.
pub fn write_json(out: &mut String, v: &ScalarValue) -> Result<(), String> {
    if v.is_null() {
        out.push_str("null");
        return Ok(());
    }
    match v {
        ScalarValue::Boolean(Some(b)) => write!(out, "{b}").unwrap(),
        ScalarValue::Int8(Some(i)) => write!(out, "{i}").unwrap(),
        ScalarValue::Int16(Some(i)) => write!(out, "{i}").unwrap(),
        ScalarValue::Int32(Some(i)) => write!(out, "{i}").unwrap(),
        ScalarValue::Int64(Some(i)) => write!(out, "{i}").unwrap(),
        ScalarValue::UInt32(Some(i)) => write!(out, "{i}").unwrap(),
        // Jackson writes the non-finite doubles as strings: "NaN", "Infinity", "-Infinity".
        ScalarValue::Float32(Some(f)) if !f.is_finite() => {
            write!(out, "\"{}\"", java_double(f64::from(*f))).unwrap()
        }
        ScalarValue::Float64(Some(f)) if !f.is_finite() => {
            write!(out, "\"{}\"", java_double(*f)).unwrap()
        }
        ScalarValue::Float32(Some(f)) => out.push_str(&java_double(f64::from(*f))),
        ScalarValue::Float64(Some(f)) => out.push_str(&java_double(*f)),
        ScalarValue::Decimal128(Some(u), _, s) => out.push_str(&decimal_text(*u, *s)),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            out.push_str(&serde_json::to_string(s).expect("strings serialize"))
        }
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b)) => write!(
            out,
            "\"{}\"",
            base64::engine::general_purpose::STANDARD.encode(b)
        )
        .unwrap(),
        ScalarValue::TimestampMillisecond(Some(t), _) => write!(out, "{t}").unwrap(),
        ScalarValue::TimestampSecond(Some(t), _) => write!(out, "{}", t * 1000).unwrap(),
        ScalarValue::TimestampMicrosecond(Some(t), _) => write!(out, "{}", t / 1000).unwrap(),
        ScalarValue::TimestampNanosecond(Some(t), _) => write!(out, "{}", t / 1_000_000).unwrap(),
        ScalarValue::Date32(Some(d)) => write!(out, "{d}").unwrap(),
        ScalarValue::Time32Millisecond(Some(t)) => write!(out, "{t}").unwrap(),
        ScalarValue::List(arr) => {
            out.push('[');
            let items = arr.value(0);
            for i in 0..items.len() {
                if i > 0 {
                    out.push(',');
                }
                write_json(
                    out,
                    &ScalarValue::try_from_array(&items, i).map_err(|e| e.to_string())?,
                )?;
            }
            out.push(']');
        }
        ScalarValue::Struct(arr) => {
            out.push('{');
            for (i, f) in arr.fields().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(f.name()).expect("strings serialize"));
                out.push(':');
                write_json(
                    out,
                    &ScalarValue::try_from_array(arr.column(i), 0).map_err(|e| e.to_string())?,
                )?;
            }
            out.push('}');
        }
        ScalarValue::Map(arr) => {
            out.push('{');
            let entries = arr.value(0);
            for i in 0..entries.len() {
                if i > 0 {
                    out.push(',');
                }
                let k =
                    ScalarValue::try_from_array(entries.column(0), i).map_err(|e| e.to_string())?;
                let key_text = match &k {
                    ScalarValue::Utf8(Some(s)) => s.clone(),
                    other => {
                        let mut s = String::new();
                        write_json(&mut s, other)?;
                        s
                    }
                };
                out.push_str(&serde_json::to_string(&key_text).expect("strings serialize"));
                out.push(':');
                write_json(
                    out,
                    &ScalarValue::try_from_array(entries.column(1), i)
                        .map_err(|e| e.to_string())?,
                )?;
            }
            out.push('}');
        }
        other => return Err(format!("cannot write a {} as JSON", other.data_type())),
    }
    Ok(())
}

/// A decimal's text at its scale: 1050 at scale 2 is `10.50`.
pub(crate) fn decimal_text(unscaled: i128, scale: i8) -> String {
    if scale <= 0 {
        return format!("{}{}", unscaled, "0".repeat((-scale) as usize));
    }
    let neg = unscaled < 0;
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
    } else {
        digits
    };
    let (i, f) = padded.split_at(padded.len() - scale);
    format!("{}{i}.{f}", if neg { "-" } else { "" })
}

/// `Double.toString` as Java prints it, which is what ksqlDB writes: always a decimal point,
/// scientific notation (`1.0E10`) outside [10^-3, 10^7).
pub fn java_double(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let abs = f.abs();
    if (1e-3..1e7).contains(&abs) {
        let s = format!("{f}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    // Shortest round-trip digits, then Java's layout d.dddE±n.
    let s = format!("{abs:e}");
    let (mantissa, exp) = s.split_once('e').expect("exponent form");
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    format!("{}{mantissa}E{exp}", if f < 0.0 { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_like_java() {
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(-2.5), "-2.5");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(1.234e-5), "1.234E-5");
        assert_eq!(java_double(123456.789), "123456.789");
    }

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(parse_decimal("10.5", 4, 2), Some(1050));
        assert_eq!(decimal_text(1050, 2), "10.50");
        assert_eq!(decimal_text(-5, 2), "-0.05");
        assert_eq!(parse_decimal("1.005", 4, 2), Some(101));
        assert_eq!(parse_decimal("100", 4, 2), None, "too many digits");
        assert_eq!(parse_decimal("1e2", 5, 1), Some(1000));
    }

    #[test]
    fn nested_values_round_trip() {
        let t = DataType::Struct(Fields::from(vec![
            Field::new(
                "A",
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                true,
            ),
            Field::new("B", DataType::Float64, true),
        ]));
        let v = from_json(&serde_json::json!({"a": [1, 2, null], "B": 1}), &t).unwrap();
        let mut out = String::new();
        write_json(&mut out, &v).unwrap();
        assert_eq!(out, r#"{"A":[1,2,null],"B":1.0}"#);
    }
}

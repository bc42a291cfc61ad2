//! Comparing actual records with expected ones by ksqlDB's test rules.
//!
//! Numbers: doubles match within 1e-6; an integer and a decimal never match (`1` is not
//! `1.0`), since ksqlDB's output format decides which one is written, except that an expected
//! integer matches a double of 10^7 or more with its value (Java writes those in E notation).
//! An expected string matches a decimal of that value and scale (`"3.40"` is 3.40, not 3.4).
//! Objects need the same number of fields; a field is found by its name as written, then
//! upper-cased, and one not found is null (so `{"A": null}` matches `{"B": null}`: ksqlDB's
//! comparator looks fields up in a map).

use serde_json::Value;

/// The first difference between `expected` and `actual`, as a path and a description.
pub fn diff(expected: &Value, actual: &Value) -> Option<String> {
    diff_at("", expected, actual)
}

fn diff_at(path: &str, e: &Value, a: &Value) -> Option<String> {
    let here = || {
        if path.is_empty() {
            "".to_string()
        } else {
            format!(" at {path}")
        }
    };
    match (e, a) {
        (Value::Null, Value::Null) => None,
        (Value::Bool(x), Value::Bool(y)) if x == y => None,
        (Value::String(x), Value::String(y)) if x == y => None,
        (Value::String(x), Value::Number(y))
            if decimal(x).is_some() && decimal(x) == decimal(&y.to_string()) =>
        {
            None
        }
        (Value::Number(x), Value::Number(y)) => {
            let same = match (x.is_f64(), y.is_f64()) {
                (true, true) => (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 1e-6,
                (false, false) => x == y,
                // Java prints a large double in E notation (9.22337203692E11); the suite writes
                // such a value as the integer it is.
                (false, true) => x
                    .as_f64()
                    .zip(y.as_f64())
                    .is_some_and(|(x, y)| x == y && y.abs() >= 1e7),
                _ => false,
            };
            (!same).then(|| format!("expected {e} but got {a}{}", here()))
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!(
                    "expected {} elements but got {}{}: {a}",
                    x.len(),
                    y.len(),
                    here()
                ));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (xe, ye))| diff_at(&format!("{path}[{i}]"), xe, ye))
        }
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return Some(format!("expected {e} but got {a}{}", here()));
            }
            for (k, xe) in x {
                let ye = y.get(k).or_else(|| y.get(&k.to_uppercase()));
                match ye {
                    Some(ye) => {
                        if let Some(d) = diff_at(&format!("{path}.{k}"), xe, ye) {
                            return Some(d);
                        }
                    }
                    None if xe.is_null() => {}
                    None => return Some(format!("expected field {k} in {a}{}", here())),
                }
            }
            None
        }
        _ => Some(format!("expected {e} but got {a}{}", here())),
    }
}

/// A decimal number's digits (without leading zeros) and scale, as Java's BigDecimal compares
/// them: `3.40` is ("340", 2), `34e-1` is ("34", 1).
fn decimal(text: &str) -> Option<(String, i64)> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = digits.trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    Some((format!("{sign}{digits}"), fraction.len() as i64 - exponent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn follows_ksqldbs_number_and_field_rules() {
        assert_eq!(diff(&json!({"a": 1.0}), &json!({"A": 1.0000001})), None);
        assert!(diff(&json!(1), &json!(1.0)).is_some());
        assert!(diff(&json!({"a": 1}), &json!({"a": 1, "b": 2})).is_some());
        assert_eq!(diff(&json!({"a": null}), &json!({"B": null})), None);
        assert!(diff(&json!({"a": 1}), &json!({"B": 1})).is_some());
        let number = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        assert_eq!(diff(&json!("3.40"), &number("3.40")), None);
        assert!(diff(&json!("3.40"), &number("3.4")).is_some());
        assert!(diff(&json!("x"), &number("3.4")).is_some());
        assert!(diff(&json!([1, 2]), &json!([1, 3]))
            .unwrap()
            .contains("[1]"));
    }
}

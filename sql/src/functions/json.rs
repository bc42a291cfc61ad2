//! JSON functions over strings holding JSON: EXTRACTJSONFIELD, IS_JSON_STRING, JSON_ARRAY_LENGTH,
//! JSON_ARRAY_CONTAINS, JSON_KEYS, JSON_RECORDS and JSON_CONCAT.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use serde_json::Value;

use super::{
    exact, map_strings, string_list_type, string_lists, string_map_type, string_maps, strings, udf,
};

/// `s` read as JSON, if it is JSON.
fn parse(s: &str) -> Option<Value> {
    serde_json::from_str(s).ok()
}

/// A JSON object's fields in the order written (serde_json's own map sorts them).
struct Ordered(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Ordered, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry::<String, Value>()? {
                    fields.push(field);
                }
                Ok(Ordered(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// `s`'s fields in order, if it is a JSON object.
fn object(s: &str) -> Option<Vec<(String, Value)>> {
    serde_json::from_str::<Ordered>(s).ok().map(|o| o.0)
}

/// A JSON value as ksqlDB gives it back as text: a string's contents, other values' JSON.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

pub(super) fn functions() -> Vec<ScalarUDF> {
    let s = DataType::Utf8;
    vec![
        ScalarUDF::from(ExtractJsonField::default()),
        udf(
            "is_json_string",
            exact(vec![s.clone()]),
            DataType::Boolean,
            |args, rows| {
                let col = strings(&args[0])?;
                let out: BooleanArray = (0..rows)
                    .map(|row| Some(col.is_valid(row) && parse(col.value(row)).is_some()))
                    .collect();
                Ok(Arc::new(out))
            },
        ),
        udf(
            "json_array_length",
            exact(vec![s.clone()]),
            DataType::Int32,
            |args, rows| {
                let col = strings(&args[0])?;
                let out: Int32Array = (0..rows)
                    .map(
                        |row| match parse(col.is_valid(row).then(|| col.value(row))?)? {
                            Value::Array(items) => Some(items.len() as i32),
                            _ => None,
                        },
                    )
                    .collect();
                Ok(Arc::new(out))
            },
        ),
        // JSON_ARRAY_CONTAINS(json, value): whether the JSON array holds an element equal to
        // the (primitive) value; false for anything that is not an array.
        udf(
            "json_array_contains",
            Signature::any(2, Volatility::Immutable),
            DataType::Boolean,
            |args, rows| {
                let col = strings(&args[0])?;
                let out: BooleanArray = (0..rows)
                    .map(|row| {
                        let wanted = json_of(&ScalarValue::try_from_array(&args[1], row).ok()?);
                        let Some(Value::Array(items)) =
                            col.is_valid(row).then(|| parse(col.value(row))).flatten()
                        else {
                            return Some(false);
                        };
                        Some(items.iter().any(|i| same(i, &wanted)))
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        ),
        udf(
            "json_keys",
            exact(vec![s.clone()]),
            string_list_type(),
            |args, rows| {
                let col = strings(&args[0])?;
                Ok(string_lists((0..rows).map(|row| {
                    let fields = object(col.is_valid(row).then(|| col.value(row))?)?;
                    Some(fields.into_iter().map(|(k, _)| Some(k)).collect())
                })))
            },
        ),
        // JSON_RECORDS(json): an object's fields as a map of their values as text.
        udf(
            "json_records",
            exact(vec![s]),
            string_map_type(),
            |args, rows| {
                let col = strings(&args[0])?;
                Ok(string_maps((0..rows).map(|row| {
                    let fields = object(col.is_valid(row).then(|| col.value(row))?)?;
                    Some(
                        fields
                            .iter()
                            .map(|(k, v)| (k.clone(), text_of(v)))
                            .collect(),
                    )
                })))
            },
        ),
        // JSON_CONCAT(a, b, ...): objects merged (later fields win), or, when any is not an
        // object, one array of all the arrays' elements and the other values.
        udf(
            "json_concat",
            Signature::one_of(
                vec![TypeSignature::Variadic(vec![DataType::Utf8])],
                Volatility::Immutable,
            ),
            DataType::Utf8,
            |args, rows| map_strings(args, rows, concat),
        ),
    ]
}

fn concat(values: &[Option<&str>]) -> Option<String> {
    let docs = values
        .iter()
        .map(|v| parse((*v)?))
        .collect::<Option<Vec<Value>>>()?;
    if docs.iter().all(Value::is_object) {
        // Fields in the order first written; a later value replaces an earlier one.
        let mut merged: Vec<(String, Value)> = Vec::new();
        for v in values {
            for (k, v) in object((*v)?)? {
                match merged.iter_mut().find(|(old, _)| *old == k) {
                    Some(field) => field.1 = v,
                    None => merged.push((k, v)),
                }
            }
        }
        let fields: Vec<String> = merged
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
            .collect();
        return Some(format!("{{{}}}", fields.join(",")));
    }
    let mut items = Vec::new();
    for d in docs {
        match d {
            Value::Array(a) => items.extend(a),
            other => items.push(other),
        }
    }
    Some(Value::Array(items).to_string())
}

/// A primitive SQL value as JSON, to compare with a JSON document's elements.
fn json_of(v: &ScalarValue) -> Value {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Value::String(s.clone()),
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int32(Some(i)) => Value::from(*i),
        ScalarValue::Int64(Some(i)) => Value::from(*i),
        ScalarValue::Float64(Some(f)) => Value::from(*f),
        _ => Value::Null,
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// `EXTRACTJSONFIELD(json, '$.a.b[0]')`: the value at a JSONPath in a JSON string, as text (a
/// string's contents, or other values' JSON); null when the path leads nowhere.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExtractJsonField {
    signature: Signature,
}

impl Default for ExtractJsonField {
    fn default() -> Self {
        ExtractJsonField {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for ExtractJsonField {
    fn name(&self) -> &str {
        "extractjsonfield"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (json, path) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let out: StringArray = (0..args.number_rows)
            .map(|row| {
                if json.is_null(row) || path.is_null(row) {
                    return None;
                }
                // Leniently, as Jackson: the first JSON value of the text, whatever follows.
                let doc: Value = serde_json::Deserializer::from_str(json.value(row))
                    .into_iter::<Value>()
                    .next()?
                    .ok()?;
                let found = json_path(&doc, path.value(row))?;
                match found {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// Follows a simple JSONPath: `$`, `.name`, `['name']`, `[index]`.
fn json_path<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut cur = doc;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            cur = match inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            {
                Some(name) => cur.get(name)?,
                None => cur.get(inner.parse::<usize>().ok()?)?,
            };
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_json_paths() {
        let doc: Value =
            serde_json::from_str(r#"{"a": {"b": [10, {"c": "x"}]}, "d e": 1}"#).unwrap();
        assert_eq!(json_path(&doc, "$.a.b[0]"), Some(&Value::from(10)));
        assert_eq!(json_path(&doc, "$.a.b[1].c"), Some(&Value::from("x")));
        assert_eq!(json_path(&doc, "$['d e']"), Some(&Value::from(1)));
        assert_eq!(json_path(&doc, "$.missing"), None);
    }
}

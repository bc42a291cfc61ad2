//! ksqlDB's scalar functions that DataFusion does not have under the same name and meaning,
//! registered as DataFusion UDFs under ksqlDB's names (lower-cased, as planning looks them up).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{exec_err, Result};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use serde_json::Value;

/// Registers every function of this module with `ctx`.
pub fn register(ctx: &mut SessionContext) {
    // Registered after DataFusion's own planners, which leave `+` on strings alone.
    let planner = Arc::new(KsqlOperators);
    if let Err(e) = datafusion::execution::FunctionRegistry::register_expr_planner(ctx, planner) {
        tracing::warn!("cannot register ksqlDB's operators: {e}");
    }
    ctx.register_udf(ScalarUDF::from(AsValue::default()));
    ctx.register_udf(ScalarUDF::from(GeoDistance::default()));
    ctx.register_udf(ScalarUDF::from(ExtractJsonField::default()));
    ctx.register_udf(ScalarUDF::from(Substring::default()));
}

/// ksqlDB's operators that standard SQL spells differently: `+` on two strings concatenates
/// them (null if either is null, as `||`).
#[derive(Debug)]
struct KsqlOperators;

impl datafusion::logical_expr::planner::ExprPlanner for KsqlOperators {
    fn plan_binary_op(
        &self,
        expr: datafusion::logical_expr::planner::RawBinaryExpr,
        schema: &datafusion::common::DFSchema,
    ) -> Result<
        datafusion::logical_expr::planner::PlannerResult<
            datafusion::logical_expr::planner::RawBinaryExpr,
        >,
    > {
        use datafusion::logical_expr::planner::PlannerResult;
        use datafusion::logical_expr::ExprSchemable;
        let is_string = |e: &datafusion::logical_expr::Expr| {
            matches!(
                e.get_type(schema),
                Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            )
        };
        if expr.op == sqlparser::ast::BinaryOperator::Plus
            && is_string(&expr.left)
            && is_string(&expr.right)
        {
            return Ok(PlannerResult::Planned(
                datafusion::logical_expr::binary_expr(
                    expr.left,
                    datafusion::logical_expr::Operator::StringConcat,
                    expr.right,
                ),
            ));
        }
        Ok(PlannerResult::Original(expr))
    }
}

/// `SUBSTRING(s, pos [, len])` with ksqlDB's rules: `pos` counts from 1, a negative `pos`
/// counts from the end, 0 is the same as 1, and a range past either end is cut to the string.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Substring {
    signature: Signature,
}

impl Default for Substring {
    fn default() -> Self {
        let (s, b, i) = (DataType::Utf8, DataType::Binary, DataType::Int32);
        Substring {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![s.clone(), i.clone()]),
                    TypeSignature::Exact(vec![s, i.clone(), i.clone()]),
                    TypeSignature::Exact(vec![b.clone(), i.clone()]),
                    TypeSignature::Exact(vec![b, i.clone(), i]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

/// The char range ksqlDB's SUBSTRING takes from a string of `n` chars.
fn substring_range(n: i64, pos: i64, len: Option<i64>) -> (usize, usize) {
    let start = if pos < 0 {
        (n + pos).max(0)
    } else {
        (pos - 1).clamp(0, n)
    };
    let end = match len {
        Some(len) => (start + len).min(n).max(start),
        None => n,
    };
    (start as usize, end as usize)
}

impl ScalarUDFImpl for Substring {
    fn name(&self) -> &str {
        "ksql_substring"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        if let Some(bytes) = arrays[0].as_binary_opt::<i32>() {
            let pos = arrays[1].as_primitive::<datafusion::arrow::datatypes::Int32Type>();
            let len = arrays
                .get(2)
                .map(|a| a.as_primitive::<datafusion::arrow::datatypes::Int32Type>());
            let mut out = datafusion::arrow::array::BinaryBuilder::new();
            for row in 0..bytes.len() {
                if bytes.is_null(row) || pos.is_null(row) || len.is_some_and(|l| l.is_null(row)) {
                    out.append_null();
                    continue;
                }
                let b = bytes.value(row);
                let len = len.map(|l| i64::from(l.value(row)));
                let (start, end) = substring_range(b.len() as i64, i64::from(pos.value(row)), len);
                out.append_value(&b[start..end]);
            }
            return Ok(ColumnarValue::Array(Arc::new(out.finish())));
        }
        let strings = arrays[0].as_string::<i32>();
        let pos = arrays[1].as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let len = arrays
            .get(2)
            .map(|a| a.as_primitive::<datafusion::arrow::datatypes::Int32Type>());
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for row in 0..strings.len() {
            let len_value = match len {
                Some(l) if l.is_null(row) => {
                    out.append_null();
                    continue;
                }
                Some(l) => Some(i64::from(l.value(row))),
                None => None,
            };
            if strings.is_null(row) || pos.is_null(row) {
                out.append_null();
                continue;
            }
            let s = strings.value(row);
            let n = s.chars().count() as i64;
            let (start, end) = substring_range(n, i64::from(pos.value(row)), len_value);
            out.append_value(s.chars().skip(start).take(end - start).collect::<String>());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn arrays(args: &ScalarFunctionArgs) -> Result<Vec<ArrayRef>> {
    ColumnarValue::values_to_arrays(&args.args)
}

/// `AS_VALUE(x)`: `x` itself, so that a key column can also be copied into the value.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AsValue {
    signature: Signature,
}

impl Default for AsValue {
    fn default() -> Self {
        AsValue {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for AsValue {
    fn name(&self) -> &str {
        "as_value"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(args.args[0].clone())
    }
}

/// `GEO_DISTANCE(lat1, lon1, lat2, lon2 [, 'KM' | 'MI'])`: great-circle distance by the
/// haversine formula, in kilometres by default (Earth radius 6371 km, or 3959 miles).
#[derive(Debug, PartialEq, Eq, Hash)]
struct GeoDistance {
    signature: Signature,
}

impl Default for GeoDistance {
    fn default() -> Self {
        let f = DataType::Float64;
        GeoDistance {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![f.clone(), f.clone(), f.clone(), f.clone()]),
                    TypeSignature::Exact(vec![f.clone(), f.clone(), f.clone(), f, DataType::Utf8]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for GeoDistance {
    fn name(&self) -> &str {
        "geo_distance"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let coords: Vec<&Float64Array> = arrays[..4]
            .iter()
            .map(|a| a.as_primitive::<Float64Type>())
            .collect();
        let units = arrays.get(4).map(|a| a.as_string::<i32>());
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            if coords.iter().any(|c| c.is_null(row)) {
                out.push(None);
                continue;
            }
            let unit = units
                .filter(|u| !u.is_null(row))
                .map(|u| u.value(row).to_ascii_lowercase());
            let radius = match unit.as_deref() {
                None => 6371.0,
                Some(u) if u.starts_with("km") || u.starts_with("kilomet") => 6371.0,
                Some(u) if u.starts_with("mi") => 3959.0,
                Some(u) => return exec_err!("GEO_DISTANCE: unknown unit '{u}', use KM or MI"),
            };
            let [lat1, lon1, lat2, lon2] = [0, 1, 2, 3].map(|i| coords[i].value(row));
            let (dlat, dlon) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
            let a = (dlat / 2.0).sin().powi(2)
                + lat1.to_radians().cos() * lat2.to_radians().cos() * (dlon / 2.0).sin().powi(2);
            out.push(Some(2.0 * radius * a.sqrt().asin()));
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
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
        let arrays = arrays(&args)?;
        let (json, path) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let out: StringArray = (0..args.number_rows)
            .map(|row| {
                if json.is_null(row) || path.is_null(row) {
                    return None;
                }
                let doc: Value = serde_json::from_str(json.value(row)).ok()?;
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

#[cfg(test)]
mod substring_tests {
    use super::substring_range;

    #[test]
    fn ksql_positions() {
        // "hello": 1-based, 0 as 1, negative from the end, cut to the string.
        assert_eq!(substring_range(5, 1, Some(2)), (0, 2));
        assert_eq!(substring_range(5, 0, Some(2)), (0, 2));
        assert_eq!(substring_range(5, -3, None), (2, 5));
        assert_eq!(substring_range(5, -9, Some(2)), (0, 2));
        assert_eq!(substring_range(5, 4, Some(10)), (3, 5));
        assert_eq!(substring_range(5, 9, Some(2)), (5, 5));
        assert_eq!(substring_range(5, 2, Some(-1)), (1, 1));
    }
}

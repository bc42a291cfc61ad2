//! ksqlDB's typing of the lists a user writes: `x IN (a, b, ...)` and `ARRAY[a, b, ...]`, as an
//! analyzer rule that runs before DataFusion's type coercion (which would look for a common
//! type by its own rules).
//!
//! In an IN list, ksqlDB compares each item with `x` as `=` would, after reading string
//! literals as `x`'s type: `INT IN ('4.000')`, `BOOLEAN IN ('yes')`, `STRING IN (10.30)` all
//! work, while an item of another type that is not such a literal (`INT IN (a_string_column)`)
//! is an error. A struct item with a field `x` lacks can never be equal and is dropped; one
//! with some of `x`'s fields, or all in another order, takes `x`'s shape (missing fields null).
//!
//! In an ARRAY constructor, the element type is found from left to right: each element widens
//! the type of those before it, and a string literal after numbers counts as the number it
//! spells (`ARRAY[10, '2e1', a_bigint]` is an ARRAY<DECIMAL(19, 0)>: '2e1' is a DECIMAL(2, 0),
//! which an INT widens to DECIMAL(10, 0) and a BIGINT to DECIMAL(19, 0)).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{plan_err, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::{InList, ScalarFunction};
use datafusion::logical_expr::{lit, Expr, ExprSchemable, LogicalPlan};
use datafusion::optimizer::analyzer::{Analyzer, AnalyzerRule};

use crate::types::SqlType;

/// DataFusion's analyzer with ksqlDB's user lists first.
pub(crate) fn analyzer() -> Analyzer {
    let mut a = Analyzer::new();
    a.rules.insert(0, Arc::new(KsqlUserLists));
    a
}

#[derive(Debug)]
struct KsqlUserLists;

impl AnalyzerRule for KsqlUserLists {
    fn name(&self) -> &str {
        "ksql_user_lists"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let Some(input) = node.inputs().first().map(|i| i.schema().clone()) else {
                return Ok(Transformed::no(node));
            };
            node.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::InList(_) => in_list(e, &input),
                    Expr::ScalarFunction(f) if f.func.name() == "make_array" => {
                        array_elements(f, &input)
                    }
                    e => Ok(Transformed::no(e)),
                })
            })
        })
        .map(|t| t.data)
    }
}

fn sql_name(t: &DataType) -> String {
    SqlType::from_arrow(t).map_or_else(|| t.to_string(), |s| s.to_string())
}

fn in_list(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::InList(InList {
        expr,
        list,
        negated,
    }) = e
    else {
        return Ok(Transformed::no(e));
    };
    let target = expr.get_type(schema)?;
    let mut items = Vec::with_capacity(list.len());
    for item in list {
        let ty = item.get_type(schema)?;
        let bad = || {
            plan_err!(
                "Invalid Predicate: operator does not exist: {} = {} ({})",
                sql_name(&target),
                sql_name(&ty),
                expr.schema_name()
            )
        };
        if ty.is_null() || ty == target {
            items.push(item);
            continue;
        }
        let literal = literal_of(&item);
        let text = match literal {
            Some(ScalarValue::Utf8(Some(s))) => Some(s.clone()),
            _ => None,
        };
        match (&target, &ty) {
            (t, i) if t.is_numeric() && i.is_numeric() => items.push(item),
            (t, _) if t.is_numeric() => match text.as_deref().map(str::trim) {
                Some(s) => match (s.parse::<i64>(), s.parse::<f64>()) {
                    (Ok(i), _) => items.push(lit(i)),
                    (_, Ok(f)) => items.push(lit(f)),
                    _ => return bad(),
                },
                None => return bad(),
            },
            (DataType::Boolean, _) => match text.as_deref().and_then(boolean) {
                Some(b) => items.push(lit(b)),
                None => return bad(),
            },
            (DataType::Utf8, i) if i.is_numeric() || *i == DataType::Boolean => match literal {
                Some(v) => items.push(lit(v.to_string())),
                None => return bad(),
            },
            (DataType::Struct(fields), DataType::Struct(given)) => {
                // A struct with a field the target lacks is never equal to it; one with the
                // same fields in another order or only some of them takes the target's shape.
                if given.iter().any(|g| fields.find(g.name()).is_none()) {
                    continue;
                }
                let same_shape = given.len() == fields.len()
                    && given
                        .iter()
                        .zip(fields.iter())
                        .all(|(g, f)| g.name() == f.name());
                items.push(if same_shape {
                    item
                } else {
                    ksql_cast(item, &target)?
                });
            }
            _ => items.push(item),
        }
    }
    if items.is_empty() {
        return Ok(Transformed::yes(lit(negated)));
    }
    Ok(Transformed::yes(Expr::InList(InList {
        expr,
        list: items,
        negated,
    })))
}

/// An ARRAY constructor whose string literals stand for numbers or booleans, with every
/// element converted to the element type by ksqlDB's rules. Other constructors are left to
/// DataFusion's coercion, which finds the same type for them.
fn array_elements(f: ScalarFunction, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let types = f
        .args
        .iter()
        .map(|a| a.get_type(schema))
        .collect::<Result<Vec<_>>>()?;
    let mut common: Option<DataType> = None;
    let mut read_literals = false;
    for (arg, ty) in f.args.iter().zip(&types) {
        let Some(c) = &common else {
            common = (!ty.is_null()).then(|| ty.clone());
            continue;
        };
        let text = match literal_of(arg) {
            Some(ScalarValue::Utf8(Some(s))) => Some(s.as_str()),
            _ => None,
        };
        common = Some(match text {
            Some(s) if c.is_numeric() => {
                read_literals = true;
                widen_numbers(c, &number_type(s).ok_or_else(|| bad_literal(s, c))?)
            }
            Some(s) if *c == DataType::Boolean => {
                read_literals = true;
                boolean(s).ok_or_else(|| bad_literal(s, c))?;
                DataType::Boolean
            }
            _ if c.is_numeric() && ty.is_numeric() => widen_numbers(c, ty),
            _ => c.clone(),
        });
    }
    let Some(common) = common.filter(|_| read_literals) else {
        return Ok(Transformed::no(Expr::ScalarFunction(f)));
    };
    let args = f
        .args
        .into_iter()
        .zip(types)
        .map(|(arg, ty)| {
            if ty == common {
                return Ok(arg);
            }
            if let Some(ScalarValue::Utf8(Some(s))) = literal_of(&arg) {
                let value = match &common {
                    DataType::Boolean => ScalarValue::Boolean(boolean(s)),
                    DataType::Decimal128(p, scale) => {
                        let (unscaled, given) =
                            decimal(s).ok_or_else(|| bad_literal(s, &common))?;
                        let unscaled = 10i128
                            .checked_pow((*scale as i32 - given) as u32)
                            .and_then(|m| unscaled.checked_mul(m))
                            .ok_or_else(|| bad_literal(s, &common))?;
                        ScalarValue::Decimal128(Some(unscaled), *p, *scale)
                    }
                    _ => ScalarValue::try_from_string(s.trim().to_string(), &common)?,
                };
                return Ok(lit(value));
            }
            Ok(if ty.is_null() {
                arg
            } else {
                arg.cast_to(&common, schema)?
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(f.func, args),
    )))
}

fn bad_literal(text: &str, ty: &DataType) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Plan(format!(
        "invalid input syntax for type {}: \"{text}\"",
        sql_name(ty)
    ))
}

/// The type of the number a string literal spells, as ksqlDB reads it: INT or BIGINT for a
/// whole number in range written without a point or exponent, a DECIMAL just wide enough for
/// it otherwise.
fn number_type(text: &str) -> Option<DataType> {
    let t = text.trim();
    if !t.contains(['.', 'e', 'E']) {
        if let Ok(i) = t.parse::<i64>() {
            // ksqlDB's bounds are exclusive.
            return Some(if i > i32::MIN as i64 && i < i32::MAX as i64 {
                DataType::Int32
            } else if i > i64::MIN && i < i64::MAX {
                DataType::Int64
            } else {
                DataType::Decimal128(19, 0)
            });
        }
    }
    let (unscaled, scale) = decimal(t)?;
    let digits = unscaled
        .unsigned_abs()
        .checked_ilog10()
        .map_or(1, |d| d + 1) as i32;
    // As SQL counts it: a fraction's precision covers its scale and the zero before the point.
    let precision = if digits <= scale { scale + 1 } else { digits };
    (precision <= 38).then_some(DataType::Decimal128(precision as u8, scale as i8))
}

/// Text read as Java's BigDecimal reads it, as an unscaled value and a scale of at least zero
/// (`2e1` is 20, scale 0; `1.50` is 150, scale 2).
fn decimal(text: &str) -> Option<(i128, i32)> {
    let t = text.trim();
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let (negative, whole) = match whole.strip_prefix('-') {
        Some(w) => (true, w),
        None => (false, whole.strip_prefix('+').unwrap_or(whole)),
    };
    let digits = format!("{whole}{fraction}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut unscaled: i128 = digits.parse().ok()?;
    let mut scale = fraction.len() as i32 - exponent;
    if scale < 0 {
        unscaled = unscaled.checked_mul(10i128.checked_pow((-scale) as u32)?)?;
        scale = 0;
    }
    Some((if negative { -unscaled } else { unscaled }, scale))
}

/// The narrowest type holding the numbers of both `a` and `b`, by ksqlDB's widening: DOUBLE
/// over all; DECIMAL over whole numbers, keeping the most whole digits and the largest scale
/// (an INT counts as DECIMAL(10, 0), a BIGINT as DECIMAL(19, 0)); BIGINT over INT.
fn widen_numbers(a: &DataType, b: &DataType) -> DataType {
    fn as_decimal(t: &DataType) -> Option<(i32, i32)> {
        match t {
            DataType::Decimal128(p, s) => Some((*p as i32, *s as i32)),
            DataType::Int8 | DataType::Int16 | DataType::Int32 => Some((10, 0)),
            DataType::Int64 => Some((19, 0)),
            _ => None,
        }
    }
    let decimal = matches!(a, DataType::Decimal128(..)) || matches!(b, DataType::Decimal128(..));
    match (as_decimal(a), as_decimal(b)) {
        (Some((pa, sa)), Some((pb, sb))) if decimal => {
            let scale = sa.max(sb);
            let precision = ((pa - sa).max(pb - sb) + scale).min(38);
            DataType::Decimal128(precision as u8, scale as i8)
        }
        (Some(_), Some(_)) if *a == DataType::Int64 || *b == DataType::Int64 => DataType::Int64,
        (Some(_), Some(_)) => DataType::Int32,
        _ => DataType::Float64,
    }
}

/// `e` cast to `to` by ksqlDB's rules (structs by field name).
fn ksql_cast(e: Expr, to: &DataType) -> Result<Expr> {
    let Some(ty) = SqlType::from_arrow(to) else {
        return plan_err!("no SQL type for {to}");
    };
    Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
        crate::functions::cast_udf(),
        vec![e, lit(ty.to_string())],
    )))
}

/// The value of a literal, also one the rewrite wrapped in a CAST (`CAST(10 AS INT)`).
fn literal_of(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        Expr::Cast(c) => literal_of(&c.expr),
        _ => None,
    }
}

/// ksqlDB's reading of text as a boolean: a prefix of `true` or `yes`, or of `false` or `no`,
/// in any case.
fn boolean(text: &str) -> Option<bool> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    if "true".starts_with(&t) || "yes".starts_with(&t) {
        Some(true)
    } else if "false".starts_with(&t) || "no".starts_with(&t) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_in_strings_as_ksqldb_types_them() {
        assert_eq!(number_type("10"), Some(DataType::Int32));
        assert_eq!(number_type(" 3000000000"), Some(DataType::Int64));
        assert_eq!(number_type("2e1"), Some(DataType::Decimal128(2, 0)));
        assert_eq!(number_type("1.50"), Some(DataType::Decimal128(3, 2)));
        assert_eq!(number_type("0.005"), Some(DataType::Decimal128(4, 3)));
        assert_eq!(number_type("-12.5E-1"), Some(DataType::Decimal128(3, 2)));
        assert_eq!(number_type("not a number"), None);
        assert_eq!(decimal("-12.5E-1"), Some((-125, 2)));
        assert_eq!(decimal("2e1"), Some((20, 0)));
        assert_eq!(decimal("."), None);
    }

    #[test]
    fn widens_numbers_as_ksqldb() {
        let d = DataType::Decimal128;
        assert_eq!(widen_numbers(&d(2, 0), &DataType::Int32), d(10, 0));
        assert_eq!(widen_numbers(&d(10, 0), &DataType::Int64), d(19, 0));
        assert_eq!(widen_numbers(&d(3, 2), &DataType::Int32), d(12, 2));
        assert_eq!(
            widen_numbers(&DataType::Int32, &DataType::Int64),
            DataType::Int64
        );
        assert_eq!(
            widen_numbers(&d(3, 2), &DataType::Float64),
            DataType::Float64
        );
    }

    #[test]
    fn reads_booleans_as_ksqldb() {
        assert_eq!(boolean("TrUe"), Some(true));
        assert_eq!(boolean("tr"), Some(true));
        assert_eq!(boolean("Y"), Some(true));
        assert_eq!(boolean("n"), Some(false));
        assert_eq!(boolean("Not a boolean"), None);
    }
}

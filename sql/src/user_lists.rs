//! `x IN (a, b, ...)` by ksqlDB's typing rules, as an analyzer rule that runs before
//! DataFusion's type coercion (which would look for a common type instead).
//!
//! ksqlDB compares each item with `x` as `=` would, after reading string literals as `x`'s
//! type: `INT IN ('4.000')`, `BOOLEAN IN ('yes')`, `STRING IN (10.30)` all work, while an item
//! of another type that is not such a literal (`INT IN (a_string_column)`) is an error. A
//! struct item with a field `x` lacks can never be equal and is dropped; one with some of
//! `x`'s fields, or all in another order, takes `x`'s shape (missing fields null).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{plan_err, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::{InList, ScalarFunction};
use datafusion::logical_expr::{lit, Expr, ExprSchemable, LogicalPlan};
use datafusion::optimizer::analyzer::{Analyzer, AnalyzerRule};

use crate::types::SqlType;

/// DataFusion's analyzer with ksqlDB's IN lists first.
pub(crate) fn analyzer() -> Analyzer {
    let mut a = Analyzer::new();
    a.rules.insert(0, Arc::new(KsqlInLists));
    a
}

#[derive(Debug)]
struct KsqlInLists;

impl AnalyzerRule for KsqlInLists {
    fn name(&self) -> &str {
        "ksql_in_lists"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let Some(input) = node.inputs().first().map(|i| i.schema().clone()) else {
                return Ok(Transformed::no(node));
            };
            node.map_expressions(|e| e.transform_up(|e| in_list(e, &input)))
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
    use super::boolean;

    #[test]
    fn reads_booleans_as_ksqldb() {
        assert_eq!(boolean("TrUe"), Some(true));
        assert_eq!(boolean("tr"), Some(true));
        assert_eq!(boolean("Y"), Some(true));
        assert_eq!(boolean("n"), Some(false));
        assert_eq!(boolean("Not a boolean"), None);
    }
}

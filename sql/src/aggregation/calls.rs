//! The aggregate calls of a query: found in its select list and HAVING, each replaced by a
//! column `__AGGn` that the aggregate operator computes.

use std::ops::ControlFlow;

use datafusion::execution::context::SessionState;
use eddy_engine::aggregate::AggFunc;
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value, VisitMut, VisitorMut,
};

use crate::error::SqlError;
use crate::rewrite::{quoted, rewrite};

/// A call to an aggregate function found in the select list or HAVING.
pub(super) struct Call {
    pub(super) func: AggFunc,
    pub(super) name: String,
    pub(super) args: Vec<Expr>,
    pub(super) text: String,
}

/// Replaces aggregate calls with `__AGGn` columns, collecting them.
pub(super) struct ExtractAggregates<'a> {
    pub(super) calls: &'a mut Vec<Call>,
    pub(super) error: Option<SqlError>,
}

pub(super) fn function_args(f: &sqlparser::ast::Function) -> Vec<Option<Expr>> {
    match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => None,
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl VisitorMut for ExtractAggregates<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let name = f.name.to_string().to_ascii_uppercase();
        let Some(func) = AggFunc::by_name(&name) else {
            return ControlFlow::Continue(());
        };
        let args = function_args(f);
        let mut nested = Vec::new();
        for a in args.iter().flatten() {
            let mut a = a.clone();
            let _ = a.visit(&mut ExtractAggregates {
                calls: &mut nested,
                error: None,
            });
            if let Some(inner) = nested.first() {
                self.error = Some(SqlError::Invalid(format!(
                    "Aggregate functions can not be nested: {name}({}())",
                    inner.name
                )));
                return ControlFlow::Break(());
            }
        }
        let (func, mut args) = match (func, args.as_slice()) {
            (AggFunc::Count, [] | [None]) => (AggFunc::CountStar, Vec::new()),
            (_, args) => (func, args.iter().flatten().cloned().collect::<Vec<_>>()),
        };
        // TOPK(sort, other, ..., k): the top k rows by `sort`, each as a struct of the columns.
        if matches!(func, AggFunc::TopK | AggFunc::TopKDistinct) && args.len() > 2 {
            let k = args.pop().expect("more than two");
            let mut fields = vec![crate::rewrite::string_literal("sort_col"), args[0].clone()];
            for (i, a) in args[1..].iter().enumerate() {
                fields.push(crate::rewrite::string_literal(&format!("col{i}")));
                fields.push(a.clone());
            }
            args = vec![crate::rewrite::call("named_struct", fields), k];
        }
        // CORRELATION(x, y): the pairs, as a struct.
        if func == AggFunc::Correlation && args.len() == 2 {
            let fields = vec![
                crate::rewrite::string_literal("x"),
                args[0].clone(),
                crate::rewrite::string_literal("y"),
                args[1].clone(),
            ];
            args = vec![crate::rewrite::call("named_struct", fields)];
        }
        let text = format!(
            "{name}({})",
            args.iter()
                .map(|a| {
                    let mut a = a.clone();
                    rewrite(&mut a);
                    a.to_string()
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let i = match self.calls.iter().position(|c| c.text == text) {
            Some(i) => i,
            None => {
                self.calls.push(Call {
                    func,
                    name,
                    args,
                    text,
                });
                self.calls.len() - 1
            }
        };
        *expr = Expr::Identifier(quoted(&format!("__AGG{i}")));
        ControlFlow::Continue(())
    }
}

/// The first function the expressions call that is neither an aggregate nor a scalar function
/// of the session: a GROUP BY whose select list calls an unknown function lacks that function,
/// not an aggregate.
pub(super) fn unknown_function<'a>(
    state: &SessionState,
    exprs: impl Iterator<Item = &'a Expr>,
) -> Option<String> {
    let mut unknown = None;
    for e in exprs {
        let mut e = e.clone();
        rewrite(&mut e);
        let _ = sqlparser::ast::visit_expressions(&e, |e| {
            if let Expr::Function(f) = e {
                let name = f.name.to_string();
                if AggFunc::by_name(&name.to_ascii_uppercase()).is_none()
                    && !state
                        .scalar_functions()
                        .contains_key(&name.to_ascii_lowercase())
                {
                    unknown = Some(name.to_ascii_uppercase());
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if unknown.is_some() {
            break;
        }
    }
    unknown
}

pub(super) fn literal_int(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn literal_bool(e: &Expr) -> Option<bool> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Boolean(b) => Some(*b),
            _ => None,
        },
        _ => None,
    }
}

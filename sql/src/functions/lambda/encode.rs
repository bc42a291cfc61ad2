//! The rewrite side of lambdas: a call of TRANSFORM, FILTER or REDUCE with lambda arguments
//! becomes a call of `ksql_transform` and friends with each lambda as literals (see the parent
//! module).

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgOperator,
    FunctionArguments, Ident, ObjectName, ObjectNamePart,
};

use super::Kind;
use crate::rewrite::{call, string_literal};

/// Rewrites a call of TRANSFORM, FILTER or REDUCE (named `name`, lower case) whose arguments
/// are rewritten already: each lambda becomes its parameters (a JSON array of names) and its
/// body, as string literals.
pub(crate) fn encode(name: &str, f: &mut Function) {
    let Some(kind) = Kind::of(name) else {
        return;
    };
    let FunctionArguments::List(list) = &mut f.args else {
        return;
    };
    let mut args = Vec::new();
    let mut captured: Vec<String> = Vec::new();
    for arg in std::mem::take(&mut list.args) {
        let (params, body) = match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Lambda(l))) => (
                l.params
                    .iter()
                    .map(|p| crate::parser::normalize(&p.name))
                    .collect::<Vec<_>>(),
                *l.body,
            ),
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(body),
                operator: FunctionArgOperator::RightArrow,
            } => (vec![crate::parser::normalize(&name)], body),
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                args.push(e);
                continue;
            }
            // Anything else is not ksqlDB's; leave the call to fail in planning.
            other => {
                list.args.push(other);
                continue;
            }
        };
        let mut body = body;
        strict_arithmetic(&mut body);
        let _ = sqlparser::ast::visit_expressions(&body, |e| {
            if let Expr::Identifier(id) = e {
                if !params.contains(&id.value) && !captured.contains(&id.value) {
                    captured.push(id.value.clone());
                }
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        args.push(hex_literal(
            &serde_json::to_string(&params).expect("names serialize"),
        ));
        args.push(hex_literal(&body.to_string()));
    }
    if !list.args.is_empty() {
        return;
    }
    if !captured.is_empty() {
        args.push(hex_literal(
            &serde_json::to_string(&captured).expect("names serialize"),
        ));
        args.extend(
            captured
                .iter()
                .map(|c| Expr::Identifier(crate::rewrite::quoted(c))),
        );
    }
    if let Expr::Function(encoded) = call(kind.udf_name(), args) {
        *f = encoded;
    }
    f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
        kind.udf_name(),
    ))]);
}

fn hex_literal(text: &str) -> Expr {
    string_literal(&hex::encode(text))
}

/// Makes arithmetic in a lambda body fail on nulls, as ksqlDB's compiled lambdas do.
fn strict_arithmetic(body: &mut Expr) {
    let _ = sqlparser::ast::visit_expressions_mut(body, |e| {
        if let Expr::BinaryOp { left, op, right } = e {
            if matches!(
                op,
                BinaryOperator::Plus
                    | BinaryOperator::Minus
                    | BinaryOperator::Multiply
                    | BinaryOperator::Divide
                    | BinaryOperator::Modulo
            ) {
                for side in [left, right] {
                    let inner =
                        std::mem::replace(side.as_mut(), Expr::value(sqlparser::ast::Value::Null));
                    **side = call("ksql_nonnull", vec![inner]);
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

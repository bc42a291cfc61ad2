//! Pull queries with table scans turned off (`ksql.query.pull.table.scan.enabled=false`):
//! every disjunct of the WHERE clause must name the table's key, each key column once and
//! with `=` or `IN`, compared with values that need no row to compute. Those are the queries
//! ksqlDB answers by key lookups alone; anything else is refused in ksqlDB's words, before a
//! row is read.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr};

use crate::catalog::SourceDef;
use crate::error::{invalid, Result};
use crate::parser::normalize;

/// ksqlDB's switch for pull queries that scan a table (on by default, as there).
pub(super) const TABLE_SCAN_ENABLED: &str = "ksql.query.pull.table.scan.enabled";

/// Refuses `w` unless it is answered by key lookups alone (see the module docs).
pub(super) fn check(w: &Expr, def: &SourceDef) -> Result<()> {
    let mut disjuncts = Vec::new();
    split(w, BinaryOperator::Or, &mut disjuncts);
    for disjunct in disjuncts {
        let mut conjuncts = Vec::new();
        split(disjunct, BinaryOperator::And, &mut conjuncts);
        // The operators each key column is constrained with.
        let mut bounds: BTreeMap<String, Vec<&BinaryOperator>> = BTreeMap::new();
        for c in conjuncts {
            let (key_side, values, op): (&Expr, Vec<&Expr>, Option<&BinaryOperator>) = match c {
                Expr::BinaryOp { left, op, right } if is_comparison(op) => {
                    match (key_column(left, def), key_column(right, def)) {
                        (Some(_), _) => (left.as_ref(), vec![right.as_ref()], Some(op)),
                        (_, Some(_)) => (right.as_ref(), vec![left.as_ref()], Some(op)),
                        _ if references_key(c, def) => {
                            return invalid("A comparison must directly reference a key column.")
                        }
                        _ => continue,
                    }
                }
                Expr::InList { expr, list, .. } => match key_column(expr, def) {
                    Some(_) => (expr.as_ref(), list.iter().collect(), None),
                    None if references_key(c, def) => {
                        return invalid("A comparison must directly reference a key column.")
                    }
                    None => continue,
                },
                // Conditions on other columns filter the rows the lookups find.
                _ => continue,
            };
            if values.iter().any(|v| references_column(v)) {
                return invalid(
                    "A comparison must be between a key column and a resolvable expression.",
                );
            }
            let name = key_column(key_side, def).expect("matched a key column");
            bounds
                .entry(name)
                .or_default()
                .push(op.unwrap_or(&BinaryOperator::Eq));
        }
        if bounds.is_empty() {
            return invalid(format!(
                "WHERE clause missing key column for disjunct: ({})",
                super::pull::ksql_text(disjunct)
            ));
        }
        if bounds.values().any(|ops| ops.len() > 1) {
            return invalid("A comparison condition on the key column cannot be combined with other comparisons such as an IN predicate");
        }
        if bounds
            .values()
            .flatten()
            .any(|op| **op != BinaryOperator::Eq)
        {
            let keys: Vec<String> = def
                .key_columns
                .iter()
                .map(|k| format!("`{}` {} KEY", k.name, k.ty))
                .collect();
            return invalid(format!(
                "Bound on key columns '[{}]' must currently be '='. Without table scans a pull query looks rows up by key: compare each key column with = or IN.",
                keys.join(", ")
            ));
        }
        if bounds.len() < def.key_columns.len() {
            return invalid("Multi-column sources must specify every key in the WHERE clause");
        }
    }
    Ok(())
}

/// The operands of `e` joined by `op` (parentheses looked through).
fn split<'a>(e: &'a Expr, op: BinaryOperator, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::Nested(inner) => split(inner, op, out),
        Expr::BinaryOp { left, op: o, right } if *o == op => {
            split(left, op.clone(), out);
            split(right, op, out);
        }
        other => out.push(other),
    }
}

fn is_comparison(op: &BinaryOperator) -> bool {
    use BinaryOperator::*;
    matches!(op, Eq | NotEq | Lt | LtEq | Gt | GtEq)
}

/// The key column `e` is, if it is one by itself.
fn key_column(e: &Expr, def: &SourceDef) -> Option<String> {
    let name = match e {
        Expr::Nested(inner) => return key_column(inner, def),
        Expr::Identifier(id) => normalize(id),
        Expr::CompoundIdentifier(parts) => normalize(parts.last()?),
        _ => return None,
    };
    def.key_columns
        .iter()
        .any(|k| k.name == name)
        .then_some(name)
}

/// Whether `e` mentions a key column anywhere.
fn references_key(e: &Expr, def: &SourceDef) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(e, |x| {
        found |= key_column(x, def).is_some();
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// Whether `e` mentions any column (and so needs a row to compute).
fn references_column(e: &Expr) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(e, |x| {
        found |= matches!(x, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

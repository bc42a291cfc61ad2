//! The key of a query's output, as ksqlDB decides it: the source's key columns, which an
//! explicit projection must select (each once), or the `PARTITION BY` expressions, which it
//! must select too; `SELECT *` with `PARTITION BY` takes ksqlDB's layout (the expressions as
//! the key, then the source's values and its old keys, less what became the key).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::Expr;

use crate::catalog::{Column, SourceDef};
use crate::error::{invalid, Result};
use crate::parser::normalize;
use crate::rewrite::{natural_name, rewrite};
use crate::select_items::Item;

/// The source's key columns in the projection: each must be there, once.
pub(crate) fn selected_keys(
    items: &[Item],
    source: &SourceDef,
    qualifier: &str,
) -> Result<Vec<usize>> {
    let mut keys = Vec::new();
    for key in &source.key_columns {
        let found: Vec<usize> = (0..items.len())
            .filter(|&i| refers_to(&items[i].expr, &key.name, qualifier))
            .collect();
        match found.as_slice() {
            [] => {
                return invalid(format!(
                    "Key missing from projection (ie, SELECT). The query used to build the result must include the key column {} in its projection (eg, SELECT {}...).",
                    key.name, key.name
                ))
            }
            [i] => keys.push(*i),
            [a, b, ..] => {
                return invalid(format!(
                    "The projection contains a key column (`{}`) more than once, aliased as: {} and {}.",
                    key.name, items[*a].name, items[*b].name
                ))
            }
        }
    }
    Ok(keys)
}

/// Whether `e` reads no column but `source`'s key columns.
pub(crate) fn only_keys(e: &Expr, source: &SourceDef) -> bool {
    let is_key = |name: &sqlparser::ast::Ident| {
        let name = normalize(name);
        source.key_columns.iter().any(|k| k.name == name)
    };
    sqlparser::ast::visit_expressions(e, |e| match e {
        Expr::Identifier(id) if !is_key(id) => ControlFlow::Break(()),
        Expr::CompoundIdentifier(ids) if !ids.last().is_some_and(is_key) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_continue()
}

/// With an explicit projection, each `PARTITION BY` expression must be selected; it is the key.
pub(crate) fn partition_keys(items: &[Item], partition_by: &[&Expr]) -> Result<Vec<usize>> {
    let text = |e: &Expr| {
        let mut e = e.clone();
        rewrite(&mut e);
        e.to_string()
    };
    partition_by
        .iter()
        .map(|p| {
            let want = text(p);
            let found: Vec<usize> = (0..items.len()).filter(|&i| text(&items[i].expr) == want).collect();
            match found.as_slice() {
                [] => invalid(format!(
                    "The query used to build the result must include the partitioning expression {p} in its projection (eg, SELECT {p}...)."
                )),
                [i] => Ok(*i),
                [a, b, ..] => invalid(format!(
                    "The projection contains a key column (`{}`) more than once, aliased as: {} and {}.",
                    natural_name(p).unwrap_or_else(|| p.to_string()),
                    items[*a].name,
                    items[*b].name
                )),
            }
        })
        .collect()
}

/// `SELECT * ... PARTITION BY exprs`, as ksqlDB lays it out: the partitioning expressions are
/// the key; the value is the source's value columns, then its old key columns, less any column
/// that became the key.
pub(crate) fn star_partitioned(
    source: &SourceDef,
    qualifier: &str,
    partition_by: &[&Expr],
    source_names: &BTreeSet<String>,
) -> (Vec<Item>, Vec<usize>) {
    let mut items = Vec::new();
    let mut generated = 0usize;
    for p in partition_by {
        let name = match (natural_name(p), p) {
            (Some(n), _) => n,
            (None, _) => loop {
                let candidate = format!("KSQL_COL_{generated}");
                generated += 1;
                if !source_names.contains(&candidate) {
                    break candidate;
                }
            },
        };
        items.push(Item {
            expr: (*p).clone(),
            name,
        });
    }
    let keys = (0..items.len()).collect();
    let moved = |c: &Column| {
        partition_by
            .iter()
            .any(|p| refers_to(p, &c.name, qualifier))
    };
    let headers = source.header_columns.iter().map(|(c, _)| c);
    for c in source
        .value_columns
        .iter()
        .chain(headers)
        .chain(&source.key_columns)
    {
        if !moved(c) {
            items.push(Item {
                expr: Expr::Identifier(crate::rewrite::quoted(&c.name)),
                name: c.name.clone(),
            });
        }
    }
    (items, keys)
}

/// Whether `e` is a plain reference to column `name` of the source.
fn refers_to(e: &Expr, name: &str, qualifier: &str) -> bool {
    match e {
        Expr::Identifier(id) => normalize(id) == name,
        Expr::CompoundIdentifier(ids) if ids.len() == 2 => {
            normalize(&ids[0]) == qualifier && normalize(&ids[1]) == name
        }
        Expr::Nested(inner) => refers_to(inner, name, qualifier),
        _ => false,
    }
}

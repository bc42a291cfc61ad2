//! The items of a projection, each named by ksqlDB's rules: `*` expanded (a pull or push query's
//! with a windowed source's bounds), `s->*` expanded into a struct's fields, table functions
//! taken out for the operator that runs them.

use std::collections::BTreeSet;

use sqlparser::ast::{Expr, SelectItem};

use crate::ast::Select;
use crate::catalog::{Column, SourceDef};
use crate::error::{invalid, Result};
use crate::parser::normalize;
use crate::planner::{PSEUDO, RESERVED};
use crate::rewrite::natural_name;
use crate::types::SqlType;

/// A select item and the name of its output column.
pub(crate) struct Item {
    pub(crate) expr: Expr,
    pub(crate) name: String,
}

/// ksqlDB's table functions: name, syntax and what it does (for SHOW and DESCRIBE FUNCTION).
pub(crate) const TABLE_FUNCTIONS: [(&str, &str, &str); 2] = [
    (
        "CUBE_EXPLODE",
        "CUBE_EXPLODE(array)",
        "One row for each combination of the array's elements kept or nulled: 2^n rows, one \
         fewer combination for each null element",
    ),
    (
        "EXPLODE",
        "EXPLODE(array)",
        "One row for each element of the array (none for a null or empty array)",
    ),
];

/// If `e` is a table function call, replaces it by the array whose elements become its rows:
/// `EXPLODE(array)` by the array, `CUBE_EXPLODE(array)` by the array of its combinations.
pub(crate) fn take_table_function(e: &mut Expr) -> bool {
    let Expr::Function(f) = e else {
        return false;
    };
    let name = f.name.to_string().to_ascii_uppercase();
    if !TABLE_FUNCTIONS.iter().any(|(n, _, _)| *n == name) {
        return false;
    }
    let cube = name == "CUBE_EXPLODE";
    let sqlparser::ast::FunctionArguments::List(list) = &f.args else {
        return false;
    };
    let [sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(arg))] =
        list.args.as_slice()
    else {
        return false;
    };
    *e = if cube {
        crate::rewrite::call("ksql_cube", vec![arg.clone()])
    } else {
        arg.clone()
    };
    true
}

fn struct_all_args(f: &sqlparser::ast::Function) -> &[sqlparser::ast::FunctionArg] {
    match &f.args {
        sqlparser::ast::FunctionArguments::List(list) => &list.args,
        _ => &[],
    }
}

/// The type of a column or a struct field path (`a->b->c`) of `source`.
fn path_type(source: &SourceDef, e: &Expr) -> Option<SqlType> {
    match e {
        Expr::Identifier(id) => source.column(&normalize(id)).map(|c| c.ty.clone()),
        Expr::CompoundIdentifier(ids) => {
            source.column(&normalize(ids.last()?)).map(|c| c.ty.clone())
        }
        Expr::Nested(inner) => path_type(source, inner),
        Expr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::Arrow,
            right,
        } => {
            let Expr::Identifier(field) = right.as_ref() else {
                return None;
            };
            let SqlType::Struct(fields) = path_type(source, left)? else {
                return None;
            };
            let name = normalize(field);
            fields.into_iter().find(|(f, _)| *f == name).map(|(_, t)| t)
        }
        _ => None,
    }
}

/// The items of a projection, `*` expanded and each named. `transient`: a pull or push query's
/// projection, which may select pseudo-columns and whose `*` includes a windowed source's
/// window bounds.
pub(crate) fn select_items(
    select: &Select,
    source: &SourceDef,
    source_names: &BTreeSet<String>,
    transient: bool,
) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut generated = 0usize;
    let column_item = |c: &Column| Item {
        expr: Expr::Identifier(crate::rewrite::quoted(&c.name)),
        name: c.name.clone(),
    };
    for item in &select.items {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(_, _) => {
                for c in &source.key_columns {
                    items.push(column_item(c));
                }
                if transient && source.window.is_some() {
                    for bound in ["WINDOWSTART", "WINDOWEND"] {
                        items.push(Item {
                            expr: Expr::Identifier(crate::rewrite::quoted(bound)),
                            name: bound.to_string(),
                        });
                    }
                }
                for c in source.all_columns().skip(source.key_columns.len()) {
                    items.push(column_item(c));
                }
            }
            SelectItem::ExprWithAlias { alias, .. }
                if RESERVED.contains(&normalize(alias).as_str()) =>
            {
                return invalid(format!(
                    "`{}` is a reserved column name. You cannot use it as an alias for a column.",
                    normalize(alias)
                ));
            }
            SelectItem::UnnamedExpr(Expr::Identifier(id))
                if !transient && PSEUDO.contains(&normalize(id).as_str()) =>
            {
                return invalid(format!(
                    "Reserved column name in select: `{}`. Please remove or alias the column.",
                    normalize(id)
                ));
            }
            SelectItem::ExprWithAlias { expr, alias } => items.push(Item {
                expr: expr.clone(),
                name: normalize(alias),
            }),
            SelectItem::ExprWithAliases { .. } => {
                return invalid("a select item can have only one alias")
            }
            SelectItem::UnnamedExpr(Expr::Function(f))
                if f.name.to_string() == crate::dialect::STRUCT_ALL =>
            {
                let [sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(
                    base,
                ))] = struct_all_args(f)
                else {
                    return invalid("`->*` needs a struct");
                };
                let Some(SqlType::Struct(fields)) = path_type(source, base) else {
                    return invalid(format!("`->*` needs a struct, and {base} is not one"));
                };
                for (field, _) in fields {
                    items.push(Item {
                        expr: Expr::BinaryOp {
                            left: Box::new(base.clone()),
                            op: sqlparser::ast::BinaryOperator::Arrow,
                            right: Box::new(Expr::Identifier(crate::rewrite::quoted(&field))),
                        },
                        name: field,
                    });
                }
            }
            SelectItem::UnnamedExpr(expr) => {
                let name = match (natural_name(expr), expr) {
                    (Some(n), Expr::Identifier(_) | Expr::CompoundIdentifier(_)) => n,
                    (Some(n), _) => {
                        // A struct field: its name, made unique against the source's columns.
                        let mut candidate = n.clone();
                        let mut i = 0;
                        while source_names.contains(&candidate) || used.contains(&candidate) {
                            i += 1;
                            candidate = format!("{n}_{i}");
                        }
                        candidate
                    }
                    (None, _) => loop {
                        let candidate = format!("KSQL_COL_{generated}");
                        generated += 1;
                        if !source_names.contains(&candidate) && !used.contains(&candidate) {
                            break candidate;
                        }
                    },
                };
                items.push(Item {
                    expr: expr.clone(),
                    name,
                });
            }
        }
        if let Some(last) = items.last() {
            used.insert(last.name.clone());
        }
    }
    let mut seen = BTreeSet::new();
    for it in &items {
        if !seen.insert(it.name.clone()) {
            return invalid(format!(
                "Duplicate column name in the projection: {}",
                it.name
            ));
        }
    }
    Ok(items)
}

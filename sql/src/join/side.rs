//! A join's sides and how column references resolve to the combined source: `Q.X`, or `X`
//! when one side has it, becomes the combined column (`Q_X`), and a query over the join is
//! rewritten to read the combined source.

use std::ops::ControlFlow;

use eddy_engine::schema::PSEUDO_COLUMNS;
use sqlparser::ast::{Expr, SelectItem, VisitMut, VisitorMut};

use super::{is_join_step, wildcard_qualifier, PSEUDO};
use crate::ast::Select;
use crate::catalog::{Column, SourceDef};
use crate::error::{invalid, Result};
use crate::parser::normalize;
use crate::rewrite::quoted;

/// One side of the join, with the qualifier its columns are known by.
pub(super) struct Side {
    pub(super) qualifier: String,
    /// The columns it contributes: its own name, the combined name.
    pub(super) columns: Vec<(Column, String)>,
    /// How many of `columns`, at the start, are the side's key columns.
    pub(super) keys: usize,
    /// Where each of `columns` is in the side's batches.
    pub(super) batch_index: Vec<usize>,
    /// The combined columns of its pseudo-columns, where joined rows carry each side's (a
    /// stream-stream join); else empty, and the joined row's pseudo-columns are the left's.
    pub(super) pseudo: Vec<String>,
}

impl Side {
    pub(super) fn new(def: &SourceDef, qualifier: &str, with_headers: bool) -> Side {
        let own: Vec<&Column> = if with_headers {
            def.all_columns().collect()
        } else {
            def.key_columns.iter().chain(&def.value_columns).collect()
        };
        // A step of an n-way join already has combined names (`A_X`): they stay.
        let step = is_join_step(&def.name);
        Side {
            qualifier: qualifier.to_string(),
            keys: def.key_columns.len(),
            batch_index: (0..own.len()).map(|i| PSEUDO_COLUMNS + i).collect(),
            columns: own
                .into_iter()
                .map(|c| match step {
                    true => (c.clone(), c.name.clone()),
                    false => (c.clone(), format!("{qualifier}_{}", c.name)),
                })
                .collect(),
            pseudo: Vec::new(),
        }
    }

    /// Adds a windowed source's window bounds as columns after its keys (`Q_WINDOWSTART`,
    /// `Q_WINDOWEND`), read from the end of its batches, where sources put them.
    pub(super) fn with_window_columns(mut self, def: &SourceDef) -> Side {
        let keys = def.key_columns.len();
        let at = PSEUDO_COLUMNS + def.all_columns().count();
        for (i, name) in ["WINDOWSTART", "WINDOWEND"].into_iter().enumerate() {
            let column = Column {
                name: name.to_string(),
                ty: crate::types::SqlType::Bigint,
            };
            let combined = format!("{}_{name}", self.qualifier);
            self.columns.insert(keys + i, (column, combined));
            self.batch_index.insert(keys + i, at + i);
        }
        self
    }

    pub(super) fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|(c, _)| c.name == column)
    }

    pub(super) fn combined(&self, column: &str) -> Option<&str> {
        if let Some(i) = PSEUDO.iter().position(|p| *p == column) {
            if let Some(own) = self.pseudo.get(i) {
                return Some(own);
            }
        }
        if PSEUDO.contains(&column) {
            return Some(
                PSEUDO
                    .iter()
                    .find(|p| **p == column)
                    .expect("a pseudo-column"),
            );
        }
        self.columns
            .iter()
            .find(|(c, _)| c.name == column)
            .map(|(_, n)| n.as_str())
    }
}

/// A column reference resolved to a side: (side index, column name).
pub(super) fn resolve(e: &Expr, sides: &[Side]) -> Result<Option<(usize, String)>> {
    match e {
        Expr::CompoundIdentifier(ids) if ids.len() == 2 => {
            let q = normalize(&ids[0]);
            let c = normalize(&ids[1]);
            match sides.iter().position(|s| s.qualifier == q) {
                Some(i) if sides[i].has(&c) => Ok(Some((i, c))),
                // The combined rows carry the stream's pseudo-columns.
                Some(0) if PSEUDO.contains(&c.as_str()) => Ok(Some((0, c))),
                Some(i)
                    if PSEUDO
                        .iter()
                        .position(|p| *p == c)
                        .is_some_and(|p| p < sides[i].pseudo.len()) =>
                {
                    Ok(Some((i, c)))
                }
                Some(_) => invalid(format!("Column '{q}.{c}' cannot be resolved.")),
                None => Ok(None),
            }
        }
        Expr::Identifier(id) => {
            let c = normalize(id);
            let owners: Vec<usize> = (0..sides.len()).filter(|&i| sides[i].has(&c)).collect();
            match owners.as_slice() {
                [i] => Ok(Some((*i, c))),
                [] => Ok(None),
                _ => invalid(format!(
                    "Column '{c}' is ambiguous. Could be {}.",
                    sides
                        .iter()
                        .map(|s| format!("{}.{c}", s.qualifier))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )),
            }
        }
        _ => Ok(None),
    }
}

/// Makes `q.column[...]` (a subscript of a qualified column, which `sqlparser` roots at the
/// qualifier) a subscript of the column reference `q.column`, which [`resolve`] knows.
fn qualify_access(expr: &mut Expr, sides: &[Side]) {
    let Expr::CompoundFieldAccess { root, access_chain } = expr else {
        return;
    };
    let (Expr::Identifier(q), Some(sqlparser::ast::AccessExpr::Dot(Expr::Identifier(c)))) =
        (root.as_ref(), access_chain.first())
    else {
        return;
    };
    if !sides.iter().any(|s| s.qualifier == normalize(q)) {
        return;
    }
    **root = Expr::CompoundIdentifier(vec![q.clone(), c.clone()]);
    access_chain.remove(0);
    if access_chain.is_empty() {
        *expr = (**root).clone();
    }
}

/// Replaces column references with the combined columns.
struct ToCombined<'a> {
    sides: &'a [Side],
    error: Option<crate::error::SqlError>,
}

impl VisitorMut for ToCombined<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        qualify_access(expr, self.sides);
        match resolve(expr, self.sides) {
            Ok(Some((side, column))) => {
                let name = self.sides[side]
                    .combined(&column)
                    .expect("resolved")
                    .to_string();
                *expr = Expr::Identifier(quoted(&name));
            }
            Ok(None) => {}
            Err(e) => {
                self.error = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Strips side `side`'s qualifier from an expression over that side's columns only; `None`
/// when it refers to no column or to another side's.
pub(super) fn side_expression(e: &Expr, sides: &[Side], side: usize) -> Option<Expr> {
    struct Own<'a> {
        sides: &'a [Side],
        side: usize,
        columns: usize,
        foreign: bool,
    }
    impl VisitorMut for Own<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            qualify_access(expr, self.sides);
            match resolve(expr, self.sides) {
                Ok(Some((i, c))) if i == self.side => {
                    self.columns += 1;
                    *expr = Expr::Identifier(quoted(&c));
                }
                Ok(Some(_)) | Err(_) => self.foreign = true,
                Ok(None) => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut e = e.clone();
    let mut visitor = Own {
        sides,
        side,
        columns: 0,
        foreign: false,
    };
    let _ = e.visit(&mut visitor);
    (visitor.columns > 0 && !visitor.foreign).then_some(e)
}

fn to_combined(e: &Expr, sides: &[Side]) -> Result<Expr> {
    let mut e = e.clone();
    let mut visitor = ToCombined { sides, error: None };
    let _ = e.visit(&mut visitor);
    match visitor.error {
        Some(err) => Err(err),
        None => Ok(e),
    }
}

/// `select` rewritten to read the combined source `name` of `sides`: `*` and `Q.*` expanded to
/// the combined columns (`*` starting with the `synthetic` key columns, which are neither
/// side's), and every column reference replaced by its combined column.
pub(super) fn rewrite_select(
    select: &Select,
    sides: &[Side],
    synthetic: &[String],
    name: &str,
) -> Result<Select> {
    let mut items = Vec::new();
    for item in &select.items {
        let column_item = |(_, combined): &(Column, String)| SelectItem::ExprWithAlias {
            expr: Expr::Identifier(quoted(combined)),
            alias: quoted(combined),
        };
        match item {
            SelectItem::Wildcard(_) => {
                items.extend(synthetic.iter().map(|n| SelectItem::ExprWithAlias {
                    expr: Expr::Identifier(quoted(n)),
                    alias: quoted(n),
                }));
                for s in sides {
                    if select.partition_by.is_empty() || s.pseudo.len() < PSEUDO.len() {
                        items.extend(s.columns.iter().map(column_item));
                        continue;
                    }
                    // Repartitioning a stream-stream join, ksqlDB expands `*` to the join's
                    // own layout: each side's values, its pseudo-columns, then its keys.
                    let (keys, values) = s.columns.split_at(s.keys);
                    items.extend(values.iter().map(column_item));
                    items.extend(s.pseudo.iter().map(|p| SelectItem::ExprWithAlias {
                        expr: Expr::Identifier(quoted(p)),
                        alias: quoted(p),
                    }));
                    items.extend(keys.iter().map(column_item));
                }
            }
            SelectItem::QualifiedWildcard(q, _) => {
                let q = wildcard_qualifier(q);
                let Some(s) = sides.iter().find(|s| s.qualifier == q) else {
                    return invalid(format!("'{q}' is not a valid stream/table name or alias."));
                };
                items.extend(s.columns.iter().map(column_item));
            }
            SelectItem::UnnamedExpr(e) => {
                let name = match (e, resolve(e, sides)?) {
                    (Expr::CompoundIdentifier(_), Some((side, c)))
                        if PSEUDO.contains(&c.as_str()) =>
                    {
                        Some(format!("{}_{c}", sides[side].qualifier))
                    }
                    // A qualified column keeps its own name unless both sides have one of
                    // that name (ksqlDB's rule): then it is the combined name.
                    (Expr::CompoundIdentifier(_), Some((side, c)))
                        if sides.iter().filter(|s| s.has(&c)).count() > 1 =>
                    {
                        Some(sides[side].combined(&c).expect("resolved").to_string())
                    }
                    (Expr::CompoundIdentifier(_), Some((_, c))) => Some(c),
                    (Expr::Identifier(_), Some((_, c))) => Some(c),
                    _ => None,
                };
                let expr = to_combined(e, sides)?;
                items.push(match name {
                    Some(n) => SelectItem::ExprWithAlias {
                        expr,
                        alias: quoted(&n),
                    },
                    None => SelectItem::UnnamedExpr(expr),
                });
            }
            SelectItem::ExprWithAlias { expr, alias } => items.push(SelectItem::ExprWithAlias {
                expr: to_combined(expr, sides)?,
                alias: alias.clone(),
            }),
            other => items.push(other.clone()),
        }
    }
    Ok(Select {
        items,
        from: crate::ast::FromClause {
            source: crate::ast::Relation {
                name: name.to_string(),
                alias: None,
            },
            joins: Vec::new(),
        },
        window: select.window,
        where_clause: select
            .where_clause
            .as_ref()
            .map(|w| to_combined(w, sides))
            .transpose()?,
        group_by: select
            .group_by
            .iter()
            .map(|g| to_combined(g, sides))
            .collect::<Result<_>>()?,
        partition_by: select
            .partition_by
            .iter()
            .map(|p| to_combined(p, sides))
            .collect::<Result<_>>()?,
        having: select
            .having
            .as_ref()
            .map(|h| to_combined(h, sides))
            .transpose()?,
        emit: select.emit,
        limit: select.limit,
    })
}

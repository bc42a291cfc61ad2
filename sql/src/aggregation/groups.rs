//! GROUP BY expressions on the AST: compared as canonical text (no parentheses around them,
//! no source qualifier), replaced by their `__Gn` columns in the select list and HAVING, and the
//! source columns left over afterwards, which are not part of the GROUP BY.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, VisitMut, VisitorMut};

use crate::rewrite::{quoted, rewrite};

/// `e` without enclosing parentheses.
pub(super) fn unnested(mut e: &Expr) -> &Expr {
    while let Expr::Nested(inner) = e {
        e = inner;
    }
    e
}

/// The text an expression is compared by: rewritten, without parentheses around it or the
/// source's qualifier.
pub(super) fn canonical(e: &Expr, qualifier: &str) -> String {
    let mut e = unnested(e).clone();
    let _ = e.visit(&mut StripQualifier(qualifier));
    rewrite(&mut e);
    e.to_string()
}

struct StripQualifier<'a>(&'a str);

impl VisitorMut for StripQualifier<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(ids) = expr {
            if ids.len() == 2 && crate::parser::normalize(&ids[0]) == self.0 {
                *expr = Expr::Identifier(ids[1].clone());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Replaces GROUP BY expressions with `__Gn` columns.
pub(super) struct ReplaceGroups<'a> {
    pub(super) groups: &'a [String],
    pub(super) qualifier: &'a str,
}

impl VisitorMut for ReplaceGroups<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let text = canonical(expr, self.qualifier);
        if let Some(i) = self.groups.iter().position(|g| *g == text) {
            *expr = Expr::Identifier(quoted(&format!("__G{i}")));
        }
        ControlFlow::Continue(())
    }
}

/// Source columns still referenced after the rewrite: not part of the GROUP BY.
struct LeftoverColumns<'a> {
    names: &'a BTreeSet<String>,
    found: bool,
}

impl VisitorMut for LeftoverColumns<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let name = match expr {
            Expr::Identifier(id) => crate::parser::normalize(id),
            Expr::CompoundIdentifier(ids) => {
                ids.last().map(crate::parser::normalize).unwrap_or_default()
            }
            _ => return ControlFlow::Continue(()),
        };
        if self.names.contains(&name) {
            self.found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

pub(super) fn refers_to_source(e: &Expr, names: &BTreeSet<String>) -> bool {
    let mut e = e.clone();
    let mut v = LeftoverColumns {
        names,
        found: false,
    };
    let _ = e.visit(&mut v);
    v.found
}

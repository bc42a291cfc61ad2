//! N-way joins: `A JOIN B ON .. JOIN C ON ..` runs as a chain of two-way joins, left-deep as
//! ksqlDB evaluates it. Each step but the last is a hidden persistent query (`SELECT *` of the
//! join so far, so its columns are `A_X`, `B_Y`, ...) writing to an internal topic; the next
//! step joins that as its left side, with `A.X` and `X` (when only `A` has an `X`) read as
//! `A_X`. A step that yields a table is read as a table by the next, so every kind of join the
//! two-way planner knows can follow it; it is not materialized, as nothing pulls from it. The hidden steps are re-created when the statement is
//! replayed on start, with the same names and query ids, so they resume from their commits.
//! A push query makes the same steps as transient stages of its own instead (`push.rs`).

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, SelectItem, VisitMut, VisitorMut};

use super::{Outcome, Session};
use crate::ast::{
    CreateAsSelect, FromClause, Properties, PropertyValue, Relation, Select, SourceKind,
};
use crate::catalog::SourceDef;
use crate::error::{invalid, Result};
use crate::join::join_step_name;
use crate::parser::normalize;
use crate::rewrite::quoted;

/// The sources joined so far: each with the qualifier its columns are known by.
struct Joined {
    sources: Vec<(String, SourceDef)>,
}

impl Joined {
    /// The step's column for `q.x` or (`q` `None`) `x`: `Q_X`, if a joined source has it.
    fn column(&self, q: Option<&str>, x: &str) -> Option<String> {
        let owners: Vec<&String> = self
            .sources
            .iter()
            .filter(|(qualifier, def)| {
                q.is_none_or(|q| q == qualifier) && def.all_columns().any(|c| c.name == x)
            })
            .map(|(qualifier, _)| qualifier)
            .collect();
        match owners.as_slice() {
            [q] => Some(format!("{q}_{x}")),
            _ => None,
        }
    }

    /// How many joined sources have a column `x` (a qualified column keeps its own name only
    /// when no other source has one of that name).
    fn owners(&self, x: &str) -> usize {
        self.sources
            .iter()
            .filter(|(_, def)| def.all_columns().any(|c| c.name == x))
            .count()
    }

    /// `e` with references to the joined sources' columns made references to the step's.
    fn rewrite(&self, e: &Expr) -> Expr {
        struct ToStep<'a>(&'a Joined);
        impl VisitorMut for ToStep<'_> {
            type Break = ();
            fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
                let found = match expr {
                    Expr::CompoundIdentifier(ids) if ids.len() == 2 => self
                        .0
                        .column(Some(&normalize(&ids[0])), &normalize(&ids[1])),
                    Expr::Identifier(id) => self.0.column(None, &normalize(id)),
                    _ => None,
                };
                if let Some(column) = found {
                    *expr = Expr::Identifier(quoted(&column));
                }
                ControlFlow::Continue(())
            }
        }
        let mut e = e.clone();
        let _ = e.visit(&mut ToStep(self));
        e
    }

    /// A projection item over the step: a column keeps the name it would have had.
    fn item(&self, item: &SelectItem) -> Vec<SelectItem> {
        let column = |e: &Expr| match e {
            Expr::CompoundIdentifier(ids) if ids.len() == 2 => {
                let (q, x) = (normalize(&ids[0]), normalize(&ids[1]));
                self.column(Some(&q), &x).map(|c| (c, x))
            }
            Expr::Identifier(id) => {
                let x = normalize(id);
                self.column(None, &x).map(|c| (c, x))
            }
            _ => None,
        };
        match item {
            SelectItem::UnnamedExpr(e) => match column(e) {
                Some((step_column, x)) => {
                    let name = match (e, self.owners(&x)) {
                        (Expr::CompoundIdentifier(_), n) if n > 1 => step_column.clone(),
                        _ => x,
                    };
                    vec![SelectItem::ExprWithAlias {
                        expr: Expr::Identifier(quoted(&step_column)),
                        alias: quoted(&name),
                    }]
                }
                None => vec![SelectItem::UnnamedExpr(self.rewrite(e))],
            },
            SelectItem::ExprWithAlias { expr, alias } => vec![SelectItem::ExprWithAlias {
                expr: self.rewrite(expr),
                alias: alias.clone(),
            }],
            SelectItem::QualifiedWildcard(q, _) => {
                let q = crate::join::wildcard_qualifier(q);
                match self.sources.iter().find(|(qualifier, _)| *qualifier == q) {
                    Some((_, def)) => def
                        .key_columns
                        .iter()
                        .chain(&def.value_columns)
                        .map(|c| {
                            let name = format!("{q}_{}", c.name);
                            SelectItem::ExprWithAlias {
                                expr: Expr::Identifier(quoted(&name)),
                                alias: quoted(&name),
                            }
                        })
                        .collect(),
                    None => vec![item.clone()],
                }
            }
            other => vec![other.clone()],
        }
    }
}

impl Session {
    /// `CREATE STREAM|TABLE ... AS SELECT` over more than two joined sources. If any step
    /// fails, the steps made before it are taken down again.
    pub(super) fn create_n_way(&mut self, c: &CreateAsSelect, text: &str) -> Result<Outcome> {
        let result = self.create_steps(c, text);
        if result.is_err() {
            self.drop_join_steps(&c.name)?;
        }
        result
    }

    /// Stops and removes the hidden steps of the n-way join that writes `sink`.
    pub(super) fn drop_join_steps(&mut self, sink: &str) -> Result<()> {
        let steps: Vec<SourceDef> = self
            .catalog
            .sources
            .values()
            .filter(|s| crate::join::join_step_of(&s.name) == Some(sink))
            .cloned()
            .collect();
        for step in steps {
            let (stopped, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queries)
                .into_iter()
                .partition(|q| q.sink == step.name);
            self.queries = kept;
            self.stop_queries(stopped)?;
            self.forget_source(&step, true)?;
        }
        Ok(())
    }

    fn create_steps(&mut self, c: &CreateAsSelect, text: &str) -> Result<Outcome> {
        let query = self.join_steps(&c.query, &c.name, c.or_replace, &mut |session, step| {
            // A step that is a table is read whole by the next step's copy of it: it must hold
            // the join of every row, not only of those changed after it started.
            let key = "auto.offset.reset";
            let saved = session.properties.get(key).cloned();
            if step.kind == SourceKind::Table {
                session.properties.insert(key.into(), "earliest".into());
            }
            let made = session.create_as_select(&step, text).map(drop);
            match saved {
                Some(value) => session.properties.insert(key.into(), value),
                None => session.properties.remove(key),
            };
            made
        })?;
        let last_step = CreateAsSelect {
            query: Box::new(query),
            ..c.clone()
        };
        self.create_as_select(&last_step, text)
    }

    /// Makes the steps of the n-way join `query` (for `sink`) with `make_step`, each a
    /// `CREATE ... AS SELECT *` of the join so far, and returns the last two-way join: `query`
    /// over the last step.
    pub(super) fn join_steps(
        &mut self,
        query: &Select,
        sink: &str,
        or_replace: bool,
        make_step: &mut dyn FnMut(&mut Session, CreateAsSelect) -> Result<()>,
    ) -> Result<Select> {
        let joins = &query.from.joins;
        let find =
            |session: &Session, name: &str| -> Result<SourceDef> {
                session.catalog.source(name).cloned().ok_or_else(|| {
                    crate::error::SqlError::Invalid(format!("{name} does not exist."))
                })
            };
        let first = &query.from.source;
        let mut joined = Joined {
            sources: vec![(first.qualifier().to_string(), find(self, &first.name)?)],
        };
        let qualifiers: Vec<&str> = std::iter::once(first.qualifier())
            .chain(joins.iter().map(|j| j.relation.qualifier()))
            .collect();
        if let Some(q) = qualifiers
            .iter()
            .enumerate()
            .find_map(|(i, q)| qualifiers[..i].contains(q).then_some(q))
        {
            return invalid(format!(
                "Each source of a join needs its own name or alias: {q} is used twice."
            ));
        }
        let mut left = first.clone();
        let mut left_kind = joined.sources[0].1.kind;
        for (k, join) in joins[..joins.len() - 1].iter().enumerate() {
            let right = find(self, &join.relation.name)?;
            let mut step_join = join.clone();
            if k > 0 {
                step_join.on = joined.rewrite(&join.on);
            }
            let kind = match (left_kind, right.kind) {
                (SourceKind::Table, SourceKind::Table) => SourceKind::Table,
                _ => SourceKind::Stream,
            };
            let name = join_step_name(sink, k + 1);
            let step = CreateAsSelect {
                or_replace,
                kind,
                if_not_exists: false,
                name: name.clone(),
                properties: Properties(vec![(
                    "KAFKA_TOPIC".into(),
                    PropertyValue::String(format!("_eddy-{sink}-join-{}", k + 1)),
                )]),
                query: Box::new(Select {
                    items: vec![SelectItem::Wildcard(Default::default())],
                    from: FromClause {
                        source: left.clone(),
                        joins: vec![step_join],
                    },
                    window: None,
                    where_clause: None,
                    group_by: Vec::new(),
                    partition_by: Vec::new(),
                    having: None,
                    emit: query.emit,
                    limit: None,
                }),
            };
            make_step(self, step)?;
            joined
                .sources
                .push((join.relation.qualifier().to_string(), right));
            left = Relation { name, alias: None };
            left_kind = kind;
        }
        let last = joins.last().expect("several joins");
        let mut last_query = query.clone();
        let mut last_join = last.clone();
        last_join.on = joined.rewrite(&last.on);
        last_query.from = FromClause {
            source: left,
            joins: vec![last_join],
        };
        last_query.items = query.items.iter().flat_map(|i| joined.item(i)).collect();
        last_query.where_clause = query.where_clause.as_ref().map(|w| joined.rewrite(w));
        last_query.group_by = query.group_by.iter().map(|g| joined.rewrite(g)).collect();
        last_query.partition_by = query
            .partition_by
            .iter()
            .map(|p| joined.rewrite(p))
            .collect();
        last_query.having = query.having.as_ref().map(|h| joined.rewrite(h));
        Ok(last_query)
    }
}

//! Joins, planned as a query over one combined source.
//!
//! A join's columns are those of both sides, each named `<QUALIFIER>_<COLUMN>` (the qualifier
//! is the source's alias, or its name), which is how ksqlDB names them in `SELECT *`. The
//! query is rewritten to read that combined source: a column reference becomes its combined
//! column and, unless aliased, keeps its own name, or the combined one (`T_ID`) when both
//! sides have a column of that name, as ksqlDB names them.
//! The rewritten query is then planned like any single-source query, and the engine's join
//! operator produces the combined rows (see `eddy_engine::lookup_join`).
//!
//! So far: stream-table joins (INNER, LEFT) on the table's primary key, with the table looked
//! up in its materialization; the combined source's key is the stream's join column.

use std::ops::ControlFlow;

use eddy_engine::lookup_join::JoinColumn;
use eddy_engine::schema::PSEUDO_COLUMNS;
use eddy_engine::table_join::SideColumn;
use sqlparser::ast::{BinaryOperator, Expr, SelectItem, VisitMut, VisitorMut};

use crate::ast::{JoinKind, Select, SourceKind};
use crate::catalog::{Catalog, Column, SourceDef};
use crate::error::{invalid, unsupported, Missing, Result};
use crate::parser::normalize;
use crate::rewrite::quoted;

mod foreign;
mod streams;

pub(crate) use streams::TypeOf;

/// The pseudo-columns a combined row has (the stream row's).
const PSEUDO: &[&str] = &["ROWTIME", "ROWPARTITION", "ROWOFFSET"];

/// A join, as the engine runs it.
#[derive(Clone, Debug)]
pub struct PlannedJoin {
    /// The left side: the stream of a stream-table join.
    pub left: SourceDef,
    pub right: SourceDef,
    /// For a stream-table join: INNER (else LEFT).
    pub inner: bool,
    pub shape: JoinShape,
}

#[derive(Clone, Debug)]
pub enum JoinShape {
    /// The stream's rows look the table up.
    StreamTable {
        /// The stream's join expression, over the stream's own columns (unqualified).
        stream_key: Box<Expr>,
        /// Where each column of the combined source (keys then values) comes from.
        columns: Vec<JoinColumn>,
    },
    /// Each side's changes look the other side up (primary-key joins).
    TableTable {
        keep: eddy_engine::table_join::Keep,
        /// Where each combined column comes from when a left row changes...
        left_columns: Vec<SideColumn>,
        /// ... and when a right row changes.
        right_columns: Vec<SideColumn>,
    },
    /// Foreign-key table-table joins: the left table's expression equals the right table's
    /// primary key.
    ForeignKey {
        /// Over the left table's own columns (unqualified).
        foreign_key: Box<Expr>,
        columns: Vec<eddy_engine::fk_join::FkColumn>,
    },
    /// Each side's records join the other side's, buffered for the window.
    StreamStream {
        windows: eddy_engine::stream_join::JoinWindows,
        keep: eddy_engine::table_join::Keep,
        /// The join key's parts over each side's own columns (unqualified).
        left_key: Vec<Expr>,
        right_key: Vec<Expr>,
        key_types: Vec<crate::types::SqlType>,
        /// The columns each side buffers, by index in its batches, and their types.
        buffered: [Vec<usize>; 2],
        buffered_types: [Vec<crate::types::SqlType>; 2],
        /// Where each combined column comes from.
        output: Vec<eddy_engine::stream_join::StreamJoinColumn>,
    },
}

/// The name of step `k` of the n-way join that makes `sink`: the join of its first `k + 1`
/// sources, whose rows the next step joins (see `session/n_way.rs`).
pub(crate) fn join_step_name(sink: &str, k: usize) -> String {
    format!("__JOIN_{k}_{sink}")
}

/// Whether `name` is a step of an n-way join.
pub(crate) fn is_join_step(name: &str) -> bool {
    name.starts_with("__JOIN_")
}

/// The sink whose n-way join `name` is a step of, if it is one.
pub(crate) fn join_step_of(name: &str) -> Option<&str> {
    name.strip_prefix("__JOIN_")?
        .split_once('_')
        .map(|(_, sink)| sink)
}

/// One side of the join, with the qualifier its columns are known by.
struct Side {
    qualifier: String,
    /// The columns it contributes: its own name, the combined name.
    columns: Vec<(Column, String)>,
    /// Where each of `columns` is in the side's batches.
    batch_index: Vec<usize>,
    /// The combined columns of its pseudo-columns, where joined rows carry each side's (a
    /// stream-stream join); else empty, and the joined row's pseudo-columns are the left's.
    pseudo: Vec<String>,
}

impl Side {
    fn new(def: &SourceDef, qualifier: &str, with_headers: bool) -> Side {
        let own: Vec<&Column> = if with_headers {
            def.all_columns().collect()
        } else {
            def.key_columns.iter().chain(&def.value_columns).collect()
        };
        // A step of an n-way join already has combined names (`A_X`): they stay.
        let step = is_join_step(&def.name);
        Side {
            qualifier: qualifier.to_string(),
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
    fn with_window_columns(mut self, def: &SourceDef) -> Side {
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

    fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|(c, _)| c.name == column)
    }

    fn combined(&self, column: &str) -> Option<&str> {
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
fn resolve(e: &Expr, sides: &[Side]) -> Result<Option<(usize, String)>> {
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
fn side_expression(e: &Expr, sides: &[Side], side: usize) -> Option<Expr> {
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

/// The combined source of a join query, the query rewritten to read it, and the join. The
/// combined source is named `name`; its key is the left side's join column (or, with
/// `key_from_right`, the right side's, for a projection that selects that one). `type_of` types
/// a join expression.
pub(crate) fn combine(
    catalog: &Catalog,
    select: &Select,
    name: &str,
    key_from_right: bool,
    type_of: TypeOf<'_>,
) -> Result<(SourceDef, Select, PlannedJoin)> {
    let key_from_table = key_from_right;
    let [join] = select.from.joins.as_slice() else {
        return Err(unsupported(
            Missing::Feature,
            "joins of more than two sources",
        ));
    };
    let find = |n: &str| {
        catalog
            .source(n)
            .ok_or_else(|| crate::error::SqlError::Invalid(format!("{n} does not exist.")))
    };
    let left = find(&select.from.source.name)?;
    let right = find(&join.relation.name)?;
    let kind_word = |k: JoinKind| match k {
        JoinKind::Inner => "[INNER] JOIN",
        JoinKind::Left => "[LEFT] OUTER JOIN",
        JoinKind::Right => "[RIGHT] OUTER JOIN",
        JoinKind::Full => "[FULL] OUTER JOIN",
    };
    let table_table = match (left.kind, right.kind) {
        (SourceKind::Stream, SourceKind::Table) => false,
        (SourceKind::Table, SourceKind::Table) => true,
        (SourceKind::Table, SourceKind::Stream) => {
            return invalid(format!(
                "Invalid join order: table-stream joins are not supported; only stream-table joins. Got {} {} {}.",
                left.name,
                kind_word(join.kind),
                right.name
            ))
        }
        (SourceKind::Stream, SourceKind::Stream) => {
            return streams::combine(left, right, select, join, name, key_from_right, type_of)
        }
    };
    let inner = match join.kind {
        JoinKind::Inner => true,
        JoinKind::Left => false,
        _ if table_table => false,
        k => {
            let which = if k == JoinKind::Full {
                "full-outer"
            } else {
                "right"
            };
            return invalid(format!(
                "Invalid join type: {which} join not supported for stream-table join. Got {} {} {}.",
                left.name,
                kind_word(k),
                right.name
            ));
        }
    };
    if right.key_columns.len() != 1 {
        return Err(unsupported(
            Missing::Feature,
            "joins with tables whose primary key has several columns",
        ));
    }
    let mut sides = [
        Side::new(left, select.from.source.qualifier(), true),
        Side::new(right, join.relation.qualifier(), false),
    ];
    if !table_table {
        // The table row's time is known (its materialization keeps it): `T.ROWTIME`.
        sides[1].pseudo = vec![format!("{}_ROWTIME", sides[1].qualifier)];
    }
    // ON: a stream column equal to the table's primary key.
    let Expr::BinaryOp {
        left: a,
        op: BinaryOperator::Eq,
        right: b,
    } = &join.on
    else {
        return Err(unsupported(
            Missing::Feature,
            "join conditions other than one equality",
        ));
    };
    let (ra, rb) = (resolve(a, &sides)?, resolve(b, &sides)?);
    let mismatch = || {
        invalid(format!(
            "Invalid comparison expression '{}' in join '{}'. Each side of the join comparision must contain references from exactly one source.",
            join.on, join.on
        ))
    };
    // The left side's join expression: a column, or (stream-table) any expression of the
    // stream's columns, in which case the result is keyed by the table's column.
    let (stream_key, stream_expr, table_column) = match (ra, rb) {
        (Some((0, s)), Some((1, t))) | (Some((1, t)), Some((0, s))) => {
            let e = Expr::Identifier(quoted(&s));
            (Some(s), e, t)
        }
        (None, Some((1, t))) | (Some((1, t)), None) => {
            let e = if resolve(b, &sides)?.is_some() { a } else { b };
            match side_expression(e, &sides, 0) {
                Some(e) => (None, e, t),
                None => return mismatch(),
            }
        }
        _ => return mismatch(),
    };
    let key_from_table = key_from_table || stream_key.is_none();
    if table_table
        && (left.key_columns.len() != 1
            || stream_key.as_deref() != Some(left.key_columns[0].name.as_str()))
    {
        if is_join_step(&left.name) {
            return invalid(format!(
                "Invalid join condition: foreign-key table-table joins are not supported as part of n-way joins. Got {}.",
                join.on
            ));
        }
        return foreign::combine(
            left,
            right,
            select,
            join,
            name,
            stream_expr,
            &table_column,
            type_of,
        );
    }
    if table_column != right.key_columns[0].name {
        return Err(unsupported(
            Missing::Feature,
            format!(
                "stream-table joins on a table column other than its primary key ({})",
                right.key_columns[0].name
            ),
        ));
    }

    // The combined source: its key, then every other column, left side first. A full outer
    // join's key is neither side's column (either may be missing): a synthetic `ROWKEY`, named
    // apart from the columns there are (`ROWKEY_n`), as in ksqlDB.
    let full = table_table && join.kind == JoinKind::Full;
    let key_name = if full {
        let taken = |n: &str| sides.iter().any(|s| s.has(n));
        let mut name = "ROWKEY".to_string();
        let mut n = 0;
        while taken(&name) {
            n += 1;
            name = format!("ROWKEY_{n}");
        }
        name
    } else if key_from_table {
        sides[1]
            .combined(&table_column)
            .expect("resolved")
            .to_string()
    } else {
        sides[0]
            .combined(stream_key.as_deref().expect("a column when keyed by it"))
            .expect("resolved")
            .to_string()
    };
    let mut key_columns = Vec::new();
    let mut value_columns = Vec::new();
    // Where each column comes from: for a stream-table join, from the stream's row or the
    // table's; for a table-table join, seen from each side's changes.
    type Sources = (JoinColumn, SideColumn, SideColumn);
    let mut key_source: Vec<Sources> = Vec::new();
    let mut value_sources: Vec<Sources> = Vec::new();
    let left_keys = left.key_columns.len();
    for (side, s) in sides.iter().enumerate() {
        for (i, (c, combined)) in s.columns.iter().enumerate() {
            let is_key = *combined == key_name;
            let own = SideColumn::Own(PSEUDO_COLUMNS + i);
            let source = match side {
                0 => (
                    JoinColumn::Stream(PSEUDO_COLUMNS + i),
                    if is_key { SideColumn::JoinKey } else { own },
                    match i < left_keys {
                        _ if is_key => SideColumn::JoinKey,
                        true => SideColumn::OtherKey,
                        false => SideColumn::OtherValue(i - left_keys),
                    },
                ),
                _ if i < right.key_columns.len() => (
                    JoinColumn::TableKey,
                    if is_key {
                        SideColumn::JoinKey
                    } else {
                        SideColumn::OtherKey
                    },
                    if is_key { SideColumn::JoinKey } else { own },
                ),
                _ => (
                    JoinColumn::TableValue(i - right.key_columns.len()),
                    SideColumn::OtherValue(i - right.key_columns.len()),
                    own,
                ),
            };
            let column = Column {
                name: combined.clone(),
                ty: c.ty.clone(),
            };
            if is_key {
                key_columns.push(column);
                key_source.push(source);
            } else {
                value_columns.push(column);
                value_sources.push(source);
            }
        }
    }
    if full {
        key_columns.push(Column {
            name: key_name.clone(),
            ty: right.key_columns[0].ty.clone(),
        });
        key_source.push((
            JoinColumn::TableKey,
            SideColumn::JoinKey,
            SideColumn::JoinKey,
        ));
    }
    if let Some(rowtime) = sides[1].pseudo.first() {
        value_columns.push(Column {
            name: rowtime.clone(),
            ty: crate::types::SqlType::Bigint,
        });
        value_sources.push((
            JoinColumn::TableRowtime,
            SideColumn::JoinKey,
            SideColumn::JoinKey,
        ));
    }
    let sources: Vec<Sources> = key_source.into_iter().chain(value_sources).collect();
    let combined = SourceDef {
        name: name.to_string(),
        kind: if table_table {
            SourceKind::Table
        } else {
            SourceKind::Stream
        },
        topic: left.topic.clone(),
        key_columns,
        value_columns,
        header_columns: Vec::new(),
        // A keyless stream's join has a key: written as KAFKA, as ksqlDB does.
        key_format: match left.key_format {
            eddy_engine::Format::None => eddy_engine::Format::Kafka,
            ref f => f.clone(),
        },
        value_format: left.value_format.clone(),
        wrap_single_value: left.wrap_single_value,
        timestamp_column: None,
        timestamp_format: None,
        window: None,
        read_only: true,
        sql: String::new(),
    };

    let synthetic = if full {
        vec![key_name.clone()]
    } else {
        Vec::new()
    };
    let rewritten = rewrite_select(select, &sides, &synthetic, name)?;
    let shape = if table_table {
        JoinShape::TableTable {
            keep: match join.kind {
                JoinKind::Inner => eddy_engine::table_join::Keep::Inner,
                JoinKind::Left => eddy_engine::table_join::Keep::Left,
                JoinKind::Right => eddy_engine::table_join::Keep::Right,
                JoinKind::Full => eddy_engine::table_join::Keep::Full,
            },
            left_columns: sources.iter().map(|s| s.1).collect(),
            right_columns: sources.iter().map(|s| s.2).collect(),
        }
    } else {
        JoinShape::StreamTable {
            stream_key: Box::new(stream_expr),
            columns: sources.iter().map(|s| s.0).collect(),
        }
    };
    let join = PlannedJoin {
        left: left.clone(),
        right: right.clone(),
        inner,
        shape,
    };
    Ok((combined, rewritten, join))
}

/// `select` rewritten to read the combined source `name` of `sides`: `*` and `Q.*` expanded to
/// the combined columns (`*` starting with the `synthetic` key columns, which are neither
/// side's), and every column reference replaced by its combined column.
fn rewrite_select(
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
                    items.extend(s.columns.iter().map(column_item));
                }
            }
            SelectItem::QualifiedWildcard(q, _) => {
                let q = q.to_string();
                let q = q
                    .strip_suffix(".*")
                    .unwrap_or(&q)
                    .trim_matches('`')
                    .to_ascii_uppercase();
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

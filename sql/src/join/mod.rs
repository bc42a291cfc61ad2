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

use eddy_engine::lookup_join::JoinColumn;
use eddy_engine::schema::PSEUDO_COLUMNS;
use eddy_engine::table_join::SideColumn;
use sqlparser::ast::{BinaryOperator, Expr};

use crate::ast::{JoinKind, Select, SourceKind};
use crate::catalog::{Catalog, Column, SourceDef};
use crate::error::{invalid, unsupported, Missing, Result};
use crate::rewrite::quoted;

mod foreign;
mod side;
mod streams;

use side::{resolve, rewrite_select, side_expression, Side};

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

/// The combined source `name` of a join whose left side is `left`: the result takes its
/// topic's partitions and its formats, as in ksqlDB (a keyless left side's key format is left
/// to the session's default, see `with_clause::formats`).
fn combined_source(
    name: &str,
    kind: SourceKind,
    left: &SourceDef,
    key_columns: Vec<Column>,
    value_columns: Vec<Column>,
) -> SourceDef {
    SourceDef {
        name: name.to_string(),
        kind,
        topic: left.topic.clone(),
        key_columns,
        value_columns,
        header_columns: Vec::new(),
        key_format: left.key_format.clone(),
        value_format: left.value_format.clone(),
        wrap_single_value: left.wrap_single_value,
        timestamp_column: None,
        timestamp_format: None,
        window: None,
        read_only: true,
        sql: String::new(),
        key_schema_id: 0,
        value_schema_id: 0,
    }
}

/// The qualifier of `Q.*`, as the catalog names it.
pub(crate) fn wildcard_qualifier(q: &impl std::fmt::Display) -> String {
    let q = q.to_string();
    q.strip_suffix(".*")
        .unwrap_or(&q)
        .trim_matches('`')
        .to_ascii_uppercase()
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
    let kind = if table_table {
        SourceKind::Table
    } else {
        SourceKind::Stream
    };
    let combined = combined_source(name, kind, left, key_columns, value_columns);

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

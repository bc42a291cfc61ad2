//! Foreign-key table-table joins: the left table's expression (its foreign key) equal to the
//! right table's primary key. The result is a table keyed by the left table's primary key, with
//! the left table's columns then the right table's (its key included), as ksqlDB lays it out.

use eddy_engine::fk_join::FkColumn;
use sqlparser::ast::Expr;

use super::{rewrite_select, JoinShape, PlannedJoin, Side};
use crate::ast::{Join, JoinKind, Select, SourceKind};
use crate::catalog::{Column, SourceDef};
use crate::error::{invalid, Result};

/// `foreign_key` is over the left table's own columns; `right_column` the right table's column
/// it equals.
#[allow(clippy::too_many_arguments)]
pub(super) fn combine(
    left: &SourceDef,
    right: &SourceDef,
    select: &Select,
    join: &Join,
    name: &str,
    foreign_key: Expr,
    right_column: &str,
    type_of: super::TypeOf<'_>,
) -> Result<(SourceDef, Select, PlannedJoin)> {
    let inner = match join.kind {
        JoinKind::Inner => true,
        JoinKind::Left => false,
        JoinKind::Right => return invalid("RIGHT OUTER JOIN on a foreign key is not supported"),
        JoinKind::Full => return invalid("FULL OUTER JOIN on a foreign key is not supported"),
    };
    if right.key_columns.len() != 1 || right_column != right.key_columns[0].name {
        return invalid(format!(
            "Invalid join condition: table-table joins require to join on the primary key of the right input table. Got {}.",
            join.on
        ));
    }
    let (fk_type, key_type) = (type_of(left, &foreign_key)?, &right.key_columns[0].ty);
    if fk_type != *key_type {
        let sides = join.on.to_string();
        let (l, r) = sides.split_once(" = ").unwrap_or((&sides, ""));
        return invalid(format!(
            "Invalid join condition: types don't match. Got {l}{{{fk_type}}} = {r}{{{key_type}}}."
        ));
    }
    let sides = [
        Side::new(left, select.from.source.qualifier(), false),
        Side::new(right, join.relation.qualifier(), false),
    ];
    let mut key_columns = Vec::new();
    let mut value_columns = Vec::new();
    let left_keys = left.key_columns.len();
    let mut columns: Vec<FkColumn> = (0..left_keys).map(FkColumn::LeftKey).collect();
    for (side, s) in sides.iter().enumerate() {
        for (i, (c, combined)) in s.columns.iter().enumerate() {
            let column = Column {
                name: combined.clone(),
                ty: c.ty.clone(),
            };
            match (side, i) {
                (0, i) if i < left_keys => {
                    key_columns.push(column);
                    continue;
                }
                (0, i) => columns.push(FkColumn::LeftValue(i - left_keys)),
                (_, 0) => columns.push(FkColumn::RightKey),
                (_, i) => columns.push(FkColumn::RightValue(i - 1)),
            }
            value_columns.push(column);
        }
    }
    let combined =
        super::combined_source(name, SourceKind::Table, left, key_columns, value_columns);
    let rewritten = rewrite_select(select, &sides, &[], name)?;
    Ok((
        combined,
        rewritten,
        PlannedJoin {
            left: left.clone(),
            right: right.clone(),
            inner,
            shape: JoinShape::ForeignKey {
                foreign_key: Box::new(foreign_key),
                columns,
            },
        },
    ))
}

//! Stream-stream joins, planned over a combined source like the other joins.
//!
//! The join condition is one equality or, beyond ksqlDB, a conjunction of equalities
//! (`ON a.x = b.x AND a.y = b.y`); each equality sets one part of the join key, an expression
//! of the left side's columns equal to one of the right side's. The combined source's key has a
//! column per part, named as ksqlDB names a join's key: after the left side's column when that
//! part is a plain column of it, else after the right side's (with `key_from_right`, the right
//! side's first, for a projection that selects that one), else a synthetic `ROWKEY`. A FULL
//! join's key is always synthetic: either side may be missing. The joined rows carry both
//! sides' pseudo-columns, as `<Q>_ROWTIME` (and so on) columns that `Q.ROWTIME` refers to.

use eddy_engine::stream_join::{JoinSide, JoinWindows, StreamJoinColumn};
use eddy_engine::table_join::Keep;
use sqlparser::ast::{BinaryOperator, Expr};

use super::{resolve, rewrite_select, side_expression, JoinShape, PlannedJoin, Side};
use crate::ast::{Join, JoinKind, Select, SourceKind};
use crate::catalog::{Column, SourceDef};
use crate::error::{invalid, unsupported, Missing, Result};
use crate::types::SqlType;

/// One equality of the join condition, each side's expression over its own columns.
struct Part {
    left: Expr,
    right: Expr,
    /// The side's column, when its expression is a plain column.
    left_column: Option<String>,
    right_column: Option<String>,
    ty: SqlType,
}

/// The equalities of `on`, a conjunction.
fn equalities(on: &Expr) -> Vec<&Expr> {
    match on {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut all = equalities(left);
            all.extend(equalities(right));
            all
        }
        Expr::Nested(inner) => equalities(inner),
        other => vec![other],
    }
}

/// The type of an expression over a source's columns.
pub(crate) type TypeOf<'a> = &'a dyn Fn(&SourceDef, &Expr) -> Result<SqlType>;

#[allow(clippy::too_many_arguments)]
pub(super) fn combine(
    left: &SourceDef,
    right: &SourceDef,
    select: &Select,
    join: &Join,
    name: &str,
    key_from_right: bool,
    type_of: TypeOf<'_>,
) -> Result<(SourceDef, Select, PlannedJoin)> {
    let Some(within) = join.within else {
        return invalid(
            "Stream-Stream joins must have a WITHIN clause specified. None was provided. To learn about how to specify a WITHIN clause with a stream-stream join, please visit: https://docs.ksqldb.io/en/latest/developer-guide/joins/join-streams-and-tables/#join-requirements",
        );
    };
    if left.name == right.name {
        return invalid(format!(
            "Can not join '{}' to '{}': self joins are not yet supported.",
            left.name, right.name
        ));
    }
    let kafka: Vec<&str> = [left, right]
        .iter()
        .filter(|s| s.value_format == eddy_engine::Format::Kafka)
        .map(|s| s.name.as_str())
        .collect();
    if !kafka.is_empty() {
        return invalid(format!(
            "Source(s) {} are using the 'KAFKA' value format. This format does not yet support JOIN.",
            kafka.join(", ")
        ));
    }
    match (&left.window, &right.window) {
        (None, None) => {}
        (Some(w), None) | (None, Some(w)) => {
            let (windowed, other) = if left.window.is_some() {
                (left, right)
            } else {
                (right, left)
            };
            return invalid(format!(
                "Can not join windowed source to non-windowed source.\n`{}` is {} windowed\n`{}` is not windowed",
                windowed.name,
                w.kind.name(),
                other.name
            ));
        }
        (Some(l), Some(r)) => {
            let session =
                |w: &crate::catalog::WindowInfo| w.kind == crate::catalog::WindowType::Session;
            // Time windows of different sizes put equal keys in different windows: ksqlDB
            // would need to repartition them.
            if !session(l) && !session(r) && l.size_ms != r.size_ms {
                return invalid("Implicit repartitioning of windowed sources is not supported. See https://github.com/confluentinc/ksql/issues/4385.");
            }
            if session(l) != session(r) {
                return invalid(format!(
                    "Incompatible windowed sources.\nLeft source: {}\nRight source: {}\nSession windowed sources can only be joined to other session windowed sources, and may still not result in expected behaviour as session bounds must be an exact match for the join to work\nHopping and tumbling windowed sources can only be joined to other hopping and tumbling windowed sources",
                    l.kind.name(),
                    r.kind.name()
                ));
            }
        }
    }
    // Windowed streams join on their keys and their windows: each side's window bounds are
    // columns (`Q_WINDOWSTART`, `Q_WINDOWEND`) and hidden parts of the join key.
    let windowed = left.window.is_some();
    let side = |def: &SourceDef, q: &str, headers: bool| {
        let s = Side::new(def, q, headers);
        if windowed {
            s.with_window_columns(def)
        } else {
            s
        }
    };
    let mut sides = [
        side(left, select.from.source.qualifier(), true),
        side(right, join.relation.qualifier(), true),
    ];
    for s in &mut sides {
        s.pseudo = super::PSEUDO
            .iter()
            .map(|p| format!("{}_{p}", s.qualifier))
            .collect();
    }

    // The key's parts.
    let mut parts = Vec::new();
    for eq in equalities(&join.on) {
        let mismatch = |e: &Expr| {
            invalid(format!(
                "Invalid comparison expression '{e}' in join '{}'. Each side of the join comparision must contain references from exactly one source.",
                join.on
            ))
        };
        let Expr::BinaryOp {
            left: a,
            op: BinaryOperator::Eq,
            right: b,
        } = eq
        else {
            return Err(unsupported(
                Missing::Feature,
                format!("join conditions other than equalities ({eq})"),
            ));
        };
        let side_of = |e: &Expr| -> Option<(usize, Expr)> {
            (0..2).find_map(|i| side_expression(e, &sides, i).map(|x| (i, x)))
        };
        let (Some((sa, ea)), Some((sb, eb))) = (side_of(a), side_of(b)) else {
            return mismatch(if side_of(a).is_none() { a } else { b });
        };
        if sa == sb {
            return mismatch(b);
        }
        let ((l, le), (r, re)) = if sa == 0 {
            ((a, ea), (b, eb))
        } else {
            ((b, eb), (a, ea))
        };
        let column = |e: &Expr| match resolve(e, &sides) {
            Ok(Some((_, c))) => Some(c),
            _ => None,
        };
        let (lt, rt) = (type_of(left, &le)?, type_of(right, &re)?);
        if lt != rt {
            return invalid(format!(
                "Invalid join condition: types don't match. Got {l}{{{lt}}} = {r}{{{rt}}}."
            ));
        }
        parts.push(Part {
            left_column: column(l),
            right_column: column(r),
            left: le,
            right: re,
            ty: lt,
        });
    }

    let visible = parts.len();
    if windowed {
        let keyed = |column: &Option<String>, def: &SourceDef| {
            column
                .as_ref()
                .is_some_and(|c| def.key_columns.iter().any(|k| &k.name == c))
        };
        if !parts
            .iter()
            .all(|p| keyed(&p.left_column, left) && keyed(&p.right_column, right))
        {
            return invalid("Implicit repartitioning of windowed sources is not supported. See https://github.com/confluentinc/ksql/issues/4385.");
        }
        for bound in ["WINDOWSTART", "WINDOWEND"] {
            let e = Expr::Identifier(crate::rewrite::quoted(bound));
            parts.push(Part {
                left: e.clone(),
                right: e,
                left_column: None,
                right_column: None,
                ty: SqlType::Bigint,
            });
        }
    }

    // The key's columns: a side's column where the part is one, else synthetic.
    let full = join.kind == JoinKind::Full;
    let taken = |n: &str, names: &[String]| {
        sides.iter().any(|s| s.has(n)) || names.contains(&n.to_string())
    };
    let mut key_names: Vec<String> = Vec::new();
    for p in &parts[..visible] {
        let left_name = p
            .left_column
            .as_deref()
            .map(|c| sides[0].combined(c).expect("resolved").to_string());
        let right_name = p
            .right_column
            .as_deref()
            .map(|c| sides[1].combined(c).expect("resolved").to_string());
        let chosen = match (left_name, right_name) {
            _ if full => None,
            (Some(_), Some(r)) if key_from_right => Some(r),
            (Some(l), _) => Some(l),
            (None, r) => r,
        };
        // A column in two equalities keys only the first; the other part gets a synthetic name.
        let name = match chosen.filter(|n| !key_names.contains(n)) {
            Some(n) => n,
            None => {
                let mut name = "ROWKEY".to_string();
                let mut n = 0;
                while taken(&name, &key_names) {
                    n += 1;
                    name = format!("ROWKEY_{n}");
                }
                name
            }
        };
        key_names.push(name);
    }

    let key_columns: Vec<Column> = key_names
        .iter()
        .zip(&parts)
        .map(|(n, p)| Column {
            name: n.clone(),
            ty: p.ty.clone(),
        })
        .collect();
    let mut output: Vec<StreamJoinColumn> = (0..visible).map(StreamJoinColumn::Key).collect();
    let mut value_columns = Vec::new();
    let mut buffered: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    let mut buffered_types: [Vec<SqlType>; 2] = [Vec::new(), Vec::new()];
    for (i, s) in sides.iter().enumerate() {
        let side = if i == 0 {
            JoinSide::Left
        } else {
            JoinSide::Right
        };
        for (j, (c, combined)) in s.columns.iter().enumerate() {
            buffered[i].push(s.batch_index[j]);
            buffered_types[i].push(c.ty.clone());
            if key_names.contains(combined) {
                continue;
            }
            value_columns.push(Column {
                name: combined.clone(),
                ty: c.ty.clone(),
            });
            output.push(StreamJoinColumn::Column(side, j));
        }
    }
    for (i, s) in sides.iter().enumerate() {
        let side = if i == 0 {
            JoinSide::Left
        } else {
            JoinSide::Right
        };
        let types = [SqlType::Bigint, SqlType::Int, SqlType::Bigint];
        for (k, (name, ty)) in s.pseudo.iter().zip(types).enumerate() {
            if key_names.contains(name) {
                continue;
            }
            value_columns.push(Column {
                name: name.clone(),
                ty,
            });
            output.push(StreamJoinColumn::Pseudo(side, k));
        }
    }
    // A windowed join's rows keep the window they matched in (after the value columns, where
    // windowed sources have them).
    output.extend((visible..parts.len()).map(StreamJoinColumn::Key));
    let mut combined =
        super::combined_source(name, SourceKind::Stream, left, key_columns, value_columns);
    combined.window = left.window;
    let synthetic: Vec<String> = key_names
        .iter()
        .filter(|n| !sides.iter().any(|s| s.columns.iter().any(|(_, c)| c == *n)))
        .cloned()
        .collect();
    let rewritten = rewrite_select(select, &sides, &synthetic, name)?;
    let keep = match join.kind {
        JoinKind::Inner => Keep::Inner,
        JoinKind::Left => Keep::Left,
        JoinKind::Right => Keep::Right,
        JoinKind::Full => Keep::Full,
    };
    let shape = JoinShape::StreamStream {
        windows: JoinWindows::new(
            within.before_ms as i64,
            within.after_ms as i64,
            within.grace_ms.map(|g| g as i64),
        ),
        keep,
        left_key: parts.iter().map(|p| p.left.clone()).collect(),
        right_key: parts.iter().map(|p| p.right.clone()).collect(),
        key_types: parts.iter().map(|p| p.ty.clone()).collect(),
        buffered,
        buffered_types,
        output,
    };
    Ok((
        combined,
        rewritten,
        PlannedJoin {
            left: left.clone(),
            right: right.clone(),
            inner: keep == Keep::Inner,
            shape,
        },
    ))
}

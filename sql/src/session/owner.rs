//! Which task of a table's query holds a key: where a pull query that names its key reads.
//!
//! A task keeps the rows of the keys in its input partition, and a key's partition is Kafka's
//! partitioner over the key's bytes as that input holds them: the table topic's key format for
//! a materialization, the source's for an aggregation by the source's key, the repartition
//! topic's whole-row encoding for one that goes through it. A pull query whose WHERE pins every
//! key column to a literal reads the one task that owns the key; any other reads every task's
//! store and merges (a table scan). A producer with a partitioner of its own may have put a key
//! elsewhere, so a key its owner does not hold is looked for in the other tasks too.

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::common::ScalarValue;
use eddy_engine::schema::PSEUDO_COLUMNS;
use eddy_engine::{Codec, Format, TaskId};
use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value};

use super::Session;
use crate::ast::Select;
use crate::catalog::SourceDef;
use crate::parser::normalize;

/// How the input of a table's tasks is partitioned: by these key bytes, over this many
/// partitions.
pub(super) struct KeyRoute {
    pub codec: Codec,
    pub partitions: u32,
}

/// The literal `e` as a value of type `ty`, if it is one.
fn literal(e: &Expr, ty: &datafusion::arrow::datatypes::DataType) -> Option<ScalarValue> {
    use datafusion::arrow::datatypes::DataType;
    let (negative, e) = match e {
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => (true, expr.as_ref()),
        e => (false, e),
    };
    let Expr::Value(v) = e else { return None };
    match (&v.value, ty) {
        (Value::SingleQuotedString(s), DataType::Utf8) if !negative => {
            Some(ScalarValue::Utf8(Some(s.clone())))
        }
        (Value::Number(n, _), DataType::Int32 | DataType::Int64) => {
            let n: i64 = n.parse().ok()?;
            let n = if negative { -n } else { n };
            match ty {
                DataType::Int32 => Some(ScalarValue::Int32(Some(i32::try_from(n).ok()?))),
                _ => Some(ScalarValue::Int64(Some(n))),
            }
        }
        _ => None,
    }
}

/// A pull query's `KEY IN (...)` looks keys up by the listed values, so each must be a value of
/// the key's type: a string for a number key, or a number for a string key, is refused in
/// ksqlDB's words rather than converted.
pub(super) fn check_key_lists(w: &Expr, def: &SourceDef) -> crate::error::Result<()> {
    use std::ops::ControlFlow;
    let found = sqlparser::ast::visit_expressions(w, |e| {
        let Expr::InList { expr, list, .. } = e else {
            return ControlFlow::Continue(());
        };
        let name = match expr.as_ref() {
            Expr::Identifier(id) => normalize(id),
            Expr::CompoundIdentifier(parts) => match parts.last() {
                Some(id) => normalize(id),
                None => return ControlFlow::Continue(()),
            },
            _ => return ControlFlow::Continue(()),
        };
        let Some(key) = def.key_columns.iter().find(|k| k.name == name) else {
            return ControlFlow::Continue(());
        };
        let numeric = key.ty.to_arrow().is_numeric();
        for item in list {
            let Expr::Value(v) = item else { continue };
            if v.value == Value::Null {
                // No row has a null key: ksqlDB says so rather than answering nothing.
                return ControlFlow::Break(format!(
                    "Primary key columns can not be NULL: ({} = null)",
                    key.name
                ));
            }
            let mismatched = match &v.value {
                Value::SingleQuotedString(_) => numeric,
                Value::Number(..) => !numeric && !key.ty.to_arrow().is_temporal(),
                _ => false,
            };
            if mismatched {
                return ControlFlow::Break(format!(
                    "{item} can not be converted to the type of the key column: {} {} KEY",
                    key.name, key.ty
                ));
            }
        }
        ControlFlow::Continue(())
    });
    match found {
        ControlFlow::Break(message) => crate::error::invalid(message),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The equalities of a conjunction: `(column, literal)` pairs, either way round.
fn equalities<'a>(e: &'a Expr, out: &mut Vec<(String, &'a Expr)>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            equalities(left, out);
            equalities(right, out);
        }
        Expr::Nested(inner) => equalities(inner, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => match (left.as_ref(), right.as_ref()) {
            (Expr::Identifier(id), other) | (other, Expr::Identifier(id)) => {
                out.push((normalize(id), other));
            }
            _ => {}
        },
        _ => {}
    }
}

/// The key of `def` a pull query's WHERE pins: every key column equal to a literal.
pub(super) fn pinned_key(select: &Select, def: &SourceDef) -> Option<Vec<ScalarValue>> {
    let mut pairs = Vec::new();
    equalities(select.where_clause.as_ref()?, &mut pairs);
    def.key_columns
        .iter()
        .map(|c| {
            let (_, e) = pairs.iter().find(|(name, _)| *name == c.name)?;
            literal(e, &c.ty.to_arrow())
        })
        .collect()
}

/// Whether `batch`, laid out as a table's source batches are, has a row with key `key`.
pub(super) fn has_key(batch: &RecordBatch, key: &[ScalarValue]) -> bool {
    (0..batch.num_rows()).any(|row| {
        key.iter().enumerate().all(|(i, k)| {
            let col = batch.column(PSEUDO_COLUMNS + i);
            !col.is_null(row) && ScalarValue::try_from_array(col, row).is_ok_and(|v| &v == k)
        })
    })
}

impl KeyRoute {
    /// The route of whole rows of `def`'s key columns (a repartition topic's keys).
    pub(super) fn rows(def: &SourceDef, partitions: u32) -> Option<KeyRoute> {
        let fields = def.key_columns.iter().map(|c| c.field()).collect();
        Some(KeyRoute {
            codec: Codec::new(Format::Rows, fields, false).ok()?,
            partitions,
        })
    }

    /// Of `tasks`, the one that owns `key`; `None` when they are not one per partition.
    pub(super) fn owner(&self, key: &[ScalarValue], tasks: &[TaskId]) -> Option<TaskId> {
        let bytes = self.codec.encode(key).ok()??;
        let p = eddy_log::partitioner::partition_for_key(&bytes, self.partitions);
        tasks.iter().copied().find(|t| t.partition == Some(p))
    }
}

impl Session {
    /// How the key of `def`'s source (a table's topic, or an aggregation's source) partitions.
    pub(super) fn source_route(&self, def: &SourceDef) -> Option<KeyRoute> {
        let (codec, _) = crate::with_clause::codecs(def).ok()?;
        let partitions = self.log.topic(&def.topic).ok()?.partition_count();
        Some(KeyRoute { codec, partitions })
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;

    #[test]
    fn the_owner_is_the_task_of_the_partition_the_keys_bytes_choose() {
        let codec = Codec::new(
            Format::Kafka,
            vec![Field::new("K", DataType::Utf8, true)],
            false,
        )
        .unwrap();
        let route = KeyRoute {
            codec,
            partitions: 4,
        };
        let tasks: Vec<TaskId> = (0..4).map(|p| TaskId::new(1, Some(p))).collect();
        for key in ["u0", "u7", "elsewhere"] {
            // A KAFKA string key is its UTF-8 bytes.
            let p = eddy_log::partitioner::partition_for_key(key.as_bytes(), 4);
            let k = [ScalarValue::Utf8(Some(key.into()))];
            assert_eq!(route.owner(&k, &tasks), Some(TaskId::new(1, Some(p))));
        }
        // A single task over every partition owns nothing in particular.
        let k = [ScalarValue::Utf8(Some("u0".into()))];
        assert_eq!(route.owner(&k, &[TaskId::SINGLE]), None);
    }
}

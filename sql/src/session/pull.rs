//! Materialized tables and pull queries.
//!
//! Every table is materialized: an internal pipeline (`MATERIALIZE_<table>`) follows the table's
//! topic and keeps each key's latest row in a state store, committing as a stateful query does.
//! A pull query (`SELECT` without `EMIT CHANGES` on a table) reads that store as of the last
//! commit, turns the rows into a batch laid out as the table's source batches are, and runs the
//! query's WHERE and projection over it with the same operators a push query would use.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use eddy_engine::aggregate::GroupState;
use eddy_engine::materialize::{read_rows, Materialize};
use eddy_engine::schema::{headers_type, PSEUDO_COLUMNS};
use eddy_engine::{EngineError, OperatorContext, Pipeline};

use super::{Outcome, QueryRun, Session};
use crate::ast::{Select, SourceKind};
use crate::catalog::SourceDef;
use crate::error::{invalid, Result, SqlError};
use crate::planner::plan_select;
use sqlparser::ast::{Expr, SelectItem};

/// The internal pipeline that materializes `table`.
fn materializer_id(table: &str) -> String {
    format!("MATERIALIZE_{table}")
}

impl Session {
    /// Starts materializing a table (on creation, and on every start).
    pub(super) fn materialize(&mut self, def: &SourceDef) -> Result<()> {
        if def.kind != SourceKind::Table || self.materialized.contains_key(&def.name) {
            return Ok(());
        }
        let id = materializer_id(&def.name);
        let db = self.state_db()?;
        let source = self.source_for(def)?;
        let keys = PSEUDO_COLUMNS..PSEUDO_COLUMNS + def.key_columns.len();
        let values = keys.end..keys.end + def.value_columns.len();
        let rows = GroupState::open(&db, &self.log, &id, "rows", 100_000)?;
        let op = Materialize::new(source.schema(), keys.collect(), values.collect(), rows)?;
        let pipeline = Pipeline::new(
            &self.log,
            id.clone(),
            source,
            vec![Box::new(op)],
            None,
            true,
            Some(db),
        )?;
        let run = match &self.background {
            Some(rt) => QueryRun::Background(eddy_engine::QueryTask::spawn(
                rt,
                pipeline,
                self.log.clone(),
                self.plog.clone(),
            )),
            None => QueryRun::Driven(Box::new(pipeline)),
        };
        self.materialized.insert(def.name.clone(), (id, run));
        Ok(())
    }

    /// Stops materializing a dropped table and removes what it kept.
    pub(super) fn dematerialize(&mut self, table: &str) -> Result<()> {
        if let Some((id, run)) = self.materialized.remove(table) {
            if let QueryRun::Background(mut task) = run {
                if let Err(e) = task.stop() {
                    tracing::warn!(query = %id, "the materialization had failed: {e}");
                }
            }
            self.drop_state_of(&id)?;
        }
        Ok(())
    }

    /// Removes the state stores, positions and changelog topics of a query that is gone.
    pub(super) fn drop_state_of(&mut self, id: &str) -> Result<()> {
        let Some(db) = &self.state else {
            return Ok(());
        };
        db.drop_owner(id).map_err(EngineError::from)?;
        let prefix = eddy_engine::state::changelog::topic_name(&format!("{id}/"));
        let prefix = prefix.trim_end_matches("-changelog");
        for t in self.log.topics() {
            if t.name().starts_with(prefix) && t.name().ends_with("-changelog") {
                self.log.delete_topic(t.name())?;
            }
        }
        Ok(())
    }

    /// A pull query: the current rows of a materialized table that match, projected.
    pub(super) fn pull_query(&mut self, select: &Select) -> Result<Outcome> {
        let name = &select.from.source.name;
        let Some(def) = self.catalog.source(name).cloned() else {
            return invalid(format!("{name} does not exist."));
        };
        if def.kind != SourceKind::Table {
            return invalid(format!(
                "Pull queries are only supported on tables; {name} is a stream. Add EMIT CHANGES for a push query."
            ));
        }
        if !select.group_by.is_empty() || select.window.is_some() || !select.from.joins.is_empty() {
            return invalid("Pull queries don't support GROUP BY, WINDOW or JOIN clauses.");
        }
        // Driven queries catch up first, so that the answer reflects what was written.
        if self.background.is_none() {
            self.run_until_idle()?;
        }
        let state = self.df.state();
        // Unlike a persistent query, a pull query need not select the key: a missing key column
        // is added to the plan, hidden, and left out of the rows shown.
        let mut select = select.clone();
        let mut hidden = Vec::new();
        let mut planned = loop {
            match plan_select(&state, &self.catalog, &select, name, &self.properties) {
                Err(SqlError::Invalid(m)) if m.starts_with("Key missing from projection") => {
                    let Some(key) = def
                        .key_columns
                        .iter()
                        .find(|k| m.contains(&format!("key column {} ", k.name)))
                    else {
                        return invalid(m);
                    };
                    let alias = format!("__PULL_KEY_{}", hidden.len());
                    select.items.push(SelectItem::ExprWithAlias {
                        expr: Expr::Identifier(crate::rewrite::quoted(&key.name)),
                        alias: crate::rewrite::quoted(&alias),
                    });
                    hidden.push(alias);
                }
                other => break other?,
            }
        };
        let Some(id) = self.materialized.get(name).map(|(id, _)| id.clone()) else {
            return invalid(format!("{name} is not materialized."));
        };
        let db = self.state_db()?;
        let mut key_types: Vec<DataType> =
            def.key_columns.iter().map(|c| c.ty.to_arrow()).collect();
        if def.window.is_some() {
            key_types.extend([DataType::Int64, DataType::Int64]);
        }
        let value_types: Vec<DataType> =
            def.value_columns.iter().map(|c| c.ty.to_arrow()).collect();
        let rows = read_rows(&db, &format!("{id}/rows"), &key_types, &value_types)?;
        let source = self.source_for(&def)?;
        let schema = source.schema();
        let n = rows.len();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.rowtime))),
            Arc::new(Int32Array::from(vec![0; n])),
            Arc::new(Int64Array::from(vec![0i64; n])),
        ];
        let nk = def.key_columns.len();
        let column = |values: Vec<ScalarValue>, t: &DataType| -> Result<ArrayRef> {
            Ok(if values.is_empty() {
                datafusion::arrow::array::new_empty_array(t)
            } else {
                ScalarValue::iter_to_array(values).map_err(EngineError::from)?
            })
        };
        for (i, t) in key_types.iter().take(nk).enumerate() {
            columns.push(column(rows.iter().map(|r| r.key[i].clone()).collect(), t)?);
        }
        for (i, t) in value_types.iter().enumerate() {
            columns.push(column(
                rows.iter().map(|r| r.values[i].clone()).collect(),
                t,
            )?);
        }
        for (c, _) in &def.header_columns {
            columns.push(datafusion::arrow::array::new_null_array(
                &c.ty.to_arrow(),
                n,
            ));
        }
        if def.window.is_some() {
            for i in [nk, nk + 1] {
                columns.push(column(
                    rows.iter().map(|r| r.key[i].clone()).collect(),
                    &DataType::Int64,
                )?);
            }
        }
        columns.push(Arc::new(BooleanArray::from(vec![false; n])));
        columns.push(empty_lists(n));
        let mut batch = RecordBatch::try_new(schema, columns).map_err(EngineError::from)?;
        let ctx = OperatorContext {
            query_id: "pull",
            source_topic: &def.topic,
            processing_log: &self.plog,
        };
        for op in &mut planned.operators {
            batch = op.process(batch, &ctx)?;
        }
        // Over a table, WHERE marks the rows it rejects as deletions: a pull query drops them.
        let deleted = batch.column(planned.null_value_index).as_boolean().clone();
        let (mut shown, mut header): (Vec<usize>, Vec<String>) = planned
            .key_indices
            .iter()
            .zip(&planned.key_columns)
            .filter(|(_, c)| !hidden.contains(&c.name))
            .map(|(i, c)| (*i, c.name.clone()))
            .unzip();
        if let Some((s, e)) = planned.window_columns {
            shown.extend([s, e]);
            header.extend(["WINDOWSTART".to_string(), "WINDOWEND".to_string()]);
        }
        shown.extend(planned.value_indices.iter().copied());
        header.extend(planned.value_columns.iter().map(|c| c.name.clone()));
        let limit = select.limit.map_or(usize::MAX, |l| l as usize);
        let mut out = Vec::new();
        for row in 0..batch.num_rows() {
            if deleted.value(row) {
                continue;
            }
            if out.len() >= limit {
                break;
            }
            let cells = shown
                .iter()
                .map(|&i| {
                    let v = ScalarValue::try_from_array(batch.column(i), row)
                        .map_err(EngineError::from)?;
                    Ok(cell_text(&v))
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(cells);
        }
        Ok(Outcome::Table {
            columns: header,
            rows: out,
        })
    }
}

/// `n` empty header lists (a materialized row keeps no headers).
fn empty_lists(n: usize) -> ArrayRef {
    let DataType::List(item) = headers_type() else {
        unreachable!("headers are a list")
    };
    Arc::new(datafusion::arrow::array::ListArray::new(
        item.clone(),
        datafusion::arrow::buffer::OffsetBuffer::new_zeroed(n),
        datafusion::arrow::array::new_empty_array(item.data_type()),
        None,
    ))
}

/// A value as the ksql CLI shows it: strings bare, others as JSON.
fn cell_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Utf8(Some(s)) => s.clone(),
        v if v.is_null() => "null".into(),
        v => {
            let mut s = String::new();
            match eddy_engine::write_scalar_json(&mut s, v) {
                Ok(()) => s,
                Err(_) => v.to_string(),
            }
        }
    }
}

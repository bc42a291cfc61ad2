//! Materialized tables and pull queries.
//!
//! A queryable table is materialized: an internal pipeline (`MATERIALIZE_<table>`) follows the
//! table's topic and keeps each key's latest row in a state store, committing as a stateful
//! query does. Queryable are the tables ksqlDB lets pull queries read: those of `CREATE SOURCE
//! TABLE` and of `CREATE TABLE AS SELECT` (an aggregation's own state serves its pull queries).
//! A plain `CREATE TABLE` is not, so a table that only feeds joins is kept once, in each
//! join's own copy.
//! A pull query (`SELECT` without `EMIT CHANGES` on a table) reads that store as of the last
//! commit, turns the rows into a batch laid out as the table's source batches are, and runs the
//! query's WHERE and projection over it with the same operators a push query would use.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use eddy_engine::aggregate::{Aggregate, GroupState};
use eddy_engine::materialize::{read_rows, Materialize};
use eddy_engine::metrics::QueryMetrics;
use eddy_engine::schema::{headers_type, PSEUDO_COLUMNS};
use eddy_engine::state::StateScope;
use eddy_engine::{EngineError, OperatorContext, Pipeline, TaskId};

use super::owner::{has_key, KeyRoute};
use super::tasks::TaskRun;
use super::{Materialization, Outcome, ResultColumn, Session};
use crate::ast::{Select, SourceKind};
use crate::catalog::SourceDef;
use crate::error::{invalid, Result, SqlError};
use crate::planner::{plan_select, PlannedSelect};

/// The internal pipeline that materializes `table`.
fn materializer_id(table: &str) -> String {
    format!("{MATERIALIZER_PREFIX}{table}")
}

const MATERIALIZER_PREFIX: &str = "MATERIALIZE_";

impl Session {
    /// Starts materializing a table (on creation, and on every start).
    pub(super) fn materialize(&mut self, def: &SourceDef) -> Result<()> {
        if def.kind != SourceKind::Table || self.materialized.contains_key(&def.name) {
            return Ok(());
        }
        let id = materializer_id(&def.name);
        let db = self.state_db()?;
        let partitions = self.log.topic(&def.topic)?.partition_count();
        let tasks: Vec<Option<u32>> = match self.is_legacy(&id)? {
            true => vec![None],
            false => {
                self.mark_layout(&id)?;
                (0..partitions).map(Some).collect()
            }
        };
        let metrics = Arc::new(QueryMetrics::new());
        let mut runs = Vec::new();
        for partition in tasks {
            let source = self.source_for(def)?;
            let keys = PSEUDO_COLUMNS..PSEUDO_COLUMNS + def.key_columns.len();
            let values = keys.end..keys.end + def.value_columns.len();
            let scope = StateScope::new(&db, &self.log, &id);
            let scope = match partition {
                Some(p) => scope.for_task(p, partitions),
                None => scope,
            };
            let rows = GroupState::open(&scope, "rows", self.cache_entries(&scope)?)?;
            let op = Materialize::new(source.schema(), keys.collect(), values.collect(), rows)?;
            let pipeline = Pipeline::new(
                &self.log,
                id.clone(),
                source,
                vec![Box::new(op)],
                None,
                true,
                Some(db.clone()),
            )?
            .in_task(TaskId::new(0, partition), metrics.clone());
            runs.push(TaskRun::new(&id, pipeline, self.runtime.as_ref()));
        }
        self.materialized.insert(
            def.name.clone(),
            Materialization {
                id,
                tasks: runs,
                metrics,
            },
        );
        Ok(())
    }

    /// The stores of the tasks of query `id` (a materialization, or an aggregation's own
    /// sub-topology) whose tasks are `tasks`.
    fn task_scopes(&mut self, id: &str, tasks: &[TaskId]) -> Result<Vec<StateScope>> {
        let db = self.state_db()?;
        let n = tasks.len() as u32;
        Ok(tasks
            .iter()
            .map(|t| {
                let scope = StateScope::new(&db, &self.log, id);
                match t.partition {
                    Some(p) => scope.for_task(p, n),
                    None => scope,
                }
            })
            .collect())
    }

    /// Stops materializing a dropped table and removes what it kept.
    pub(super) fn dematerialize(&mut self, table: &str) -> Result<()> {
        if let Some(mut m) = self.materialized.remove(table) {
            super::tasks::stop_all(&m.id, &mut m.tasks);
            self.drop_state_of(&m.id)?;
        }
        Ok(())
    }

    /// Removes the materializations no table has any longer: a data directory written before
    /// plain `CREATE TABLE`s stopped being materialized still holds their rows and changelogs.
    pub(super) fn drop_stale_materializations(&mut self) -> Result<()> {
        if self.state.is_none() && !self.log.dir().join("state").exists() {
            return Ok(());
        }
        let db = self.state_db()?;
        let live: Vec<&String> = self.materialized.values().map(|m| &m.id).collect();
        let mut stale: Vec<String> = db
            .store_sizes()
            .map_err(EngineError::from)?
            .into_iter()
            .filter(|(store, _)| store.ends_with("/rows"))
            .filter_map(|(store, _)| Some(store.split('/').next()?.to_string()))
            .filter(|owner| owner.starts_with(MATERIALIZER_PREFIX) && !live.contains(&owner))
            .collect();
        stale.dedup();
        for id in stale {
            tracing::info!(query = %id, "dropping the materialization of a table that no longer has one");
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
        for step in super::repartition::STEPS {
            db.drop_owner(&super::repartition::repartition_owner(id, step))
                .map_err(EngineError::from)?;
            match self
                .log
                .delete_topic(&super::repartition::repartition_topic(id, step))
            {
                Ok(()) | Err(eddy_log::LogError::UnknownTopic(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let prefix = eddy_engine::state::changelog::topic_name(&format!("{id}/"));
        let prefix = prefix.trim_end_matches("-changelog");
        for t in self.log.topics() {
            if t.name().starts_with(prefix) && t.name().ends_with("-changelog") {
                self.log.delete_topic(t.name())?;
            }
        }
        Ok(())
    }

    /// The current rows of a table, laid out as its source batches are (pseudo-columns, keys,
    /// values, window bounds, hidden columns): from the table's aggregation's state if it has
    /// one, else from its materialization. With `key`, from the task that owns it (see
    /// `owner.rs`), else from every task.
    fn table_batch(&mut self, def: &SourceDef, key: Option<&[ScalarValue]>) -> Result<RecordBatch> {
        if let Some(batch) = self.aggregate_rows(def, key)? {
            return Ok(batch);
        }
        let Some((id, tasks)) = self.materialized.get(&def.name).map(|m| {
            (
                m.id.clone(),
                m.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
            )
        }) else {
            let name = &def.name;
            return invalid(format!("The `{name}` table isn't queryable. To derive a queryable table, you can do 'CREATE TABLE QUERYABLE_{name} AS SELECT * FROM {name}'. See https://cnfl.io/queries for more info."));
        };
        let owner = key.and_then(|k| self.source_route(def)?.owner(k, &tasks));
        if let (Some(owner), Some(key)) = (owner, key) {
            let batch = self.materialized_rows(def, &id, &[owner])?;
            if has_key(&batch, key) {
                return Ok(batch);
            }
        }
        self.materialized_rows(def, &id, &tasks)
    }

    /// The rows a materialization's `tasks` keep, laid out as the table's source batches are.
    fn materialized_rows(
        &mut self,
        def: &SourceDef,
        id: &str,
        tasks: &[TaskId],
    ) -> Result<RecordBatch> {
        let schema = self.source_for(def)?.schema();
        let scopes = self.task_scopes(id, tasks)?;
        let mut key_types: Vec<DataType> =
            def.key_columns.iter().map(|c| c.ty.to_arrow()).collect();
        if def.window.is_some() {
            key_types.extend([DataType::Int64, DataType::Int64]);
        }
        let value_types: Vec<DataType> =
            def.value_columns.iter().map(|c| c.ty.to_arrow()).collect();
        let mut rows = Vec::new();
        for scope in &scopes {
            rows.extend(read_rows(scope, "rows", &key_types, &value_types)?);
        }
        let n = rows.len();
        let column = |values: Vec<ScalarValue>, t: &DataType| -> Result<ArrayRef> {
            Ok(if values.is_empty() {
                datafusion::arrow::array::new_empty_array(t)
            } else {
                ScalarValue::iter_to_array(values).map_err(EngineError::from)?
            })
        };
        let nk = def.key_columns.len();
        let rowtime: ArrayRef =
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.rowtime)));
        let keys = (0..nk)
            .map(|i| {
                column(
                    rows.iter().map(|r| r.key[i].clone()).collect(),
                    &key_types[i],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let values = value_types
            .iter()
            .enumerate()
            .map(|(i, t)| column(rows.iter().map(|r| r.values[i].clone()).collect(), t))
            .collect::<Result<Vec<_>>>()?;
        let window = match def.window {
            Some(_) => Some((
                column(
                    rows.iter().map(|r| r.key[nk].clone()).collect(),
                    &DataType::Int64,
                )?,
                column(
                    rows.iter().map(|r| r.key[nk + 1].clone()).collect(),
                    &DataType::Int64,
                )?,
            )),
            None => None,
        };
        source_layout(def, schema, n, rowtime, keys, values, window)
    }

    /// The rows of a table made by an aggregation, read from the aggregation's own state: its
    /// groups' current results, through its HAVING and projection; with `key`, from the task
    /// that owns it. `None` for other tables.
    fn aggregate_rows(
        &mut self,
        def: &SourceDef,
        key: Option<&[ScalarValue]>,
    ) -> Result<Option<RecordBatch>> {
        let Some(query) = self
            .queries
            .iter()
            .find(|q| q.sink == def.name && q.aggregate)
        else {
            return Ok(None);
        };
        let id = query.id.clone();
        // The aggregation is in the query's own (last) sub-topology.
        let own = query.tasks.last().map_or(0, |t| t.id.subtopology);
        let tasks: Vec<TaskId> = query
            .tasks
            .iter()
            .map(|t| t.id)
            .filter(|t| t.subtopology == own)
            .collect();
        // Its input: the repartition topic when it has one (it is then the second
        // sub-topology), else its source.
        let route = match own {
            0 => query
                .sources
                .first()
                .and_then(|s| self.catalog.source(s))
                .and_then(|s| self.source_route(s)),
            _ => KeyRoute::rows(def, tasks.len() as u32),
        };
        if let (Some(key), Some(owner)) = (key, key.and_then(|k| route?.owner(k, &tasks))) {
            let batch = self.aggregate_batch(def, &id, &[owner])?;
            if batch.as_ref().is_some_and(|b| has_key(b, key)) {
                return Ok(batch);
            }
        }
        self.aggregate_batch(def, &id, &tasks)
    }

    /// The rows of the aggregation `id` that writes `def`, as its `tasks` keep them.
    fn aggregate_batch(
        &mut self,
        def: &SourceDef,
        id: &str,
        tasks: &[TaskId],
    ) -> Result<Option<RecordBatch>> {
        let Ok(mut statements) = crate::parser::parse_statements(&def.sql) else {
            return Ok(None);
        };
        let Some((crate::ast::Statement::CreateAsSelect(c), _)) = statements.pop() else {
            return Ok(None);
        };
        // The same properties the query was planned with shape its plan (collect_list limits).
        let state = self.df.state();
        let mut planned =
            plan_select(&state, &self.catalog, &c.query, &def.name, &self.properties)?;
        let Some(agg) = planned.aggregate.take() else {
            return Ok(None);
        };
        let scopes = self.task_scopes(id, tasks)?;
        let mut batch = Aggregate::snapshot(&scopes, "aggregate", agg.spec)?;
        if let Some((predicate, _, _)) = &agg.having {
            let mask = predicate
                .evaluate(&batch)
                .and_then(|v| v.into_array(batch.num_rows()))
                .map_err(EngineError::from)?;
            let mask = mask.as_boolean();
            // A null is not true (and `prep_null_mask_filter` needs a null buffer).
            let mask = if mask.null_count() > 0 {
                datafusion::arrow::compute::prep_null_mask_filter(mask)
            } else {
                mask.clone()
            };
            batch = datafusion::arrow::compute::filter_record_batch(&batch, &mask)
                .map_err(EngineError::from)?;
        }
        let ctx = OperatorContext {
            query_id: id,
            source_topic: &def.topic,
            processing_log: &self.plog,
        };
        for mut op in agg.after {
            batch = op.process(batch, &ctx)?;
        }
        let column = |i: usize| batch.column(i).clone();
        let keys = planned.key_indices.iter().map(|&i| column(i)).collect();
        let values = planned.value_indices.iter().map(|&i| column(i)).collect();
        let window = planned.window_columns.map(|(s, e)| (column(s), column(e)));
        let schema = self.source_for(def)?.schema();
        Ok(Some(source_layout(
            def,
            schema,
            batch.num_rows(),
            column(planned.rowtime_index),
            keys,
            values,
            window,
        )?))
    }

    /// Plans a query that shows its rows rather than writing them (a pull or push query).
    pub(super) fn plan_for_reading(&self, select: &Select) -> Result<PlannedSelect> {
        let state = self.df.state();
        crate::planner::plan_transient(&state, &self.catalog, select, &self.properties)
    }

    /// A pull query: the current rows of a materialized table that match, projected.
    pub(super) fn pull_query(&mut self, select: &Select) -> Result<Outcome> {
        let name = &select.from.source.name;
        let Some(def) = self.catalog.source(name).cloned() else {
            return invalid(format!("{name} does not exist."));
        };
        let unsupported = [
            (!select.from.joins.is_empty(), "JOIN"),
            (select.window.is_some(), "WINDOW"),
            (!select.group_by.is_empty(), "GROUP BY"),
        ];
        if let Some((_, clause)) = unsupported.iter().find(|(used, _)| *used) {
            return invalid(format!(
                "Pull queries don't support {clause} clauses. See https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended to issue a push query."
            ));
        }
        let limit_disabled = self
            .property("ksql.query.pull.limit.clause.enabled")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
        if select.limit.is_some() && limit_disabled {
            return invalid(
                "LIMIT clause in pull queries is currently disabled. You can enable them by setting ksql.query.pull.limit.clause.enabled=true. See https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended to issue a push query.",
            );
        }
        // A pull query reads a table's store or a stream's records, neither of which keeps
        // where a row was read from.
        for (clause, text) in [
            (
                "SELECT",
                select
                    .items
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "WHERE",
                select
                    .where_clause
                    .as_ref()
                    .map(|w| w.to_string())
                    .unwrap_or_default(),
            ),
        ] {
            let used: Vec<String> = ["ROWPARTITION", "ROWOFFSET"]
                .iter()
                .filter(|p| mentions(&text, p))
                .map(|p| format!("`{p}`"))
                .collect();
            if !used.is_empty() {
                return invalid(format!(
                    "Pull queries don't support the following columns in {clause} clauses: {}",
                    used.join(", ")
                ));
            }
        }
        // Driven queries catch up first, so that the answer reflects what was written.
        if self.runtime.is_none() {
            self.run_until_idle()?;
        }
        if let Some(w) = &select.where_clause {
            super::owner::check_key_lists(w, &def)?;
            let scans = self
                .property(super::key_lookup::TABLE_SCAN_ENABLED)
                .is_none_or(|v| !v.trim().eq_ignore_ascii_case("false"));
            if def.kind == SourceKind::Table && !scans {
                super::key_lookup::check(w, &def)?;
            }
        }
        // ksqlDB reports a WHERE clause it cannot type with the clause itself.
        let mut planned = self.plan_for_reading(select).map_err(|e| {
            let message = e.to_string();
            match &select.where_clause {
                Some(w)
                    if message.starts_with("Cannot compare ")
                        || message.starts_with("Comparison with NULL not supported") =>
                {
                    SqlError::Invalid(format!(
                        "Error in WHERE expression: {message}\nStatement: ({})",
                        ksql_text(w)
                    ))
                }
                _ => e,
            }
        })?;
        if def.kind == SourceKind::Stream {
            return self.pull_from_stream(select, planned);
        }
        let key = super::owner::pinned_key(select, &def);
        let mut batch = self.table_batch(&def, key.as_deref())?;
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
        let (shown, schema) = shown_columns(&planned, true);
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
                .map(|&i| ScalarValue::try_from_array(batch.column(i), row))
                .collect::<Result<Vec<_>, _>>()
                .map_err(EngineError::from)?;
            out.push(cells);
        }
        Ok(Outcome::Rows {
            schema,
            rows: out,
            end: None,
        })
    }
}

/// Whether `text` names `word` as a whole word, in any case.
fn mentions(text: &str, word: &str) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|w| w.eq_ignore_ascii_case(word))
}

/// The columns a pull or push query shows, as indices into its output batch and as result
/// columns, in projection order. `keyed`: whether the source's key columns and window bounds,
/// selected as such, are marked as keys (a pull query's are; a push query's result is a stream
/// of values).
pub(super) fn shown_columns(
    planned: &PlannedSelect,
    keyed: bool,
) -> (Vec<usize>, Vec<ResultColumn>) {
    let source = &planned.source;
    let is_key = |name: &str| {
        source.key_columns.iter().any(|k| k.name == name)
            || (source.window.is_some() && (name == "WINDOWSTART" || name == "WINDOWEND"))
    };
    let schema = planned
        .value_columns
        .iter()
        .map(|c| ResultColumn {
            name: c.name.clone(),
            ty: c.ty.clone(),
            key: keyed && is_key(&c.name),
        })
        .collect();
    (planned.value_indices.clone(), schema)
}

/// An expression as ksqlDB prints it in messages: as written, but with `null` in lower case.
pub(super) fn ksql_text(e: &datafusion::sql::sqlparser::ast::Expr) -> String {
    use datafusion::sql::sqlparser::ast::{Expr, Ident, Value, VisitMut, VisitorMut};
    struct LowerNull;
    impl VisitorMut for LowerNull {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
            if matches!(e, Expr::Value(v) if v.value == Value::Null) {
                *e = Expr::Identifier(Ident::new("null"));
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut e = e.clone();
    let _ = e.visit(&mut LowerNull);
    e.to_string()
}

/// A batch in a table's source layout from its parts.
fn source_layout(
    def: &SourceDef,
    schema: datafusion::arrow::datatypes::SchemaRef,
    n: usize,
    rowtime: ArrayRef,
    keys: Vec<ArrayRef>,
    values: Vec<ArrayRef>,
    window: Option<(ArrayRef, ArrayRef)>,
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = vec![
        rowtime,
        Arc::new(Int32Array::from(vec![0; n])),
        Arc::new(Int64Array::from(vec![0i64; n])),
    ];
    columns.extend(keys);
    columns.extend(values);
    for (c, _) in &def.header_columns {
        columns.push(datafusion::arrow::array::new_null_array(
            &c.ty.to_arrow(),
            n,
        ));
    }
    if let Some((s, e)) = window {
        columns.extend([s, e]);
    }
    columns.push(Arc::new(BooleanArray::from(vec![false; n])));
    columns.push(empty_lists(n));
    Ok(RecordBatch::try_new(schema, columns).map_err(EngineError::from)?)
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
pub fn cell_text(v: &ScalarValue) -> String {
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

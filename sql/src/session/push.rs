//! Push queries: `SELECT ... EMIT CHANGES` shows rows as they arrive instead of writing them to a
//! topic.
//!
//! A push query is a transient pipeline (see [`Pipeline::transient`]): it reads its source from
//! the end, or from the start with `'auto.offset.reset'='earliest'`, keeps any aggregation state
//! in memory, commits nothing, and ends when its caller drops it or its LIMIT is reached. It
//! runs on the caller's thread, step by step, through [`PushQuery::poll`]: the REPL polls it
//! between checks for Ctrl-C, a server from a blocking task per request.

use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::common::ScalarValue;
use eddy_engine::{EngineError, Pipeline, ProcessingLog};
use eddy_log::{Log, TopicConfig};

use super::pull::shown_columns;
use super::{Outcome, ResultColumn, Session};
use crate::ast::{CreateAsSelect, Select, SourceKind};
use crate::error::Result;

/// How a push query's id starts (then its source and a counter): its steps' topics start
/// with `_eddy-` and the id.
pub(super) const PUSH_ID_PREFIX: &str = "transient_";

/// ksqlDB's switch for scalable (v2) push queries, off by default as there.
pub const PUSH_V2_ENABLED: &str = "ksql.query.push.v2.enabled";

/// How a scalable push query's id starts, as in ksqlDB.
const SCALABLE_ID_PREFIX: &str = "SCALABLE_PUSH_QUERY_";

/// A running push query. Dropping it ends the query.
pub struct PushQuery {
    id: String,
    schema: Vec<ResultColumn>,
    pipeline: Pipeline,
    /// The output columns shown, in order.
    shown: Vec<usize>,
    /// Which of them are the source's key: a tombstone shows those, and nulls for the rest.
    shown_keys: Vec<bool>,
    /// The output column that flags a deleted row (a table's tombstone), not shown.
    deleted: usize,
    /// Over a table, a deleted row is shown as a tombstone; over a stream it is skipped.
    tombstones: bool,
    limit: Option<u64>,
    emitted: u64,
    /// The topics its stages write (an n-way join's steps), deleted when it ends.
    step_topics: Vec<String>,
    log: Log,
    plog: ProcessingLog,
}

impl Drop for PushQuery {
    fn drop(&mut self) {
        for topic in &self.step_topics {
            if let Err(e) = self.log.delete_topic(topic) {
                tracing::warn!(query = %self.id, topic, "could not delete a step's topic: {e}");
            }
        }
    }
}

impl std::fmt::Debug for PushQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushQuery")
            .field("id", &self.id)
            .field("schema", &self.schema)
            .field("limit", &self.limit)
            .finish()
    }
}

/// A row of a push query.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRow {
    pub cells: Vec<ScalarValue>,
    /// The row's key was deleted from the table (its values are null).
    pub tombstone: bool,
}

impl PushQuery {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The columns of each row, in order.
    pub fn schema(&self) -> &[ResultColumn] {
        &self.schema
    }

    /// Whether the query reached its LIMIT: it produces nothing more.
    pub fn is_done(&self) -> bool {
        self.limit.is_some_and(|l| self.emitted >= l)
    }

    /// Processes what has arrived (a bounded step, so rows show without waiting for a whole
    /// backlog) and returns the new rows; with nothing to read, first waits up to `wait` for
    /// an append to the source.
    pub fn poll(&mut self, wait: Duration) -> Result<Vec<PushRow>> {
        if self.is_done() {
            return Ok(Vec::new());
        }
        let seen = self.pipeline.activity();
        let consumed = self.pipeline.run_step(&self.log, &self.plog)?;
        let mut rows = Vec::new();
        for batch in self.pipeline.take_output() {
            let deleted = batch.column(self.deleted).as_boolean();
            for row in 0..batch.num_rows() {
                if self.is_done() {
                    break;
                }
                let tombstone = deleted.is_valid(row) && deleted.value(row);
                if tombstone && !self.tombstones {
                    continue;
                }
                // A deleted row (a tombstone, or a row that stopped passing a table's filter)
                // has a key and no value.
                let cells = self
                    .shown
                    .iter()
                    .zip(&self.shown_keys)
                    .map(|(&i, &key)| match tombstone && !key {
                        true => ScalarValue::try_from(batch.column(i).data_type()),
                        false => ScalarValue::try_from_array(batch.column(i), row),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(EngineError::from)?;
                rows.push(PushRow { cells, tombstone });
                self.emitted += 1;
            }
        }
        if consumed == 0 && rows.is_empty() {
            self.pipeline.wait_for_input(&seen, wait);
        }
        Ok(rows)
    }
}

impl Session {
    /// Starts a push query (`SELECT ... EMIT CHANGES`) over a stream or a table.
    pub(super) fn push_query(&mut self, select: &Select) -> Result<Outcome> {
        let name = &select.from.source.name;
        // Driven queries (a script's) catch up first: nothing else would feed this one's source.
        if self.runtime.is_none() {
            self.run_until_idle()?;
        }
        self.next_transient += 1;
        if self.is_scalable(select) {
            let id = format!("{SCALABLE_ID_PREFIX}{}", self.next_transient);
            let select = self.skipping_null_keys(select);
            return self.push_pipeline(&select, id, None, Vec::new());
        }
        let id = format!("{PUSH_ID_PREFIX}{name}_{}", self.next_transient);
        if select.from.joins.len() > 1 {
            return self.push_n_way(select, id);
        }
        self.push_pipeline(select, id, None, Vec::new())
    }

    /// Whether `select` runs as ksqlDB's scalable push query: with [`PUSH_V2_ENABLED`] set,
    /// ksqlDB serves a push query from the output of the one persistent query that writes its
    /// source, as it arrives (`auto.offset.reset` latest), when the query itself has no
    /// GROUP BY, PARTITION BY, window or join. Eddy runs it as any push query over that output
    /// (the same records, read as they are committed); what differs is its id.
    fn is_scalable(&self, select: &Select) -> bool {
        let enabled = self
            .property(PUSH_V2_ENABLED)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let name = &select.from.source.name;
        let writers = self.queries.iter().filter(|q| &q.sink == name).count();
        enabled
            && !self.reads_from_beginning()
            && select.group_by.is_empty()
            && select.partition_by.is_empty()
            && select.window.is_none()
            && select.from.joins.is_empty()
            && writers == 1
    }

    /// `select`, skipping the rows whose key columns are all null, as ksqlDB's scalable push
    /// queries do (its suite notes that a conventional push query shows them).
    fn skipping_null_keys(&self, select: &Select) -> Select {
        use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Ident};
        let Some(def) = self.catalog.source(&select.from.source.name) else {
            return select.clone();
        };
        let qualifier = select.from.source.qualifier().to_string();
        let keyed = def
            .key_columns
            .iter()
            .map(|c| {
                Expr::IsNotNull(Box::new(Expr::CompoundIdentifier(vec![
                    Ident::with_quote('`', qualifier.clone()),
                    Ident::with_quote('`', c.name.clone()),
                ])))
            })
            .reduce(|a, b| Expr::BinaryOp {
                left: Box::new(a),
                op: BinaryOperator::Or,
                right: Box::new(b),
            });
        let mut select = select.clone();
        if let Some(keyed) = keyed {
            select.where_clause = Some(match select.where_clause.take() {
                Some(w) => Expr::BinaryOp {
                    left: Box::new(Expr::Nested(Box::new(w))),
                    op: BinaryOperator::And,
                    right: Box::new(keyed),
                },
                None => keyed,
            });
        }
        select
    }

    /// A push query over `select` as the query `id`, fed by `upstream` (an n-way join's last
    /// step) through `step_topics`, its to delete.
    fn push_pipeline(
        &mut self,
        select: &Select,
        id: String,
        upstream: Option<Pipeline>,
        step_topics: Vec<String>,
    ) -> Result<Outcome> {
        let mut planned = self.plan_for_reading(select)?;
        let operators = self.operators_of(&mut planned, None)?;
        let source = self.source_of(&planned)?;
        let from_beginning = self.reads_from_beginning();
        let pipeline =
            Pipeline::transient(&self.log, id.clone(), source, operators, from_beginning)?;
        let joined = self.join_inputs(&planned, "transient", None, false, None)?;
        let mut pipeline = self.with_join(pipeline, joined, from_beginning)?;
        if let Some(stage) = upstream {
            pipeline = pipeline.with_upstream(0, stage);
        }
        let (shown, keyed) = shown_columns(&planned, true);
        let shown_keys = keyed.iter().map(|c| c.key).collect();
        // A push query's header marks no key columns, as ksqlDB's does not.
        let (_, schema) = shown_columns(&planned, false);
        Ok(Outcome::Push(Box::new(PushQuery {
            id,
            schema,
            pipeline,
            shown,
            shown_keys,
            deleted: planned.null_value_index,
            tombstones: planned.source.kind == crate::ast::SourceKind::Table,
            limit: select.limit,
            emitted: 0,
            step_topics,
            log: self.log.clone(),
            plog: self.plog.clone(),
        })))
    }
}

impl Session {
    /// Deletes the topics of n-way push queries' steps that a process left behind when it
    /// ended without ending its push queries (a push query deletes its own when it ends).
    pub(super) fn delete_push_step_topics(&mut self) -> Result<()> {
        for topic in self.log.topics() {
            let name = topic.name();
            let known = self.catalog.sources.values().any(|s| s.topic == name);
            if name.starts_with(&format!("_eddy-{}", PUSH_ID_PREFIX)) && !known {
                self.log.delete_topic(name)?;
            }
        }
        Ok(())
    }

    /// A push query over an n-way join: as a persistent one, a chain of two-way joins (see
    /// `n_way.rs`), but each step a transient stage of the query's own, writing a topic of its
    /// own that the next reads, all run by the query's `poll`. The steps are known to the
    /// catalog only while the next step is planned, and their topics go when the query ends.
    fn push_n_way(&mut self, select: &Select, id: String) -> Result<Outcome> {
        let mut steps = Steps::default();
        let last = self.join_steps(select, &id, false, &mut |session, step| {
            session.push_step(&step, &mut steps)
        });
        let outcome = last.and_then(|last| {
            self.push_pipeline(&last, id, steps.last.take(), steps.topics.clone())
        });
        for def in std::mem::take(&mut steps.defs) {
            self.forget_source(&def, false)?;
        }
        if outcome.is_err() {
            for topic in &steps.topics {
                self.log.delete_topic(topic)?;
            }
        }
        outcome
    }

    /// Starts a step of an n-way push query: its topic, its transient stage (fed by the step
    /// before), and its source for the next step to plan against.
    fn push_step(&mut self, step: &CreateAsSelect, steps: &mut Steps) -> Result<()> {
        let state = self.df.state();
        let mut planned = crate::planner::plan_select(
            &state,
            &self.catalog,
            &step.query,
            &step.name,
            &self.properties,
        )?;
        let def = self.sink_def(step, &planned, "")?;
        let partitions = self.log.topic(&planned.source.topic)?.partition_count();
        self.log
            .create_topic(&def.topic, TopicConfig::with_partitions(partitions))?;
        steps.topics.push(def.topic.clone());
        // A step that is a table is read whole by the next step's copy of it (see `n_way.rs`).
        let from_beginning = step.kind == SourceKind::Table || self.reads_from_beginning();
        let operators = self.operators_of(&mut planned, None)?;
        let sink = self.sink_for(&planned, &def)?;
        let source = self.source_of(&planned)?;
        let stage = Pipeline::transient_stage(
            &self.log,
            step.name.clone(),
            source,
            operators,
            sink,
            from_beginning,
        )?;
        let joined = self.join_inputs(&planned, "transient", None, false, None)?;
        let mut stage = self.with_join(stage, joined, from_beginning)?;
        if let Some(before) = steps.last.take() {
            stage = stage.with_upstream(0, before);
        }
        steps.last = Some(stage);
        self.register(def.clone(), false)?;
        steps.defs.push(def);
        Ok(())
    }
}

/// The steps of an n-way push query made so far.
#[derive(Default)]
struct Steps {
    /// Their sources, known to the catalog until the query is planned.
    defs: Vec<crate::catalog::SourceDef>,
    /// Their topics: the query's once it starts (it deletes them when it ends).
    topics: Vec<String>,
    /// The last one's stage, which runs those before it.
    last: Option<Pipeline>,
}

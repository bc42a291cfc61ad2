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
use eddy_log::Log;

use super::pull::shown_columns;
use super::{Outcome, ResultColumn, Session};
use crate::ast::Select;
use crate::error::Result;

/// A running push query. Dropping it ends the query.
pub struct PushQuery {
    id: String,
    schema: Vec<ResultColumn>,
    pipeline: Pipeline,
    /// The output columns shown, in order.
    shown: Vec<usize>,
    /// The output column that flags a deleted row (a table's tombstone), not shown.
    deleted: usize,
    /// Over a table, a deleted row is shown as a tombstone; over a stream it is skipped.
    tombstones: bool,
    limit: Option<u64>,
    emitted: u64,
    log: Log,
    plog: ProcessingLog,
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
                let cells = self
                    .shown
                    .iter()
                    .map(|&i| ScalarValue::try_from_array(batch.column(i), row))
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
        let mut planned = self.plan_for_reading(select)?;
        // Driven queries (a script's) catch up first: nothing else would feed this one's source.
        if self.background.is_none() {
            self.run_until_idle()?;
        }
        self.next_transient += 1;
        let id = format!("transient_{name}_{}", self.next_transient);
        let operators = self.operators_of(&mut planned, &id, None)?;
        let source = self.source_of(&planned)?;
        let from_beginning = self.reads_from_beginning();
        let pipeline =
            Pipeline::transient(&self.log, id.clone(), source, operators, from_beginning)?;
        let joined = self.join_inputs(&planned, "transient", None, false)?;
        let pipeline = self.with_join(pipeline, joined, from_beginning)?;
        let (shown, schema) = shown_columns(&planned, false);
        Ok(Outcome::Push(Box::new(PushQuery {
            id,
            schema,
            pipeline,
            shown,
            deleted: planned.null_value_index,
            tombstones: planned.source.kind == crate::ast::SourceKind::Table,
            limit: select.limit,
            emitted: 0,
            log: self.log.clone(),
            plog: self.plog.clone(),
        })))
    }
}

//! Pull queries over streams: a stream's records from the start of its topic to its end as of
//! the query, filtered and projected by a transient pipeline that is run to that end and
//! dropped. The answer ends as ksqlDB's does, with `Limit Reached` or `Query Completed`, and
//! marks no key columns.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::common::ScalarValue;
use eddy_engine::{EngineError, Pipeline};

use super::pull::shown_columns;
use super::{Outcome, Session};
use crate::ast::Select;
use crate::error::Result;
use crate::planner::PlannedSelect;

impl Session {
    /// A pull query over a stream: its records from the start of the topic to its end as of
    /// now, filtered and projected (a transient pipeline run to the end, then dropped).
    pub(super) fn pull_from_stream(
        &mut self,
        select: &Select,
        mut planned: PlannedSelect,
    ) -> Result<Outcome> {
        let operators = self.operators_of(&mut planned, None)?;
        let source = self.source_of(&planned)?;
        // ksqlDB marks no key columns in a stream's rows.
        let (shown, schema) = shown_columns(&planned, false);
        let deleted = planned.null_value_index;
        let pipeline = Pipeline::transient(&self.log, "pull".into(), source, operators, true)?;
        let joined = self.join_inputs(&planned, "transient", None, false, None)?;
        let mut pipeline = self.with_join(pipeline, joined, true)?;
        let limit = select.limit.map_or(usize::MAX, |l| l as usize);
        // The end of each partition now: records appended meanwhile are not part of the answer.
        let ends: Vec<u64> = pipeline
            .source()
            .topic
            .partitions()
            .iter()
            .map(|p| p.end_offset())
            .collect();
        let metrics = pipeline.metrics();
        let topic = pipeline.source().topic.name().to_string();
        let done = || {
            ends.iter().enumerate().all(|(p, end)| {
                metrics
                    .position(&topic, p as u32)
                    .is_some_and(|at| at >= *end)
            })
        };
        let mut rows = Vec::new();
        while rows.len() < limit && !done() && pipeline.run_step(&self.log, &self.plog)? > 0 {
            for batch in pipeline.take_output() {
                let deleted = batch.column(deleted).as_boolean();
                for row in 0..batch.num_rows() {
                    if rows.len() >= limit {
                        break;
                    }
                    if deleted.is_valid(row) && deleted.value(row) {
                        continue;
                    }
                    let cells = shown
                        .iter()
                        .map(|&i| ScalarValue::try_from_array(batch.column(i), row))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(EngineError::from)?;
                    rows.push(cells);
                }
            }
        }
        let end = match select.limit.is_some() && rows.len() >= limit {
            true => "Limit Reached",
            false => "Query Completed",
        };
        Ok(Outcome::Rows {
            schema,
            rows,
            end: Some(end),
        })
    }
}

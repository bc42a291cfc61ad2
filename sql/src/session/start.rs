//! Starting a planned query: its operators (an aggregation's with its state), the source it
//! reads, its sink, and the pipeline that runs them, driven or on a background task.

use eddy_engine::aggregate::{Aggregate, AggregateState, GroupState, HavingFilter, Regroup};
use eddy_engine::state::StateDb;
use eddy_engine::{Operator, Pipeline, QueryTask, Sink, Source, TimestampFormat, WindowedKey};

use super::repartition::Rekey;
use super::{QueryRun, RunningQuery, Session, CACHE_ENTRIES};
use crate::catalog::SourceDef;
use crate::error::{Result, SqlError};
use crate::with_clause::codecs;

impl Session {
    /// The operators of a planned query after its inputs' own (a join's). An aggregation keeps
    /// its state in `db`, as the stores `<id>/aggregate` and `<id>/having`, or in memory
    /// without one (a push query).
    pub(super) fn operators_of(
        &mut self,
        planned: &mut crate::planner::PlannedSelect,
        id: &str,
        db: Option<&StateDb>,
    ) -> Result<Vec<Box<dyn Operator>>> {
        self.query_operators(planned, id, db)
    }

    /// The source a planned query reads: a join's left side, or its one source.
    pub(super) fn source_of(&self, planned: &crate::planner::PlannedSelect) -> Result<Source> {
        match &planned.join {
            Some(join) => self.source_for(&join.left),
            None => self.source_for(&planned.source),
        }
    }

    fn query_operators(
        &self,
        planned: &mut crate::planner::PlannedSelect,
        id: &str,
        db: Option<&StateDb>,
    ) -> Result<Vec<Box<dyn Operator>>> {
        if let Some(w) = planned.table_where.take() {
            let passing = match db {
                Some(db) => GroupState::open(db, &self.log, id, "where", CACHE_ENTRIES)?,
                None => GroupState::in_memory(),
            };
            let filter = HavingFilter::new(w.predicate, w.schema, w.key_columns, passing)?;
            planned.operators.insert(0, Box::new(filter));
        }
        let Some(agg) = planned.aggregate.take() else {
            return Ok(std::mem::take(&mut planned.operators));
        };
        let agg_state = match db {
            Some(db) => AggregateState::persistent(db, &self.log, id, "aggregate", CACHE_ENTRIES)?,
            None => AggregateState::in_memory(),
        };
        let mut ops: Vec<Box<dyn Operator>> = agg.before;
        ops.push(Box::new(Aggregate::new(agg.spec, agg_state)?));
        if let Some((predicate, schema, keys)) = agg.having {
            let passing = match db {
                Some(db) => GroupState::open(db, &self.log, id, "having", CACHE_ENTRIES)?,
                None => GroupState::in_memory(),
            };
            ops.push(Box::new(HavingFilter::new(
                predicate, schema, keys, passing,
            )?));
        }
        ops.extend(agg.after);
        Ok(ops)
    }

    /// The sink of a planned query that writes `sink_def`.
    pub(super) fn sink_for(
        &self,
        planned: &crate::planner::PlannedSelect,
        sink_def: &SourceDef,
    ) -> Result<Sink> {
        let (sink_key, sink_value) = codecs(sink_def)?;
        let timestamp_column = match &sink_def.timestamp_column {
            Some(c) => match sink_def.key_columns.iter().position(|v| &v.name == c) {
                Some(k) => planned.key_indices[k],
                None => {
                    planned.value_indices[sink_def
                        .value_columns
                        .iter()
                        .position(|v| &v.name == c)
                        .expect("validated")]
                }
            },
            None => planned.rowtime_index,
        };
        Ok(Sink {
            topic: self.log.topic(&sink_def.topic)?,
            key: sink_key,
            value: sink_value,
            key_columns: planned.key_indices.clone(),
            value_columns: planned.value_indices.clone(),
            timestamp_column,
            timestamp_format: sink_def
                .timestamp_format
                .as_deref()
                .map(TimestampFormat::new)
                .transpose()
                .map_err(SqlError::Invalid)?,
            null_value_column: Some(planned.null_value_index),
            null_key_if_all_null: planned.keys_pass_through,
            headers_column: planned.headers_index,
            window: planned.window_columns.map(|(start, end)| WindowedKey {
                start,
                end,
                session: sink_def
                    .window
                    .is_some_and(|w| w.kind == crate::catalog::WindowType::Session),
            }),
        })
    }

    /// What an aggregation that ksqlDB repartitions does before its repartition topic (see
    /// [`super::repartition`]): the filter and pre-projection, and over a table a
    /// [`Regroup`], which keeps each key's row so that a change becomes a retraction from its
    /// old group and an addition to its new one, with its state under the first stage's
    /// owner; the aggregation then applies those changes.
    fn aggregate_split(
        &self,
        id: &str,
        planned: &mut crate::planner::PlannedSelect,
        db: &StateDb,
    ) -> Result<Option<Rekey>> {
        let partitions = self.source_of(planned)?.topic.partition_count();
        let Some(agg) = planned.aggregate.as_mut().filter(|a| a.repartition) else {
            return Ok(None);
        };
        let step = "Aggregate-GroupBy";
        let groups = agg.spec.group_fields.len();
        let mut operators = std::mem::take(&mut agg.before);
        if let Some(key_columns) = agg.spec.table_key.take() {
            let input = operators
                .last()
                .expect("an aggregation pre-projects")
                .output_schema();
            let owner = super::repartition::repartition_owner(id, step);
            let rows = GroupState::open(db, &self.log, &owner, "regroup-rows", CACHE_ENTRIES)?;
            let regroup = Regroup::new(
                &input,
                groups,
                key_columns,
                agg.spec.calls.clone(),
                agg.spec.null_value,
                rows,
            );
            agg.spec.changes = Some(regroup.change_columns());
            operators.push(Box::new(regroup));
        }
        let width = operators
            .last()
            .expect("an aggregation pre-projects")
            .output_schema()
            .fields()
            .len();
        Ok(Some(Rekey {
            step,
            partitions,
            keys: (0..groups).collect(),
            values: (0..width).collect(),
            rowtime: agg.spec.rowtime,
            operators,
        }))
    }

    pub(super) fn start_query(
        &mut self,
        id: String,
        mut planned: crate::planner::PlannedSelect,
        sink_def: &SourceDef,
        text: &str,
    ) -> Result<()> {
        let is_aggregate = planned.aggregate.is_some();
        // A stream-stream join buffers its sides, other joins keep their tables' rows:
        // stateful as an aggregation is.
        let buffers = planned.join.is_some();
        // A join with a side that is repartitioned is exactly-once, as its stages are.
        let rekeyed = planned
            .join
            .as_ref()
            .is_some_and(|j| super::repartition::rekeyed_sides(j) != (false, false));
        let state = match is_aggregate || buffers || rekeyed || planned.table_where.is_some() {
            true => Some(self.state_db()?),
            false => None,
        };
        let from_beginning = self.reads_from_beginning();
        let mut joined = self.join_inputs(&planned, &id, state.as_ref(), from_beginning)?;
        let split = match &state {
            Some(db) => self.aggregate_split(&id, &mut planned, db)?,
            None => None,
        };
        planned.operators = self.operators_of(&mut planned, &id, state.as_ref())?;
        let mut source = self.source_of(&planned)?;
        let mut upstream = None;
        if let Some((rows, stage)) = joined.first_upstream.take() {
            (source, upstream) = (rows, Some(stage));
        }
        let mut joined = Some(joined);
        if let (Some(rekey), Some(db)) = (split, &state) {
            // The filter and pre-projection write the repartition topic, the aggregation reads
            // it; after a join, the join itself is part of the first stage.
            let from_start = from_beginning || upstream.is_some();
            let (rows, mut stage) = self.repartition(&id, source, rekey, db.clone(), from_start)?;
            if let Some(before) = upstream.take() {
                stage = stage.with_upstream(0, before);
            }
            if let Some(join) = joined.take() {
                stage = self.with_join(stage, join, from_beginning)?;
            }
            (source, upstream) = (rows, Some(stage));
        }
        let sources = match &planned.join {
            Some(join) => vec![join.left.name.clone(), join.right.name.clone()],
            None => vec![planned.source.name.clone()],
        };
        let sink = self.sink_for(&planned, sink_def)?;
        let id_for_list = id.clone();
        let mut pipeline = Pipeline::new(
            &self.log,
            id,
            source,
            std::mem::take(&mut planned.operators),
            Some(sink),
            // A repartition topic holds only this query's rows.
            from_beginning || upstream.is_some(),
            state,
        )?
        .with_commit_interval(self.commit_interval()?);
        if let Some(stage) = upstream {
            pipeline = pipeline.with_upstream(0, stage);
        }
        if let Some(join) = joined {
            pipeline = self.with_join(pipeline, join, from_beginning)?;
        }
        self.next_query += 1;
        let (plan, metrics) = (pipeline.describe(), pipeline.metrics());
        let run = match &self.background {
            Some(rt) => QueryRun::Background(QueryTask::spawn(
                rt,
                pipeline,
                self.log.clone(),
                self.plog.clone(),
            )),
            None => QueryRun::Driven(Box::new(pipeline)),
        };
        self.queries.push(RunningQuery {
            id: id_for_list,
            run,
            sink: sink_def.name.clone(),
            sources,
            aggregate: is_aggregate,
            text: text.to_string(),
            plan,
            metrics,
        });
        Ok(())
    }
}

//! Starting a planned query: its sub-topologies and their tasks (see `eddy_engine::task`),
//! each task's operators (an aggregation's with its state), sources and sink, driven or on
//! the stream threads.
//!
//! A query is cut into sub-topologies at its repartition topics, in the order its records
//! flow: a rekeyed join side's stage (`Join-left`, `Join-right`), the stage before an
//! aggregation's repartition topic (`Aggregate-GroupBy`, with the join when there is one),
//! then the query's own. Each runs as one task per partition of its first input; the tasks
//! for partition `p` of every sub-topology are built together, from a plan of their own (the
//! planner's operators are not shared between tasks), each opening its stores in its own
//! scope. A query that cannot be split by partition runs as a single task over every
//! partition ([`QueryLayout::single`]).

use std::sync::Arc;

use eddy_engine::aggregate::{Aggregate, AggregateState, GroupState, HavingFilter, Regroup};
use eddy_engine::metrics::QueryMetrics;
use eddy_engine::state::{StateDb, StateScope};
use eddy_engine::{
    Operator, Pipeline, Sink, Source, StageProgress, TaskId, TimestampFormat, WindowedKey,
};

use super::repartition::{keyed_by, rekeyed_sides, same_key_bytes, Rekey};
use super::{RunningQuery, Session, TaskRun};
use crate::catalog::SourceDef;
use crate::error::{invalid, Result, SqlError};
use crate::join::JoinShape;
use crate::planner::PlannedSelect;
use crate::with_clause::codecs;

/// A sub-topology that writes a repartition topic for a later one.
pub(super) struct Stage {
    pub step: &'static str,
    pub subtopology: u32,
    /// Its tasks: the partitions of its first input.
    pub tasks: u32,
    pub progress: Arc<StageProgress>,
}

/// How a query is split into sub-topologies and tasks.
pub(super) struct QueryLayout {
    /// One task over every partition, for every sub-topology.
    pub single: bool,
    pub stages: Vec<Stage>,
    /// The query's own sub-topology (the last) and its tasks.
    pub own: (u32, u32),
    /// For a rekeyed join side co-partitioned with the other: the other side's key codec,
    /// which its repartition topic's keys are written with, by step.
    pub rekey_codecs: Vec<(&'static str, eddy_engine::Codec)>,
}

impl QueryLayout {
    pub(super) fn stage(&self, step: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.step == step)
    }

    pub(super) fn rekey_codec(&self, step: &str) -> Option<&eddy_engine::Codec> {
        self.rekey_codecs
            .iter()
            .find(|(s, _)| *s == step)
            .map(|(_, c)| c)
    }
}

/// What the tasks for one partition (or the single task) are built with.
pub(super) struct TaskBuild<'a> {
    /// The partition (`None`: a single task over every partition).
    pub partition: Option<u32>,
    pub layout: &'a QueryLayout,
    pub metrics: Arc<QueryMetrics>,
}

impl TaskBuild<'_> {
    /// Whether a sub-topology of `tasks` tasks has one for this build's partition.
    pub(super) fn builds(&self, tasks: u32) -> bool {
        self.partition.is_none_or(|p| p < tasks)
    }

    pub(super) fn task(&self, subtopology: u32) -> TaskId {
        TaskId::new(subtopology, self.partition)
    }

    /// The stores of `owner`'s task in a sub-topology of `tasks` tasks.
    pub(super) fn scope(
        &self,
        db: &StateDb,
        log: &eddy_log::Log,
        owner: &str,
        tasks: u32,
    ) -> StateScope {
        let scope = StateScope::new(db, log, owner);
        match self.partition {
            Some(p) => scope.for_task(p, tasks),
            None => scope,
        }
    }
}

/// The position under which a query records that it keeps its state per task: one from before
/// tasks (without it) keeps running as the single task it was.
const LAYOUT: &str = "layout/tasks";

impl Session {
    /// The operators of a planned query after its inputs' own (a join's). An aggregation keeps
    /// its state in `scope`, as the stores `aggregate` and `having`, or in memory without one
    /// (a push query).
    pub(super) fn operators_of(
        &mut self,
        planned: &mut PlannedSelect,
        scope: Option<&StateScope>,
    ) -> Result<Vec<Box<dyn Operator>>> {
        if let Some(w) = planned.table_where.take() {
            let passing = match scope {
                Some(scope) => GroupState::open(scope, "where", self.cache_entries(scope)?)?,
                None => GroupState::in_memory(),
            };
            let filter = HavingFilter::new(w.predicate, w.schema, w.key_columns, passing)?;
            planned.operators.insert(0, Box::new(filter));
        }
        let Some(agg) = planned.aggregate.take() else {
            return Ok(std::mem::take(&mut planned.operators));
        };
        let agg_state = match scope {
            Some(scope) => {
                AggregateState::persistent(scope, "aggregate", self.cache_entries(scope)?)?
            }
            None => AggregateState::in_memory(),
        };
        let mut ops: Vec<Box<dyn Operator>> = agg.before;
        ops.push(Box::new(Aggregate::new(agg.spec, agg_state)?));
        if let Some((predicate, schema, keys)) = agg.having {
            let passing = match scope {
                Some(scope) => GroupState::open(scope, "having", self.cache_entries(scope)?)?,
                None => GroupState::in_memory(),
            };
            ops.push(Box::new(HavingFilter::new(
                predicate, schema, keys, passing,
            )?));
        }
        ops.extend(agg.after);
        Ok(ops)
    }

    /// The source a planned query reads: a join's left side, or its one source.
    pub(super) fn source_of(&self, planned: &PlannedSelect) -> Result<Source> {
        match &planned.join {
            Some(join) => self.source_for(&join.left),
            None => self.source_for(&planned.source),
        }
    }

    /// The sink of a planned query that writes `sink_def`.
    pub(super) fn sink_for(&self, planned: &PlannedSelect, sink_def: &SourceDef) -> Result<Sink> {
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

    fn partitions_of(&self, def: &SourceDef) -> Result<u32> {
        Ok(self.log.topic(&def.topic)?.partition_count())
    }

    /// How query `id` is split into sub-topologies and tasks (see the module docs).
    fn layout_of(
        &mut self,
        id: &str,
        planned: &PlannedSelect,
        stateful: bool,
    ) -> Result<QueryLayout> {
        let source_parts = self.partitions_of(match &planned.join {
            Some(j) => &j.left,
            None => &planned.source,
        })?;
        let mut single = stateful && self.is_legacy(id)?;
        let mut rekey_codecs = Vec::new();
        let mut stages = Vec::new();
        let mut stage = |step: &'static str, tasks: u32| {
            stages.push(Stage {
                step,
                subtopology: stages.len() as u32,
                tasks,
                progress: StageProgress::new(),
            });
        };
        // The partitions of the first input of the sub-topology with the join, or of the query.
        let mut first = source_parts;
        if let Some(join) = &planned.join {
            let (left, right) = (
                self.partitions_of(&join.left)?,
                self.partitions_of(&join.right)?,
            );
            let (left_rekeyed, right_rekeyed) = match stateful {
                true => rekeyed_sides(join),
                false => (false, false),
            };
            if left_rekeyed {
                stage("Join-left", left);
                first = right;
            }
            if right_rekeyed {
                stage("Join-right", right);
            }
            // Task `p` of the join must find every match in partition `p` of both inputs:
            // the sides' keys must be written alike (a rekeyed side's are written as the other
            // side's are), else the join runs as one task over every partition.
            let (left_codec, right_codec) = (codecs(&join.left)?.0, codecs(&join.right)?.0);
            let windowed = join.left.window.is_some() || join.right.window.is_some();
            let alike = same_key_bytes(&left_codec, &right_codec) && !windowed;
            let mut rekey_as = |step: &'static str,
                                side: &SourceDef,
                                keys: &[sqlparser::ast::Expr],
                                other: &eddy_engine::Codec|
             -> Result<bool> {
                let types = self.key_types(side, keys)?;
                let fits = !windowed
                    && types.len() == other.fields.len()
                    && types
                        .iter()
                        .zip(&other.fields)
                        .all(|(t, f)| t == f.data_type());
                if fits {
                    rekey_codecs.push((step, other.clone()));
                }
                Ok(fits)
            };
            let co_partitioned = match &join.shape {
                // Its tables are not co-partitioned: a foreign key may point anywhere.
                JoinShape::ForeignKey { .. } => false,
                // ksqlDB's own suite joins tables of different partition counts.
                JoinShape::TableTable { .. } => left == right && alike,
                JoinShape::StreamTable { stream_key, .. } => match left_rekeyed {
                    true => rekey_as(
                        "Join-left",
                        &join.left,
                        std::slice::from_ref(stream_key.as_ref()),
                        &right_codec,
                    )?,
                    false => left == right && alike,
                },
                JoinShape::StreamStream {
                    left_key,
                    right_key,
                    ..
                } => match (left_rekeyed, right_rekeyed) {
                    (true, true) => true,
                    (true, false) => rekey_as("Join-left", &join.left, left_key, &right_codec)?,
                    (false, true) => {
                        // A rekeyed right side takes the left side's partitions.
                        let right_topic = match keyed_by(&join.left, left_key) {
                            true => left,
                            false => right,
                        };
                        right_topic == first
                            && rekey_as("Join-right", &join.right, right_key, &left_codec)?
                    }
                    (false, false) => left == right && alike,
                },
            };
            single |= !co_partitioned;
        }
        if planned.aggregate.as_ref().is_some_and(|a| a.repartition) && stateful {
            stage("Aggregate-GroupBy", first);
            first = source_parts;
        }
        // A query whose state is per task must find it where it left it.
        if single && stateful && self.has_layout_marker(id)? {
            return invalid(format!(
                "Query {id} keeps its state per partition, but its sources can no longer be split by partition (their partitions or key formats changed): terminate it and create it again"
            ));
        }
        let own = (stages.len() as u32, first);
        Ok(QueryLayout {
            single,
            stages,
            own,
            rekey_codecs,
        })
    }

    /// Records that query `id` keeps its state per task (see [`Session::is_legacy`]).
    pub(super) fn mark_layout(&mut self, id: &str) -> Result<()> {
        let db = self.state_db()?;
        let mut marker = eddy_engine::state::Commit::new();
        marker.set_offset(id, LAYOUT, 2);
        db.commit(marker).map_err(eddy_engine::EngineError::from)?;
        Ok(())
    }

    /// Whether query `id` recorded that it keeps its state per task.
    fn has_layout_marker(&mut self, id: &str) -> Result<bool> {
        let db = self.state_db()?;
        let marked = db
            .offset(id, LAYOUT)
            .map_err(eddy_engine::EngineError::from)?;
        Ok(marked.is_some())
    }

    /// Whether query `id` has state from before tasks (committed positions, no layout
    /// marker): it then runs as the single task it was, with the stores it has.
    pub(super) fn is_legacy(&mut self, id: &str) -> Result<bool> {
        if self.state.is_none() && !self.log.dir().join("state").exists() {
            return Ok(false);
        }
        let db = self.state_db()?;
        let marked = db
            .offset(id, LAYOUT)
            .map_err(eddy_engine::EngineError::from)?;
        let has_state = db.has_owner(id).map_err(eddy_engine::EngineError::from)?;
        Ok(marked.is_none() && has_state)
    }

    /// What an aggregation that ksqlDB repartitions does before its repartition topic (see
    /// [`super::repartition`]): the filter and pre-projection, and over a table a
    /// [`Regroup`], which keeps each key's row so that a change becomes a retraction from its
    /// old group and an addition to its new one, with its state under the first stage's
    /// owner; the aggregation then applies those changes.
    fn aggregate_split(
        &self,
        id: &str,
        planned: &mut PlannedSelect,
        db: &StateDb,
        build: &TaskBuild<'_>,
    ) -> Result<Option<Rekey>> {
        let partitions = self.source_of(planned)?.topic.partition_count();
        let Some(agg) = planned.aggregate.as_mut().filter(|a| a.repartition) else {
            return Ok(None);
        };
        let step = "Aggregate-GroupBy";
        let tasks = build.layout.stage(step).map_or(1, |s| s.tasks);
        let groups = agg.spec.group_fields.len();
        let mut operators = std::mem::take(&mut agg.before);
        if let Some(key_columns) = agg.spec.table_key.take() {
            let input = operators
                .last()
                .expect("an aggregation pre-projects")
                .output_schema();
            let owner = super::repartition::repartition_owner(id, step);
            let scope = build.scope(db, &self.log, &owner, tasks);
            let rows = GroupState::open(&scope, "regroup-rows", self.cache_entries(&scope)?)?;
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
            key_codec: None,
        }))
    }

    /// Starts query `id`, `planned`, writing `sink_def`; `plan` plans it again for each
    /// further partition (each task has operators of its own).
    pub(super) fn start_query(
        &mut self,
        id: String,
        planned: PlannedSelect,
        plan: &dyn Fn(&Session) -> Result<PlannedSelect>,
        sink_def: &SourceDef,
        text: &str,
    ) -> Result<()> {
        let is_aggregate = planned.aggregate.is_some();
        // A stream-stream join buffers its sides, other joins keep their tables' rows:
        // stateful as an aggregation is. A join with a side that is repartitioned is
        // exactly-once, as its stages are.
        let stateful = is_aggregate || planned.join.is_some() || planned.table_where.is_some();
        let layout = self.layout_of(&id, &planned, stateful)?;
        // Under exactly_once_v2 a stateless query commits as a stateful one does: its output in
        // transactions, its input positions with them in the state database.
        let state = match stateful || self.stateless_exactly_once()? {
            true => Some(self.state_db()?),
            false => None,
        };
        if state.is_some() && !layout.single {
            self.mark_layout(&id)?;
        }
        let sources = match &planned.join {
            Some(join) => vec![join.left.name.clone(), join.right.name.clone()],
            None => vec![planned.source.name.clone()],
        };
        let metrics = Arc::new(QueryMetrics::new());
        let partitions: Vec<Option<u32>> = match layout.single {
            true => vec![None],
            false => {
                let most = layout.stages.iter().map(|s| s.tasks).chain([layout.own.1]);
                (0..most.max().unwrap_or(1)).map(Some).collect()
            }
        };
        let mut tasks = Vec::new();
        let mut first = Some(planned);
        for partition in partitions {
            let planned = match first.take() {
                Some(p) => p,
                None => plan(self)?,
            };
            let build = TaskBuild {
                partition,
                layout: &layout,
                metrics: metrics.clone(),
            };
            tasks.extend(self.build_tasks(&id, planned, sink_def, state.as_ref(), &build)?);
        }
        tasks.sort_by_key(Pipeline::task);
        let plan_lines = describe_subtopologies(&tasks);
        self.next_query += 1;
        let tasks = tasks
            .into_iter()
            .map(|pipeline| TaskRun::new(&id, pipeline, self.runtime.as_ref()))
            .collect();
        self.queries.push(RunningQuery {
            id,
            tasks,
            sink: sink_def.name.clone(),
            sources,
            aggregate: is_aggregate,
            text: text.to_string(),
            plan: plan_lines,
            metrics,
        });
        Ok(())
    }

    /// The tasks of query `id` for one partition (see [`TaskBuild`]), one per sub-topology
    /// that has a task for it.
    fn build_tasks(
        &mut self,
        id: &str,
        mut planned: PlannedSelect,
        sink_def: &SourceDef,
        state: Option<&StateDb>,
        build: &TaskBuild<'_>,
    ) -> Result<Vec<Pipeline>> {
        let layout = build.layout;
        let from_beginning = self.reads_from_beginning();
        let mut built = Vec::new();
        let mut joined = self.join_inputs(&planned, id, state, from_beginning, Some(build))?;
        built.append(&mut joined.stages);
        let split = match state {
            Some(db) => self.aggregate_split(id, &mut planned, db, build)?,
            None => None,
        };
        let (own_subtopology, own_tasks) = layout.own;
        let scope = state.map(|db| build.scope(db, &self.log, id, own_tasks));
        let own_builds = build.builds(own_tasks);
        planned.operators = match own_builds {
            true => self.operators_of(&mut planned, scope.as_ref())?,
            false => Vec::new(),
        };
        let mut source = self.source_of(&planned)?;
        let mut fed_by = None;
        if let Some((rows, stage)) = joined.first_upstream.take() {
            (source, fed_by) = (rows, Some(stage));
        }
        let mut joined = Some(joined);
        if let (Some(rekey), Some(db)) = (split, state) {
            // The filter and pre-projection write the repartition topic, the aggregation reads
            // it; after a join, the join itself is part of the first stage.
            let stage = layout.stage(rekey.step).expect("laid out");
            let from_start = from_beginning || fed_by.is_some();
            let (rows, pipeline) =
                self.repartition(id, source, rekey, db.clone(), from_start, build)?;
            if let Some(mut pipeline) = pipeline {
                if let Some(before) = fed_by.take() {
                    pipeline = pipeline.fed_by(0, before);
                }
                if let Some(join) = joined.take() {
                    pipeline = self.with_join(pipeline, join, from_beginning)?;
                }
                built.push(pipeline.feeding(stage.progress.clone(), id));
            }
            (source, fed_by) = (rows, Some(stage.progress.clone()));
        }
        if !own_builds {
            return Ok(built);
        }
        let sink = self.sink_for(&planned, sink_def)?;
        let mut pipeline = Pipeline::new(
            &self.log,
            id.to_string(),
            source,
            std::mem::take(&mut planned.operators),
            Some(sink),
            // A repartition topic holds only this query's rows.
            from_beginning || fed_by.is_some(),
            state.cloned(),
        )?
        .in_task(build.task(own_subtopology), build.metrics.clone())
        .with_commit_interval(self.commit_interval()?);
        if let Some(stage) = fed_by {
            pipeline = pipeline.fed_by(0, stage);
        }
        if let Some(join) = joined {
            pipeline = self.with_join(pipeline, join, from_beginning)?;
        }
        built.push(pipeline);
        Ok(built)
    }
}

/// EXPLAIN's plan of a query's tasks: each sub-topology's graph once, under its name.
fn describe_subtopologies(tasks: &[Pipeline]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut last = None;
    for task in tasks {
        let sub = task.task().subtopology;
        if last == Some(sub) {
            continue;
        }
        last = Some(sub);
        let count = tasks.iter().filter(|t| t.task().subtopology == sub).count();
        let plural = if count == 1 { "" } else { "s" };
        lines.push(format!(
            "{}{sub} ({count} task{plural})",
            super::explain::SUBTOPOLOGY
        ));
        lines.extend(task.describe());
    }
    lines
}

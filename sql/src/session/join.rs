//! The engine side of a planned join (see [`crate::join`]): the operators that make the
//! combined rows, each join keeping its own copy of the tables it reads.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use eddy_engine::fk_join::{FkTables, ForeignKeyJoin};
use eddy_engine::lookup_join::StreamTableJoin;
use eddy_engine::staged_store::StagedStore;
use eddy_engine::state::{StateDb, StateScope};
use eddy_engine::stream_join::{JoinSide, JoinStores, StreamJoinState, StreamStreamJoin};
use eddy_engine::table_join::TableTableJoin;
use eddy_engine::table_rows::{TableRows, TableSide};
use eddy_engine::{Operator, Pipeline, Source, StageProgress};

use super::repartition::keyed_by;
use super::start::TaskBuild;
use super::Session;
use crate::ast::SourceKind;
use crate::catalog::{Column, SourceDef};
use crate::error::{invalid, unsupported, Missing, Result};
use crate::join::{JoinShape, PlannedJoin};
use crate::planner::PlannedSelect;

/// What a join adds to a query's pipeline: operators for its first input (the left side) and,
/// for a table-table join, a second input (the right side's changes). A stream side whose
/// join expressions are not its key is read from a repartition topic, written by a
/// sub-topology of its own (see [`super::repartition`]), whose task for this partition, if it
/// has one, is in `stages`.
#[derive(Default)]
pub(super) struct JoinInputs {
    first: Vec<Box<dyn Operator>>,
    second: Option<(Source, Vec<Box<dyn Operator>>)>,
    /// For the first input: the repartition topic's source and the progress of the
    /// sub-topology that writes it.
    pub(super) first_upstream: Option<(Source, Arc<StageProgress>)>,
    second_upstream: Option<Arc<StageProgress>>,
    /// The tasks of the rekeyed sides' sub-topologies for this partition.
    pub(super) stages: Vec<Pipeline>,
    /// The inputs that are tables a join keeps its own copy of, read from their start.
    tables: Vec<usize>,
}

/// A join side read through a repartition topic: the topic's source, the task of the
/// sub-topology that writes it for this partition (if it has one), and its progress.
struct Rekeyed {
    rows: Source,
    stage: Option<Pipeline>,
    progress: Arc<StageProgress>,
}

fn arrow_types(columns: &[Column]) -> Vec<DataType> {
    columns.iter().map(|c| c.ty.to_arrow()).collect()
}

/// A table join's copy of a table's rows: in the task's `scope`, or in memory without one (a
/// push query).
fn table_copy(scope: Option<&StateScope>, name: &str, table: &SourceDef) -> Result<TableRows> {
    rows_copy(scope, name, &arrow_types(&table.value_columns))
}

fn rows_copy(scope: Option<&StateScope>, name: &str, types: &[DataType]) -> Result<TableRows> {
    let store = match scope {
        Some(scope) => StagedStore::open(scope, name)?,
        None => StagedStore::in_memory(),
    };
    Ok(TableRows::new(store, types))
}

/// The columns a table-table join keeps of each row of `table`: its values, then its header
/// columns (a row's header columns are those of the record that last wrote it, and the join's
/// output may select them). They follow one another in the source's batches too.
fn values_and_headers(table: &SourceDef) -> Vec<DataType> {
    let headers = table.header_columns.iter().map(|(c, _)| c);
    table
        .value_columns
        .iter()
        .chain(headers)
        .map(|c| c.ty.to_arrow())
        .collect()
}

impl Session {
    /// The operators and inputs a planned query's join needs (none without a join), for the
    /// task `build` makes. A stream-stream join keeps its buffers in `db` under the query's
    /// `id`, in the task's scope, or in memory without `db` (a push query, built as one task).
    pub(super) fn join_inputs(
        &mut self,
        planned: &PlannedSelect,
        id: &str,
        db: Option<&StateDb>,
        from_beginning: bool,
        build: Option<&TaskBuild<'_>>,
    ) -> Result<JoinInputs> {
        let Some(join) = &planned.join else {
            return Ok(JoinInputs::default());
        };
        // The sub-topology with the join: the one before an aggregation's repartition topic,
        // or the query's own.
        let join_tasks = build.map_or(1, |b| {
            b.layout
                .stage("Aggregate-GroupBy")
                .map_or(b.layout.own.1, |s| s.tasks)
        });
        let scope = match (db, build) {
            (Some(db), Some(build)) => Some(build.scope(db, &self.log, id, join_tasks)),
            _ => None,
        };
        let scope = scope.as_ref();
        let mut stages = Vec::new();
        let PlannedJoin {
            left,
            right,
            inner,
            shape,
        } = join;
        // A join's copy of a table is keyed by the table's key alone: a windowed table (an
        // aggregation's, say) would have its windows overwrite one another.
        let shape_reads_tables = !matches!(shape, JoinShape::StreamStream { .. });
        if let Some(table) = [left, right]
            .into_iter()
            .find(|s| shape_reads_tables && s.kind == SourceKind::Table && s.window.is_some())
        {
            let windowed = |s: &SourceDef| s.window.is_some();
            if !windowed(left) || !windowed(right) {
                return invalid("Can not join windowed source to non-windowed source.");
            }
            if matches!(shape, JoinShape::ForeignKey { .. }) {
                return invalid(
                    "Foreign-key table-table joins are not supported on windowed tables.",
                );
            }
            return Err(unsupported(
                Missing::Feature,
                format!("joins with the windowed table {}", table.name),
            ));
        }
        let combined = &planned.source;
        let fields = |cols: &[Column]| cols.iter().map(Column::field).collect::<Vec<_>>();
        let schema = eddy_engine::schema::source_schema(
            &fields(&combined.key_columns),
            &fields(&combined.value_columns),
            &[],
            combined.window.is_some(),
        );
        let left_schema = self.source_for(left)?.schema();
        match shape {
            JoinShape::StreamTable {
                stream_key,
                columns,
            } => {
                let keys = std::slice::from_ref(stream_key.as_ref());
                let first_upstream = match (db, build) {
                    (Some(db), Some(build)) if !keyed_by(left, keys) => {
                        let (rows, stage) = self.repartition_join_side(
                            id,
                            ("Join-left", self.log.topic(&right.topic)?.partition_count()),
                            (left, self.source_for(left)?),
                            keys,
                            db.clone(),
                            from_beginning,
                            build,
                        )?;
                        stages.extend(stage);
                        Some((
                            rows,
                            build
                                .layout
                                .stage("Join-left")
                                .expect("laid out")
                                .progress
                                .clone(),
                        ))
                    }
                    _ => None,
                };
                if build.is_some_and(|b| !b.builds(join_tasks)) {
                    return Ok(JoinInputs {
                        stages,
                        ..JoinInputs::default()
                    });
                }
                let key = self.stream_key_expr(left, stream_key)?;
                let table = table_copy(scope, "join-table-rows", right)?;
                let op = StreamTableJoin::new(
                    key,
                    right.key_columns[0].ty.to_arrow(),
                    table.clone(),
                    *inner,
                    columns.clone(),
                    &left_schema,
                    schema.clone(),
                )?;
                let table_source = self.source_for(right)?;
                let table_side = TableSide::new(
                    table,
                    right.value_columns.len(),
                    &table_source.schema(),
                    schema,
                )?;
                Ok(JoinInputs {
                    first: vec![Box::new(op)],
                    second: Some((table_source, vec![Box::new(table_side)])),
                    first_upstream,
                    stages,
                    tables: vec![1],
                    ..JoinInputs::default()
                })
            }
            JoinShape::StreamStream {
                windows,
                keep,
                left_key,
                right_key,
                key_types,
                buffered,
                buffered_types,
                output,
            } => {
                let mut right_source = self.source_for(right)?;
                let right_schema = right_source.schema();
                // A side that is rekeyed takes the other side's partitions (when both are, the
                // right side's), so that the two are co-partitioned.
                let partitions = |def: &SourceDef| -> Result<u32> {
                    Ok(self.log.topic(&def.topic)?.partition_count())
                };
                let right_partitions = match keyed_by(left, left_key) {
                    true => partitions(left)?,
                    false => partitions(right)?,
                };
                let sides = [
                    ("Join-left", partitions(right)?),
                    ("Join-right", right_partitions),
                ];
                let rekey = |side: &SourceDef,
                             step: (&'static str, u32),
                             keys: &[sqlparser::ast::Expr],
                             source|
                 -> Result<Option<Rekeyed>> {
                    match (db, build) {
                        (Some(db), Some(build)) if !keyed_by(side, keys) => {
                            let (rows, stage) = self.repartition_join_side(
                                id,
                                step,
                                (side, source),
                                keys,
                                db.clone(),
                                from_beginning,
                                build,
                            )?;
                            let progress = build
                                .layout
                                .stage(step.0)
                                .expect("laid out")
                                .progress
                                .clone();
                            Ok(Some(Rekeyed {
                                rows,
                                stage,
                                progress,
                            }))
                        }
                        _ => Ok(None),
                    }
                };
                let mut first_upstream = None;
                if let Some(side) = rekey(left, sides[0], left_key, self.source_for(left)?)? {
                    stages.extend(side.stage);
                    first_upstream = Some((side.rows, side.progress));
                }
                let mut second_upstream = None;
                if let Some(side) = rekey(right, sides[1], right_key, self.source_for(right)?)? {
                    stages.extend(side.stage);
                    (right_source, second_upstream) = (side.rows, Some(side.progress));
                }
                if build.is_some_and(|b| !b.builds(join_tasks)) {
                    return Ok(JoinInputs {
                        stages,
                        ..JoinInputs::default()
                    });
                }
                let stores = match scope {
                    Some(scope) => {
                        let open = |name: &str| StagedStore::open(scope, name);
                        JoinStores {
                            left: open("join-left")?,
                            right: open("join-right")?,
                            waiting: open("join-waiting")?,
                        }
                    }
                    None => JoinStores {
                        left: StagedStore::in_memory(),
                        right: StagedStore::in_memory(),
                        waiting: StagedStore::in_memory(),
                    },
                };
                let types = |t: &[crate::types::SqlType]| t.iter().map(|t| t.to_arrow()).collect();
                let state = StreamJoinState::new(
                    *windows,
                    *keep,
                    key_types.iter().map(|t| t.to_arrow()).collect(),
                    [types(&buffered_types[0]), types(&buffered_types[1])],
                    stores,
                )?;
                let keys = |side: &SourceDef, exprs: &[sqlparser::ast::Expr]| {
                    exprs
                        .iter()
                        .map(|e| self.stream_key_expr(side, e))
                        .collect::<Result<Vec<_>>>()
                };
                let left_op = StreamStreamJoin::new(
                    JoinSide::Left,
                    state.clone(),
                    keys(left, left_key)?,
                    buffered[0].clone(),
                    output.clone(),
                    &left_schema,
                    schema.clone(),
                )?;
                let right_op = StreamStreamJoin::new(
                    JoinSide::Right,
                    state,
                    keys(right, right_key)?,
                    buffered[1].clone(),
                    output.clone(),
                    &right_schema,
                    schema,
                )?;
                Ok(JoinInputs {
                    first: vec![Box::new(left_op)],
                    second: Some((right_source, vec![Box::new(right_op)])),
                    first_upstream,
                    second_upstream,
                    stages,
                    tables: Vec::new(),
                })
            }
            JoinShape::ForeignKey {
                foreign_key,
                columns,
            } => {
                let right_source = self.source_for(right)?;
                let right_schema = right_source.schema();
                if build.is_some_and(|b| !b.builds(join_tasks)) {
                    return Ok(JoinInputs::default());
                }
                let index = match scope {
                    Some(scope) => StagedStore::open(scope, "fk-index")?,
                    None => StagedStore::in_memory(),
                };
                let tables = std::sync::Arc::new(FkTables {
                    left: table_copy(scope, "fk-left", left)?,
                    left_key_types: arrow_types(&left.key_columns),
                    left_value_types: arrow_types(&left.value_columns),
                    right: table_copy(scope, "fk-right", right)?,
                    right_key_type: right.key_columns[0].ty.to_arrow(),
                    right_value_types: arrow_types(&right.value_columns),
                    index: std::sync::Arc::new(std::sync::Mutex::new(index)),
                });
                let left_op = ForeignKeyJoin::left(
                    *inner,
                    self.stream_key_expr(left, foreign_key)?,
                    tables.clone(),
                    columns.clone(),
                    &left_schema,
                    schema.clone(),
                )?;
                let right_op =
                    ForeignKeyJoin::right(*inner, tables, columns.clone(), &right_schema, schema)?;
                Ok(JoinInputs {
                    first: vec![Box::new(left_op)],
                    second: Some((right_source, vec![Box::new(right_op)])),
                    tables: vec![0, 1],
                    ..JoinInputs::default()
                })
            }
            JoinShape::TableTable {
                keep,
                left_columns,
                right_columns,
            } => {
                let right_source = self.source_for(right)?;
                let right_schema = right_source.schema();
                // A primary-key join: each side's key is its first column after the
                // pseudo-columns.
                let key = eddy_engine::schema::PSEUDO_COLUMNS;
                if build.is_some_and(|b| !b.builds(join_tasks)) {
                    return Ok(JoinInputs::default());
                }
                let (left_types, right_types) =
                    (values_and_headers(left), values_and_headers(right));
                let left_rows = rows_copy(scope, "join-left-rows", &left_types)?;
                let right_rows = rows_copy(scope, "join-right-rows", &right_types)?;
                let left_op = TableTableJoin::new(
                    true,
                    *keep,
                    key,
                    right.key_columns[0].ty.to_arrow(),
                    (left_rows.clone(), left_types.len()),
                    (right_rows.clone(), right_types.clone()),
                    left_columns.clone(),
                    &left_schema,
                    schema.clone(),
                )?;
                let right_op = TableTableJoin::new(
                    false,
                    *keep,
                    key,
                    left.key_columns[0].ty.to_arrow(),
                    (right_rows, right_types.len()),
                    (left_rows, left_types),
                    right_columns.clone(),
                    &right_schema,
                    schema,
                )?;
                Ok(JoinInputs {
                    first: vec![Box::new(left_op)],
                    second: Some((right_source, vec![Box::new(right_op)])),
                    tables: vec![0, 1],
                    ..JoinInputs::default()
                })
            }
        }
    }

    /// A stream-table join's key expression, planned over the stream's batches.
    pub(super) fn stream_key_expr(
        &self,
        stream: &SourceDef,
        key: &sqlparser::ast::Expr,
    ) -> Result<std::sync::Arc<dyn datafusion::physical_plan::PhysicalExpr>> {
        let mut e = key.clone();
        crate::rewrite::rewrite(&mut e);
        let state = self.df.state();
        let relation = crate::ast::Relation {
            name: stream.name.clone(),
            alias: None,
        };
        let plan = crate::planner::plan_over_source(
            &state,
            &[format!("{e} AS \"__JOIN_KEY\"")],
            stream,
            &relation,
            None,
        )?;
        let (exprs, input) = plan.projection;
        let first = exprs.into_iter().next().ok_or_else(|| {
            crate::error::SqlError::Invalid(format!("cannot plan the join key {key}"))
        })?;
        crate::planner::physical_expr(&state, first, &input)
    }

    /// `pipeline` with a join's inputs added.
    pub(super) fn with_join(
        &self,
        pipeline: Pipeline,
        inputs: JoinInputs,
        from_beginning: bool,
    ) -> Result<Pipeline> {
        let mut pipeline = pipeline.with_input_operators(inputs.first);
        if let Some((source, operators)) = inputs.second {
            // A repartition topic holds only this query's rows.
            let from_beginning = from_beginning || inputs.second_upstream.is_some();
            pipeline = pipeline.with_input(&self.log, source, operators, from_beginning)?;
        }
        if let Some(stage) = inputs.second_upstream {
            pipeline = pipeline.fed_by(1, stage);
        }
        if !inputs.tables.is_empty() {
            pipeline = pipeline.with_table_inputs(&inputs.tables)?;
        }
        Ok(pipeline)
    }
}

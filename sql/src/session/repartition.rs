//! Repartition topics: where ksqlDB rekeys records before a stateful step, so that records
//! with the same new key share a partition, Eddy does too: a stream aggregated by anything
//! but its key columns, every table's aggregation (its changes regrouped first, see
//! `eddy_engine::aggregate::Regroup`), every aggregation after a join (the join in the first
//! stage), and a join side whose join expressions are not its key columns.
//!
//! Such a query is two sub-topologies, each run as tasks of its own (`start.rs`): the first
//! reads the source (for an aggregation, also filters and pre-projects it) and writes each row
//! whole ([`Format::Rows`]) to `_eddy-<query>-<step>-repartition` (as many partitions as the
//! source, the partition chosen from the new key's bytes); the second reads that topic back
//! into the same rows, its task `p` partition `p`. Both are exactly-once (the first commits its
//! positions and its output's ends under the owner `<query>-<step>-repartition`), the second
//! reads only committed rows, and it drops the topic's segments once it has committed past
//! them. The topics and the first stages' state go with the query.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::physical_expr::expressions::Column as ColumnExpr;
use datafusion::physical_plan::PhysicalExpr;
use eddy_engine::state::StateDb;
use eddy_engine::{Codec, Format, Operator, Pipeline, Project, Sink, Source};
use eddy_log::TopicConfig;
use sqlparser::ast::Expr;

use super::start::TaskBuild;
use super::Session;
use crate::ast::{Relation, Select};
use crate::catalog::SourceDef;
use crate::error::{invalid, Result};
use crate::join::{JoinShape, PlannedJoin};
use crate::planner::PlannedSelect;

/// Each step ksqlDB may repartition for, by the name its topic carries.
pub(super) const STEPS: [&str; 3] = ["Aggregate-GroupBy", "Join-left", "Join-right"];

/// The repartition topic of query `id`'s `step`.
pub(super) fn repartition_topic(id: &str, step: &str) -> String {
    format!("_eddy-{id}-{step}-repartition")
}

/// Whom the first stage of query `id`'s `step` commits its positions as.
pub(super) fn repartition_owner(id: &str, step: &str) -> String {
    format!("{id}-{step}-repartition")
}

/// Whether `keys` (expressions over `side`'s own columns) are exactly `side`'s key columns,
/// in order: then its records are already partitioned by them.
pub(super) fn keyed_by(side: &SourceDef, keys: &[Expr]) -> bool {
    keys.len() == side.key_columns.len()
        && keys.iter().zip(&side.key_columns).all(
            |(e, k)| matches!(e, Expr::Identifier(id) if crate::parser::normalize(id) == k.name),
        )
}

/// Which sides of a planned join go through a repartition topic: (left, right).
pub(super) fn rekeyed_sides(join: &PlannedJoin) -> (bool, bool) {
    match &join.shape {
        JoinShape::StreamTable { stream_key, .. } => (
            !keyed_by(&join.left, std::slice::from_ref(stream_key.as_ref())),
            false,
        ),
        JoinShape::StreamStream {
            left_key,
            right_key,
            ..
        } => (
            !keyed_by(&join.left, left_key),
            !keyed_by(&join.right, right_key),
        ),
        JoinShape::TableTable { .. } | JoinShape::ForeignKey { .. } => (false, false),
    }
}

/// Whether two key codecs write equal keys as equal bytes, so that Kafka's partitioner puts
/// them in partitions of the same number: what makes two topics co-partitioned (task `p` of a
/// join then finds every match of its records in partition `p` of the other side).
pub(super) fn same_key_bytes(a: &Codec, b: &Codec) -> bool {
    a.format == b.format
        && a.wrap_single == b.wrap_single
        && a.schema_id == b.schema_id
        && a.fields.len() == b.fields.len()
        && a.fields
            .iter()
            .zip(&b.fields)
            .all(|(x, y)| x.data_type() == y.data_type())
}

/// Repartition topics are read as soon as they are written and purged once read: segments
/// small enough that what was consumed goes soon.
const SEGMENT_BYTES: u64 = 64 << 20;

/// What the first stage of a repartition does: `operators` over the source, whose output's
/// `keys` columns are the new key, `values` the row written (and read back), `rowtime` the
/// event time.
pub(super) struct Rekey {
    pub step: &'static str,
    /// The topic's partitions: the source's, or for a join side the other side's, so that
    /// the two are co-partitioned.
    pub partitions: u32,
    pub operators: Vec<Box<dyn Operator>>,
    pub keys: Vec<usize>,
    pub values: Vec<usize>,
    pub rowtime: usize,
    /// How the new key is written: like the other side's key, for a join side that must be
    /// co-partitioned with it (`None`: whole rows, read by this query alone).
    pub key_codec: Option<Codec>,
}

impl Session {
    /// ksqlDB's co-partitioning rule for joins with a stream side: both sides must have as
    /// many partitions, unless a side goes through a repartition topic, which then takes the
    /// other side's count, so that task `p` of the join reads partition `p` of each side.
    /// Table-table joins are not checked: ksqlDB's own suite joins tables of 4 and 1 partitions (`joins.json`,
    /// "table join pipeline"), its test driver never enforcing co-partitioning.
    pub(super) fn check_copartitioned(
        &self,
        select: &Select,
        planned: &PlannedSelect,
    ) -> Result<()> {
        let (Some(join), [second]) = (&planned.join, select.from.joins.as_slice()) else {
            return Ok(());
        };
        let tables = matches!(
            join.shape,
            JoinShape::ForeignKey { .. } | JoinShape::TableTable { .. }
        );
        if tables || rekeyed_sides(join) != (false, false) {
            return Ok(());
        }
        let side = |r: &Relation| -> Result<(String, u32)> {
            let name = r.alias.as_ref().unwrap_or(&r.name).to_string();
            let Some(def) = self.catalog.source(&r.name) else {
                return Ok((name, 0));
            };
            Ok((name, self.log.topic(&def.topic)?.partition_count()))
        };
        let ((l, lp), (r, rp)) = (side(&select.from.source)?, side(&second.relation)?);
        if lp == rp || lp == 0 || rp == 0 {
            return Ok(());
        }
        invalid(format!("Can't join `{l}` with `{r}` since the number of partitions don't match. `{l}` partitions = {lp}; `{r}` partitions = {rp}. Please repartition either one so that the number of partitions match."))
    }

    /// The source the rest of query `id` reads its repartition topic for `rekey.step` with,
    /// and the task for `build`'s partition of the sub-topology that writes it from `source`
    /// (if it has one for that partition).
    pub(super) fn repartition(
        &self,
        id: &str,
        source: Source,
        rekey: Rekey,
        db: StateDb,
        from_beginning: bool,
        build: &TaskBuild<'_>,
    ) -> Result<(Source, Option<Pipeline>)> {
        let schema = match rekey.operators.last() {
            Some(op) => op.output_schema(),
            None => source.schema(),
        };
        let field = |i: &usize| schema.field(*i).clone();
        let key_fields: Vec<Field> = rekey.keys.iter().map(field).collect();
        let value_fields: Vec<Field> = rekey.values.iter().map(field).collect();
        let name = repartition_topic(id, rekey.step);
        let topic = match self.log.topic(&name) {
            Ok(topic) => topic,
            Err(_) => self.log.create_topic(
                &name,
                TopicConfig {
                    partitions: rekey.partitions,
                    segment_bytes: SEGMENT_BYTES,
                    ..TopicConfig::default()
                },
            )?,
        };
        let key = match rekey.key_codec {
            Some(codec) => codec,
            None => Codec::new(Format::Rows, key_fields, false)?,
        };
        let sink = Sink {
            topic: topic.clone(),
            key,
            value: Codec::new(Format::Rows, value_fields.clone(), false)?,
            key_columns: rekey.keys,
            value_columns: rekey.values,
            timestamp_column: rekey.rowtime,
            timestamp_format: None,
            null_value_column: None,
            null_key_if_all_null: false,
            headers_column: None,
            window: None,
        };
        let rows = Source::rows(topic, Arc::new(Schema::new(value_fields)))?;
        let stage = build.layout.stage(rekey.step).expect("laid out");
        if !build.builds(stage.tasks) {
            return Ok((rows, None));
        }
        let upstream = Pipeline::new(
            &self.log,
            repartition_owner(id, rekey.step),
            source,
            rekey.operators,
            Some(sink),
            from_beginning,
            Some(db),
        )?
        .in_task(build.task(stage.subtopology), build.metrics.clone())
        .with_commit_interval(self.commit_interval()?);
        Ok((rows, Some(upstream)))
    }

    /// The types of `keys`, expressions over `side`'s columns.
    pub(super) fn key_types(
        &self,
        side: &SourceDef,
        keys: &[Expr],
    ) -> Result<Vec<datafusion::arrow::datatypes::DataType>> {
        let schema = self.source_for(side)?.schema();
        keys.iter()
            .map(|k| Ok(self.stream_key_expr(side, k)?.data_type(&schema)?))
            .collect()
    }

    /// The first stage for a join side `side` (read by `source`) whose join expressions
    /// `keys` are not its key: it writes the side's rows as they are, keyed by `keys`. Its
    /// task for `build`'s partition, if it has one, comes ready to run.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn repartition_join_side(
        &self,
        id: &str,
        (step, partitions): (&'static str, u32),
        (side, source): (&SourceDef, Source),
        keys: &[Expr],
        db: StateDb,
        from_beginning: bool,
        build: &TaskBuild<'_>,
    ) -> Result<(Source, Option<Pipeline>)> {
        let schema = source.schema();
        let n = schema.fields().len();
        let mut exprs: Vec<Arc<dyn PhysicalExpr>> = (0..n)
            .map(|i| Arc::new(ColumnExpr::new(schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (i, key) in keys.iter().enumerate() {
            let expr = self.stream_key_expr(side, key)?;
            let ty = expr.data_type(&schema)?;
            fields.push(Field::new(format!("__REPARTITION_KEY{i}"), ty, true));
            exprs.push(expr);
        }
        let project = Project::new(exprs, Arc::new(Schema::new(fields)));
        let rowtime = schema.index_of(eddy_engine::schema::ROWTIME)?;
        let rekey = Rekey {
            step,
            partitions,
            operators: vec![Box::new(project)],
            keys: (n..n + keys.len()).collect(),
            values: (0..n).collect(),
            rowtime,
            key_codec: build.layout.rekey_codec(step).cloned(),
        };
        let (rows, task) = self.repartition(id, source, rekey, db, from_beginning, build)?;
        let progress = build.layout.stage(step).expect("laid out").progress.clone();
        Ok((rows, task.map(|t| t.feeding(progress, id))))
    }
}

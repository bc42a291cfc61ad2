//! Repartition topics: where ksqlDB rekeys records before a stateful step, so that records
//! with the same new key share a partition, Eddy does too: a stream aggregated by anything
//! but its key columns, and a join side whose join expressions are not its key columns.
//!
//! Such a query runs its repartitioned input as two stages on one task
//! ([`Pipeline::with_upstream`]): the first reads the source (for an aggregation, also filters
//! and pre-projects it) and writes each row whole ([`Format::Rows`]) to
//! `_eddy-<query>-<step>-repartition` (as many partitions as the source, the partition chosen
//! from the new key's bytes); the second reads that topic back into the same rows. Both stages
//! are exactly-once (the first commits its positions and the topic's ends under the owner
//! `<query>-<step>-repartition`), the second reads only committed rows, and it drops the
//! topic's segments once it has committed past them. The topics and the first stages' state go
//! with the query.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::physical_expr::expressions::Column as ColumnExpr;
use datafusion::physical_plan::PhysicalExpr;
use eddy_engine::state::StateDb;
use eddy_engine::{Codec, Format, Operator, Pipeline, Project, Sink, Source};
use eddy_log::TopicConfig;
use sqlparser::ast::Expr;

use super::Session;
use crate::catalog::SourceDef;
use crate::error::Result;

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

/// Repartition topics are read as soon as they are written and purged once read: segments
/// small enough that what was consumed goes soon.
const SEGMENT_BYTES: u64 = 64 << 20;

/// What the first stage of a repartition does: `operators` over the source, whose output's
/// `keys` columns are the new key, `values` the row written (and read back), `rowtime` the
/// event time.
pub(super) struct Rekey {
    pub step: &'static str,
    pub operators: Vec<Box<dyn Operator>>,
    pub keys: Vec<usize>,
    pub values: Vec<usize>,
    pub rowtime: usize,
}

impl Session {
    /// The stage that writes query `id`'s repartition topic for `rekey.step` from `source`,
    /// and the source the rest of the query then reads.
    pub(super) fn repartition(
        &self,
        id: &str,
        source: Source,
        rekey: Rekey,
        db: StateDb,
        from_beginning: bool,
    ) -> Result<(Source, Pipeline)> {
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
                    partitions: source.topic.partition_count(),
                    segment_bytes: SEGMENT_BYTES,
                    ..TopicConfig::default()
                },
            )?,
        };
        let sink = Sink {
            topic: topic.clone(),
            key: Codec::new(Format::Rows, key_fields, false)?,
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
        let upstream = Pipeline::new(
            &self.log,
            repartition_owner(id, rekey.step),
            source,
            rekey.operators,
            Some(sink),
            from_beginning,
            Some(db),
        )?
        .with_commit_interval(self.commit_interval()?);
        let rows = Source::rows(topic, Arc::new(Schema::new(value_fields)))?;
        Ok((rows, upstream))
    }

    /// The first stage for a join side `side` (read by `source`) whose join expressions
    /// `keys` are not its key: it writes the side's rows as they are, keyed by `keys`.
    pub(super) fn repartition_join_side(
        &self,
        id: &str,
        step: &'static str,
        (side, source): (&SourceDef, Source),
        keys: &[Expr],
        db: StateDb,
        from_beginning: bool,
    ) -> Result<(Source, Pipeline)> {
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
            operators: vec![Box::new(project)],
            keys: (n..n + keys.len()).collect(),
            values: (0..n).collect(),
            rowtime,
        };
        self.repartition(id, source, rekey, db, from_beginning)
    }
}

//! Repartition topics: a stream aggregated by anything but its key goes through an internal
//! topic keyed by the groups, as in ksqlDB, so that each group's records are in one partition.
//!
//! The query runs as two stages on one task ([`Pipeline::with_upstream`]): the first reads the
//! source, filters and pre-projects it, and writes each row whole ([`Format::Rows`]) to
//! `_eddy-<query>-Aggregate-GroupBy-repartition` (as many partitions as the source, the
//! partition chosen from the groups' bytes); the second reads that topic into the same rows
//! and aggregates them. Both stages are exactly-once (the first commits its positions and the
//! topic's ends under the owner `<query>-repartition`), the second reads only committed rows,
//! and it drops the topic's segments once it has committed past them. The topic and the
//! first stage's state go with the query.

use eddy_engine::state::StateDb;
use eddy_engine::{Codec, Format, Operator, Pipeline, Sink, Source};
use eddy_log::TopicConfig;

use super::Session;
use crate::error::Result;

/// The repartition topic of query `id`'s aggregation.
pub(super) fn repartition_topic(id: &str) -> String {
    format!("_eddy-{id}-Aggregate-GroupBy-repartition")
}

/// Whom the first stage of query `id` commits its positions as.
pub(super) fn repartition_owner(id: &str) -> String {
    format!("{id}-repartition")
}

/// Repartition topics are read as soon as they are written and purged once read: segments
/// small enough that what was consumed goes soon.
const SEGMENT_BYTES: u64 = 64 << 20;

impl Session {
    /// The stage that writes query `id`'s repartition topic from `source` through `before`
    /// (the filter and the pre-projection, whose first `groups` columns are the groups and
    /// whose `rowtime` column is the event time), and the source the aggregation then reads.
    pub(super) fn repartition(
        &self,
        id: &str,
        source: Source,
        before: Vec<Box<dyn Operator>>,
        (groups, rowtime): (usize, usize),
        db: StateDb,
        from_beginning: bool,
    ) -> Result<(Source, Pipeline)> {
        let schema = before
            .last()
            .expect("an aggregation has a pre-projection")
            .output_schema();
        let fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let name = repartition_topic(id);
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
            key: Codec::new(Format::Rows, fields[..groups].to_vec(), false)?,
            value: Codec::new(Format::Rows, fields.clone(), false)?,
            key_columns: (0..groups).collect(),
            value_columns: (0..fields.len()).collect(),
            timestamp_column: rowtime,
            timestamp_format: None,
            null_value_column: None,
            null_key_if_all_null: false,
            headers_column: None,
            window: None,
        };
        let upstream = Pipeline::new(
            &self.log,
            repartition_owner(id),
            source,
            before,
            Some(sink),
            from_beginning,
            Some(db),
        )?
        .with_commit_interval(self.commit_interval()?);
        Ok((Source::rows(topic, schema)?, upstream))
    }
}

//! Lag: how far each persistent query is behind the end of its source, per partition, from
//! the positions it has committed (so the output and state reflect everything before them).

use std::sync::Arc;

use eddy_engine::metrics::QueryMetrics;
use eddy_log::Partition;

use super::Session;

/// The partitions of the queries' sources and the queries' metrics, read anew on each call:
/// cheap to keep, and `Send`, so a thread other than the one driving the queries can watch.
pub struct LagProbe {
    parts: Vec<LagPart>,
}

struct LagPart {
    query: String,
    partition: Arc<Partition>,
    metrics: Arc<QueryMetrics>,
}

impl LagPart {
    fn lag(&self) -> u64 {
        let position = self.metrics.position(self.partition.id()).unwrap_or(0);
        self.partition.end_offset().saturating_sub(position)
    }
}

impl LagProbe {
    /// The records not yet processed, over every query and partition.
    pub fn total(&self) -> u64 {
        self.parts.iter().map(LagPart::lag).sum()
    }

    /// The part that watches `query` alone.
    pub fn of_query(mut self, query: &str) -> LagProbe {
        self.parts.retain(|p| p.query == query);
        self
    }
}

impl Session {
    /// How far each persistent query (and each table's materialization) is behind the end of
    /// its source: `(query, topic, partition, records not yet processed)`.
    pub fn lag(&self) -> Vec<(String, String, u32, u64)> {
        self.lag_probe()
            .parts
            .iter()
            .map(|part| {
                let p = part.partition.id();
                (
                    part.query.clone(),
                    part.partition.topic().to_string(),
                    p,
                    part.lag(),
                )
            })
            .collect()
    }

    /// What [`Session::lag`] reads, to be read again later, from another thread: a caller
    /// that drives the queries (`run_until_idle`) can watch their lag shrink meanwhile.
    pub fn lag_probe(&self) -> LagProbe {
        let queries = self
            .queries
            .iter()
            .map(|q| (&q.id, q.sources.first(), &q.metrics))
            .chain(
                self.materialized
                    .iter()
                    .map(|(table, (id, _, metrics))| (id, Some(table), metrics)),
            );
        let mut parts = Vec::new();
        for (id, source, metrics) in queries {
            let Some(def) = source.and_then(|s| self.catalog.source(s)) else {
                continue;
            };
            let Ok(topic) = self.log.topic(&def.topic) else {
                continue;
            };
            for partition in topic.partitions() {
                parts.push(LagPart {
                    query: id.clone(),
                    partition: partition.clone(),
                    metrics: metrics.clone(),
                });
            }
        }
        LagProbe { parts }
    }
}

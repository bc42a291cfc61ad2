//! Lag: how far each persistent query is behind the end of what it reads, per partition, from
//! the positions its tasks have committed (so the output and state reflect everything before
//! them): its sources, the tables its joins copy, and its own repartition topics, so that a
//! query with a lag of 0 has carried every record through all its sub-topologies.

use std::sync::Arc;

use eddy_engine::metrics::QueryMetrics;
use eddy_log::Partition;

use super::Session;

/// The partitions the queries read and the queries' metrics, read anew on each call: cheap to
/// keep, and `Send`, so a thread other than the one driving the queries can watch.
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
        let p = &self.partition;
        let position = self.metrics.position(p.topic(), p.id()).unwrap_or(0);
        p.end_offset().saturating_sub(position)
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
    /// each partition it reads: `(query, topic, partition, records not yet processed)`.
    pub fn lag(&self) -> Vec<(String, String, u32, u64)> {
        self.lag_probe()
            .parts
            .iter()
            .map(|part| {
                let p = &part.partition;
                (
                    part.query.clone(),
                    p.topic().to_string(),
                    p.id(),
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
            .map(|q| (&q.id, &q.metrics))
            .chain(self.materialized.values().map(|m| (&m.id, &m.metrics)));
        let mut parts = Vec::new();
        for (id, metrics) in queries {
            for (topic, p, _) in metrics.positions() {
                let Ok(partition) = self.log.partition(&topic, p) else {
                    continue;
                };
                parts.push(LagPart {
                    query: id.clone(),
                    partition,
                    metrics: metrics.clone(),
                });
            }
        }
        LagProbe { parts }
    }
}

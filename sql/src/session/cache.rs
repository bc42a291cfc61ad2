//! How many groups each state store of a query keeps decoded in memory.
//!
//! A store keeps the groups it used last decoded, so that updating one reads nothing from
//! RocksDB and decodes nothing; the others are read back when needed. That cache is most of
//! what a stateful query holds in memory besides RocksDB's own (measured: a 10-million-key
//! aggregation's process peaks near 600 MiB with 20,000 groups per task, 1,050 MiB with
//! 200,000, 2,840 MiB with a million). So it has a budget in bytes per query, as Kafka
//! Streams' record cache has (`statestore.cache.max.bytes`, which ksqlDB sets for each query as
//! `ksql.streams.cache.max.bytes.buffering`), shared by the query's tasks. Without the setting
//! a query gets half of `--state-memory-mb`.

use eddy_engine::state::StateScope;

use super::Session;
use crate::error::{invalid, Result};

/// The names the budget is set under: ksqlDB's, then Kafka Streams' old and new.
const CACHE_BYTES: [&str; 3] = [
    "ksql.streams.cache.max.bytes.buffering",
    "cache.max.bytes.buffering",
    "statestore.cache.max.bytes",
];

/// About what a decoded group costs (measured near 570 bytes for a windowed COUNT and SUM by
/// a STRING key: the key, the accumulators, the map's slot and the allocator's rounding).
const ENTRY_BYTES: usize = 512;

/// However small the budget, a store keeps this many: fewer makes every update a RocksDB read.
const MIN_ENTRIES: usize = 1_000;

impl Session {
    /// How many groups a store in `scope` keeps decoded: the query's budget over its tasks.
    pub(super) fn cache_entries(&self, scope: &StateScope) -> Result<usize> {
        let bytes = match CACHE_BYTES.iter().find_map(|k| self.property(k)) {
            None => self.state_options.memory_bytes / 2,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(bytes) => bytes,
                Err(_) => {
                    return invalid(format!(
                        "Invalid value {v} for configuration cache.max.bytes.buffering: Not a number of bytes"
                    ))
                }
            },
        };
        let tasks = scope.task().map_or(1, |t| t.partitions.max(1)) as usize;
        Ok((bytes / ENTRY_BYTES / tasks).max(MIN_ENTRIES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_by_the_tasks_and_has_a_floor() {
        let dir = tempfile::tempdir().unwrap();
        let log = eddy_log::Log::open(dir.path(), eddy_log::LogOptions::default()).unwrap();
        let mut session = Session::open(log.clone()).unwrap();
        let db =
            eddy_engine::state::StateDb::open(dir.path().join("s"), Default::default()).unwrap();
        let one = StateScope::new(&db, &log, "q");
        let four = StateScope::new(&db, &log, "q").for_task(0, 4);
        let default = session.state_options.memory_bytes / 2 / ENTRY_BYTES;
        assert_eq!(session.cache_entries(&one).unwrap(), default);
        assert_eq!(session.cache_entries(&four).unwrap(), default / 4);
        session.properties.insert(
            "ksql.streams.cache.max.bytes.buffering".into(),
            "10000000".into(),
        );
        assert_eq!(session.cache_entries(&four).unwrap(), 10_000_000 / 512 / 4);
        session
            .properties
            .insert("ksql.streams.cache.max.bytes.buffering".into(), "0".into());
        assert_eq!(session.cache_entries(&four).unwrap(), MIN_ENTRIES);
        session.properties.insert(
            "ksql.streams.cache.max.bytes.buffering".into(),
            "lots".into(),
        );
        assert!(session.cache_entries(&four).is_err());
    }
}

//! Changelogs: every change of a store, appended to a compacted topic of the log.
//!
//! The local RocksDB copy of a store is the one queries read; the changelog is its backup. A
//! commit records the changelog's end offset next to the state it describes (the store's
//! checkpoint). When a query starts, a store whose checkpoint is missing (its RocksDB was lost)
//! or behind its changelog is replayed from the changelog; a clean restart replays nothing.
//!
//! The topic is compacted by the log's cleaner, so a restore reads about one record per live
//! key, not the whole history. Its name is `_eddy-<owner>-<store>-changelog`, with a partition
//! per task of the query: the task that reads input partition `p` writes changelog partition
//! `p`, and only it (see [`crate::StateScope`]).

use std::sync::Arc;

use eddy_log::{Log, ReadLimits, Record, Topic, TopicConfig};

use crate::commit::Commit;
use crate::db::StateDb;
use crate::error::Result;
use crate::store::Store;

/// A store's changelog topic.
#[derive(Clone)]
pub struct Changelog {
    topic: Arc<Topic>,
    partition: u32,
    owner: String,
    store: Store,
}

/// The name of the changelog topic of the store `store_name` (`<owner>/<name>`, whatever
/// the task).
pub fn topic_name(store_name: &str) -> String {
    format!("_eddy-{}-changelog", store_name.replace('/', "-"))
}

impl Changelog {
    /// Partition `partition` of the changelog topic `name` (of `partitions` partitions,
    /// created if missing) of `store`, which belongs to `owner` (its query).
    pub fn open(
        log: &Log,
        owner: &str,
        store: Store,
        name: &str,
        partition: u32,
        partitions: u32,
    ) -> Result<Changelog> {
        let topic = match log.topic(name) {
            Ok(t) => t,
            Err(_) => {
                let mut config = TopicConfig::with_partitions(partitions);
                config.compact = true;
                log.create_topic(name, config)?
            }
        };
        // Fails, naming the topic, if it has fewer partitions than the query has tasks.
        topic.partition(partition)?;
        Ok(Changelog {
            topic,
            partition,
            owner: owner.to_string(),
            store,
        })
    }

    fn checkpoint_name(&self) -> String {
        format!("changelog/{}", self.store.name())
    }

    /// Appends `changes` (key, new value or `None` for a deletion) and stages them, with the
    /// new checkpoint, in `commit`. The appended records are durable in the log before the
    /// commit is applied, so a checkpoint never points past the changelog.
    pub fn write(
        &self,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        timestamp: i64,
        commit: &mut Commit,
    ) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        // The buffers move into the records, and the commit copies from those: one copy of
        // each change, not two.
        let records: Vec<Record> = changes
            .into_iter()
            .map(|(k, v)| Record {
                key: Some(k.into()),
                value: v.map(Into::into),
                timestamp,
                headers: Vec::new(),
            })
            .collect();
        let partition = self.topic.partition(self.partition)?;
        let info = partition.append(&records)?;
        for r in &records {
            let k = r.key.as_deref().unwrap_or_default();
            match &r.value {
                Some(v) => commit.put(&self.store, k, v),
                None => commit.delete(&self.store, k),
            }
        }
        commit.set_offset(&self.owner, &self.checkpoint_name(), info.next_offset());
        Ok(())
    }

    /// Drops the changelog's sealed segments whose records are all timestamped before `time`,
    /// for a store that has deleted every key those records could hold (a window buffer that
    /// expires by range, which the changelog does not log). Returns the segments dropped.
    pub fn expire_before(&self, time: i64) -> Result<usize> {
        Ok(self
            .topic
            .partition(self.partition)?
            .delete_older_than(time)?)
    }

    /// Makes the local store and the changelog agree, before the store is used.
    ///
    /// With a checkpoint, the local store is the truth: changelog records past the checkpoint
    /// were appended by a micro-batch that crashed before it committed, and are dropped (that
    /// input is processed again). Without one, the local store was lost, and the whole
    /// changelog is replayed into it. Either way the store leaves with a checkpoint, a new
    /// store's at its changelog's end: so the records of a first micro-batch that crashes
    /// before its commit are dropped on restart, not replayed as if the local copy were lost.
    /// Returns how many records were replayed.
    pub fn restore(&self, db: &StateDb) -> Result<u64> {
        let partition = self.topic.partition(self.partition)?;
        let end = partition.end_offset();
        if let Some(checkpoint) = db.offset(&self.owner, &self.checkpoint_name())? {
            if end > checkpoint {
                let dropped = partition.truncate_to(checkpoint)?;
                tracing::info!(
                    store = self.store.name(),
                    dropped,
                    "dropped uncommitted changelog records"
                );
            }
            return Ok(0);
        }
        let mut position = partition.start_offset();
        let mut replayed = 0;
        while position < end {
            let records = partition.read(position, ReadLimits::default())?;
            let Some(last) = records.last().map(|r| r.offset) else {
                break;
            };
            let mut commit = Commit::new();
            for r in &records {
                let Some(k) = &r.record.key else { continue };
                match &r.record.value {
                    Some(v) => commit.put(&self.store, k, v),
                    None => commit.delete(&self.store, k),
                }
            }
            replayed += records.len() as u64;
            position = last + 1;
            commit.set_offset(&self.owner, &self.checkpoint_name(), position);
            db.commit(commit)?;
        }
        if replayed == 0 {
            let mut commit = Commit::new();
            commit.set_offset(&self.owner, &self.checkpoint_name(), end);
            db.commit(commit)?;
        }
        Ok(replayed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StateOptions;

    #[test]
    fn a_first_batch_that_never_committed_is_dropped_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path().join("log"), Default::default()).unwrap();
        let db = StateDb::open(dir.path().join("state"), StateOptions::default()).unwrap();
        let store = db.store("q/groups").unwrap();
        let open = |log: &Log, store: Store| {
            Changelog::open(log, "q", store, &topic_name("q/groups"), 0, 1).unwrap()
        };
        let changelog = open(&log, store.clone());
        assert_eq!(changelog.restore(&db).unwrap(), 0);
        // The first micro-batch appends to the changelog, then dies before its commit.
        let mut never_applied = Commit::new();
        changelog
            .write(
                vec![(b"k".to_vec(), Some(b"10".to_vec()))],
                0,
                &mut never_applied,
            )
            .unwrap();
        // The restart drops it: the input that made it is read again.
        let reopened = open(&log, db.store("q/groups").unwrap());
        assert_eq!(reopened.restore(&db).unwrap(), 0);
        assert_eq!(store.get(b"k").unwrap(), None);
        assert_eq!(
            log.topic(&topic_name("q/groups"))
                .unwrap()
                .partition(0)
                .unwrap()
                .end_offset(),
            0
        );

        // A store whose local copy is lost (a new database) is rebuilt from the changelog.
        let mut applied = Commit::new();
        reopened
            .write(vec![(b"k".to_vec(), Some(b"1".to_vec()))], 0, &mut applied)
            .unwrap();
        db.commit(applied).unwrap();
        let fresh = StateDb::open(dir.path().join("state2"), StateOptions::default()).unwrap();
        let rebuilt = open(&log, fresh.store("q/groups").unwrap());
        assert_eq!(rebuilt.restore(&fresh).unwrap(), 1);
        assert_eq!(
            fresh.store("q/groups").unwrap().get(b"k").unwrap(),
            Some(b"1".to_vec())
        );
    }
}

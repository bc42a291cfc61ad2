//! Changelogs: every change of a store, appended to a compacted topic of the log.
//!
//! The local RocksDB copy of a store is the one queries read; the changelog is its backup. A
//! commit records the changelog's end offset next to the state it describes (the store's
//! checkpoint). When a query starts, a store whose checkpoint is missing (its RocksDB was lost)
//! or behind its changelog is replayed from the changelog; a clean restart replays nothing.
//!
//! The topic is compacted by the log's cleaner, so a restore reads about one record per live
//! key, not the whole history. Its name is `_eddy-<store name with '/' as '-'>-changelog`.

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
    owner: String,
    store: Store,
}

/// The name of the changelog topic of the store `store_name`.
pub fn topic_name(store_name: &str) -> String {
    format!("_eddy-{}-changelog", store_name.replace('/', "-"))
}

impl Changelog {
    /// The changelog of `store`, which belongs to `owner` (its query); creates the topic.
    pub fn open(log: &Log, owner: &str, store: Store) -> Result<Changelog> {
        let name = topic_name(store.name());
        let topic = match log.topic(&name) {
            Ok(t) => t,
            Err(_) => {
                let mut config = TopicConfig::with_partitions(1);
                config.compact = true;
                log.create_topic(&name, config)?
            }
        };
        Ok(Changelog {
            topic,
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
        changes: &[(Vec<u8>, Option<Vec<u8>>)],
        timestamp: i64,
        commit: &mut Commit,
    ) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = changes
            .iter()
            .map(|(k, v)| Record {
                key: Some(k.clone().into()),
                value: v.clone().map(Into::into),
                timestamp,
                headers: Vec::new(),
            })
            .collect();
        let partition = self.topic.partition(0)?;
        let info = partition.append(&records)?;
        for (k, v) in changes {
            match v {
                Some(v) => commit.put(&self.store, k, v),
                None => commit.delete(&self.store, k),
            }
        }
        commit.set_offset(&self.owner, &self.checkpoint_name(), info.next_offset());
        Ok(())
    }

    /// Makes the local store and the changelog agree, before the store is used.
    ///
    /// With a checkpoint, the local store is the truth: changelog records past the checkpoint
    /// were appended by a micro-batch that crashed before it committed, and are dropped (that
    /// input is processed again). Without one, the local store was lost, and the whole
    /// changelog is replayed into it. Returns how many records were replayed.
    pub fn restore(&self, db: &StateDb) -> Result<u64> {
        let partition = self.topic.partition(0)?;
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
        Ok(replayed)
    }
}

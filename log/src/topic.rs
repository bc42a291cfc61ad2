//! A topic: a name, a configuration and N partitions, in one directory.
//!
//! ```text
//! <data dir>/topics/<name>/topic.json     the TopicConfig
//! <data dir>/topics/<name>/<partition>/   segments of one partition
//! ```
//!
//! A topic appears and disappears atomically: it is created in a temporary directory that is
//! renamed into place once `topic.json` is on disk, and deleted by renaming it out of sight
//! before removing its files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{FsyncPolicy, TopicConfig};
use crate::error::{IoContext, LogError, Result};
use crate::offset_watch::Activity;
use crate::partition::{sync_dir, Partition, PartitionSetup};
use crate::partitioner::partition_for_key;

pub(crate) const CONFIG_FILE: &str = "topic.json";

pub struct Topic {
    name: String,
    config: TopicConfig,
    partitions: Vec<Arc<Partition>>,
    /// Counts appends to any partition, so a consumer of several partitions can wait on one
    /// thing.
    activity: Arc<Activity>,
    round_robin: AtomicU32,
}

/// Checks a topic name the way Kafka does: 1 to 249 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(LogError::InvalidTopicName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 249 {
        return bad("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

impl Topic {
    /// Creates the topic's directory under `topics_dir` atomically, then opens it.
    pub(crate) fn create(
        topics_dir: &Path,
        name: &str,
        config: TopicConfig,
        default_fsync: FsyncPolicy,
        flusher_running: bool,
        log_activity: Arc<Activity>,
    ) -> Result<Topic> {
        validate_topic_name(name)?;
        config.validate()?;
        let dir = topics_dir.join(name);
        if dir.exists() {
            return Err(LogError::TopicExists(name.to_string()));
        }
        let tmp = topics_dir.join(format!(".tmp-{name}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).at(&tmp)?;
        }
        std::fs::create_dir_all(&tmp).at(&tmp)?;
        let json = serde_json::to_vec_pretty(&config).expect("config serializes");
        let cfg_path = tmp.join(CONFIG_FILE);
        std::fs::write(&cfg_path, json).at(&cfg_path)?;
        std::fs::File::open(&cfg_path)
            .and_then(|f| f.sync_all())
            .at(&cfg_path)?;
        sync_dir(&tmp)?;
        std::fs::rename(&tmp, &dir).at(&dir)?;
        sync_dir(topics_dir)?;
        Topic::open(
            dir,
            name.to_string(),
            default_fsync,
            flusher_running,
            log_activity,
        )
    }

    /// Opens an existing topic directory.
    pub(crate) fn open(
        dir: PathBuf,
        name: String,
        default_fsync: FsyncPolicy,
        flusher_running: bool,
        log_activity: Arc<Activity>,
    ) -> Result<Topic> {
        let cfg_path = dir.join(CONFIG_FILE);
        let bytes = std::fs::read(&cfg_path).at(&cfg_path)?;
        let config: TopicConfig =
            serde_json::from_slice(&bytes).map_err(|e| LogError::Metadata {
                path: cfg_path.clone(),
                reason: e.to_string(),
            })?;
        let activity = Arc::new(Activity::new());
        let fsync = config.fsync.unwrap_or(default_fsync);
        let partitions = (0..config.partitions)
            .map(|p| {
                Partition::open(PartitionSetup {
                    topic: name.clone(),
                    partition: p,
                    dir: dir.join(p.to_string()),
                    config: config.clone(),
                    fsync,
                    flusher_running,
                    activity: activity.clone(),
                    log_activity: log_activity.clone(),
                })
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Topic {
            name,
            config,
            partitions,
            activity,
            round_robin: AtomicU32::new(0),
        })
    }

    /// The same topic with `count` partitions: its own, and new empty ones after them. The new
    /// count is on disk before the topic is returned; a crash before that leaves the extra
    /// directories unused (and empty) until the next time partitions are added.
    pub(crate) fn with_partitions(
        &self,
        dir: &Path,
        count: u32,
        default_fsync: FsyncPolicy,
        flusher_running: bool,
        log_activity: Arc<Activity>,
    ) -> Result<Topic> {
        let mut config = self.config.clone();
        config.partitions = count;
        config.validate()?;
        let fsync = config.fsync.unwrap_or(default_fsync);
        let mut partitions = self.partitions.clone();
        for p in self.partition_count()..count {
            partitions.push(Arc::new(Partition::open(PartitionSetup {
                topic: self.name.clone(),
                partition: p,
                dir: dir.join(p.to_string()),
                config: config.clone(),
                fsync,
                flusher_running,
                activity: self.activity.clone(),
                log_activity: log_activity.clone(),
            })?));
        }
        sync_dir(dir)?;
        write_config(dir, &config)?;
        Ok(Topic {
            name: self.name.clone(),
            config,
            partitions,
            activity: self.activity.clone(),
            round_robin: AtomicU32::new(0),
        })
    }

    /// The same topic with other settings (its partition count unchanged): on disk first, then
    /// applied by each open partition from its next append, roll or cleaner pass. A crash in
    /// between leaves the old settings or the new, whole.
    pub(crate) fn with_config(
        &self,
        dir: &Path,
        config: TopicConfig,
        default_fsync: FsyncPolicy,
    ) -> Result<Topic> {
        config.validate()?;
        if config.partitions != self.config.partitions {
            return Err(LogError::InvalidConfig(format!(
                "topic {} has {} partitions; change them by adding partitions",
                self.name, self.config.partitions
            )));
        }
        write_config(dir, &config)?;
        let fsync = config.fsync.unwrap_or(default_fsync);
        let shared = Arc::new(config.clone());
        for p in &self.partitions {
            p.reconfigure(shared.clone(), fsync);
        }
        Ok(Topic {
            name: self.name.clone(),
            config,
            partitions: self.partitions.clone(),
            activity: self.activity.clone(),
            round_robin: AtomicU32::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    pub fn partitions(&self) -> &[Arc<Partition>] {
        &self.partitions
    }

    /// Records the topic holds: from each partition's first retained offset to its end.
    pub fn message_count(&self) -> u64 {
        self.partitions
            .iter()
            .map(|p| p.end_offset().saturating_sub(p.start_offset()))
            .sum()
    }

    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    pub fn partition(&self, p: u32) -> Result<&Arc<Partition>> {
        self.partitions
            .get(p as usize)
            .ok_or_else(|| LogError::UnknownPartition {
                topic: self.name.clone(),
                partition: p,
                count: self.partition_count(),
            })
    }

    /// The partition a record with this key goes to: Kafka's murmur2 for keys, round robin for
    /// null keys.
    pub fn partition_for(&self, key: Option<&[u8]>) -> u32 {
        let n = self.partition_count();
        match key {
            Some(k) => partition_for_key(k, n),
            None => self.round_robin.fetch_add(1, Ordering::Relaxed) % n,
        }
    }

    /// A counter that grows on every append to any partition of the topic.
    pub fn activity(&self) -> u64 {
        self.activity.get()
    }

    /// Blocks until [`Topic::activity`] exceeds `seen` or `timeout` passes.
    pub fn wait_for_activity_blocking(&self, seen: u64, timeout: Duration) -> bool {
        self.activity.wait_blocking(seen, timeout)
    }
}

/// Replaces the topic's `topic.json` in `dir` whole: written beside it, fsynced, renamed over.
fn write_config(dir: &Path, config: &TopicConfig) -> Result<()> {
    let json = serde_json::to_vec_pretty(config).expect("config serializes");
    let tmp = dir.join(format!("{CONFIG_FILE}.tmp"));
    std::fs::write(&tmp, json).at(&tmp)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .at(&tmp)?;
    std::fs::rename(&tmp, dir.join(CONFIG_FILE)).at(dir)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names_like_kafka() {
        for ok in ["orders", "a.b_c-D9", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}

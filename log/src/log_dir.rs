//! [`Log`]: a data directory holding topics, opened by one process at a time.
//!
//! ```text
//! <data dir>/.lock                 held (flock) while a process has the directory open
//! <data dir>/topics/<name>/...     one directory per topic, see [`crate::topic`]
//! ```

use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;

use crate::assignor::AssignmentStrategy;
use crate::background::Background;
use crate::compaction::CompactionStats;
use crate::config::{LogOptions, TopicConfig};
use crate::error::{IoContext, LogError, Result};
use crate::group_offsets::{self, GroupOffsets, OffsetAndMetadata, TopicPartition, OFFSETS_TOPIC};
use crate::membership::{GroupCoordinator, GroupMember};
use crate::offset_watch::Activity;
use crate::partition::{sync_dir, Partition};
use crate::topic::{Topic, CONFIG_FILE};
use crate::transaction::Undecided;

/// An open data directory. Cheap to clone; all clones share one set of topics.
#[derive(Clone)]
pub struct Log {
    pub(crate) inner: Arc<LogInner>,
}

pub(crate) struct LogInner {
    dir: PathBuf,
    topics_dir: PathBuf,
    options: LogOptions,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    offsets: GroupOffsets,
    groups: Arc<GroupCoordinator>,
    background: Option<Background>,
    /// Counts appends to any topic: what idle stream threads wait on.
    activity: Arc<Activity>,
    /// Held for the lifetime of the process's use of the directory; dropping it unlocks.
    _lock: File,
}

impl Log {
    /// Opens (creating if needed) the data directory `dir`, recovering every partition.
    /// Fails with [`LogError::Locked`] if another process has it open.
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).at(&dir)?;
        let lock_path = dir.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        // A log of this process that was just dropped may still be closing on one of its
        // background threads (which hold it for a moment while they work): wait a little for
        // it before deciding another owner has the directory.
        let mut attempts = 0;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(TryLockError::WouldBlock) => return Err(LogError::Locked(dir)),
                Err(TryLockError::Error(e)) => return Err(e).at(&lock_path),
            }
        }
        let topics_dir = dir.join("topics");
        std::fs::create_dir_all(&topics_dir).at(&topics_dir)?;
        let flusher = options.background;
        let activity = Arc::new(Activity::new());
        let mut topics = BTreeMap::new();
        for entry in std::fs::read_dir(&topics_dir).at(&topics_dir)? {
            let entry = entry.at(&topics_dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".tmp-") || name.starts_with(".deleted-") {
                // A create or delete that a crash interrupted: finish undoing or deleting it.
                std::fs::remove_dir_all(&path).at(&path)?;
                continue;
            }
            if !path.join(CONFIG_FILE).exists() {
                continue;
            }
            let topic = Topic::open(path, name.clone(), options.fsync, flusher, activity.clone())?;
            topics.insert(name, Arc::new(topic));
        }
        if !topics.contains_key(OFFSETS_TOPIC) {
            let t = Topic::create(
                &topics_dir,
                OFFSETS_TOPIC,
                group_offsets::offsets_topic_config(),
                options.fsync,
                flusher,
                activity.clone(),
            )?;
            topics.insert(OFFSETS_TOPIC.to_string(), Arc::new(t));
        }
        let offsets = GroupOffsets::load(topics[OFFSETS_TOPIC].clone())?;
        let inner = Arc::new_cyclic(|weak| LogInner {
            background: options
                .background
                .then(|| Background::start(weak.clone(), &options)),
            dir,
            topics_dir,
            options,
            topics: RwLock::new(topics),
            offsets,
            groups: Arc::new(GroupCoordinator::default()),
            activity,
            _lock: lock,
        });
        Ok(Log { inner })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn options(&self) -> &LogOptions {
        &self.inner.options
    }

    /// Creates a topic; fails if it exists.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        let mut topics = self.inner.topics.write();
        if topics.contains_key(name) {
            return Err(LogError::TopicExists(name.to_string()));
        }
        let topic = Arc::new(Topic::create(
            &self.inner.topics_dir,
            name,
            config,
            self.inner.options.fsync,
            self.inner.options.background,
            self.inner.activity.clone(),
        )?);
        topics.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))
    }

    /// All topics, internal ones (named `__...`) included, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.inner.topics.read().values().cloned().collect()
    }

    /// A counter that grows on every append to any topic, to wait on with
    /// [`Log::wait_for_activity_blocking`]: note it, look at what you read, wait if nothing
    /// was there.
    pub fn activity(&self) -> u64 {
        self.inner.activity.get()
    }

    /// Blocks until [`Log::activity`] exceeds `seen` or `timeout` passes.
    pub fn wait_for_activity_blocking(&self, seen: u64, timeout: std::time::Duration) -> bool {
        self.inner.activity.wait_blocking(seen, timeout)
    }

    /// Waits, without blocking a thread, until [`Log::activity`] exceeds `seen`.
    pub async fn activity_after(&self, seen: u64) {
        self.inner.activity.wait(seen).await
    }

    /// Every transaction left undecided when the last process stopped, with its partition
    /// (see [`Partition::resolve`]).
    pub fn undecided(&self) -> Vec<(Arc<Partition>, Undecided)> {
        self.inner
            .all_partitions()
            .into_iter()
            .flat_map(|p| p.undecided().into_iter().map(move |u| (p.clone(), u)))
            .collect()
    }

    pub fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        self.topic(topic)?.partition(partition).cloned()
    }

    /// Deletes a topic and its data, and forgets the offsets groups committed on it. Readers and
    /// appenders still holding the topic keep working on the unlinked files until they drop it.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        if name == OFFSETS_TOPIC {
            return Err(LogError::InvalidTopicName {
                name: name.to_string(),
                reason: "the offsets topic is internal and cannot be deleted",
            });
        }
        let mut topics = self.inner.topics.write();
        if !topics.contains_key(name) {
            return Err(LogError::UnknownTopic(name.to_string()));
        }
        let dir = self.inner.topics_dir.join(name);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let doomed = self
            .inner
            .topics_dir
            .join(format!(".deleted-{name}-{nanos}"));
        std::fs::rename(&dir, &doomed).at(&dir)?;
        sync_dir(&self.inner.topics_dir)?;
        topics.remove(name);
        drop(topics);
        std::fs::remove_dir_all(&doomed).at(&doomed)?;
        self.inner.offsets.forget_topic(name)
    }

    /// Grows a topic to `count` partitions (never fewer: records keep their partitions). Who
    /// holds the topic from before keeps seeing its old partitions; [`Log::topic`] returns the
    /// grown one.
    pub fn add_partitions(&self, name: &str, count: u32) -> Result<Arc<Topic>> {
        let mut topics = self.inner.topics.write();
        let old = topics
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        if count <= old.partition_count() {
            return Err(LogError::InvalidConfig(format!(
                "topic {name} has {} partitions; it can only grow",
                old.partition_count()
            )));
        }
        let grown = Arc::new(old.with_partitions(
            &self.inner.topics_dir.join(name),
            count,
            self.inner.options.fsync,
            self.inner.options.background,
            self.inner.activity.clone(),
        )?);
        topics.insert(name.to_string(), grown.clone());
        Ok(grown)
    }

    /// Changes a topic's settings (not its partition count: [`Log::add_partitions`]) with
    /// `change`, as Kafka's AlterConfigs does: durably, and in effect from each partition's next
    /// append, segment roll or cleaner pass. Whoever holds the topic from before keeps its old
    /// [`Topic::config`]; [`Log::topic`] returns the changed one.
    pub fn alter_topic_config(
        &self,
        name: &str,
        change: impl FnOnce(&mut TopicConfig) -> Result<()>,
    ) -> Result<Arc<Topic>> {
        let mut topics = self.inner.topics.write();
        let old = topics
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        let mut config = old.config().clone();
        change(&mut config)?;
        let changed = Arc::new(old.with_config(
            &self.inner.topics_dir.join(name),
            config,
            self.inner.options.fsync,
        )?);
        topics.insert(name.to_string(), changed.clone());
        Ok(changed)
    }

    /// Durably commits the next offsets to read for `group`, all or none.
    pub fn commit_offsets(&self, group: &str, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        let offsets: Vec<_> = offsets
            .iter()
            .map(|(tp, o)| (tp.clone(), OffsetAndMetadata::new(*o)))
            .collect();
        self.inner.offsets.commit(group, &offsets)
    }

    /// [`Log::commit_offsets`] with each committer's metadata string, as Kafka commits them.
    pub fn commit_offsets_with_metadata(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        self.inner.offsets.commit(group, offsets)
    }

    /// The next offset `group` committed for a partition, if it ever did.
    pub fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Option<u64> {
        self.inner.offsets.committed(group, tp).map(|c| c.offset)
    }

    /// What `group` committed for a partition, metadata included.
    pub fn committed(&self, group: &str, tp: &TopicPartition) -> Option<OffsetAndMetadata> {
        self.inner.offsets.committed(group, tp)
    }

    /// Everything `group` committed, by partition.
    pub fn group_offsets(&self, group: &str) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        self.inner.offsets.of_group(group)
    }

    /// The groups that ever committed an offset (and have not lost them all to topic deletes).
    pub fn offset_groups(&self) -> Vec<String> {
        self.inner.offsets.groups()
    }

    /// Joins `group` to read `topics`; the member's partitions follow from the group's strategy
    /// (fixed by its first member) and change as members come and go.
    pub fn join_group(
        &self,
        group: &str,
        topics: &[&str],
        strategy: AssignmentStrategy,
    ) -> Result<GroupMember> {
        let counts = topics
            .iter()
            .map(|t| Ok((t.to_string(), self.topic(t)?.partition_count())))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.inner.groups.join(group, &counts, strategy))
    }

    /// Applies retention and compaction to every partition now (the background cleaner does the
    /// same periodically).
    pub fn run_cleaner(&self) -> Result<CompactionStats> {
        self.inner.run_cleaner(SystemTime::now())
    }
}

impl LogInner {
    pub(crate) fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.topics
            .read()
            .values()
            .flat_map(|t| t.partitions().iter().cloned())
            .collect()
    }

    pub(crate) fn run_cleaner(&self, now: SystemTime) -> Result<CompactionStats> {
        let now_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut total = CompactionStats::default();
        let mut first_error = None;
        for p in self.all_partitions() {
            // One partition that fails (damage on disk, say) does not stop the others' cleaning.
            let pass = p.apply_retention(now_ms).and_then(|_| p.compact(now));
            match pass {
                Ok(s) => {
                    total.segments_rewritten += s.segments_rewritten;
                    total.records_removed += s.records_removed;
                }
                Err(e) => {
                    tracing::error!(topic = p.topic(), partition = p.id(), "cleaner: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(total), Err)
    }
}

impl Drop for LogInner {
    fn drop(&mut self) {
        if let Some(bg) = &self.background {
            bg.stop();
        }
        // A clean close acknowledges everything: fsync what group commit has not yet covered.
        for p in self.all_partitions() {
            if let Err(e) = p.close() {
                tracing::error!(
                    topic = p.topic(),
                    partition = p.id(),
                    "flush on close failed: {e}"
                );
            }
        }
    }
}

//! Scopes: whose stores an operator opens, and for which task.
//!
//! A query runs as tasks, one per partition of its input (Kafka Streams' model), and each task
//! keeps stores of its own, so that one task's state can be committed, restored or moved
//! without the others'. A [`StateScope`] names them: the query (the *owner*, under which its
//! positions are committed), and the task's partition. Store `name` of task `p` of query `q`
//! is `q/p/name` in RocksDB, and its changelog is partition `p` of the topic
//! `_eddy-q-name-changelog`, which has a partition per task. A query that runs as one task
//! over every partition (a foreign-key join, or a query from before tasks existed) has the
//! stores `q/name` and one-partition changelogs.

use eddy_log::Log;

use crate::changelog::Changelog;
use crate::db::StateDb;
use crate::error::Result;
use crate::store::Store;

/// The task a scope belongs to: its partition, of how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskPartition {
    pub partition: u32,
    pub partitions: u32,
}

/// Where one task of one query keeps its state; see the module docs.
#[derive(Clone)]
pub struct StateScope {
    db: StateDb,
    log: Log,
    owner: String,
    task: Option<TaskPartition>,
}

impl StateScope {
    /// The stores of `owner`'s single task, which reads every partition.
    pub fn new(db: &StateDb, log: &Log, owner: &str) -> StateScope {
        StateScope {
            db: db.clone(),
            log: log.clone(),
            owner: owner.to_string(),
            task: None,
        }
    }

    /// The stores of the task of `owner` that reads partition `partition` of `partitions`.
    pub fn for_task(self, partition: u32, partitions: u32) -> StateScope {
        StateScope {
            task: Some(TaskPartition {
                partition,
                partitions,
            }),
            ..self
        }
    }

    pub fn db(&self) -> &StateDb {
        &self.db
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The query whose positions the stores' checkpoints are committed under.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn task(&self) -> Option<TaskPartition> {
        self.task
    }

    /// The name of store `name` in this scope: `owner/p/name`, or `owner/name` for a single
    /// task.
    pub fn store_name(&self, name: &str) -> String {
        match self.task {
            Some(t) => format!("{}/{}/{name}", self.owner, t.partition),
            None => format!("{}/{name}", self.owner),
        }
    }

    /// Opens store `name` and its changelog (created with a partition per task), not yet
    /// restored.
    pub fn open(&self, name: &str) -> Result<(Store, Changelog)> {
        let store = self.db.store(&self.store_name(name))?;
        let topic = crate::changelog::topic_name(&format!("{}/{name}", self.owner));
        let (partition, partitions) = match self.task {
            Some(t) => (t.partition, t.partitions),
            None => (0, 1),
        };
        let changelog = Changelog::open(
            &self.log,
            &self.owner,
            store.clone(),
            &topic,
            partition,
            partitions,
        )?;
        Ok((store, changelog))
    }

    /// The name a per-task position `name` (such as a clock) is committed under.
    pub fn position_name(&self, name: &str) -> String {
        match self.task {
            Some(t) => format!("{name}/{}", t.partition),
            None => name.to_string(),
        }
    }
}

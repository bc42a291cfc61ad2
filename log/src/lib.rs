//! Eddy's embedded, durable, partitioned append-only log.
//!
//! Every stream Eddy reads or writes, every changelog and the catalog itself live in this log,
//! which works like a single Kafka broker inside the process:
//!
//! - a [`Log`] is a data directory of [`Topic`]s, locked to one process;
//! - a topic has N [`Partition`]s; a record's key picks its partition ([`partitioner`]);
//! - a partition is a sequence of [`segment`](crate::segment)s, each a file of checksummed
//!   [`batch`]es with an offset index and a time index;
//! - appends are acknowledged under an [`FsyncPolicy`] (always, group commit, never), and what
//!   was acknowledged survives a crash: on open the last segment's tail is validated and a torn
//!   batch past the recovery point (what was fsynced) is cut off, while damage below it is
//!   kept and reported ([`Damage`]), never deleted;
//! - retention deletes old segments; compaction keeps the latest record per key;
//! - consumer groups commit offsets durably (in the log) and split partitions among members.
//!
//! The engine reaches all of this through the [`LogBackend`] trait.
//!
//! ```
//! use eddy_log::{Log, LogOptions, Record, ReadLimits, TopicConfig};
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path(), LogOptions::default()).unwrap();
//! let topic = log.create_topic("greetings", TopicConfig::with_partitions(3)).unwrap();
//! let p = topic.partition_for(Some(b"alice"));
//! let info = topic.partition(p).unwrap()
//!     .append(&[Record::new(Some("alice"), Some("hello"), 1_700_000_000_000)])
//!     .unwrap();
//! let read = topic.partition(p).unwrap().read(info.base_offset, ReadLimits::default()).unwrap();
//! assert_eq!(read[0].record.value.as_deref(), Some(&b"hello"[..]));
//! ```

mod append;
mod assignor;
mod backend;
mod background;
pub mod batch;
mod batch_read;
mod compaction;
mod config;
mod consumer;
mod damage;
mod error;
mod group_offsets;
mod index_file;
mod kafka_config;
mod log_dir;
mod membership;
mod offset_index;
mod offset_watch;
mod partition;
pub mod partitioner;
mod record;
mod recovery_point;
mod retention;
pub mod segment;
pub mod space;
mod time_index;
mod topic;
mod transaction;

pub use assignor::AssignmentStrategy;
pub use backend::LogBackend;
pub use batch::{BatchFormat, Codec, StoredBatch};
pub use batch_read::BatchRead;
pub use compaction::CompactionStats;
pub use config::{FsyncPolicy, LogOptions, TopicConfig, DEFAULT_MAX_MESSAGE_BYTES};
pub use consumer::{Consumer, ConsumerRecord, OffsetReset};
pub use damage::Damage;
pub use error::{LogError, Result};
pub use group_offsets::{OffsetAndMetadata, TopicPartition, OFFSETS_TOPIC};
pub use kafka_config::ConfigEntry;
pub use log_dir::Log;
pub use membership::{GroupAssignment, GroupMember};
pub use partition::{AppendInfo, Partition, Read, ReadLimits, MAX_RECORD_BYTES};
pub use record::{now_ms, Header, Record, StoredRecord};
pub use segment::Truncation;
pub use topic::{validate_topic_name, Topic};
pub use transaction::{writer_id, Transaction, Undecided};

//! The log's typed errors.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the log. The binary turns these into messages; library code
/// matches on them (a consumer resets on [`LogError::OffsetOutOfRange`], for example).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The cause is part of the message (not a `source`), so that "No space left on device"
    /// reaches whoever prints only the top error.
    #[error("I/O error on {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("data directory {0} is locked by another process")]
    Locked(PathBuf),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("topic '{topic}' has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: u32,
        count: u32,
    },
    #[error(
        "offset {offset} is out of range for {topic}/{partition}: the log holds offsets {start}..{end}"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        start: u64,
        end: u64,
    },
    /// Records that were acknowledged fail to verify on disk (see `damage.rs`).
    #[error(
        "records {}..{} of {topic}/{partition} are damaged on disk ({}, bytes {}..{}): {reason}",
        .offsets.start, .offsets.end, .path.display(), .bytes.start, .bytes.end
    )]
    Corrupt {
        topic: String,
        partition: u32,
        offsets: std::ops::Range<u64>,
        path: PathBuf,
        bytes: std::ops::Range<u64>,
        reason: String,
    },
    #[error("invalid record for {topic}: {reason}")]
    InvalidRecord { topic: String, reason: String },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("corrupt metadata in {path}: {reason}")]
    Metadata { path: PathBuf, reason: String },
}

impl LogError {
    /// Whether the disk (or the user's quota) is full: a write that may succeed once space
    /// returns (see `space.rs`).
    pub fn is_no_space(&self) -> bool {
        matches!(self, LogError::Io { error, .. } if crate::space::is_no_space(error))
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Attaches the path an I/O error happened on, since `io::Error` alone does not say.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|error| LogError::Io {
            path: path.to_path_buf(),
            error,
        })
    }
}

//! The state layer's typed errors.

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store: {0}")]
    RocksDb(#[from] rocksdb::Error),
    #[error(transparent)]
    Log(#[from] eddy_log::LogError),
    #[error("state store {store}: {message}")]
    Corrupt { store: String, message: String },
    /// RocksDB found damage in its files on open: not a torn tail, which it cuts off itself.
    #[error("the state stores in {} are damaged: {reason}", .path.display())]
    Damaged {
        path: std::path::PathBuf,
        reason: String,
    },
}

pub type Result<T, E = StateError> = std::result::Result<T, E>;

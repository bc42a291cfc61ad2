//! Eddy's state stores.
//!
//! Stateful operators (aggregations, windows, joins) keep their state here, in one RocksDB
//! database per data directory ([`StateDb`], under `<data dir>/state`). Each operator of each
//! task of each query owns a [`Store`]: a key space inside that database, named
//! `<query>/<partition>/<operator>` ([`StateScope`] names them).
//!
//! Writes never go to a store directly. An operator stages its changes in a [`Commit`], and the
//! query adds its input positions to the same commit; [`StateDb::commit`] then applies it as
//! one RocksDB `WriteBatch`. State and input offsets therefore move together: after a crash a
//! query resumes from exactly the input position its state reflects (see ARCHITECTURE.md,
//! "exactly-once").
//!
//! Memory is bounded for the whole process: one block cache and one write-buffer manager,
//! sized by [`StateOptions::memory_bytes`], are shared by every store.
//!
//! Every change is also appended to a compacted changelog topic in the log, which restores a
//! store whose local copy is missing ([`changelog`]).

pub mod changelog;
mod commit;
mod db;
mod error;
mod scope;
mod store;

pub use commit::Commit;
pub use db::{StateDb, StateOptions};
pub use error::{Result, StateError};
pub use scope::{StateScope, TaskPartition};
pub use store::{Entries, Store};

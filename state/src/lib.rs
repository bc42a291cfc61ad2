//! Eddy's state stores.
//!
//! This crate will hold the key-value, window and session stores that stateful operators keep in
//! RocksDB, each backed by a compacted changelog topic in [`eddy_log`] and restored from it when
//! the local copy is missing or behind. It sits between the log (below) and the engine (above).
//!
//! Nothing is implemented here yet; the stores arrive with the aggregation work (issue 4).

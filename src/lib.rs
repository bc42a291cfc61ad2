//! Eddy: stream processing with a built-in partitioned log.
//!
//! This crate is the one a Rust program depends on. It re-exports Eddy's layers:
//!
//! - [`log`]: the embedded, durable, partitioned append-only log (topics, partitions,
//!   consumer groups).
//!
//! The state stores, the streaming engine with its typed DSL, and the SQL front end join it as
//! they are built; the `eddy` binary (crate `eddy-cli`) is the REPL, server and command line.

pub use eddy_log as log;

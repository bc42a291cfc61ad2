//! Eddy: stream processing with a built-in partitioned log.
//!
//! This crate is the one a Rust program depends on. It re-exports Eddy's layers:
//!
//! - [`log`]: the embedded, durable, partitioned append-only log (topics, partitions,
//!   consumer groups).
//! - [`engine`]: pipelines of operators over Arrow batches, record formats, the processing log.
//! - [`sql`]: ksqlDB's SQL dialect: parser, catalog, planner and the statement-executing session.
//!
//! The state stores and the typed DSL join them as they are built; the `eddy` binary (crate
//! `eddy-cli`) is the REPL, server and command line.

pub use eddy_engine as engine;
pub use eddy_log as log;
pub use eddy_sql as sql;

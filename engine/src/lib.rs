//! Eddy's streaming engine.
//!
//! This crate will hold the operator graph over Arrow record batches, the tokio runtime that runs
//! one task per (query, partition), the record formats (JSON, KAFKA, DELIMITED) and the typed Rust
//! DSL. It uses the state stores below it and knows nothing of SQL above it.
//!
//! Nothing is implemented here yet; the engine arrives with the SQL front end (issue 3).

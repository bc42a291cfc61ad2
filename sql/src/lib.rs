//! Eddy's SQL front end.
//!
//! This crate will hold the ksqlDB-dialect parser (built on `sqlparser`), the catalog persisted in
//! a command topic, and the planner that turns statements into the engine's operator graphs.
//!
//! Nothing is implemented here yet; the SQL front end is issue 3.

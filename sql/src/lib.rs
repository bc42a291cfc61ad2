//! Eddy's SQL front end: ksqlDB's dialect.
//!
//! - [`parser`]: statements into the [`ast`], on `sqlparser`, with line and column in errors.
//! - [`types`]: ksqlDB's SQL types and their Arrow forms.
//! - [`catalog`]: the streams, tables and types a session knows.
//! - [`command_log`]: the statements that built the catalog, replayed on start.
//! - [`functions`]: ksqlDB's functions that DataFusion lacks, as UDFs.
//! - [`planner`]: a `SELECT` into the engine's operators, through DataFusion.
//! - [`join`]: joins, planned as queries over a combined source.
//! - [`aggregation`]: `GROUP BY`, `WINDOW` and `HAVING`: the projections around an aggregate.
//! - [`session`]: executes statements and drives the persistent queries they start.
//! - [`script`]: runs several statements in turn, with `DEFINE`d variables and `RUN SCRIPT`.
//! - [`with_clause`]: formats, delimiters, wrapping and event time from a WITH clause.

pub mod aggregation;
pub mod ast;
pub mod catalog;
pub mod command_log;
pub mod dialect;
pub mod error;
pub mod functions;
pub mod join;
mod output_key;
pub mod parser;
pub mod planner;
mod rewrite;
pub mod schema_registry;
pub mod script;
mod select_items;
pub mod session;
pub mod types;
mod user_lists;
pub mod with_clause;

pub use error::{Missing, Result, SqlError};
pub use parser::{parse_schema, parse_statement, parse_statements, ParseError};
pub use session::{
    cell_text, format_table, is_internal_topic, result_schema_text, thousands, LagProbe, Outcome,
    PushQuery, PushRow, QueryInfo, ResultColumn, Session, TaskInfo, TopicPrint, STREAM_THREADS,
};

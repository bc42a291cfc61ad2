//! Eddy's streaming engine.
//!
//! A query runs as tasks ([`task`]), one per partition of its inputs, each a [`Pipeline`]: a
//! [`Source`] decodes records of a topic into Arrow record batches (pseudo-columns, key
//! columns, value columns: see [`schema`]), [`Operator`]s transform the batches (filters and
//! projections as DataFusion physical expressions), and a [`Sink`] encodes the result into
//! another topic. The tasks of every query share a pool of stream threads ([`runtime`]). Formats are in [`format`]; records that
//! cannot be read or computed go to the [`processing_log`].
//!
//! This layer knows nothing of SQL: the SQL front end plans statements into pipelines, and a
//! Rust program can build one directly (see `examples/`).

pub mod aggregate;
mod column_decoder;
pub mod error;
pub mod explode;
pub mod fk_join;
pub mod format;
pub mod lookup_join;
pub mod materialize;
pub mod metrics;
pub mod operator;
pub mod pipeline;
pub mod processing_log;
pub mod runtime;
pub mod schema;
pub mod sink;
pub mod source;
pub mod staged_store;
pub mod state_codec;
pub mod stream_join;
pub mod table_join;
pub mod table_rows;
pub mod task;
pub mod time_format;
mod value;

pub use eddy_state as state;
pub use error::{EngineError, Result};
pub use format::{Codec, Format};
pub use operator::{Filter, Operator, OperatorContext, Project};
pub use pipeline::{
    EventTime, HeaderColumn, Pipeline, Sink, Source, SourceWindow, StageProgress, WindowedKey,
};
pub use processing_log::{ProcessingLog, PROCESSING_LOG_TOPIC};
pub use runtime::{Runtime, TaskHandle};
pub use task::{TaskId, TaskMetrics};
pub use time_format::{parse_partial_iso, TimestampFormat, Zone};
pub use value::{from_json as scalar_from_json, java_double, write_json as write_scalar_json};

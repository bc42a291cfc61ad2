//! The engine's typed errors.

use datafusion::error::DataFusionError;
use eddy_log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error(transparent)]
    State(#[from] eddy_state::StateError),
    #[error("{0}")]
    Plan(String),
    /// A bug: an operator panicked. The task fails with it, as with any other error.
    #[error("internal error: {0}")]
    Panic(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

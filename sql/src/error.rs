//! The SQL layer's typed errors.

use datafusion::error::DataFusionError;
use eddy_engine::EngineError;
use eddy_log::LogError;

use crate::parser::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// The statement is wrong: an unknown source, a missing key column, a type mismatch.
    #[error("{0}")]
    Invalid(String),
    /// The statement needs something Eddy does not have yet.
    #[error("not supported yet: {what}")]
    Unsupported { kind: Missing, what: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("{}", datafusion_message(.0))]
    DataFusion(DataFusionError),
}

/// The column a DataFusion error could not find, as the user would write it (`NAME` or
/// `QUALIFIER.NAME`), if that is what the error is.
pub(crate) fn unresolved_column(e: &DataFusionError) -> Option<String> {
    let DataFusionError::SchemaError(error, _) = e.find_root() else {
        return None;
    };
    match error.as_ref() {
        datafusion::common::SchemaError::FieldNotFound { field, .. } => {
            Some(match &field.relation {
                Some(r) => format!("{}.{}", r.table(), field.name),
                None => field.name.clone(),
            })
        }
        _ => None,
    }
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        // ksqlDB's words for a column no source has; callers that know the clause say which.
        if let Some(column) = unresolved_column(&e) {
            return SqlError::Invalid(format!("Column '{column}' cannot be resolved."));
        }
        // DataFusion says "Invalid function 'x'" for a function it does not know: for ksqlDB's
        // functions that Eddy has not implemented yet.
        let msg = datafusion_message(&e);
        if let Some(rest) = msg.strip_prefix("Invalid function '") {
            let name = rest.split('\'').next().unwrap_or(rest);
            return unsupported(
                Missing::Function,
                format!("the function {}", name.to_ascii_uppercase()),
            );
        }
        SqlError::DataFusion(e)
    }
}

/// DataFusion's messages carry a context prefix ("Error during planning: ...") that says nothing
/// to a SQL user.
fn datafusion_message(e: &DataFusionError) -> String {
    let s = e.to_string();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "Execution error: ",
        "This feature is not implemented: ",
    ] {
        if let Some(rest) = s.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    s
}

/// What kind of thing is missing, for the conformance runner: a case that needs a format or a
/// function Eddy lacks is skipped; one that needs a missing language feature fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    Format,
    Function,
    Feature,
}

pub(crate) fn unsupported(kind: Missing, what: impl Into<String>) -> SqlError {
    SqlError::Unsupported {
        kind,
        what: what.into(),
    }
}

pub type Result<T, E = SqlError> = std::result::Result<T, E>;

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(SqlError::Invalid(msg.into()))
}

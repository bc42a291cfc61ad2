//! What ends a connection or the listener. Errors a client can act on are Kafka error codes in
//! responses, not these.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
    /// The size prefix announces more than `socket.request.max.bytes`: not a request this
    /// broker will buffer (Kafka closes the connection too).
    #[error("request of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge { size: i64, max: usize },
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("{api} v{version} is not supported")]
    UnsupportedVersion { api: &'static str, version: i16 },
    #[error("malformed {api} v{version} request: {reason}")]
    Malformed {
        api: &'static str,
        version: i16,
        reason: String,
    },
}

//! Kafka's wire protocol over Eddy's embedded log: Kafka clients (librdkafka and everything
//! built on it, the Java client, kafka-python, kcat) produce to and consume from Eddy's topics
//! unchanged, and SQL queries see their records at once, since there is one log.
//!
//! The broker is one node (id 0) that leads every partition. What it serves:
//!
//! - **produce** (`produce.rs`): record batches are checked (CRC, format, size) and appended as
//!   the log's records; `acks` 1 and all answer once the topic's fsync policy has made them
//!   durable, `acks=0` never answers. Idempotent producers get ids from `InitProducerId` and
//!   their sequence numbers are checked per partition (`producers.rs`).
//! - **fetch** (`fetch.rs`): whole stored batches from the one holding the fetch offset, up to
//!   what is both acknowledged (durable by the fsync policy) and stable: transactions of Eddy's
//!   queries that are still open or aborted are never served, whatever the isolation level
//!   asked for.
//! - **topics** (`admin.rs`): Metadata (with auto-creation, as Kafka's default), CreateTopics,
//!   DeleteTopics, CreatePartitions; DescribeConfigs, AlterConfigs and IncrementalAlterConfigs
//!   under Kafka's config names (`configs.rs`).
//! - **groups** (`groups/`, `offsets.rs`): the classic group protocol (JoinGroup, SyncGroup,
//!   Heartbeat, LeaveGroup, DescribeGroups, ListGroups) with its coordinator in memory, and
//!   committed offsets in the log's own offsets topic, shared with Eddy's consumers.
//!
//! Requests are decoded and responses encoded by the `kafka-protocol` crate; record batches by
//! `records.rs`. A connection reads requests one after another and answers them in order
//! (`connection.rs`): the part of a request that changes the log (appends, commits) happens in
//! that order, while waiting (for durability, for data to fetch, for a rebalance) overlaps with
//! reading the next requests, up to a bound.

mod admin;
mod configs;
mod connection;
mod error;
mod fetch;
mod groups;
mod offsets;
mod produce;
mod producers;
pub mod records;
mod versions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eddy_log::{Log, LogError};
use kafka_protocol::ResponseError;
use tokio::net::TcpListener;

pub use error::BrokerError;

/// How the broker presents itself and what it allows.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// The host and port Metadata and FindCoordinator tell clients to connect to.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Create a topic when a client asks for metadata of one that does not exist, as Kafka's
    /// `auto.create.topics.enable` (on by default there too).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic (Kafka's `num.partitions`).
    pub default_partitions: u32,
    /// The largest request accepted (Kafka's `socket.request.max.bytes`); a larger size prefix
    /// closes the connection.
    pub max_request_bytes: usize,
}

impl BrokerConfig {
    /// Defaults as Kafka's, advertising `addr` (an unspecified IP advertises 127.0.0.1:
    /// clients cannot connect to 0.0.0.0 everywhere, and `localhost` may resolve to ::1).
    pub fn advertising(addr: SocketAddr) -> BrokerConfig {
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            addr.ip().to_string()
        };
        BrokerConfig {
            advertised_host: host,
            advertised_port: addr.port(),
            auto_create_topics: true,
            default_partitions: 1,
            max_request_bytes: 100 << 20,
        }
    }
}

/// The broker's state: the log and what Kafka keeps beside it in memory.
pub struct Broker {
    log: Log,
    config: BrokerConfig,
    cluster_id: String,
    producers: producers::Producers,
    groups: groups::Groups,
}

/// A running listener; [`Listener::stop`] ends it.
pub struct Listener {
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Broker {
    pub fn new(log: Log, config: BrokerConfig) -> Arc<Broker> {
        // Clients only compare cluster ids for equality; one per data directory will do.
        let cluster_id = format!(
            "eddy-{:016x}",
            crc32c::crc32c(log.dir().as_os_str().as_encoded_bytes())
        );
        Arc::new(Broker {
            log,
            config,
            cluster_id,
            producers: producers::Producers::new(),
            groups: groups::Groups::new(),
        })
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Serves connections accepted on `listener` until [`Listener::stop`]; each connection is
    /// a task of the current tokio runtime.
    pub fn serve(self: &Arc<Self>, listener: TcpListener) -> Result<Listener, BrokerError> {
        let addr = listener.local_addr().map_err(BrokerError::Io)?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let broker = self.clone();
        let task = tokio::spawn(async move {
            let mut sweep = tokio::time::interval(groups::SWEEP_INTERVAL);
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let broker = broker.clone();
                            let stopped = stopped.clone();
                            tokio::spawn(connection::serve(broker, stream, peer, stopped));
                        }
                        // Out of file descriptors and the like: wait, rather than spin.
                        Err(e) => {
                            tracing::warn!("kafka listener: accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                    _ = sweep.tick() => broker.groups.sweep(),
                    _ = stopped.changed() => break,
                }
            }
        });
        Ok(Listener { addr, stop, task })
    }

    /// Binds `addr` and serves it (see [`Broker::serve`]).
    pub async fn bind(self: &Arc<Self>, addr: SocketAddr) -> Result<Listener, BrokerError> {
        let listener = TcpListener::bind(addr).await.map_err(BrokerError::Io)?;
        self.serve(listener)
    }
}

impl Listener {
    /// Stops accepting, closes every connection, and waits for the accept loop to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Kafka's error code for what the log refused.
fn error_code(e: &LogError) -> i16 {
    match e {
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition.code()
        }
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        LogError::InvalidRecord { .. } => ResponseError::InvalidRecord.code(),
        LogError::InvalidTopicName { .. } => ResponseError::InvalidTopicException.code(),
        LogError::TopicExists(_) => ResponseError::TopicAlreadyExists.code(),
        LogError::InvalidConfig(_) => ResponseError::InvalidConfig.code(),
        LogError::Corrupt { .. } => ResponseError::KafkaStorageError.code(),
        // Kafka's answer when a log directory fails, such as when its disk is full: retriable,
        // so a client's producer retries until space returns or its delivery timeout passes.
        e if e.is_no_space() => ResponseError::KafkaStorageError.code(),
        _ => ResponseError::UnknownServerError.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_kafkas_retriable_storage_error() {
        let full = LogError::Io {
            path: "00000000000000000000.log".into(),
            // ENOSPC
            error: std::io::Error::from_raw_os_error(28),
        };
        assert_eq!(error_code(&full), ResponseError::KafkaStorageError.code());
        let other = LogError::Io {
            path: "x".into(),
            error: std::io::Error::other("bad"),
        };
        assert_eq!(error_code(&other), ResponseError::UnknownServerError.code());
    }
}

//! One client connection: frames in, requests dispatched in order, responses out in order.
//!
//! A request is a 4-byte big-endian size and that many bytes: API key, version, correlation
//! id, the rest of the header, the body. Kafka answers the requests of one connection in the
//! order they came, and so does this: the reader runs each request's immediate part (decoding,
//! appending, committing) before reading the next, and queues its reply; the writer sends the
//! replies in queue order, awaiting those that wait for something (a group commit's fsync, data
//! for a fetch, the rest of a rebalance). The queue is bounded, so a client that stops reading
//! its responses stops being read from, and the broker buffers no more than a few replies.
//!
//! What closes a connection, as it closes one in Kafka: a size prefix that is negative or over
//! `socket.request.max.bytes`, an unknown API key, a version not served (except ApiVersions,
//! which answers with error 35 and the versions it has), a request that does not decode. The
//! listener and the other connections go on.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::error::BrokerError;
use crate::{admin, configs, fetch, groups, offsets, produce, versions, Broker};

/// Replies queued behind the one being sent, per connection.
const MAX_QUEUED_REPLIES: usize = 16;

/// What a request's reply needs to be encoded, and who sent it.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: String,
    pub peer: SocketAddr,
}

type Encoded = Result<BytesMut, BrokerError>;

pub(crate) enum Reply {
    /// Ready to send.
    Now(BytesMut),
    /// Ready once the future is (it may wait, never block).
    Later(Pin<Box<dyn Future<Output = Encoded> + Send>>),
    /// No response at all (a produce with `acks=0`).
    Silent,
}

impl Reply {
    pub fn now<R: Encodable>(head: &Head, body: R) -> Result<Reply, BrokerError> {
        encode(head, &body).map(Reply::Now)
    }

    pub fn later<R, F>(head: &Head, body: F) -> Reply
    where
        R: Encodable,
        F: Future<Output = R> + Send + 'static,
    {
        let head = head.clone();
        Reply::Later(Box::pin(async move { encode(&head, &body.await) }))
    }
}

/// Serves one connection until the client closes it, it breaks the protocol, or the listener
/// stops.
pub(crate) async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Reply>(MAX_QUEUED_REPLIES);
    let writer = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let bytes = match reply {
                Reply::Now(b) => b,
                Reply::Later(f) => match f.await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!("kafka connection from {peer}: {e}; closing it");
                        break;
                    }
                },
                Reply::Silent => continue,
            };
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let max = broker.config.max_request_bytes;
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut rd, max) => frame,
            _ = stopped.changed() => break,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("kafka connection from {peer}: {e}; closing it");
                break;
            }
        };
        match dispatch(&broker, frame, peer) {
            Ok(reply) => {
                if tx.send(reply).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!("kafka connection from {peer}: {e}; closing it");
                break;
            }
        }
    }
    // Replies already queued are still sent; then the writer closes the socket.
    drop(tx);
    let _ = writer.await;
}

/// Reads one size-prefixed frame; `None` at a clean end of the stream.
async fn read_frame(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    max: usize,
) -> Result<Option<Bytes>, BrokerError> {
    let mut size = [0u8; 4];
    match rd.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(BrokerError::Io(e)),
    }
    let size = i32::from_be_bytes(size);
    // Key, version and correlation id take 8 bytes: anything shorter is not a request.
    let len = usize::try_from(size)
        .ok()
        .filter(|&n| (8..=max).contains(&n))
        .ok_or(BrokerError::FrameTooLarge {
            size: size.into(),
            max,
        })?;
    let mut buf = BytesMut::zeroed(len);
    rd.read_exact(&mut buf).await.map_err(BrokerError::Io)?;
    Ok(Some(buf.freeze()))
}

fn dispatch(
    broker: &Arc<Broker>,
    mut frame: Bytes,
    peer: SocketAddr,
) -> Result<Reply, BrokerError> {
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| BrokerError::UnknownApi(raw_key))?;
    if !versions::supports(key, version) {
        if key == ApiKey::ApiVersions {
            // A newer client than this broker: answer in v0, which every client reads, with
            // the versions we have, and it retries with one of them.
            let head = Head {
                key,
                version: 0,
                correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
                client_id: String::new(),
                peer,
            };
            return Reply::now(
                &head,
                versions::api_versions(ResponseError::UnsupportedVersion.code()),
            );
        }
        return Err(BrokerError::UnsupportedVersion {
            api: api_name(key),
            version,
        });
    }
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .map_err(|e| malformed(key, version, e))?;
    let head = Head {
        key,
        version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.map(|c| c.to_string()).unwrap_or_default(),
        peer,
    };
    let b = broker;
    match key {
        ApiKey::ApiVersions => {
            decode::<kafka_protocol::messages::ApiVersionsRequest>(&head, frame)?;
            Reply::now(&head, versions::api_versions(0))
        }
        ApiKey::Metadata => Reply::now(&head, admin::metadata(b, decode(&head, frame)?, version)),
        ApiKey::CreateTopics => Reply::now(&head, admin::create_topics(b, decode(&head, frame)?)),
        ApiKey::DeleteTopics => Reply::now(
            &head,
            admin::delete_topics(b, decode(&head, frame)?, version),
        ),
        ApiKey::CreatePartitions => {
            Reply::now(&head, admin::create_partitions(b, decode(&head, frame)?))
        }
        ApiKey::DescribeConfigs => {
            Reply::now(&head, configs::describe_configs(b, decode(&head, frame)?))
        }
        ApiKey::AlterConfigs => Reply::now(&head, configs::alter_configs(b, decode(&head, frame)?)),
        ApiKey::IncrementalAlterConfigs => Reply::now(
            &head,
            configs::incremental_alter_configs(b, decode(&head, frame)?),
        ),
        ApiKey::Produce => produce::produce(b, &head, decode(&head, frame)?),
        ApiKey::InitProducerId => {
            Reply::now(&head, produce::init_producer_id(b, decode(&head, frame)?))
        }
        ApiKey::Fetch => Ok(Reply::later(
            &head,
            fetch::fetch(b.clone(), decode(&head, frame)?),
        )),
        ApiKey::ListOffsets => Reply::now(&head, fetch::list_offsets(b, decode(&head, frame)?)),
        ApiKey::FindCoordinator => Reply::now(
            &head,
            groups::find_coordinator(b, decode(&head, frame)?, version),
        ),
        ApiKey::JoinGroup => Ok(groups::join_group(b, &head, decode(&head, frame)?)),
        ApiKey::SyncGroup => Ok(groups::sync_group(b, &head, decode(&head, frame)?)),
        ApiKey::Heartbeat => Reply::now(&head, groups::heartbeat(b, decode(&head, frame)?)),
        ApiKey::LeaveGroup => Reply::now(&head, groups::leave_group(b, decode(&head, frame)?)),
        ApiKey::DescribeGroups => {
            Reply::now(&head, groups::describe_groups(b, decode(&head, frame)?))
        }
        ApiKey::ListGroups => Reply::now(&head, groups::list_groups(b, decode(&head, frame)?)),
        ApiKey::OffsetCommit => Ok(offsets::offset_commit(b, &head, decode(&head, frame)?)),
        ApiKey::OffsetFetch => Reply::now(
            &head,
            offsets::offset_fetch(b, decode(&head, frame)?, version),
        ),
        other => Err(BrokerError::UnsupportedVersion {
            api: api_name(other),
            version,
        }),
    }
}

fn decode<R: Decodable>(head: &Head, mut body: Bytes) -> Result<R, BrokerError> {
    let request =
        R::decode(&mut body, head.version).map_err(|e| malformed(head.key, head.version, e))?;
    // Bytes after the request are ignored, as Kafka ignores them: librdkafka 2.16 leaves three
    // behind in a Metadata request for all topics (the unused part of a reserved count).
    if body.has_remaining() {
        tracing::debug!(
            "{} bytes after a {} v{} request",
            body.remaining(),
            api_name(head.key),
            head.version
        );
    }
    Ok(request)
}

fn malformed(key: ApiKey, version: i16, reason: impl std::fmt::Display) -> BrokerError {
    BrokerError::Malformed {
        api: api_name(key),
        version,
        reason: reason.to_string(),
    }
}

/// Encodes a response with its size prefix and header.
fn encode<R: Encodable>(head: &Head, body: &R) -> Result<BytesMut, BrokerError> {
    let mut out = BytesMut::new();
    out.put_i32(0);
    let fail = |e: anyhow::Error| {
        malformed(
            head.key,
            head.version,
            format!("cannot encode the response: {e:#}"),
        )
    };
    ResponseHeader::default()
        .with_correlation_id(head.correlation_id)
        .encode(&mut out, head.key.response_header_version(head.version))
        .map_err(fail)?;
    body.encode(&mut out, head.version).map_err(fail)?;
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

pub(crate) fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        _ => "an API this broker does not serve",
    }
}

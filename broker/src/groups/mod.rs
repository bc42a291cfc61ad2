//! The group coordinator of Kafka's classic group protocol, in memory.
//!
//! A group moves through Kafka's states:
//!
//! ```text
//!  Empty ──join──▶ PreparingRebalance ──all joined──▶ CompletingRebalance ──leader syncs──▶ Stable
//!                        ▲   (or rebalance timeout)              │                            │
//!                        └──────── a member joins, leaves or times out ◀─────────────────────┘
//! ```
//!
//! - **JoinGroup** starts (or joins) a rebalance. Every member must join again within the
//!   rebalance timeout; those that do not are dropped. When all have joined, a new generation
//!   begins: each gets its JoinGroup answer, and the leader (the previous one if it stayed,
//!   else the first member) gets every member's subscription to compute the assignment. A
//!   member without an id is given one and asked to join again with it (MEMBER_ID_REQUIRED,
//!   KIP-394), from v4.
//! - **SyncGroup**: the leader hands in the assignment; every member's SyncGroup waits for it.
//! - **Heartbeat** keeps a member's session; during a rebalance it answers
//!   REBALANCE_IN_PROGRESS, which tells the member to join again. A member silent for its
//!   session timeout is dropped, and the group rebalances.
//! - **LeaveGroup** drops members at once.
//!
//! The protocol is chosen as Kafka chooses it: among those every member supports, the one most
//! members list first. Membership is not persisted: after a restart members find themselves
//! unknown and join again. Committed offsets are persisted, in the log (`offsets.rs`).
//! Static membership (`group.instance.id`) is accepted but treated as dynamic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::admin::str;
use crate::connection::{Head, Reply};
use crate::Broker;

mod group;
mod listing;

use group::{Group, Joined, Member, State, Synced};
pub(crate) use listing::{describe_groups, find_coordinator, list_groups};

/// How often sessions and rebalance timeouts are checked.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// Session timeouts accepted (Kafka's group.min/max.session.timeout.ms are 6 s and 30 min;
/// the lower bound here is laxer, for tests and impatient people).
const MIN_SESSION: Duration = Duration::from_millis(1000);
const MAX_SESSION: Duration = Duration::from_secs(1800);
/// How long an id handed out with MEMBER_ID_REQUIRED waits for its member to join with it.
const PENDING_ID_TTL: Duration = Duration::from_secs(300);

pub(crate) struct Groups {
    groups: Mutex<HashMap<String, Group>>,
    next_member: AtomicU64,
}

impl Groups {
    pub fn new() -> Groups {
        Groups {
            groups: Mutex::new(HashMap::new()),
            next_member: AtomicU64::new(0),
        }
    }

    /// Drops members whose session expired and ends rebalances whose timeout passed.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut groups = self.groups.lock();
        for group in groups.values_mut() {
            group
                .pending
                .retain(|_, since| now.duration_since(*since) < PENDING_ID_TTL);
            if group
                .rebalance_deadline
                .is_some_and(|d| now >= d && group.state == State::PreparingRebalance)
            {
                group.try_complete_join(true, now);
            }
            // A member waiting in JoinGroup is not expected to heartbeat.
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|m| m.join.is_none() && now.duration_since(m.last_seen) > m.session_timeout)
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                tracing::info!("kafka group member {id} timed out");
                group.remove(&id, now);
            }
        }
    }

    /// Whether an offset commit by this member in this generation may go ahead (a commit
    /// also counts as a heartbeat). Generation -1 without a member id is a commit from outside
    /// any group protocol (a consumer that assigns its partitions itself), always allowed.
    pub fn check_commit(&self, group: &str, generation: i32, member_id: &str) -> Result<(), i16> {
        if generation < 0 && member_id.is_empty() {
            return Ok(());
        }
        let mut groups = self.groups.lock();
        let g = groups
            .get_mut(group)
            .ok_or(ResponseError::UnknownMemberId.code())?;
        let state = g.state;
        let current = g.generation;
        let m = g
            .member(member_id)
            .ok_or(ResponseError::UnknownMemberId.code())?;
        if generation != current {
            return Err(ResponseError::IllegalGeneration.code());
        }
        if state == State::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress.code());
        }
        m.last_seen = Instant::now();
        Ok(())
    }

    fn names(&self) -> Vec<(String, State, Option<String>)> {
        self.groups
            .lock()
            .iter()
            .map(|(n, g)| (n.clone(), g.state, g.protocol_type.clone()))
            .collect()
    }
}

pub(crate) fn join_group(b: &Arc<Broker>, head: &Head, req: JoinGroupRequest) -> Reply {
    let (tx, rx) = oneshot::channel();
    join(b, head, req, tx);
    Reply::later(head, async move {
        let j = rx.await.unwrap_or(Joined {
            error: ResponseError::RebalanceInProgress.code(),
            ..Joined::default()
        });
        JoinGroupResponse::default()
            .with_error_code(j.error)
            .with_generation_id(if j.error == 0 { j.generation } else { -1 })
            .with_protocol_type(j.protocol_type.map(str))
            .with_protocol_name(j.protocol.map(str))
            .with_leader(str(j.leader))
            .with_member_id(str(j.member_id))
            .with_members(
                j.members
                    .into_iter()
                    .map(|(id, instance, metadata)| {
                        JoinGroupResponseMember::default()
                            .with_member_id(str(id))
                            .with_group_instance_id(instance.map(str))
                            .with_metadata(metadata)
                    })
                    .collect(),
            )
    })
}

fn join(b: &Broker, head: &Head, req: JoinGroupRequest, tx: oneshot::Sender<Joined>) {
    let fail = |tx: oneshot::Sender<Joined>, error: i16, member_id: String| {
        let _ = tx.send(Joined {
            error,
            member_id,
            ..Joined::default()
        });
    };
    let group_id = req.group_id.as_str().to_string();
    let member_id = req.member_id.as_str().to_string();
    if group_id.is_empty() {
        return fail(tx, ResponseError::InvalidGroupId.code(), member_id);
    }
    let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    if !(MIN_SESSION..=MAX_SESSION).contains(&session) {
        return fail(tx, ResponseError::InvalidSessionTimeout.code(), member_id);
    }
    // v0 has no rebalance timeout: it is the session timeout.
    let rebalance = match req.rebalance_timeout_ms {
        t if t > 0 => Duration::from_millis(t as u64),
        _ => session,
    };
    let protocol_type = req.protocol_type.as_str().to_string();
    let protocols: Vec<(String, Bytes)> = req
        .protocols
        .iter()
        .map(|p| (p.name.as_str().to_string(), p.metadata.clone()))
        .collect();
    let now = Instant::now();
    let mut groups = b.groups.groups.lock();
    let group = groups.entry(group_id).or_insert_with(Group::new);
    let others: Vec<&Member> = group.members.iter().filter(|m| m.id != member_id).collect();
    let compatible = others.is_empty()
        || (group.protocol_type.as_deref() == Some(protocol_type.as_str())
            && protocols.iter().any(|(n, _)| {
                others
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            }));
    if protocol_type.is_empty() || protocols.is_empty() || !compatible {
        return fail(
            tx,
            ResponseError::InconsistentGroupProtocol.code(),
            member_id,
        );
    }
    let member_id = if member_id.is_empty() {
        let n = b.groups.next_member.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{:08x}-{n}", head.client_id, eddy_log::now_ms() as u32);
        if head.version >= 4 {
            group.pending.insert(id.clone(), now);
            return fail(tx, ResponseError::MemberIdRequired.code(), id);
        }
        id
    } else if group.pending.remove(&member_id).is_none() && !group.has_member(&member_id) {
        return fail(tx, ResponseError::UnknownMemberId.code(), member_id);
    } else {
        member_id
    };
    group.protocol_type = Some(protocol_type);
    if group.state != State::PreparingRebalance {
        group.prepare_rebalance(now);
    }
    let client_host = head.peer.ip().to_string();
    let instance_id = req.group_instance_id.map(|i| i.to_string());
    match group.member(&member_id) {
        Some(m) => {
            m.protocols = protocols;
            m.session_timeout = session;
            m.rebalance_timeout = rebalance;
            m.last_seen = now;
            m.joined = true;
            // A member that joins again while its earlier join waits: the earlier one ends.
            if let Some(old) = m.join.replace(tx) {
                let _ = old.send(Joined {
                    error: ResponseError::RebalanceInProgress.code(),
                    ..Joined::default()
                });
            }
        }
        None => group.members.push(Member {
            id: member_id,
            instance_id,
            client_id: head.client_id.clone(),
            client_host,
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocols,
            assignment: Bytes::new(),
            last_seen: now,
            joined: true,
            join: Some(tx),
            sync: None,
        }),
    }
    group.try_complete_join(false, now);
}

pub(crate) fn sync_group(b: &Arc<Broker>, head: &Head, req: SyncGroupRequest) -> Reply {
    let (tx, rx) = oneshot::channel();
    sync(b, req, tx);
    Reply::later(head, async move {
        let s = rx.await.unwrap_or(Synced {
            error: ResponseError::RebalanceInProgress.code(),
            ..Synced::default()
        });
        SyncGroupResponse::default()
            .with_error_code(s.error)
            .with_assignment(s.assignment)
            .with_protocol_type(s.protocol_type.map(str))
            .with_protocol_name(s.protocol.map(str))
    })
}

fn sync(b: &Broker, req: SyncGroupRequest, tx: oneshot::Sender<Synced>) {
    let fail = |tx: oneshot::Sender<Synced>, error: i16| {
        let _ = tx.send(Synced {
            error,
            ..Synced::default()
        });
    };
    let now = Instant::now();
    let mut groups = b.groups.groups.lock();
    let Some(group) = groups.get_mut(req.group_id.as_str()) else {
        return fail(tx, ResponseError::UnknownMemberId.code());
    };
    let member_id = req.member_id.as_str();
    if !group.has_member(member_id) {
        return fail(tx, ResponseError::UnknownMemberId.code());
    }
    if req.generation_id != group.generation {
        return fail(tx, ResponseError::IllegalGeneration.code());
    }
    let mismatch = |asked: &Option<kafka_protocol::protocol::StrBytes>, have: &Option<String>| {
        asked
            .as_ref()
            .is_some_and(|a| have.as_deref() != Some(a.as_str()))
    };
    if mismatch(&req.protocol_type, &group.protocol_type)
        || mismatch(&req.protocol_name, &group.protocol)
    {
        return fail(tx, ResponseError::InconsistentGroupProtocol.code());
    }
    let (protocol_type, protocol) = (group.protocol_type.clone(), group.protocol.clone());
    let answer = |assignment: Bytes| Synced {
        error: 0,
        assignment,
        protocol_type: protocol_type.clone(),
        protocol: protocol.clone(),
    };
    match group.state {
        State::PreparingRebalance | State::Empty => {
            fail(tx, ResponseError::RebalanceInProgress.code())
        }
        State::Stable => {
            let m = group.member(member_id).expect("checked above");
            m.last_seen = now;
            let _ = tx.send(answer(m.assignment.clone()));
        }
        State::CompletingRebalance => {
            let is_leader = group.leader.as_deref() == Some(member_id);
            {
                let m = group.member(member_id).expect("checked above");
                m.last_seen = now;
                m.sync = Some(tx);
            }
            if is_leader {
                for m in &mut group.members {
                    m.assignment = req
                        .assignments
                        .iter()
                        .find(|a| a.member_id.as_str() == m.id)
                        .map(|a| a.assignment.clone())
                        .unwrap_or_default();
                    if let Some(tx) = m.sync.take() {
                        let _ = tx.send(answer(m.assignment.clone()));
                    }
                }
                group.state = State::Stable;
            }
        }
    }
}

pub(crate) fn heartbeat(b: &Arc<Broker>, req: HeartbeatRequest) -> HeartbeatResponse {
    let error = (|| {
        let mut groups = b.groups.groups.lock();
        let group = groups
            .get_mut(req.group_id.as_str())
            .ok_or(ResponseError::UnknownMemberId.code())?;
        let (state, generation) = (group.state, group.generation);
        let m = group
            .member(req.member_id.as_str())
            .ok_or(ResponseError::UnknownMemberId.code())?;
        m.last_seen = Instant::now();
        if state == State::PreparingRebalance {
            return Err(ResponseError::RebalanceInProgress.code());
        }
        if req.generation_id != generation {
            return Err(ResponseError::IllegalGeneration.code());
        }
        Ok(())
    })()
    .err()
    .unwrap_or(0);
    HeartbeatResponse::default().with_error_code(error)
}

pub(crate) fn leave_group(b: &Arc<Broker>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let now = Instant::now();
    let mut groups = b.groups.groups.lock();
    let group = groups.get_mut(req.group_id.as_str());
    // v3+ names several members; earlier versions one.
    if req.members.is_empty() {
        let error = match group {
            Some(g) if g.has_member(req.member_id.as_str()) => {
                g.remove(req.member_id.as_str(), now);
                0
            }
            _ => ResponseError::UnknownMemberId.code(),
        };
        return LeaveGroupResponse::default().with_error_code(error);
    }
    let Some(group) = group else {
        return LeaveGroupResponse::default()
            .with_error_code(ResponseError::UnknownMemberId.code());
    };
    let members = req
        .members
        .into_iter()
        .map(|m| {
            let known = group.has_member(m.member_id.as_str());
            if known {
                group.remove(m.member_id.as_str(), now);
            }
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(if known {
                    0
                } else {
                    ResponseError::UnknownMemberId.code()
                })
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

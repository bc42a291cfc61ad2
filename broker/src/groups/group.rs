//! One group's state machine: its members, the rebalance under way, and the answers each
//! waiting JoinGroup and SyncGroup gets when the rebalance moves on (see the parent module for
//! the states).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub(super) fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// A JoinGroup answer.
#[derive(Default)]
pub(super) struct Joined {
    pub(super) error: i16,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) leader: String,
    pub(super) member_id: String,
    /// Every member's id, instance id and subscription: for the leader only.
    pub(super) members: Vec<(String, Option<String>, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Default)]
pub(super) struct Synced {
    pub(super) error: i16,
    pub(super) assignment: Bytes,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
}

pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) last_seen: Instant,
    /// Joined the rebalance under way.
    pub(super) joined: bool,
    pub(super) join: Option<oneshot::Sender<Joined>>,
    pub(super) sync: Option<oneshot::Sender<Synced>>,
}

pub(super) struct Group {
    pub(super) state: State,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    /// In the order they joined.
    pub(super) members: Vec<Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, and when.
    pub(super) pending: HashMap<String, Instant>,
    pub(super) rebalance_deadline: Option<Instant>,
}

impl Group {
    pub(super) fn new() -> Group {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
        }
    }

    pub(super) fn has_member(&self, id: &str) -> bool {
        self.members.iter().any(|m| m.id == id)
    }

    pub(super) fn member(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    pub(super) fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == State::CompletingRebalance {
            for m in &mut self.members {
                if let Some(tx) = m.sync.take() {
                    let _ = tx.send(Synced {
                        error: ResponseError::RebalanceInProgress.code(),
                        ..Synced::default()
                    });
                }
            }
        }
        if self.state != State::PreparingRebalance {
            for m in &mut self.members {
                m.joined = false;
            }
        }
        self.state = State::PreparingRebalance;
        let timeout = self
            .members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + timeout);
    }

    /// Ends the join phase if every member has joined (or `force`, at the rebalance timeout,
    /// dropping those that have not).
    pub(super) fn try_complete_join(&mut self, force: bool, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        if !force && !self.members.iter().all(|m| m.joined) {
            return;
        }
        self.members.retain(|m| m.joined);
        self.generation += 1;
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.choose_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.iter().any(|m| &m.id == l))
        {
            self.leader = Some(self.members[0].id.clone());
        }
        self.state = State::CompletingRebalance;
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let subscriptions: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|m| {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default();
                (m.id.clone(), m.instance_id.clone(), metadata)
            })
            .collect();
        for m in &mut self.members {
            m.joined = false;
            m.last_seen = now;
            if let Some(tx) = m.join.take() {
                let _ = tx.send(Joined {
                    error: 0,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        subscriptions.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// Kafka's choice: of the protocols all members support, the one most members prefer.
    pub(super) fn choose_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        candidates
            .iter()
            .max_by_key(|c| {
                let votes = self
                    .members
                    .iter()
                    .filter(|m| {
                        m.protocols
                            .iter()
                            .map(|(n, _)| n)
                            .find(|n| candidates.contains(n))
                            == Some(**c)
                    })
                    .count();
                // Ties go to the first member's earlier preference.
                (
                    votes,
                    std::cmp::Reverse(candidates.iter().position(|x| x == *c)),
                )
            })
            .map(|c| (*c).clone())
    }

    /// Drops a member: its waiting requests are answered, and the others rebalance.
    pub(super) fn remove(&mut self, id: &str, now: Instant) {
        let Some(i) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        let m = self.members.remove(i);
        if let Some(tx) = m.join {
            let _ = tx.send(Joined {
                error: ResponseError::UnknownMemberId.code(),
                ..Joined::default()
            });
        }
        if let Some(tx) = m.sync {
            let _ = tx.send(Synced {
                error: ResponseError::UnknownMemberId.code(),
                ..Synced::default()
            });
        }
        match self.state {
            State::Stable | State::CompletingRebalance => {
                self.prepare_rebalance(now);
                self.try_complete_join(self.members.is_empty(), now);
            }
            State::PreparingRebalance => self.try_complete_join(self.members.is_empty(), now),
            State::Empty => {}
        }
    }
}

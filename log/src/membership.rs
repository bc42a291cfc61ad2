//! Consumer-group membership: who in a group reads which partitions, in this process.
//!
//! Members join with the topics they read; each join or leave starts a new generation whose
//! assignment the group's strategy computes. A member sees the generation change and picks up
//! its new partitions; dropping a member leaves the group, so the others take over its
//! partitions. The data directory is locked to one process, so membership lives in memory;
//! committed offsets (see [`crate::group_offsets`]) are what survives a restart.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::assignor::{self, Assignment, AssignmentStrategy, Members};
use crate::group_offsets::TopicPartition;
use crate::offset_watch::OffsetWatch;

#[derive(Default)]
pub(crate) struct GroupCoordinator {
    groups: Mutex<HashMap<String, GroupState>>,
    next_member: AtomicU64,
}

struct GroupState {
    strategy: AssignmentStrategy,
    members: Members,
    partition_counts: HashMap<String, u32>,
    assignment: Assignment,
    generation: Arc<OffsetWatch>,
}

/// A member's share of its group in one generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupAssignment {
    pub generation: u64,
    pub partitions: Vec<TopicPartition>,
}

/// Membership in a consumer group; leaves the group when dropped.
pub struct GroupMember {
    coordinator: Arc<GroupCoordinator>,
    group: String,
    member_id: String,
    generation: Arc<OffsetWatch>,
}

impl GroupCoordinator {
    pub fn join(
        self: &Arc<Self>,
        group: &str,
        topics: &[(String, u32)],
        strategy: AssignmentStrategy,
    ) -> GroupMember {
        let id = format!(
            "member-{}",
            self.next_member.fetch_add(1, Ordering::Relaxed)
        );
        let mut groups = self.groups.lock();
        let state = groups
            .entry(group.to_string())
            .or_insert_with(|| GroupState {
                strategy,
                members: Members::new(),
                partition_counts: HashMap::new(),
                assignment: Assignment::new(),
                generation: Arc::new(OffsetWatch::new(0)),
            });
        state.members.insert(
            id.clone(),
            topics
                .iter()
                .map(|(t, _)| t.clone())
                .collect::<BTreeSet<_>>(),
        );
        state.partition_counts.extend(topics.iter().cloned());
        state.rebalance();
        GroupMember {
            coordinator: self.clone(),
            group: group.to_string(),
            member_id: id,
            generation: state.generation.clone(),
        }
    }

    fn leave(&self, group: &str, member: &str) {
        let mut groups = self.groups.lock();
        let Some(state) = groups.get_mut(group) else {
            return;
        };
        state.members.remove(member);
        if state.members.is_empty() {
            // Wake nobody; the next member starts a fresh group (generations keep growing).
            state.assignment.clear();
            state.generation.advance(state.generation.get() + 1);
        } else {
            state.rebalance();
        }
    }
}

impl GroupState {
    fn rebalance(&mut self) {
        self.assignment = assignor::assign(
            self.strategy,
            &self.members,
            &self.partition_counts,
            &self.assignment,
        );
        self.generation.advance(self.generation.get() + 1);
    }
}

impl GroupMember {
    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// This member's partitions in the current generation.
    pub fn assignment(&self) -> GroupAssignment {
        let groups = self.coordinator.groups.lock();
        let state = &groups[&self.group];
        GroupAssignment {
            generation: state.generation.get(),
            partitions: state
                .assignment
                .get(&self.member_id)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// The current generation number; it changes whenever the group rebalances.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Blocks until the group moves past `generation` or `timeout` passes.
    pub fn wait_for_rebalance(&self, generation: u64, timeout: Duration) -> bool {
        self.generation.wait_blocking(generation + 1, Some(timeout))
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.coordinator.leave(&self.group, &self.member_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_split_a_topic_and_take_over_when_one_leaves() {
        let c = Arc::new(GroupCoordinator::default());
        let topics = [("t".to_string(), 4)];
        let a = c.join("g", &topics, AssignmentStrategy::Range);
        assert_eq!(a.assignment().partitions.len(), 4);
        let gen = a.generation();
        let b = c.join("g", &topics, AssignmentStrategy::Range);
        assert!(a.wait_for_rebalance(gen, Duration::from_secs(1)));
        let (pa, pb) = (a.assignment().partitions, b.assignment().partitions);
        assert_eq!((pa.len(), pb.len()), (2, 2));
        assert!(pa.iter().all(|tp| !pb.contains(tp)));
        drop(b);
        assert_eq!(a.assignment().partitions.len(), 4);
    }
}

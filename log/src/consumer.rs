//! A consumer: reads one or more topics, alone or as a member of a consumer group.
//!
//! Alone, it reads the partitions it is given (all of its topics' by default). In a group, it
//! reads the partitions the group assigns it and follows rebalances: on a new generation it
//! commits the positions it had, then starts each newly assigned partition at the group's
//! committed offset, or by its [`OffsetReset`] when there is none.
//!
//! Records of one partition come in offset order; partitions are read round robin, so there is
//! no order across partitions, as in Kafka.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::assignor::AssignmentStrategy;
use crate::error::{LogError, Result};
use crate::group_offsets::TopicPartition;
use crate::log_dir::Log;
use crate::membership::GroupMember;
use crate::partition::{Read, ReadLimits};
use crate::topic::Topic;

/// Where to start a partition that has no committed offset (or whose offset fell out of range).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    #[default]
    Latest,
}

/// A record with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub record: crate::record::Record,
}

pub struct Consumer {
    log: Log,
    topics: Vec<Arc<Topic>>,
    member: Option<GroupMember>,
    generation: u64,
    assigned: Vec<TopicPartition>,
    positions: HashMap<TopicPartition, u64>,
    reset: OffsetReset,
    limits: ReadLimits,
    next: usize,
}

impl Consumer {
    /// A consumer of every partition of `topics`, starting each by `reset`.
    pub fn new(log: &Log, topics: &[&str], reset: OffsetReset) -> Result<Consumer> {
        let mut c = Consumer::bare(log, topics, reset, None)?;
        let all = c
            .topics
            .iter()
            .flat_map(|t| (0..t.partition_count()).map(|p| TopicPartition::new(t.name(), p)))
            .collect();
        c.assign(all)?;
        Ok(c)
    }

    /// A member of consumer group `group` reading `topics`.
    pub fn with_group(
        log: &Log,
        group: &str,
        topics: &[&str],
        reset: OffsetReset,
        strategy: AssignmentStrategy,
    ) -> Result<Consumer> {
        let member = log.join_group(group, topics, strategy)?;
        let mut c = Consumer::bare(log, topics, reset, Some(member))?;
        c.follow_rebalance()?;
        Ok(c)
    }

    fn bare(
        log: &Log,
        topics: &[&str],
        reset: OffsetReset,
        member: Option<GroupMember>,
    ) -> Result<Consumer> {
        Ok(Consumer {
            log: log.clone(),
            topics: topics.iter().map(|t| log.topic(t)).collect::<Result<_>>()?,
            member,
            generation: 0,
            assigned: Vec::new(),
            positions: HashMap::new(),
            reset,
            limits: ReadLimits::default(),
            next: 0,
        })
    }

    pub fn set_limits(&mut self, limits: ReadLimits) {
        self.limits = limits;
    }

    /// Reads exactly these partitions (outside a group), starting each at its committed or reset
    /// position.
    pub fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        for tp in &partitions {
            self.log.topic(&tp.topic)?.partition(tp.partition)?;
        }
        self.positions.retain(|tp, _| partitions.contains(tp));
        self.assigned = partitions;
        Ok(())
    }

    pub fn assignment(&self) -> &[TopicPartition] {
        &self.assigned
    }

    /// Moves a partition's position.
    pub fn seek(&mut self, tp: &TopicPartition, offset: u64) {
        self.positions.insert(tp.clone(), offset);
    }

    /// The next offset this consumer will read from a partition.
    pub fn position(&mut self, tp: &TopicPartition) -> Result<u64> {
        if let Some(&p) = self.positions.get(tp) {
            return Ok(p);
        }
        let committed = self
            .member
            .as_ref()
            .and_then(|m| self.log.committed_offset(m.group(), tp));
        let p = match committed {
            Some(o) => o,
            None => self.reset_position(tp)?,
        };
        self.positions.insert(tp.clone(), p);
        Ok(p)
    }

    fn reset_position(&self, tp: &TopicPartition) -> Result<u64> {
        let partition = self.log.partition(&tp.topic, tp.partition)?;
        Ok(match self.reset {
            OffsetReset::Earliest => partition.start_offset(),
            OffsetReset::Latest => partition.end_offset(),
        })
    }

    fn follow_rebalance(&mut self) -> Result<()> {
        let Some(member) = &self.member else {
            return Ok(());
        };
        if member.generation() == self.generation {
            return Ok(());
        }
        let assignment = member.assignment();
        // Hand over cleanly: what we read of partitions we lose is committed for their next
        // owner.
        let revoked: Vec<(TopicPartition, u64)> = self
            .positions
            .iter()
            .filter(|(tp, _)| !assignment.partitions.contains(tp))
            .map(|(tp, &o)| (tp.clone(), o))
            .collect();
        if !revoked.is_empty() {
            self.log.commit_offsets(member.group(), &revoked)?;
        }
        self.generation = assignment.generation;
        self.positions
            .retain(|tp, _| assignment.partitions.contains(tp));
        self.assigned = assignment.partitions;
        Ok(())
    }

    /// Returns the next records, waiting up to `timeout` for some to arrive.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.follow_rebalance()?;
            let seen: Vec<u64> = self.topics.iter().map(|t| t.activity()).collect();
            for _ in 0..self.assigned.len() {
                let i = self.next % self.assigned.len();
                self.next = i + 1;
                let tp = self.assigned[i].clone();
                let read = self.read(&tp)?;
                self.positions.insert(tp.clone(), read.next);
                let records = read.records;
                if !records.is_empty() {
                    let topic: Arc<str> = Arc::from(tp.topic.as_str());
                    return Ok(records
                        .into_iter()
                        .map(|r| ConsumerRecord {
                            topic: topic.clone(),
                            partition: tp.partition,
                            offset: r.offset,
                            record: r.record,
                        })
                        .collect());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // Wait for an append to one of our topics; with several topics, or in a group that
            // may rebalance, wake up now and then to look again.
            let slice = if self.topics.len() == 1 && self.member.is_none() {
                deadline - now
            } else {
                (deadline - now).min(Duration::from_millis(50))
            };
            self.topics[0].wait_for_activity_blocking(seen[0], slice);
        }
    }

    fn read(&mut self, tp: &TopicPartition) -> Result<Read> {
        let offset = self.position(tp)?;
        let partition = self.log.partition(&tp.topic, tp.partition)?;
        match partition.read_on(offset, self.limits) {
            Err(LogError::OffsetOutOfRange { .. }) => {
                let reset = self.reset_position(tp)?;
                self.positions.insert(tp.clone(), reset);
                partition.read_on(reset, self.limits)
            }
            other => other,
        }
    }

    /// Commits the positions of all assigned partitions for the group. Without a group, does
    /// nothing.
    pub fn commit(&mut self) -> Result<()> {
        let Some(member) = &self.member else {
            return Ok(());
        };
        let offsets: Vec<(TopicPartition, u64)> = self
            .assigned
            .iter()
            .filter_map(|tp| self.positions.get(tp).map(|&o| (tp.clone(), o)))
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        self.log.commit_offsets(member.group(), &offsets)
    }
}

//! Partition assignment strategies for consumer groups: range and sticky, as in Kafka.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::group_offsets::TopicPartition;

/// How a group's partitions are divided among its members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AssignmentStrategy {
    /// Per topic, members (sorted by id) take contiguous ranges; the first ones get one more
    /// when the division is uneven. Kafka's `RangeAssignor`.
    #[default]
    Range,
    /// Balanced over all topics, moving as few partitions as possible when members come and
    /// go. In the spirit of Kafka's `StickyAssignor`.
    Sticky,
}

/// Member id → subscribed topics.
pub(crate) type Members = BTreeMap<String, BTreeSet<String>>;
/// Member id → assigned partitions (sorted).
pub(crate) type Assignment = BTreeMap<String, Vec<TopicPartition>>;

pub(crate) fn assign(
    strategy: AssignmentStrategy,
    members: &Members,
    partition_counts: &HashMap<String, u32>,
    previous: &Assignment,
) -> Assignment {
    let mut out: Assignment = members.keys().map(|m| (m.clone(), Vec::new())).collect();
    match strategy {
        AssignmentStrategy::Range => range(members, partition_counts, &mut out),
        AssignmentStrategy::Sticky => sticky(members, partition_counts, previous, &mut out),
    }
    out.values_mut().for_each(|v| v.sort());
    out
}

fn topics(members: &Members) -> BTreeSet<&String> {
    members.values().flatten().collect()
}

fn range(members: &Members, counts: &HashMap<String, u32>, out: &mut Assignment) {
    for topic in topics(members) {
        let subs: Vec<&String> = members
            .iter()
            .filter(|(_, t)| t.contains(topic))
            .map(|(m, _)| m)
            .collect();
        let n = counts.get(topic).copied().unwrap_or(0) as usize;
        let (each, extra) = (n / subs.len(), n % subs.len());
        let mut next = 0;
        for (i, m) in subs.into_iter().enumerate() {
            let take = each + usize::from(i < extra);
            let parts = (next..next + take).map(|p| TopicPartition::new(topic.clone(), p as u32));
            out.get_mut(m).expect("member").extend(parts);
            next += take;
        }
    }
}

fn sticky(
    members: &Members,
    counts: &HashMap<String, u32>,
    previous: &Assignment,
    out: &mut Assignment,
) {
    let all: Vec<TopicPartition> = topics(members)
        .into_iter()
        .flat_map(|t| {
            (0..counts.get(t).copied().unwrap_or(0)).map(move |p| TopicPartition::new(t.clone(), p))
        })
        .collect();
    let quota = all.len().div_ceil(members.len().max(1));
    let mut taken = BTreeSet::new();
    // Keep what each member had, up to the quota, while it still subscribes to it.
    for (m, subs) in members {
        for tp in previous.get(m).into_iter().flatten() {
            let exists = tp.partition < counts.get(&tp.topic).copied().unwrap_or(0);
            let mine = out.get_mut(m).expect("member");
            if exists && subs.contains(&tp.topic) && mine.len() < quota && taken.insert(tp.clone())
            {
                mine.push(tp.clone());
            }
        }
    }
    // Give the rest, one at a time, to the least loaded subscriber.
    for tp in all {
        if taken.contains(&tp) {
            continue;
        }
        let target = members
            .iter()
            .filter(|(_, subs)| subs.contains(&tp.topic))
            .map(|(m, _)| m)
            .min_by_key(|m| (out[*m].len(), (*m).clone()));
        if let Some(m) = target {
            out.get_mut(m).expect("member").push(tp.clone());
            taken.insert(tp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[&str], topics: &[&str]) -> Members {
        ids.iter()
            .map(|m| {
                (
                    m.to_string(),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    fn counts(c: &[(&str, u32)]) -> HashMap<String, u32> {
        c.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn parts(a: &Assignment, m: &str) -> Vec<u32> {
        a[m].iter().map(|tp| tp.partition).collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_first_members_more() {
        let a = assign(
            AssignmentStrategy::Range,
            &members(&["a", "b"], &["t"]),
            &counts(&[("t", 5)]),
            &Assignment::new(),
        );
        assert_eq!(parts(&a, "a"), vec![0, 1, 2]);
        assert_eq!(parts(&a, "b"), vec![3, 4]);
    }

    #[test]
    fn sticky_keeps_partitions_of_the_members_that_stay() {
        let c = counts(&[("t", 6)]);
        let three = assign(
            AssignmentStrategy::Sticky,
            &members(&["a", "b", "c"], &["t"]),
            &c,
            &Assignment::new(),
        );
        assert!(three.values().all(|v| v.len() == 2));
        let two = assign(
            AssignmentStrategy::Sticky,
            &members(&["a", "c"], &["t"]),
            &c,
            &three,
        );
        for m in ["a", "c"] {
            assert!(
                three[m].iter().all(|tp| two[m].contains(tp)),
                "{m} kept its partitions"
            );
            assert_eq!(two[m].len(), 3);
        }
    }

    #[test]
    fn every_partition_is_assigned_exactly_once() {
        let c = counts(&[("t", 7), ("u", 3)]);
        for strategy in [AssignmentStrategy::Range, AssignmentStrategy::Sticky] {
            let a = assign(
                strategy,
                &members(&["a", "b", "c"], &["t", "u"]),
                &c,
                &Assignment::new(),
            );
            let mut all: Vec<_> = a.values().flatten().cloned().collect();
            all.sort();
            all.dedup();
            assert_eq!(all.len(), 10, "{strategy:?}");
            assert_eq!(a.values().map(Vec::len).sum::<usize>(), 10);
        }
    }
}

//! How an aggregate's groups, sessions and table rows are kept in its state stores.
//!
//! A group's value is its largest timestamp then each aggregate's state ([`AggCall::encode`]);
//! a key's sessions are a count then, per session, start, end, timestamp and states. A time
//! window's key starts with the window's start, so that windows sort by time and expire as a
//! key range.

use datafusion::common::ScalarValue;

use super::udaf::{Acc, AggCall};

/// One group's (or one window's) aggregates, and the largest timestamp among its records.
#[derive(Clone, Debug)]
pub(super) struct Group {
    pub(super) accs: Vec<Acc>,
    pub(super) ts: i64,
}

/// A session of one key: its bounds and aggregates.
#[derive(Clone, Debug)]
pub(super) struct Session {
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) group: Group,
}

/// A table row as the aggregate saw it: its grouping values and arguments.
#[derive(Clone, Debug)]
pub struct PrevRow {
    pub(super) group: Vec<ScalarValue>,
    pub(super) args: Vec<ScalarValue>,
}

/// A time window's state key: its start (as bytes that sort as the numbers do), then the group.
/// Expired windows are then a key range.
pub(super) fn time_window_key(start: i64, group: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + group.len());
    time_window_key_into(start, group, &mut key);
    key
}

/// [`time_window_key`], appended to `out`.
pub(super) fn time_window_key_into(start: i64, group: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
    out.extend_from_slice(group);
}

pub(super) fn sortable_time(b: &[u8]) -> i64 {
    (u64::from_be_bytes(b.try_into().expect("8 bytes")) ^ (1 << 63)) as i64
}

pub(super) fn encode_group(calls: &[AggCall], g: &Group) -> Result<Vec<u8>, String> {
    // Room for the timestamp and a few scalar states, so that most groups take one allocation.
    let mut out = Vec::with_capacity(8 + 16 * calls.len());
    out.extend_from_slice(&g.ts.to_be_bytes());
    for (c, a) in calls.iter().zip(&g.accs) {
        c.encode(a, &mut out)?;
    }
    Ok(out)
}

pub(super) fn encode_sessions(calls: &[AggCall], sessions: &[Session]) -> Result<Vec<u8>, String> {
    let mut out = (sessions.len() as u32).to_be_bytes().to_vec();
    for s in sessions {
        out.extend_from_slice(&s.start.to_be_bytes());
        out.extend_from_slice(&s.end.to_be_bytes());
        out.extend_from_slice(&s.group.ts.to_be_bytes());
        for (c, a) in calls.iter().zip(&s.group.accs) {
            c.encode(a, &mut out)?;
        }
    }
    Ok(out)
}

pub(super) fn decode_sessions(calls: &[AggCall], mut b: &[u8]) -> Result<Vec<Session>, String> {
    fn take<const N: usize>(b: &mut &[u8]) -> Result<[u8; N], String> {
        let (head, rest) = b.split_at_checked(N).ok_or("truncated sessions")?;
        *b = rest;
        Ok(head.try_into().expect("N bytes"))
    }
    let n = u32::from_be_bytes(take(&mut b)?);
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let start = i64::from_be_bytes(take(&mut b)?);
        let end = i64::from_be_bytes(take(&mut b)?);
        let ts = i64::from_be_bytes(take(&mut b)?);
        let accs = calls
            .iter()
            .map(|c| c.decode(&mut b))
            .collect::<Result<_, _>>()?;
        out.push(Session {
            start,
            end,
            group: Group { accs, ts },
        });
    }
    Ok(out)
}

pub(super) fn decode_group(calls: &[AggCall], mut bytes: &[u8]) -> Result<Group, String> {
    let (ts, rest) = bytes.split_at_checked(8).ok_or("truncated group")?;
    let ts = i64::from_be_bytes(ts.try_into().expect("8 bytes"));
    bytes = rest;
    let accs = calls
        .iter()
        .map(|c| c.decode(&mut bytes))
        .collect::<Result<_, _>>()?;
    Ok(Group { accs, ts })
}

//! Windows ordered by end time, kept with the query's state.
//!
//! An aggregate keeps two of these: the windows that EMIT FINAL has still to emit, and every
//! live window, which leaves the state store when its retention has passed. Both survive a
//! restart: each entry is also a key in a state store, loaded back when the query starts.

use std::collections::BTreeSet;

use eddy_state::Commit;

use super::group::{sortable_time, time_window_key};
use super::group_state::GroupState;
use crate::error::Result;

/// Entries are keyed by end time (as bytes that sort as the numbers do), then the window's key.
pub struct WindowIndex {
    order: BTreeSet<(i64, Vec<u8>)>,
    state: GroupState<()>,
}

impl WindowIndex {
    /// The index whose entries are kept in `state`, with those it held at the last checkpoint.
    pub fn load(state: GroupState<()>) -> Result<WindowIndex> {
        let mut order = BTreeSet::new();
        for k in state.stored_keys()? {
            if k.len() >= 8 {
                let end = sortable_time(&k[..8]);
                order.insert((end, k[8..].to_vec()));
            }
        }
        Ok(WindowIndex { order, state })
    }

    pub fn insert(&mut self, end: i64, key: Vec<u8>) {
        if self.order.insert((end, key.clone())) {
            self.state.put(time_window_key(end, &key), ());
        }
    }

    /// The entry with the earliest end, removed, if it ends at or before `until`.
    pub fn pop_until(&mut self, until: i64) -> Option<(i64, Vec<u8>)> {
        if self.order.first().is_none_or(|(end, _)| *end > until) {
            return None;
        }
        let (end, key) = self.order.pop_first()?;
        self.state.delete(time_window_key(end, &key));
        Some((end, key))
    }

    pub fn checkpoint(&mut self, commit: &mut Commit) -> Result<()> {
        self.state.checkpoint(commit, 0, |_| Ok(Vec::new()))
    }
}

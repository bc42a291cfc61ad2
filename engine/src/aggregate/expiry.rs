//! Time passing over an aggregate's windows: EMIT FINAL's results as windows close, and the
//! removal of windows whose retention has passed.
//!
//! Both follow stream time, the largest event time seen, never the wall clock: a window
//! `[start, end)` closes when stream time reaches `end + grace`, and leaves the state when it
//! reaches `end + retention`.

use std::sync::Arc;

use super::group::{decode_group, decode_sessions, sortable_time, time_window_key};
use super::operator::Aggregate;
use super::output::Emit;
use super::row::GroupVals;
use super::window::WindowKind;
use crate::error::{EngineError, Result};
use crate::state_codec::decode_row;

impl Aggregate {
    /// EMIT FINAL: the windows that closed at the current stream time, in order of end.
    pub(super) fn close_windows(&mut self, out: &mut Vec<Emit>) -> Result<()> {
        let Some(w) = self.spec.window else {
            return Ok(());
        };
        while let Some((end, key)) = self.pending.pop_until(self.stream_time - w.grace_ms) {
            let calls = Arc::clone(&self.calls);
            let (group_bytes, start) = if w.is_session() {
                let (g, s) = key.split_at(key.len() - 8);
                (g, i64::from_be_bytes(s.try_into().expect("8 bytes")))
            } else {
                let (s, g) = key.split_at(8);
                (g, sortable_time(s))
            };
            let group_vals =
                decode_row(&self.group_types, group_bytes).map_err(EngineError::Plan)?;
            if w.is_session() {
                // The session may have merged into another since; then that one is pending.
                let sessions = self
                    .sessions
                    .take(group_bytes, |b| decode_sessions(&calls, b))?
                    .unwrap_or_default();
                if let Some(s) = sessions.iter().find(|s| s.start == start && s.end == end) {
                    self.emit_group(
                        out,
                        GroupVals::Values(group_vals),
                        &s.group,
                        Some((start, end)),
                    )?;
                }
                self.sessions.put(group_bytes.to_vec(), sessions);
                continue;
            }
            // A time window that closed more than a millisecond before stream time reached it
            // (stream time jumped past it) is not emitted: Kafka Streams' window store, which
            // EMIT FINAL reads from, has expired it by then.
            if end + w.grace_ms + 1 < self.stream_time {
                continue;
            }
            let Some(g) = self.groups.take(&key, |b| decode_group(&calls, b))? else {
                continue;
            };
            self.emit_group(out, GroupVals::Values(group_vals), &g, Some((start, end)))?;
            self.groups.put(key, g);
        }
        Ok(())
    }

    /// Removes the windows whose retention has passed from the state. Time windows are keyed
    /// by start first, so they go by range, a window size at a time; sessions one by one.
    pub(super) fn expire_windows(&mut self) -> Result<()> {
        let Some(w) = self.spec.window else {
            return Ok(());
        };
        if let WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } = w.kind {
            // Windows with end + retention <= stream time, that is start <= bound.
            let bound = self
                .stream_time
                .saturating_sub(w.retention())
                .saturating_sub(size);
            let step = match w.kind {
                WindowKind::Hopping { advance, .. } => advance,
                _ => size,
            };
            if bound > i64::MIN / 2 {
                let first_kept = bound - bound.rem_euclid(step) + step;
                self.groups.expire_below(time_window_key(first_kept, &[]));
            }
            return Ok(());
        }
        let calls = Arc::clone(&self.calls);
        while let Some((end, key)) = self.live.pop_until(self.stream_time - w.retention()) {
            let (group_bytes, start) = key.split_at(key.len() - 8);
            let start = i64::from_be_bytes(start.try_into().expect("8 bytes"));
            let mut sessions = self
                .sessions
                .take(group_bytes, |b| decode_sessions(&calls, b))?
                .unwrap_or_default();
            sessions.retain(|s| !(s.start == start && s.end == end));
            if sessions.is_empty() {
                self.sessions.delete(group_bytes.to_vec());
            } else {
                self.sessions.put(group_bytes.to_vec(), sessions);
            }
        }
        Ok(())
    }
}

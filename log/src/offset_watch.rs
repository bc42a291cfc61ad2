//! A monotonically growing offset that threads and async tasks can wait on.
//!
//! Each partition has two: its end offset (readers wait for new records) and its durable offset
//! (appenders wait for their group commit). Waiting blocks on a condition variable or awaits a
//! tokio watch channel; nobody polls.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

pub(crate) struct OffsetWatch {
    value: Mutex<u64>,
    changed: Condvar,
    tx: watch::Sender<u64>,
}

impl OffsetWatch {
    pub fn new(value: u64) -> Self {
        OffsetWatch {
            value: Mutex::new(value),
            changed: Condvar::new(),
            tx: watch::Sender::new(value),
        }
    }

    pub fn get(&self) -> u64 {
        *self.value.lock()
    }

    /// Raises the value (never lowers it) and wakes every waiter.
    pub fn advance(&self, to: u64) {
        let mut v = self.value.lock();
        if to > *v {
            *v = to;
            self.changed.notify_all();
            self.tx.send_replace(to);
        }
    }

    /// Lowers the value: only for truncating a partition's tail, which no waiter has been told
    /// about as acknowledged data it may keep.
    pub fn reset(&self, to: u64) {
        let mut v = self.value.lock();
        *v = to;
        self.tx.send_replace(to);
    }

    /// Blocks until the value reaches `target` or `timeout` passes; returns whether it did.
    pub fn wait_blocking(&self, target: u64, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut v = self.value.lock();
        while *v < target {
            match deadline {
                None => self.changed.wait(&mut v),
                Some(d) => {
                    if self.changed.wait_until(&mut v, d).timed_out() {
                        return *v >= target;
                    }
                }
            }
        }
        true
    }

    /// Waits until the value reaches `target`.
    pub async fn wait(&self, target: u64) {
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`, which the caller borrows, so this cannot fail.
        let _ = rx.wait_for(|&v| v >= target).await;
    }
}

/// A counter that grows on every change of what it watches (appends to a topic, to any topic
/// of a log), for readers of many partitions to wait on at once: they note the count, look at
/// their partitions, and wait for it to move only if they found nothing.
pub(crate) struct Activity {
    seq: std::sync::atomic::AtomicU64,
    watch: OffsetWatch,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            seq: std::sync::atomic::AtomicU64::new(0),
            watch: OffsetWatch::new(0),
        }
    }

    pub fn get(&self) -> u64 {
        self.seq.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Counts one change and wakes every waiter.
    pub fn bump(&self) {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        self.watch.advance(seq);
    }

    /// Blocks until the count exceeds `seen` or `timeout` passes; returns whether it did.
    pub fn wait_blocking(&self, seen: u64, timeout: Duration) -> bool {
        self.watch.wait_blocking(seen + 1, Some(timeout))
    }

    /// Waits until the count exceeds `seen`.
    pub async fn wait(&self, seen: u64) {
        self.watch.wait(seen + 1).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wakes_blocking_and_async_waiters() {
        let w = Arc::new(OffsetWatch::new(0));
        assert!(!w.wait_blocking(1, Some(Duration::from_millis(10))));
        let w2 = w.clone();
        let t = std::thread::spawn(move || w2.wait_blocking(5, None));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let w3 = w.clone();
        let task = rt.spawn(async move { w3.wait(5).await });
        std::thread::sleep(Duration::from_millis(20));
        w.advance(3);
        w.advance(5);
        assert!(t.join().unwrap());
        rt.block_on(task).unwrap();
        w.advance(2);
        assert_eq!(w.get(), 5, "never goes backwards");
    }
}

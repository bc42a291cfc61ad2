//! Waiting for disk space: what a query's writes do when the disk is full.
//!
//! A producer that appends to a full disk gets the error at once (`No space left on device`)
//! and decides for itself what to do. A query cannot: the output it is writing was computed
//! from input it has already read and state it has already changed. Failing the query would
//! leave a restart to read that input again, which repeats output under at-least-once.
//!
//! So the stream threads run their tasks inside [`waiting_for_space`]. A write on such a thread
//! that fails for want of space is retried where it failed ([`retry_while_full`]), after a pause
//! that grows to [`MAX_PAUSE`], until it succeeds or the task is stopped
//! ([`SpaceWaiter::give_up`]). Every step retried this way fails without effect: a batch is
//! written whole or not at all (a partial write is overwritten by the next attempt), a file is
//! replaced by rename, a RocksDB write batch applies atomically. So a retry neither loses nor
//! repeats a record, and once space returns the query goes on where it paused.
//!
//! Other threads (the REST API's, the Kafka listener's) are not waiting: for them a full disk
//! is an error, reported at once.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// The longest pause between two attempts of a write that found the disk full.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// A task's side of waiting for space: what it is waiting on, and the flag that tells it to
/// stop waiting.
#[derive(Default)]
pub struct SpaceWaiter {
    give_up: AtomicBool,
    waiting: Mutex<Option<String>>,
}

impl SpaceWaiter {
    /// Stops the waiting, now and from now on: the write that waits fails with its error.
    pub fn give_up(&self) {
        self.give_up.store(true, Ordering::Release);
    }

    /// The error a write is waiting out, while it waits.
    pub fn waiting(&self) -> Option<String> {
        self.waiting.lock().clone()
    }

    fn gave_up(&self) -> bool {
        self.give_up.load(Ordering::Acquire)
    }
}

thread_local! {
    static WAITER: RefCell<Option<Arc<SpaceWaiter>>> = const { RefCell::new(None) };
}

/// Runs `f` with the writes it makes on this thread waiting for space (see the module docs).
pub fn waiting_for_space<R>(waiter: &Arc<SpaceWaiter>, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<Arc<SpaceWaiter>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            WAITER.with(|w| *w.borrow_mut() = self.0.take());
        }
    }
    let _reset = Reset(WAITER.with(|w| w.borrow_mut().replace(waiter.clone())));
    f()
}

/// Whether writes on this thread wait for space.
pub fn is_waiting() -> bool {
    WAITER.with(|w| w.borrow().as_ref().is_some_and(|w| !w.gave_up()))
}

/// Whether `e` says the disk (or the user's quota) is full.
pub fn is_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Runs `attempt` until it succeeds, fails otherwise than for want of space (`full` tells),
/// or this thread's task gives up; at once when this thread is not waiting for space.
pub fn retry_while_full<T, E: std::fmt::Display>(
    full: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let waiter = WAITER.with(|w| w.borrow().clone());
    let mut pause = FIRST_PAUSE;
    let mut waited = false;
    loop {
        match attempt() {
            Err(e) if full(&e) => {
                let Some(waiter) = waiter.as_ref().filter(|w| !w.gave_up()) else {
                    return Err(e);
                };
                if !waited {
                    tracing::warn!("waiting for disk space: {e}");
                    *waiter.waiting.lock() = Some(e.to_string());
                    waited = true;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_PAUSE);
            }
            result => {
                if let Some(waiter) = waiter.as_ref().filter(|_| waited) {
                    tracing::info!("disk space is back");
                    *waiter.waiting.lock() = None;
                }
                return result;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::ENOSPC)
    }

    #[test]
    fn a_thread_not_waiting_gets_the_error_at_once() {
        let mut tries = 0;
        let r: Result<(), _> = retry_while_full(is_no_space, || {
            tries += 1;
            Err(full())
        });
        assert!(r.is_err());
        assert_eq!(tries, 1);
    }

    #[test]
    fn a_waiting_thread_retries_until_space_returns_and_other_errors_pass() {
        let waiter = Arc::new(SpaceWaiter::default());
        let mut tries = 0;
        let r = waiting_for_space(&waiter, || {
            retry_while_full(is_no_space, || {
                tries += 1;
                if tries < 3 {
                    assert!(tries == 1 || waiter.waiting().is_some());
                    Err(full())
                } else {
                    Ok(tries)
                }
            })
        });
        assert_eq!(r.unwrap(), 3);
        assert_eq!(waiter.waiting(), None);
        let other = waiting_for_space(&waiter, || {
            retry_while_full(is_no_space, || -> Result<(), _> {
                Err(std::io::Error::other("bad"))
            })
        });
        assert_eq!(other.unwrap_err().to_string(), "bad");
    }

    #[test]
    fn giving_up_ends_the_wait_with_the_error() {
        let waiter = Arc::new(SpaceWaiter::default());
        let mut tries = 0;
        let r: Result<(), _> = waiting_for_space(&waiter, || {
            retry_while_full(is_no_space, || {
                tries += 1;
                if tries == 2 {
                    waiter.give_up();
                }
                Err(full())
            })
        });
        assert!(is_no_space(&r.unwrap_err()));
        assert_eq!(tries, 2);
        // The thread waits no more once the call returns.
        let mut after = 0;
        let _ = retry_while_full(is_no_space, || -> Result<(), _> {
            after += 1;
            Err(full())
        });
        assert_eq!(after, 1);
    }
}

//! The log's two background threads.
//!
//! - The **flusher** serves group commit: every millisecond or so it fsyncs each partition whose
//!   `every N ms` interval has passed and that has unflushed appends, which acknowledges them.
//! - The **cleaner** applies retention and compaction every `cleaner_interval`.
//!
//! Both hold only a weak reference to the log, so dropping the last [`crate::Log`] ends them;
//! they are plain threads, so the log works with or without an async runtime.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use parking_lot::{Condvar, Mutex};

use crate::config::{FsyncPolicy, LogOptions};
use crate::log_dir::LogInner;

pub(crate) struct Background {
    stop: Arc<(Mutex<bool>, Condvar)>,
    _threads: Vec<JoinHandle<()>>,
}

/// How often the flusher looks for due partitions: the granularity of group-commit intervals.
const FLUSH_TICK: Duration = Duration::from_millis(1);

impl Background {
    pub fn start(log: Weak<LogInner>, options: &LogOptions) -> Background {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flusher = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::Builder::new()
                .name("eddy-log-flusher".into())
                .spawn(move || run(&log, &stop, FLUSH_TICK, flush_due))
                .expect("spawn flusher")
        };
        let interval = options.cleaner_interval;
        let cleaner = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("eddy-log-cleaner".into())
                .spawn(move || {
                    run(&log, &stop, interval, |inner| {
                        if let Err(e) = inner.run_cleaner(SystemTime::now()) {
                            tracing::error!("log cleaner: {e}");
                        }
                    })
                })
                .expect("spawn cleaner")
        };
        Background {
            stop,
            _threads: vec![flusher, cleaner],
        }
    }

    /// Asks the threads to end; they finish their current pass and exit. Not joined: the last
    /// reference to the log may be dropped on one of them.
    pub fn stop(&self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
    }
}

fn run(
    log: &Weak<LogInner>,
    stop: &(Mutex<bool>, Condvar),
    every: Duration,
    work: impl Fn(&LogInner),
) {
    loop {
        {
            let mut stopped = stop.0.lock();
            if !*stopped {
                stop.1.wait_for(&mut stopped, every);
            }
            if *stopped {
                return;
            }
        }
        // Not upgradable: the log is still being built (the threads start inside its
        // constructor) or already dropped, in which case its drop has set `stop` and the next
        // turn returns. Returning here instead would lose the flusher to a slow constructor,
        // and appends waiting for group commit would never be acknowledged.
        let Some(inner) = log.upgrade() else { continue };
        work(&inner);
    }
}

fn flush_due(inner: &LogInner) {
    for p in inner.all_partitions() {
        if matches!(p.fsync_policy(), FsyncPolicy::IntervalMs(_)) {
            if let Err(e) = p.flush_if_due() {
                tracing::error!(
                    topic = p.topic(),
                    partition = p.id(),
                    "group commit failed: {e}"
                );
            }
        }
    }
}

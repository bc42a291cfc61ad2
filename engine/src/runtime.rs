//! Stream threads: the pool that runs every query's tasks.
//!
//! A [`Runtime`] has `n` stream threads (`ksql.streams.num.stream.threads`, by default the
//! number of cores) and any number of tasks ([`crate::task`]), spread over the threads round
//! robin in the order they were added, so that the tasks of one sub-topology land on
//! different threads. A thread runs its tasks in turn: a task runs when it may have input
//! (its inputs' activity moved since it last found nothing, or it stopped with input left),
//! for at most [`SLICE`] at a time so that one busy task does not starve the others of its
//! thread. When none of its tasks had anything to do, the thread sleeps until something is
//! appended anywhere in the log. So an idle query costs no thread and no CPU, and a busy one
//! uses as many cores as it has tasks, up to the number of threads.
//!
//! A task's pipeline sits behind a mutex that its thread holds while running it; stopping a
//! task ([`TaskHandle::stop`]) takes it out of the pool and then waits for that mutex, so it
//! returns only once the task is not running anywhere. Changing the number of threads, or the
//! set of tasks, reassigns tasks to threads; a task may then finish its slice on its old
//! thread while its new one waits for it.
//!
//! A task's writes wait out a full disk where they fail (`eddy_log::space`): the task pauses,
//! shows as waiting for disk space, and goes on once there is space, neither losing nor
//! repeating output. Its thread's other tasks wait with it (they could not write either).
//! Stopping the task, or the pool, ends the wait: the task then fails, and resumes from its
//! last commit when started again.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_log::space::{waiting_for_space, SpaceWaiter};
use eddy_log::Log;
use parking_lot::Mutex;

use crate::error::{EngineError, Result};
use crate::pipeline::Pipeline;
use crate::processing_log::ProcessingLog;
use crate::task::TaskId;

/// The longest a task runs before its thread moves on to its next task.
pub const SLICE: Duration = Duration::from_millis(50);
/// How long an idle thread sleeps before it looks again anyway (a commit interval may have
/// passed, or the pool changed).
const IDLE_CHECK: Duration = Duration::from_millis(100);
/// How often a task with no new input runs anyway, in case its progress waits on something no
/// append announces.
const RECHECK: Duration = Duration::from_secs(1);

/// The number of stream threads when none is configured: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

const RUNNING: u8 = 0;
const FAILED: u8 = 1;
const STOPPED: u8 = 2;
const PAUSED: u8 = 3;

/// One task in the pool.
struct Slot {
    query: String,
    id: TaskId,
    pipeline: Mutex<Option<Pipeline>>,
    /// The stream thread it is assigned to.
    thread: AtomicUsize,
    state: AtomicU8,
    error: Mutex<Option<String>>,
    /// What its writes wait for while the disk is full; told to give up when it stops.
    space: Arc<SpaceWaiter>,
    /// Its inputs' activity when it last ran, whether it stopped with input left, and when it
    /// last ran.
    seen: Mutex<(Vec<u64>, bool, Instant)>,
}

impl Slot {
    /// Runs the task for a slice if it may have something to do; returns whether it consumed
    /// any input.
    fn run_slice(&self, log: &Log, plog: &ProcessingLog) -> bool {
        if self.state.load(Ordering::Acquire) != RUNNING {
            return false;
        }
        let mut guard = self.pipeline.lock();
        let Some(pipeline) = guard.as_mut() else {
            return false;
        };
        let activity = pipeline.activity();
        let mut seen = self.seen.lock();
        let (last, more, at) = &mut *seen;
        if !*more && *last == activity && at.elapsed() < RECHECK {
            return false;
        }
        (*last, *at) = (activity, Instant::now());
        match waiting_for_space(&self.space, || pipeline.run_for(log, plog, Some(SLICE))) {
            Ok((consumed, drained)) => {
                *more = !drained;
                consumed > 0
            }
            Err(e) => {
                tracing::error!(query = %self.query, task = %self.id, "task stopped: {e}");
                // The processing log is where ksqlDB users look for why a query misbehaves.
                let message = format!("task {} stopped: {e}", self.id);
                if let Err(report) = plog.report(&self.query, None, &message) {
                    tracing::error!(query = %self.query, "processing log: {report}");
                }
                *self.error.lock() = Some(e.to_string());
                self.state.store(FAILED, Ordering::Release);
                false
            }
        }
    }
}

struct Shared {
    log: Log,
    plog: ProcessingLog,
    /// Every task, in the order added.
    tasks: Mutex<Vec<Arc<Slot>>>,
    /// Bumped whenever tasks or threads change: threads then read their tasks again.
    generation: AtomicU64,
    /// The stream threads, by index.
    threads: Mutex<Vec<StreamThread>>,
}

/// A stream thread: its exit flag and handle.
struct StreamThread {
    exit: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Shared {
    /// Spreads the tasks over `n` threads, round robin in the order they were added.
    fn assign(&self, n: usize) {
        for (i, slot) in self.tasks.lock().iter().enumerate() {
            slot.thread.store(i % n.max(1), Ordering::Release);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn thread_count(&self) -> usize {
        self.threads.lock().len()
    }
}

/// The stream threads and the tasks they run; see the module docs.
pub struct Runtime {
    shared: Arc<Shared>,
}

impl Runtime {
    /// A pool of `threads` stream threads (at least one), with no tasks yet.
    pub fn new(log: Log, plog: ProcessingLog, threads: usize) -> Runtime {
        let runtime = Runtime {
            shared: Arc::new(Shared {
                log,
                plog,
                tasks: Mutex::new(Vec::new()),
                generation: AtomicU64::new(0),
                threads: Mutex::new(Vec::new()),
            }),
        };
        runtime.set_threads(threads);
        runtime
    }

    /// How many stream threads run.
    pub fn threads(&self) -> usize {
        self.shared.thread_count()
    }

    /// Grows or shrinks the pool to `n` threads (at least one); the tasks are spread over
    /// them again.
    pub fn set_threads(&self, n: usize) {
        let n = n.max(1);
        let mut threads = self.shared.threads.lock();
        while threads.len() > n {
            // It notices within IDLE_CHECK, or at the end of its slice, and ends detached.
            let t = threads.pop().expect("more than n");
            t.exit.store(true, Ordering::Release);
        }
        while threads.len() < n {
            let index = threads.len();
            let exit = Arc::new(AtomicBool::new(false));
            let shared = Arc::downgrade(&self.shared);
            let flag = exit.clone();
            let handle = std::thread::Builder::new()
                .name(thread_name(index))
                .spawn(move || stream_thread(shared, index, flag))
                .expect("spawning a stream thread");
            threads.push(StreamThread {
                exit,
                handle: Some(handle),
            });
        }
        drop(threads);
        self.shared.assign(n);
    }

    /// Adds a task of `query` to the pool; it starts running at once.
    pub fn spawn(&self, query: &str, pipeline: Pipeline) -> TaskHandle {
        let failure = pipeline.failure().map(str::to_string);
        let slot = Arc::new(Slot {
            query: query.to_string(),
            id: pipeline.task(),
            pipeline: Mutex::new(Some(pipeline)),
            thread: AtomicUsize::new(0),
            state: AtomicU8::new(if failure.is_some() { FAILED } else { RUNNING }),
            error: Mutex::new(failure),
            space: Arc::new(SpaceWaiter::default()),
            seen: Mutex::new((Vec::new(), true, Instant::now())),
        });
        self.shared.tasks.lock().push(slot.clone());
        self.shared.assign(self.threads());
        TaskHandle {
            slot,
            shared: self.shared.clone(),
        }
    }

    /// Stops every thread (the tasks stay, stopped where they were: they resume from their
    /// commits when started again). Returns once no thread runs any task.
    pub fn shutdown(&self) {
        // A task waiting for disk space would hold its thread: it fails instead.
        for slot in self.shared.tasks.lock().iter() {
            slot.space.give_up();
        }
        let threads: Vec<StreamThread> = std::mem::take(&mut *self.shared.threads.lock());
        for t in &threads {
            t.exit.store(true, Ordering::Release);
        }
        for t in threads {
            if let Some(h) = t.handle {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Kafka Streams' thread names, numbered from 1.
pub fn thread_name(index: usize) -> String {
    format!("stream-thread-{}", index + 1)
}

fn stream_thread(shared: std::sync::Weak<Shared>, index: usize, exit: Arc<AtomicBool>) {
    let mut mine: Vec<Arc<Slot>> = Vec::new();
    let mut generation = u64::MAX;
    loop {
        if exit.load(Ordering::Acquire) {
            return;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = shared.generation.load(Ordering::Acquire);
        if now != generation {
            generation = now;
            mine = shared
                .tasks
                .lock()
                .iter()
                .filter(|s| s.thread.load(Ordering::Acquire) == index)
                .cloned()
                .collect();
        }
        // Noted before looking, so that an append made while the tasks run wakes the wait.
        let seen = shared.log.activity();
        let mut worked = false;
        for slot in &mine {
            if exit.load(Ordering::Acquire) {
                return;
            }
            // A task moved to another thread since: that one runs it now.
            if slot.thread.load(Ordering::Acquire) != index {
                continue;
            }
            worked |= slot.run_slice(&shared.log, &shared.plog);
        }
        if !worked {
            let log = shared.log.clone();
            drop(shared);
            log.wait_for_activity_blocking(seen, IDLE_CHECK);
        }
    }
}

/// A task in the pool, to watch and to stop.
pub struct TaskHandle {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
}

impl TaskHandle {
    /// The stream thread it is assigned to (`stream-thread-1`, ...).
    pub fn thread(&self) -> String {
        thread_name(self.slot.thread.load(Ordering::Acquire))
    }

    /// Whether it failed, and why.
    pub fn error(&self) -> Option<String> {
        match self.slot.state.load(Ordering::Acquire) {
            FAILED => self.slot.error.lock().clone(),
            _ => None,
        }
    }

    /// Stops running the task until [`TaskHandle::resume`] (ksqlDB's PAUSE): its state,
    /// input positions and open output stay as they are. What it did is committed, unless a
    /// slice still runs after a moment (it commits as it ends, if it ran out of input).
    pub fn pause(&self) -> Result<()> {
        let paused =
            self.slot
                .state
                .compare_exchange(RUNNING, PAUSED, Ordering::AcqRel, Ordering::Acquire);
        if paused.is_err() {
            return Ok(());
        }
        if let Some(mut guard) = self.slot.pipeline.try_lock_for(Duration::from_secs(1)) {
            if let Some(pipeline) = guard.as_mut() {
                pipeline.commit_now(&self.shared.log, &self.shared.plog)?;
            }
        }
        Ok(())
    }

    /// Runs a paused task again, from where it paused.
    pub fn resume(&self) {
        let resumed =
            self.slot
                .state
                .compare_exchange(PAUSED, RUNNING, Ordering::AcqRel, Ordering::Acquire);
        if resumed.is_ok() {
            // Input may have come while it was paused: it looks at once.
            self.slot.seen.lock().1 = true;
        }
    }

    /// Whether it is paused.
    pub fn paused(&self) -> bool {
        self.slot.state.load(Ordering::Acquire) == PAUSED
    }

    /// The write error it is waiting out, while the disk is full.
    pub fn waiting_for_space(&self) -> Option<String> {
        self.slot.space.waiting()
    }

    /// Takes the task out of the pool and waits until no thread runs it; returns the error it
    /// had stopped with, if any.
    pub fn stop(&mut self) -> Result<()> {
        let failed = self.error();
        self.slot.state.store(STOPPED, Ordering::Release);
        self.slot.space.give_up();
        self.shared
            .tasks
            .lock()
            .retain(|s| !Arc::ptr_eq(s, &self.slot));
        self.shared.assign(self.shared.thread_count());
        // Waits for a slice in progress; the pipeline (and its stores) go with it, once what
        // it did is committed.
        if let Some(mut pipeline) = self.slot.pipeline.lock().take() {
            if failed.is_none() {
                if let Err(e) = pipeline.commit_now(&self.shared.log, &self.shared.plog) {
                    tracing::warn!(query = %self.slot.query, task = %self.slot.id, "the last commit failed: {e}");
                }
            }
        }
        match failed {
            Some(e) => Err(EngineError::Plan(format!(
                "task {} of {} had failed: {e}",
                self.slot.id, self.slot.query
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        if self.slot.state.load(Ordering::Acquire) != STOPPED {
            let _ = self.stop();
        }
    }
}

//! How the session runs its queries' tasks: driven in rounds by [`Session::run_until_idle`]
//! (deterministic with one thread), or on the stream threads of an `eddy_engine::Runtime`
//! once [`Session::run_in_background`] is called; and how many stream threads there are.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use eddy_engine::{Pipeline, ProcessingLog, Runtime, TaskHandle, TaskId, TaskMetrics};
use eddy_log::Log;
use parking_lot::Mutex;

use super::{Outcome, Session};
use crate::error::{invalid, Result};

/// Kafka Streams' (and ksqlDB's) name for the number of stream threads.
pub const STREAM_THREADS: &str = "ksql.streams.num.stream.threads";

/// One task of a persistent query, and where it runs.
pub(super) struct TaskRun {
    pub id: TaskId,
    pub metrics: Arc<TaskMetrics>,
    run: TaskExec,
    /// Paused by PAUSE: not run until RESUME.
    paused: bool,
}

enum TaskExec {
    /// Run by [`Session::run_until_idle`].
    Driven(Box<Pipeline>),
    /// On the stream threads.
    Background(TaskHandle),
    /// Only while the task moves to the stream threads.
    Moving,
}

impl TaskRun {
    /// `pipeline`, a task of `query`, on `runtime`'s threads, or driven without one.
    pub(super) fn new(query: &str, pipeline: Pipeline, runtime: Option<&Runtime>) -> TaskRun {
        let (id, metrics) = (pipeline.task(), pipeline.task_metrics());
        let run = match runtime {
            Some(rt) => TaskExec::Background(rt.spawn(query, pipeline)),
            None => TaskExec::Driven(Box::new(pipeline)),
        };
        TaskRun {
            id,
            metrics,
            run,
            paused: false,
        }
    }

    fn move_to(&mut self, query: &str, runtime: &Runtime) -> Result<()> {
        self.run = match std::mem::replace(&mut self.run, TaskExec::Moving) {
            TaskExec::Driven(p) => TaskExec::Background(runtime.spawn(query, *p)),
            other => other,
        };
        // It stays paused there.
        self.pause(self.paused)
    }

    /// Pauses (PAUSE) or resumes (RESUME) the task.
    fn pause(&mut self, pause: bool) -> Result<()> {
        self.paused = pause;
        if let TaskExec::Background(handle) = &self.run {
            match pause {
                true => handle.pause()?,
                false => handle.resume(),
            }
        }
        Ok(())
    }

    pub(super) fn paused(&self) -> bool {
        self.paused
    }

    /// Stops the task if it runs on the stream threads; the error it had failed with, if any.
    pub(super) fn stop(&mut self) -> Result<()> {
        match &mut self.run {
            TaskExec::Background(handle) => Ok(handle.stop()?),
            _ => Ok(()),
        }
    }

    /// Why the task failed, if it did, or what keeps it paused: a full disk, which it waits
    /// out (shown as ksqlDB shows a query that retries after an error).
    pub(super) fn error(&self) -> Option<String> {
        match &self.run {
            TaskExec::Background(handle) => handle.error().or_else(|| {
                handle
                    .waiting_for_space()
                    .map(|e| format!("paused, waiting for disk space: {e}"))
            }),
            TaskExec::Driven(p) => p.failure().map(str::to_string),
            TaskExec::Moving => None,
        }
    }

    /// The stream thread the task runs on (`driven` when the session drives it).
    pub(super) fn thread(&self) -> String {
        match &self.run {
            TaskExec::Background(handle) => handle.thread(),
            _ => "driven".into(),
        }
    }

    /// The pipeline, if the session drives it and it is not paused.
    fn driven(&mut self) -> Option<&mut Pipeline> {
        match &mut self.run {
            TaskExec::Driven(p) if !self.paused => Some(p),
            _ => None,
        }
    }
}

/// Stops `tasks`, logging the errors some had failed with.
pub(super) fn stop_all(query: &str, tasks: &mut [TaskRun]) {
    for task in tasks {
        if let Err(e) = task.stop() {
            tracing::warn!(query, task = %task.id, "the task had failed: {e}");
        }
    }
}

/// Runs each of `tasks` once over what it can read (`Pipeline::run_available`), on up to
/// `threads` threads at once (in order, on this one, with one); returns the records consumed.
fn run_round(
    tasks: Vec<&mut Pipeline>,
    threads: usize,
    log: &Log,
    plog: &ProcessingLog,
) -> Result<usize> {
    if threads <= 1 || tasks.len() <= 1 {
        let mut progress = 0;
        for task in tasks {
            progress += task.run_available(log, plog)?;
        }
        return Ok(progress);
    }
    let queue = Mutex::new(tasks.into_iter());
    let progress = AtomicUsize::new(0);
    let failure = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let Some(task) = queue.lock().next() else {
                    return;
                };
                match task.run_available(log, plog) {
                    Ok(n) => {
                        progress.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failure.lock().get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failure.into_inner() {
        Some(e) => Err(e.into()),
        None => Ok(progress.into_inner()),
    }
}

impl Session {
    /// Runs every driven task until none has anything left to read: in rounds, each task of
    /// each query once per round, in the order the queries were created and their
    /// sub-topologies feed each other, so a query that reads another's output sees it after
    /// the upstream query consumed its input. Deterministic: the test driver.
    pub fn run_until_idle(&mut self) -> Result<()> {
        self.run_rounds(1)
    }

    /// [`Session::run_until_idle`] on all the stream threads: a round's tasks run in
    /// parallel, so what one query reads of another's output as it runs depends on timing,
    /// as it does on a server; once it returns, every query has processed everything.
    pub fn run_until_caught_up(&mut self) -> Result<()> {
        let threads = self.stream_threads()?;
        self.run_rounds(threads)
    }

    fn run_rounds(&mut self, threads: usize) -> Result<()> {
        loop {
            let tasks: Vec<&mut Pipeline> = self
                .queries
                .iter_mut()
                .flat_map(|q| q.tasks.iter_mut())
                .chain(
                    self.materialized
                        .values_mut()
                        .flat_map(|m| m.tasks.iter_mut()),
                )
                .filter_map(TaskRun::driven)
                .collect();
            if run_round(tasks, threads, &self.log, &self.plog)? == 0 {
                return Ok(());
            }
        }
    }

    /// From now on, persistent queries run continuously on the session's stream threads
    /// ([`STREAM_THREADS`] of them, by default one per core), each task woken by appends to
    /// its inputs; the queries already started move there too.
    pub fn run_in_background(&mut self) -> Result<()> {
        if self.runtime.is_some() {
            return Ok(());
        }
        let threads = self.stream_threads()?;
        let runtime = Runtime::new(self.log.clone(), self.plog.clone(), threads);
        for q in &mut self.queries {
            for task in &mut q.tasks {
                task.move_to(&q.id, &runtime)?;
            }
        }
        for m in self.materialized.values_mut() {
            for task in &mut m.tasks {
                task.move_to(&m.id, &runtime)?;
            }
        }
        self.runtime = Some(runtime);
        Ok(())
    }

    /// PAUSE (`pause`) or RESUME the persistent query `id`, or all of them (`None`), with the
    /// hidden steps of an n-way join. Transient queries cannot be paused, as in ksqlDB.
    pub(super) fn pause_queries(&mut self, id: Option<&str>, pause: bool) -> Result<Outcome> {
        let chosen: Vec<String> = self
            .queries
            .iter()
            .filter(|q| id.is_none_or(|id| q.id.eq_ignore_ascii_case(id)))
            .map(|q| q.sink.clone())
            .collect();
        if chosen.is_empty() && id.is_some() {
            return invalid(format!("Unknown queryId: {}", id.unwrap_or_default()));
        }
        for q in &mut self.queries {
            let step_of_chosen =
                crate::join::join_step_of(&q.sink).is_some_and(|s| chosen.iter().any(|c| c == s));
            if chosen.contains(&q.sink) || step_of_chosen {
                for task in &mut q.tasks {
                    task.pause(pause)?;
                }
            }
        }
        Ok(Outcome::Message(
            match pause {
                true => "Query paused.",
                false => "Query resumed.",
            }
            .into(),
        ))
    }

    /// How many stream threads run the queries: [`STREAM_THREADS`] as set (with `SET`, or in
    /// the configuration the session was given), else one per core.
    pub fn stream_threads(&self) -> Result<usize> {
        match self.property(STREAM_THREADS) {
            None => Ok(eddy_engine::runtime::default_threads()),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => invalid(format!(
                    "Invalid value {v} for configuration {STREAM_THREADS}: it must be a positive number of threads"
                )),
            },
        }
    }

    /// Applies a changed [`STREAM_THREADS`] to the running stream threads.
    pub(super) fn resize_stream_threads(&mut self) -> Result<()> {
        let n = self.stream_threads()?;
        if let Some(rt) = &self.runtime {
            rt.set_threads(n);
        }
        Ok(())
    }

    /// Stops the stream threads (the tasks resume from their commits when the session is
    /// opened again), logging the errors of tasks that had failed.
    pub fn shutdown(&mut self) {
        for q in &mut self.queries {
            stop_all(&q.id, &mut q.tasks);
        }
        for m in self.materialized.values_mut() {
            stop_all(&m.id, &mut m.tasks);
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown();
        }
    }
}

//! Running queries continuously.
//!
//! A [`QueryTask`] owns a [`Pipeline`] and runs it on a blocking task of a tokio runtime (the
//! log's reads and appends are blocking file I/O): it processes everything readable, then sleeps
//! until its source topic is appended to, and so on until stopped. Input offsets are committed
//! by the pipeline after each batch's output is appended, so a stopped or crashed task resumes
//! where its output ends.
//!
//! Today a task serves all partitions of its source in turn; a task per (query, partition) comes
//! with the partitioned state stores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eddy_log::Log;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::pipeline::Pipeline;
use crate::processing_log::ProcessingLog;

/// How long an idle task sleeps before looking at its stop flag again.
const IDLE_CHECK: Duration = Duration::from_millis(100);

pub struct QueryTask {
    id: String,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl QueryTask {
    pub fn spawn(
        runtime: &Handle,
        mut pipeline: Pipeline,
        log: Log,
        plog: ProcessingLog,
    ) -> QueryTask {
        let stop = Arc::new(AtomicBool::new(false));
        let id = pipeline.id.clone();
        let flag = stop.clone();
        let handle = runtime.spawn_blocking(move || {
            while !flag.load(Ordering::Acquire) {
                let seen = pipeline.activity();
                match pipeline.run_available(&log, &plog) {
                    Ok(0) => pipeline.wait_for_input(&seen, IDLE_CHECK),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(query = %pipeline.id, "query stopped: {e}");
                        return Err(e);
                    }
                }
            }
            Ok(())
        });
        QueryTask {
            id,
            stop,
            handle: Some(handle),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the task ended (it failed, or was stopped).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the task and waits for it; returns the error it stopped with, if any.
    pub fn stop(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        match self.handle.take() {
            Some(h) => match futures::executor::block_on(h) {
                Ok(r) => r,
                Err(join) => Err(crate::error::EngineError::Plan(format!(
                    "query {} panicked: {join}",
                    self.id
                ))),
            },
            None => Ok(()),
        }
    }
}

impl Drop for QueryTask {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

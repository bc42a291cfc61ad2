//! A one-line progress report for long work (`eddy produce`, `eddy test`, the benchmarks, a
//! query catching up with its backlog), drawn on standard error only when that is a terminal:
//! piped or captured output stays exactly what it was.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use eddy_sql::thousands;

/// How often the line is redrawn at most.
const EVERY: Duration = Duration::from_millis(250);

pub struct Progress {
    label: String,
    enabled: bool,
    started: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    /// A report about `label`; silent when standard error is not a terminal.
    pub fn new(label: impl Into<String>) -> Progress {
        Progress {
            label: label.into(),
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            drawn: None,
        }
    }

    /// Redraws the line with `done` units (and `detail`) if it was not drawn in the last
    /// [`EVERY`]; cheap enough to call per batch.
    pub fn update(&mut self, done: u64, unit: &str, detail: &str) {
        if !self.enabled || self.drawn.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.drawn = Some(Instant::now());
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let mut line = format!(
            "{}: {} {unit} ({}/s, {secs:.1} s)",
            self.label,
            thousands(done),
            thousands(rate as u64)
        );
        if !detail.is_empty() {
            line.push_str(", ");
            line.push_str(detail);
        }
        // `\r` and "erase to end of line": the next draw replaces this one.
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }

    /// Erases the line, so what follows starts on a clean one.
    pub fn finish(&mut self) {
        if self.enabled && self.drawn.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
        self.drawn = None;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

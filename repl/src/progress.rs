//! A one-line progress report for long work (`eddy produce`, `eddy test`, the benchmarks, a
//! query catching up with its backlog), drawn on standard error only when that is a terminal:
//! piped or captured output stays exactly what it was.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eddy_sql::{thousands, LagProbe, Session};

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

/// Queries catching up with a backlog, watched from a thread of its own while the caller
/// drives them: records done (the lag at the start less the lag now) and the lag shrinking.
/// The lag is the committed one, so a stateful query's line moves at each commit.
pub struct LagWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LagWatch {
    /// Watches `probe` when standard error is a terminal and there is a backlog at all.
    pub fn start(probe: LagProbe) -> LagWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (std::io::stderr().is_terminal() && probe.total() > 0).then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                draw_lag(&probe, "catching up", |_| stop.load(Ordering::Acquire));
            })
        });
        LagWatch { stop, thread }
    }
}

impl Drop for LagWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Blocks while the queries `probe` watches have a backlog, drawing its lag shrinking, until
/// it is gone or `interrupted` (Ctrl-C) is set: what the REPL does after a CREATE ... AS
/// SELECT, whose query runs in the background either way. Returns at once unless standard
/// error is a terminal.
pub fn follow_backlog(query: &str, probe: &LagProbe, interrupted: &AtomicBool) {
    if !std::io::stderr().is_terminal() || probe.total() == 0 {
        return;
    }
    interrupted.store(false, Ordering::Release);
    let label = format!("{query} catching up (Ctrl-C returns to the prompt)");
    let (done, secs) = draw_lag(probe, &label, |lag| {
        lag == 0 || interrupted.swap(false, Ordering::AcqRel)
    });
    let rest = probe.total();
    let state = if rest == 0 {
        "caught up".to_string()
    } else {
        format!("running in the background, lag {}", thousands(rest))
    };
    eprintln!(
        "{query}: {} records in {secs:.1} s, {state}",
        thousands(done)
    );
}

/// Redraws the records done (the lag at the start less the lag now) and the lag until `done`
/// says so; returns the records done and the seconds taken.
fn draw_lag(probe: &LagProbe, label: &str, mut done: impl FnMut(u64) -> bool) -> (u64, f64) {
    let initial = probe.total();
    let mut progress = Progress::new(label);
    loop {
        let lag = probe.total();
        let records = initial.saturating_sub(lag);
        if done(lag) {
            return (records, progress.started.elapsed().as_secs_f64());
        }
        progress.update(records, "records", &format!("lag {}", thousands(lag)));
        std::thread::sleep(EVERY / 5);
    }
}

/// `session.run_until_caught_up()` (the queries on all stream threads until none has
/// anything left to read), with the lag shrinking on a terminal meanwhile.
pub fn run_until_caught_up(session: &mut Session) -> eddy_sql::Result<()> {
    let _watch = LagWatch::start(session.lag_probe());
    session.run_until_caught_up()
}

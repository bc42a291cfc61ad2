//! The interactive REPL: `eddy` with no command.
//!
//! It opens a persistent session on the data directory (the catalog and queries come back from
//! the command topic), runs the persistent queries in the background, and reads statements with
//! rustyline: a statement may span lines and ends at `;`, history persists in the data
//! directory, Ctrl-C abandons the statement being typed, Ctrl-D leaves (the queries stop and
//! resume from their committed positions the next time). Push queries and PRINT show rows as
//! they arrive until their LIMIT or Ctrl-C, which ends them and returns to the prompt: at the
//! prompt rustyline reads Ctrl-C as a key, while a query runs it arrives as SIGINT, which a
//! handler turns into a flag the query's loop watches (`output.rs`).

use std::path::Path;

use anyhow::Result;
use eddy_log::Log;
use eddy_sql::{Outcome, Session};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use crate::output::{error_text, show};
use crate::progress;

const PROMPT: &str = "eddy> ";
const CONTINUATION: &str = "   -> ";

/// What the REPL types into: the embedded engine, or a server over HTTP (`remote.rs`).
pub(crate) trait Backend {
    /// Runs what was typed and prints the outcomes; the first statement that fails stops the
    /// rest. A push query or PRINT runs until its LIMIT or until `interrupted` is set.
    fn execute(&mut self, text: &str, interrupted: &AtomicBool);
    /// The words Tab completes besides keywords.
    fn names(&mut self) -> Vec<String>;
}

/// The engine in this process, on the data directory.
struct Embedded(Session);

impl Backend for Embedded {
    fn execute(&mut self, text: &str, interrupted: &AtomicBool) {
        execute(&mut self.0, text, interrupted);
    }

    fn names(&mut self) -> Vec<String> {
        names_of(&self.0)
    }
}

pub fn run(log: Log, setup: crate::SessionSetup, data_dir: &Path) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let mut session = setup.open(log)?;
    session.run_in_background()?;
    let banner = format!(
        "eddy {} on {}",
        env!("CARGO_PKG_VERSION"),
        data_dir.display()
    );
    let mut backend = Embedded(session);
    let result = interact(
        &runtime,
        &mut backend,
        &banner,
        &data_dir.join(".eddy_history"),
    );
    backend.0.shutdown();
    result
}

/// The read-eval-print loop over any backend.
pub(crate) fn interact(
    runtime: &tokio::runtime::Runtime,
    backend: &mut dyn Backend,
    banner: &str,
    history: &Path,
) -> Result<()> {
    // While a push query or PRINT runs, Ctrl-C is a signal (rustyline reads it as a key only
    // at the prompt): it ends the query, not the REPL.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    // Registered here, before any query runs, rather than when a task first polls it.
    let mut sigint = {
        let _entered = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?
    };
    runtime.spawn(async move {
        while sigint.recv().await.is_some() {
            flag.store(true, Ordering::Release);
        }
    });
    println!(
        "{banner}\nStatements end with ';'. Ctrl-C drops the statement being typed or stops a push query; Ctrl-D leaves.\n"
    );
    let names = Arc::new(Mutex::new(backend.names()));
    let mut editor: Editor<Completion, DefaultHistory> = Editor::new()?;
    editor.set_helper(Some(Completion {
        names: names.clone(),
    }));
    // A first run has no history yet.
    let _ = editor.load_history(history);
    let mut statement = String::new();
    loop {
        let prompt = if statement.is_empty() {
            PROMPT
        } else {
            CONTINUATION
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if !statement.is_empty() {
                    statement.push('\n');
                }
                statement.push_str(&line);
                if !complete(&statement) {
                    continue;
                }
                let text = std::mem::take(&mut statement);
                let _ = editor.add_history_entry(text.trim());
                backend.execute(&text, &interrupted);
                let words = backend.names();
                if let Ok(mut n) = names.lock() {
                    *n = words;
                }
            }
            Err(ReadlineError::Interrupted) => statement.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: {e}");
                break;
            }
        }
    }
    if let Err(e) = editor.save_history(history) {
        eprintln!(
            "warning: cannot save the history to {}: {e}",
            history.display()
        );
    }
    Ok(())
}

/// The words Tab completes besides keywords: sources, their columns, topics, functions.
fn names_of(session: &Session) -> Vec<String> {
    let mut words: Vec<String> = session.function_names();
    for (name, def) in &session.catalog.sources {
        words.push(name.clone());
        words.extend(def.all_columns().map(|c| c.name.clone()));
    }
    // A topic usually has its source's name in lower case: one candidate is enough.
    for t in session.log().topics() {
        if !words.iter().any(|w| w.eq_ignore_ascii_case(t.name())) {
            words.push(t.name().to_string());
        }
    }
    words.sort();
    words.dedup();
    words
}

const KEYWORDS: &[&str] = &[
    "ADVANCE",
    "ALL",
    "AND",
    "AS",
    "BEGINNING",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "CHANGES",
    "CREATE",
    "DEFINE",
    "DELETE",
    "DESCRIBE",
    "DROP",
    "ELSE",
    "EMIT",
    "END",
    "EXISTS",
    "EXPLAIN",
    "EXTENDED",
    "FINAL",
    "FROM",
    "FULL",
    "FUNCTION",
    "FUNCTIONS",
    "GRACE",
    "GROUP",
    "HAVING",
    "HOPPING",
    "IF",
    "IN",
    "INNER",
    "INSERT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "LEFT",
    "LIKE",
    "LIMIT",
    "NOT",
    "NULL",
    "ON",
    "OR",
    "OUTER",
    "PARTITION",
    "PAUSE",
    "PERIOD",
    "PRIMARY",
    "PRINT",
    "PROPERTIES",
    "QUERIES",
    "REPLACE",
    "RESUME",
    "RETENTION",
    "RIGHT",
    "RUN",
    "SCRIPT",
    "SELECT",
    "SESSION",
    "SET",
    "SHOW",
    "SIZE",
    "SOURCE",
    "STREAM",
    "STREAMS",
    "TABLE",
    "TABLES",
    "TERMINATE",
    "THEN",
    "TOPIC",
    "TOPICS",
    "TUMBLING",
    "TYPE",
    "UNDEFINE",
    "UNSET",
    "VALUES",
    "VARIABLES",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
    "WITHIN",
];

/// Tab completion of keywords and of the names the catalog and the log know.
struct Completion {
    names: Arc<Mutex<Vec<String>>>,
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let word = &line[start..pos];
        if word.is_empty() {
            return Ok((start, Vec::new()));
        }
        let upper = word.to_ascii_uppercase();
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let candidates = KEYWORDS
            .iter()
            .map(|k| k.to_string())
            .chain(names)
            .filter(|w| w.to_ascii_uppercase().starts_with(&upper))
            .map(|w| Pair {
                display: w.clone(),
                replacement: w,
            })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for Completion {
    type Hint = String;
}
impl Highlighter for Completion {}
impl Validator for Completion {}
impl Helper for Completion {}

/// Whether the text typed so far ends a statement: its last non-blank character is a `;`
/// outside quotes.
fn complete(text: &str) -> bool {
    let (mut single, mut double, mut back) = (false, false, false);
    let mut last = None;
    for c in text.chars() {
        match c {
            '\'' if !double && !back => single = !single,
            '"' if !single && !back => double = !double,
            '`' if !single && !double => back = !back,
            _ => {}
        }
        if !c.is_whitespace() {
            last = Some((c, single || double || back));
        }
    }
    matches!(last, Some((';', false)))
}

/// Runs what was typed; the first statement that fails stops the rest. A query started over
/// a backlog then shows it shrinking until it is caught up or Ctrl-C (`progress.rs`).
fn execute(session: &mut Session, text: &str, interrupted: &AtomicBool) {
    let mut started = Vec::new();
    let _ = session.run_script(text, &mut |_, outcome| {
        if let Ok(Outcome::QueryStarted { id, .. }) = &outcome {
            started.push(id.clone());
        }
        let shown = match outcome {
            Ok(o) => show(o, interrupted).map_err(|e| e.to_string()),
            Err(e) => Err(error_text(&e, text)),
        };
        match shown {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                eprintln!("{e}");
                ControlFlow::Break(())
            }
        }
    });
    for id in started {
        progress::follow_backlog(&id, &session.lag_probe().of_query(&id), interrupted);
    }
}

#[cfg(test)]
mod tests {
    use super::complete;

    #[test]
    fn a_statement_ends_at_a_semicolon_outside_quotes() {
        assert!(complete("SHOW STREAMS;"));
        assert!(complete("SELECT 1\nFROM t;  "));
        assert!(!complete("SELECT 'a;"));
        assert!(!complete("SELECT * FROM t"));
        assert!(complete("SELECT 'a;b' FROM t;"));
        assert!(!complete("CREATE STREAM `x;"));
    }
}

//! How statements' outcomes look on a terminal, as the ksql CLI shows them: messages as lines,
//! rows as aligned tables, push queries and PRINT as rows that keep coming until their LIMIT or
//! Ctrl-C, errors as one paragraph that points at the mistake.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use eddy_sql::{cell_text, format_table, Missing, Outcome, PushQuery, SqlError, TopicPrint};

/// How long a push query or PRINT waits for input before looking at Ctrl-C again.
const POLL: Duration = Duration::from_millis(100);

/// Shows an outcome. A push query or PRINT runs here until its LIMIT, or until `interrupted`
/// is set (Ctrl-C), which ends it and clears the flag.
pub fn show(outcome: Outcome, interrupted: &AtomicBool) -> Result<()> {
    match outcome {
        Outcome::Message(m) => println!("{m}"),
        Outcome::QueryStarted { message, .. } => println!("{message}"),
        Outcome::Table { columns, rows } => print_table(&columns, &rows),
        Outcome::Rows { schema, rows, .. } => {
            let columns: Vec<String> = schema.into_iter().map(|c| c.name).collect();
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| r.iter().map(cell_text).collect())
                .collect();
            print_table(&columns, &rows)
        }
        Outcome::Push(query) => stream_rows(*query, interrupted)?,
        Outcome::Print(print) => stream_print(*print, interrupted)?,
    }
    Ok(())
}

fn stream_rows(mut query: PushQuery, interrupted: &AtomicBool) -> Result<()> {
    interrupted.store(false, Ordering::Release);
    let columns: Vec<String> = query.schema().iter().map(|c| c.name.clone()).collect();
    let widths: Vec<usize> = columns.iter().map(|c| c.chars().count().max(12)).collect();
    let rule = || {
        let dashes: Vec<String> = widths.iter().map(|w| "-".repeat(w + 1)).collect();
        format!("+{}+", dashes.join("+"))
    };
    let row = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$} "))
            .collect();
        format!("|{}|", padded.join("|"))
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", rule())?;
    writeln!(out, "{}", row(&columns))?;
    writeln!(out, "{}", rule())?;
    out.flush()?;
    loop {
        if interrupted.swap(false, Ordering::AcqRel) {
            writeln!(out, "Query terminated")?;
            break;
        }
        for r in query.poll(POLL)? {
            let mut cells: Vec<String> = r.cells.iter().map(cell_text).collect();
            if r.tombstone {
                // As the ksql CLI marks a deleted table row.
                if let Some(last) = cells.last_mut() {
                    *last = "<TOMBSTONE>".into();
                }
            }
            writeln!(out, "{}", row(&cells))?;
        }
        out.flush()?;
        if query.is_done() {
            writeln!(out, "Limit Reached\nQuery terminated")?;
            break;
        }
    }
    out.flush()?;
    Ok(())
}

fn stream_print(mut print: TopicPrint, interrupted: &AtomicBool) -> Result<()> {
    interrupted.store(false, Ordering::Release);
    let mut out = std::io::stdout().lock();
    loop {
        if interrupted.swap(false, Ordering::AcqRel) {
            break;
        }
        for line in print.poll(POLL)? {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        if print.is_done() {
            break;
        }
    }
    Ok(())
}

/// An error as one paragraph; a parse error also shows the line of `script` it is on, with a
/// caret under the column.
pub fn error_text(e: &SqlError, script: &str) -> String {
    let mut text = e.to_string();
    if let SqlError::Parse(p) = e {
        if let Some(line) = script.lines().nth(p.line.saturating_sub(1) as usize) {
            let caret = " ".repeat(p.column.saturating_sub(1) as usize);
            text.push_str(&format!("\n  {line}\n  {caret}^"));
        }
    }
    if let SqlError::Unsupported {
        kind: Missing::Function,
        ..
    } = e
    {
        text.push_str("\nHint: SHOW FUNCTIONS lists the functions Eddy has.");
    }
    text
}

/// Prints rows as an aligned table with a header line, as the ksql CLI does.
pub fn print_table(columns: &[String], rows: &[Vec<String>]) {
    println!("{}", format_table(columns, rows));
}

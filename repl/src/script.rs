//! `eddy -f FILE` and `eddy -e "STATEMENTS"`: run SQL statements against the data directory.
//!
//! The session is persistent: streams, tables and queries created here are in the catalog the
//! next time `eddy` opens the directory, and the queries resume from their committed offsets.
//! Without `--follow`, the queries process what their sources hold and `eddy` exits; with it,
//! they keep running (each on its own task, woken by appends) until Ctrl-C.

use anyhow::{bail, Result};
use eddy_engine::state::StateOptions;
use eddy_log::Log;
use eddy_sql::{parse_statements, Outcome, Session};

pub fn run(log: Log, state: StateOptions, sql: &str, follow: bool) -> Result<()> {
    let mut session = Session::open_with(log, state)?;
    let statements = parse_statements(sql)?;
    for (stmt, text) in &statements {
        match session.execute(stmt, text) {
            Ok(Outcome::Message(m)) => println!("{m}"),
            Ok(Outcome::QueryStarted { message, .. }) => println!("{message}"),
            Ok(Outcome::Table { columns, rows }) => print_table(&columns, &rows),
            Err(e) => bail!("{e}\n  in: {text}"),
        }
    }
    if follow {
        let runtime = tokio::runtime::Runtime::new()?;
        session.run_in_background(runtime.handle().clone());
        eprintln!("Queries are running; press Ctrl-C to stop.");
        runtime.block_on(tokio::signal::ctrl_c())?;
        session.shutdown();
    } else {
        session.run_until_idle()?;
    }
    Ok(())
}

/// Prints rows as an aligned table with a header line, as the ksql CLI does.
pub fn print_table(columns: &[String], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([columns[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect::<Vec<_>>()
            .join("|")
            .trim_end()
            .to_string()
    };
    println!("{}", line(columns));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    for r in rows {
        println!("{}", line(r));
    }
}

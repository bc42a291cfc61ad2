//! `eddy -f FILE` and `eddy -e "STATEMENTS"`: run SQL statements against the data directory.
//!
//! The session is persistent: streams, tables and queries created here are in the catalog the
//! next time `eddy` opens the directory, and the queries resume from their committed offsets.
//! Without `--follow`, the queries process what their sources hold and `eddy` exits; with it,
//! they keep running (each on its own task, woken by appends) until Ctrl-C. The first
//! statement that fails stops the script, with a non-zero exit.

use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;

use anyhow::{anyhow, Result};
use eddy_log::Log;

use crate::output::{error_text, show};
use crate::progress;

pub fn run(log: Log, setup: crate::SessionSetup, sql: &str, follow: bool) -> Result<()> {
    let mut session = setup.open(log)?;
    // Ctrl-C ends the process here: no push query needs to survive it.
    let never = AtomicBool::new(false);
    let mut failure = None;
    let _ = session.run_script(sql, &mut |text, outcome| {
        let shown = outcome
            .map_err(|e| anyhow!("{}\n  in: {}", error_text(&e, sql), text.trim()))
            .and_then(|o| show(o, &never));
        match shown {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failure = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if follow {
        let runtime = tokio::runtime::Runtime::new()?;
        session.run_in_background()?;
        eprintln!("Queries are running; press Ctrl-C to stop.");
        runtime.block_on(tokio::signal::ctrl_c())?;
        session.shutdown();
    } else {
        progress::run_until_caught_up(&mut session)?;
    }
    Ok(())
}

//! `eddy test PATH...`: runs ksqlDB's query validation tests (QTT files) against Eddy.
//!
//! Each case runs on a fresh embedded log in a scratch directory with the deterministic driver:
//! statements in order, then each input appended and every query run until idle. One line is
//! printed per failing case with its first difference, then `N passed, M failed, K skipped`.
//! Skipped cases need a format or a function Eddy does not have yet; they never count as
//! passed. REST cases (with `responses` or `expectedError`) run through the HTTP server instead
//! (`rest.rs`).

mod case;
mod compare;
mod exec;
mod proto_text;
mod records;
mod rest;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;

use crate::progress::Progress;
use exec::Verdict;

#[derive(Args)]
pub struct TestArgs {
    /// QTT files, or directories searched for `*.json`.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Write a per-case report (name, status, message) to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Also print passing and skipped cases.
    #[arg(long, short)]
    verbose: bool,
    /// Fail (exit 1) if fewer cases than this pass.
    #[arg(long)]
    min_passed: Option<usize>,
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            collect(&e, out)?;
        }
    } else if path.extension().is_some_and(|e| e == "json") {
        out.push(path.to_path_buf());
    } else if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    Ok(())
}

pub fn run(args: TestArgs) -> Result<()> {
    let mut files = Vec::new();
    for p in &args.paths {
        collect(p, &mut files)?;
    }
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let mut report = Vec::new();
    // Drawn on a terminal only; erased before each line printed, so lines stay whole.
    let mut progress = Progress::new("testing");
    for (i, file) in files.iter().enumerate() {
        let cases = match case::load(file) {
            Ok(c) => c,
            Err(e) => {
                progress.finish();
                println!("FAIL {}: {e:#}", file.display());
                failed += 1;
                continue;
            }
        };
        for case in cases {
            if args
                .filter
                .as_ref()
                .is_some_and(|f| !case.name.contains(f.as_str()))
            {
                continue;
            }
            let verdict = std::panic::catch_unwind(|| match &case.rest {
                Some(rest) => rest::run(&case, rest),
                None => exec::run(&case),
            })
            .unwrap_or_else(|p| Verdict::Fail(format!("panicked: {}", panic_text(&p))));
            let (status, message) = match &verdict {
                Verdict::Pass => {
                    passed += 1;
                    if args.verbose {
                        progress.finish();
                        println!("PASS {}", case.name);
                    }
                    ("passed", String::new())
                }
                Verdict::Fail(m) => {
                    failed += 1;
                    progress.finish();
                    println!("FAIL {}: {}", case.name, one_line(m));
                    ("failed", m.clone())
                }
                Verdict::Skip(m) => {
                    skipped += 1;
                    if args.verbose {
                        progress.finish();
                        println!("SKIP {}: {m}", case.name);
                    }
                    ("skipped", m.clone())
                }
            };
            report.push(json!({"name": case.name, "status": status, "message": message}));
            progress.update(
                (passed + failed + skipped) as u64,
                "cases",
                &format!(
                    "{passed} passed, {failed} failed, file {} of {}",
                    i + 1,
                    files.len()
                ),
            );
        }
    }
    progress.finish();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if let Some(min) = args.min_passed {
        if passed < min {
            bail!("{passed} cases passed, fewer than the required {min}");
        }
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() > 400 {
        format!("{}...", s.chars().take(400).collect::<String>())
    } else {
        s
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

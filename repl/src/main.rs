//! `eddy`: the one binary. For now it manages the embedded log (topics, produce, consume) and
//! benchmarks it; the SQL REPL and server come with the SQL front end.

mod bench;
mod consume;
mod produce;
mod qtt;
mod topic;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eddy_log::{FsyncPolicy, Log, LogOptions};

#[derive(Parser)]
#[command(
    name = "eddy",
    version,
    about = "Eddy: stream processing with a built-in partitioned log"
)]
struct Cli {
    /// The data directory holding topics (created if missing).
    #[arg(
        long,
        global = true,
        env = "EDDY_DATA_DIR",
        default_value = "./eddy-data"
    )]
    data_dir: PathBuf,
    /// Default fsync policy for topics that set none: always, never, or a group-commit
    /// interval such as 5ms (the default).
    #[arg(long, global = true, env = "EDDY_FSYNC")]
    fsync: Option<FsyncPolicy>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Append one record per line of standard input.
    Produce(produce::ProduceArgs),
    /// Print a topic's records, one per line.
    Consume(consume::ConsumeArgs),
    /// Run ksqlDB query validation tests (QTT files) against Eddy.
    Test(qtt::TestArgs),
    /// Measure Eddy's throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDDY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => {
            use clap::CommandFactory;
            println!(
                "The SQL REPL is not built yet; these commands work on the data directory {}:\n",
                cli.data_dir.display()
            );
            Cli::command().print_help().map_err(Into::into)
        }
        Some(Command::Bench(cmd)) => bench::run(cmd),
        Some(Command::Test(args)) => qtt::run(args),
        Some(cmd) => open(&cli.data_dir, cli.fsync).and_then(|log| match cmd {
            Command::Topic(cmd) => topic::run(&log, cmd),
            Command::Produce(args) => produce::run(&log, args),
            Command::Consume(args) => consume::run(&log, args),
            Command::Bench(_) | Command::Test(_) => unreachable!("handled above"),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn open(dir: &std::path::Path, fsync: Option<FsyncPolicy>) -> anyhow::Result<Log> {
    let defaults = LogOptions::default();
    let options = LogOptions {
        fsync: fsync.unwrap_or(defaults.fsync),
        ..defaults
    };
    Ok(Log::open(dir, options)?)
}

/// `eddy consume t | head` closes our stdout early; that is the reader's choice, not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

// The log's readers allocate and free large buffers at a high rate; mimalloc keeps them mapped
// instead of returning them to the kernel and faulting them back in on every read.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

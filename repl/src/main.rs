//! `eddy`: the one binary. With no command it is the interactive REPL; it also runs SQL scripts
//! (`-f`, `-e`), manages the embedded log (topics, produce, consume), runs ksqlDB conformance
//! files (`test`) and benchmarks, and serves ksqlDB's REST API (`server`) and Kafka's wire
//! protocol (`broker`, or `server --kafka-listen`).

mod bench;
mod broker;
mod consume;
mod output;
mod produce;
mod progress;
mod qtt;
mod remote;
mod repl;
mod script;
mod server;
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
#[command(group(clap::ArgGroup::new("sql_input").args(["file", "execute"])))]
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
    /// How often, in milliseconds, the log applies retention and compaction (Kafka's
    /// `log.retention.check.interval.ms`).
    #[arg(long, global = true, value_name = "MS", default_value_t = 10_000)]
    cleaner_interval_ms: u64,
    /// The memory, in MiB, that the state stores of all queries may use together (RocksDB's
    /// block cache and write buffers).
    #[arg(
        long,
        global = true,
        env = "EDDY_STATE_MEMORY_MB",
        default_value_t = 256
    )]
    state_memory_mb: usize,
    /// A property of the SQL session, as ksqlDB's server and CLI take them (repeatable), such
    /// as `ksql.streams.num.stream.threads=4` (by default one stream thread per core) or
    /// `commit.interval.ms=100`. `SET` overrides it for the statements after it.
    #[arg(long = "config", global = true, value_name = "KEY=VALUE", value_parser = property)]
    config: Vec<(String, String)>,
    /// A file of such properties, one `key=value` per line (`#` starts a comment), as
    /// ksqlDB's `ksql-server.properties`; `--config` wins over it.
    #[arg(long, global = true, env = "EDDY_CONFIG_FILE")]
    config_file: Option<PathBuf>,
    /// Run the SQL statements in this file, then exit (see --follow).
    #[arg(short = 'f', long = "file", conflicts_with = "execute")]
    file: Option<PathBuf>,
    /// Run these SQL statements (separated by ';'), then exit (see --follow).
    #[arg(short = 'e', long = "execute")]
    execute: Option<String>,
    /// With -f or -e: keep the persistent queries running until Ctrl-C.
    #[arg(long, requires = "sql_input")]
    follow: bool,
    /// Talk to an `eddy server` (or ksqlDB) at this URL instead of opening a data directory:
    /// the REPL, -e and -f run their statements over its REST API.
    #[arg(long, env = "EDDY_SERVER")]
    server: Option<String>,
    /// The bearer token for --server.
    #[arg(
        long,
        env = "EDDY_AUTH_TOKEN",
        hide_env_values = true,
        requires = "server"
    )]
    token: Option<String>,
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
    /// Serve ksqlDB's REST API over the data directory (and, with --kafka-listen, Kafka's
    /// wire protocol).
    Server(server::ServerArgs),
    /// Serve the data directory's topics over Kafka's wire protocol, for any Kafka client.
    Broker(broker::BrokerArgs),
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
    let sql = match (&cli.file, &cli.execute) {
        (Some(path), _) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        (None, Some(stmts)) => Some(stmts.clone()),
        (None, None) => None,
    };
    let setup = session_setup(&cli);
    let open = {
        let (dir, options) = (cli.data_dir.clone(), log_options(&cli));
        move || -> anyhow::Result<Log> { Ok(Log::open(&dir, options.clone())?) }
    };
    let result = match cli.command {
        None if cli.server.is_some() => {
            let url = cli.server.as_deref().unwrap_or_default();
            run_remote(url, cli.token.clone(), sql.as_deref())
        }
        None if sql.is_some() => open().and_then(|log| {
            script::run(log, setup?, sql.as_deref().unwrap_or_default(), cli.follow)
        }),
        None => open().and_then(|log| repl::run(log, setup?, &cli.data_dir)),
        Some(Command::Bench(cmd)) => setup.and_then(|s| bench::run(cmd, &s.state)),
        Some(Command::Test(args)) => qtt::run(args),
        Some(cmd) => open().and_then(|log| match cmd {
            Command::Topic(cmd) => topic::run(&log, cmd),
            Command::Produce(args) => produce::run(&log, args),
            Command::Consume(args) => consume::run(&log, args),
            Command::Server(args) => server::run(log, setup?, args),
            Command::Broker(args) => broker::run(log, args),
            Command::Bench(_) | Command::Test(_) => unreachable!("handled above"),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(topic) = damaged_topic(&e) {
                eprintln!(
                    "`eddy topic verify {topic}` lists every damaged range; `eddy topic repair \
                     {topic} --skip-damaged` skips them, losing their records"
                );
            }
            if let Some(path) = damaged_state(&e) {
                let path = path.display();
                eprintln!(
                    "the state stores can be rebuilt from their changelog topics: move {path} \
                     aside (`mv {path} {path}.damaged`) and start eddy again; each query goes on \
                     from its last commit"
                );
            }
            ExitCode::FAILURE
        }
    }
}

/// The topic whose damage on disk stopped the command, if that is what stopped it.
fn damaged_topic(e: &anyhow::Error) -> Option<String> {
    use eddy_engine::EngineError;
    use eddy_log::LogError;
    use eddy_sql::SqlError;
    // The wrappers are transparent: they are in the chain in place of the log's error.
    fn log_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a LogError> {
        cause.downcast_ref::<LogError>().or_else(|| {
            match (cause.downcast_ref::<SqlError>(), cause.downcast_ref()) {
                (Some(SqlError::Log(e)), _)
                | (Some(SqlError::Engine(EngineError::Log(e))), _)
                | (_, Some(EngineError::Log(e))) => Some(e),
                _ => None,
            }
        })
    }
    e.chain().find_map(|cause| match log_error(cause) {
        Some(LogError::Corrupt { topic, .. }) => Some(topic.clone()),
        _ => None,
    })
}

/// The state database whose damage on disk stopped the command, if that is what stopped it.
fn damaged_state(e: &anyhow::Error) -> Option<std::path::PathBuf> {
    use eddy_engine::state::StateError;
    use eddy_engine::EngineError;
    use eddy_sql::SqlError;
    e.chain().find_map(|cause| {
        let state = cause.downcast_ref::<StateError>().or_else(|| {
            match (cause.downcast_ref::<SqlError>(), cause.downcast_ref()) {
                (Some(SqlError::Engine(EngineError::State(e))), _)
                | (_, Some(EngineError::State(e))) => Some(e),
                _ => None,
            }
        });
        match state {
            Some(StateError::Damaged { path, .. }) => Some(path.clone()),
            _ => None,
        }
    })
}

/// The REPL, or a script, over a server's REST API.
fn run_remote(url: &str, token: Option<String>, sql: Option<&str>) -> anyhow::Result<()> {
    let mut remote = remote::Remote::connect(url, token)?;
    // Ctrl-C only needs a runtime to be caught; one worker is plenty.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    match sql {
        Some(sql) => {
            let never = std::sync::atomic::AtomicBool::new(false);
            remote.run_script(sql, &never)
        }
        None => {
            let history = std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from("."), PathBuf::from)
                .join(".eddy_remote_history");
            let banner = format!("eddy {} on {url}", env!("CARGO_PKG_VERSION"));
            repl::interact(&runtime, &mut remote, &banner, &history)
        }
    }
}

/// How a SQL session on the data directory is opened: its state stores' memory and its
/// configured properties.
pub struct SessionSetup {
    pub state: eddy_engine::state::StateOptions,
    pub config: std::collections::BTreeMap<String, String>,
}

impl SessionSetup {
    pub fn open(self, log: Log) -> eddy_sql::Result<eddy_sql::Session> {
        eddy_sql::Session::open_configured(log, self.state, self.config)
    }
}

fn session_setup(cli: &Cli) -> anyhow::Result<SessionSetup> {
    let mut config = std::collections::BTreeMap::new();
    if let Some(path) = &cli.config_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (k, v) =
                property(line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
            config.insert(k, v);
        }
    }
    config.extend(cli.config.iter().cloned());
    Ok(SessionSetup {
        state: eddy_engine::state::StateOptions {
            memory_bytes: cli.state_memory_mb << 20,
            ..Default::default()
        },
        config,
    })
}

/// `key=value` (or `key: value`, as Java properties allow).
fn property(text: &str) -> Result<(String, String), String> {
    match text.split_once(['=', ':']) {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

/// The log options the command line gives.
fn log_options(cli: &Cli) -> LogOptions {
    let defaults = LogOptions::default();
    LogOptions {
        fsync: cli.fsync.unwrap_or(defaults.fsync),
        cleaner_interval: std::time::Duration::from_millis(cli.cleaner_interval_ms.max(1)),
        ..defaults
    }
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

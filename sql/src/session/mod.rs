//! A session: executes statements against a data directory, keeping the catalog and the
//! persistent queries it started.
//!
//! Each persistent query runs as tasks (`start.rs`, `tasks.rs`). [`Session::run_until_idle`]
//! is the driver: it runs each query's tasks, in the order the queries were created, over
//! everything readable, and repeats until none has anything left; with one stream thread it
//! is deterministic, and a query that reads another's output sees it after the upstream
//! query consumed its input, as ksqlDB's test runner specifies.
//! [`Session::run_in_background`] moves them to stream threads instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::execution::context::SessionContext;
use eddy_engine::metrics::QueryMetrics;
use eddy_engine::state::{StateDb, StateOptions};
use eddy_engine::{
    EngineError, EventTime, HeaderColumn, ProcessingLog, Runtime, Source, SourceWindow,
    TimestampFormat,
};
use eddy_log::Log;

use crate::ast::*;
use crate::catalog::{Catalog, Column, SourceDef};
use crate::command_log::CommandLog;
use crate::error::{invalid, Result, SqlError};
use crate::with_clause::{codecs, FormatDefaults};

/// What a statement did, for the REPL and the test runner to show.
#[derive(Debug)]
pub enum Outcome {
    Message(String),
    QueryStarted {
        id: String,
        message: String,
    },
    /// Rows to show, such as SHOW STREAMS or DESCRIBE prints.
    Table {
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A pull query's rows, typed.
    Rows {
        schema: Vec<ResultColumn>,
        rows: Vec<Vec<ScalarValue>>,
        /// How ksqlDB's `/query` ends the answer, if it says: a pull query over a stream ends
        /// with `Limit Reached` or `Query Completed`, one over a table says nothing.
        end: Option<&'static str>,
    },
    /// A push query, running: poll it for rows until done, or drop it to end it.
    Push(Box<PushQuery>),
    /// A PRINT, running: poll it for lines until done, or drop it to end it.
    Print(Box<TopicPrint>),
}

/// A column of a query's result, as ksqlDB describes it: `` `ID` BIGINT KEY ``.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultColumn {
    pub name: String,
    pub ty: crate::types::SqlType,
    /// Part of the key (pull queries mark the table's key and window bounds).
    pub key: bool,
}

/// A result schema as ksqlDB prints it: `` `ID` BIGINT KEY, `COUNT` BIGINT ``.
pub fn result_schema_text(schema: &[ResultColumn]) -> String {
    schema
        .iter()
        .map(|c| {
            let key = if c.key { " KEY" } else { "" };
            format!("`{}` {}{key}", c.name, c.ty)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A persistent query as SHOW QUERIES and the server describe it.
#[derive(Debug, Clone)]
pub struct QueryInfo {
    pub id: String,
    pub sql: String,
    pub sink: String,
    pub sources: Vec<String>,
    pub status: String,
    /// Its operator graph, one line per node from source to sink (EXPLAIN's plan).
    pub plan: Vec<String>,
    pub metrics: Arc<QueryMetrics>,
    /// Its tasks.
    pub tasks: Vec<TaskInfo>,
}

/// One task of a persistent query, as `/metrics` and the console show it.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    /// Kafka Streams' task name: `<sub-topology>_<partition>`.
    pub id: String,
    /// The stream thread that runs it (`driven` while the session drives it).
    pub thread: String,
    pub records_in: u64,
    pub records_out: u64,
    pub lag: u64,
    /// Why it stopped, if it failed.
    pub error: Option<String>,
}

struct RunningQuery {
    id: String,
    /// Its tasks, by sub-topology and partition.
    tasks: Vec<TaskRun>,
    sink: String,
    sources: Vec<String>,
    /// A GROUP BY query: its state is its table's materialization.
    aggregate: bool,
    /// The statement that started it.
    text: String,
    /// Its operator graph, one line per node (EXPLAIN).
    plan: Vec<String>,
    metrics: Arc<QueryMetrics>,
}

/// A table's materialization (see `pull.rs`): an internal query with tasks of its own.
struct Materialization {
    id: String,
    tasks: Vec<TaskRun>,
    metrics: Arc<QueryMetrics>,
}

pub struct Session {
    log: Log,
    plog: ProcessingLog,
    pub catalog: Catalog,
    df: SessionContext,
    queries: Vec<RunningQuery>,
    /// `SET` properties.
    pub properties: BTreeMap<String, String>,
    next_query: usize,
    /// `DEFINE`d variables, by lower-case name, for `${name}` in scripts.
    pub variables: BTreeMap<String, String>,
    /// Numbers the push queries of this session.
    next_transient: usize,
    /// Where statements are recorded for replay; `None` for an ephemeral session.
    commands: Option<CommandLog>,
    /// Set by [`Session::run_in_background`]: the stream threads the queries' tasks run on.
    runtime: Option<Runtime>,
    /// Properties the session was configured with (a server's or REPL's configuration):
    /// defaults for those `SET` does not set.
    config: BTreeMap<String, String>,
    /// The state stores of stateful queries, opened with the first one.
    state: Option<StateDb>,
    state_options: StateOptions,
    /// Each table's materialization, by table name, for pull queries.
    materialized: BTreeMap<String, Materialization>,
    /// The schemas the schema-registry formats frame records with.
    pub schema_registry: crate::schema_registry::SchemaRegistry,
}

mod cache;
mod create;
mod drop;
mod explain;
mod functions;
mod insert;
mod join;
mod key_lookup;
mod lag;
mod n_way;
mod owner;
mod print;
mod pull;
mod push;
mod repartition;
mod show;
mod start;
mod stream_pull;
mod tasks;

pub use explain::thousands;
pub use lag::LagProbe;
pub use print::TopicPrint;
pub use pull::cell_text;
pub use push::{PushQuery, PushRow, PUSH_V2_ENABLED};

pub use show::{format_table, is_internal_topic};
use tasks::TaskRun;
pub use tasks::STREAM_THREADS;

impl Session {
    pub fn new(log: Log) -> Session {
        Session {
            plog: ProcessingLog::new(log.clone()),
            log,
            catalog: Catalog::default(),
            df: crate::functions::context(),
            queries: Vec::new(),
            properties: BTreeMap::new(),
            next_query: 0,
            next_transient: 0,
            variables: BTreeMap::new(),
            commands: None,
            runtime: None,
            config: BTreeMap::new(),
            state: None,
            state_options: StateOptions::default(),
            materialized: BTreeMap::new(),
            schema_registry: Default::default(),
        }
    }

    /// Sets `name` for the whole session, as the configuration it was opened with does.
    pub fn configure(&mut self, name: &str, value: &str) {
        self.config.insert(name.to_string(), value.to_string());
    }

    /// A session whose catalog and queries persist in the data directory: it replays the
    /// command topic (rebuilding the catalog and restarting the persistent queries, which resume
    /// from their committed offsets), then records every statement that changes them.
    pub fn open(log: Log) -> Result<Session> {
        Self::open_with(log, StateOptions::default())
    }

    /// [`Session::open`], with the state stores' memory budget and durability given.
    pub fn open_with(log: Log, state: StateOptions) -> Result<Session> {
        Self::open_configured(log, state, BTreeMap::new())
    }

    /// [`Session::open_with`], with `config`: properties that hold for the whole session
    /// unless a statement `SET`s them (such as [`STREAM_THREADS`]).
    pub fn open_configured(
        log: Log,
        state: StateOptions,
        config: BTreeMap<String, String>,
    ) -> Result<Session> {
        let mut session = Session::new(log);
        session.state_options = state;
        session.config = config;
        let commands = CommandLog::open(&session.log)?;
        for command in commands.read_all()? {
            session.properties = command.properties;
            let replayed = crate::parser::parse_statements(&command.sql)
                .map_err(SqlError::from)
                .and_then(|stmts| {
                    for (stmt, text) in &stmts {
                        session.execute(stmt, text)?;
                    }
                    Ok(())
                });
            if let Err(e) = replayed {
                tracing::warn!("replaying `{}` failed: {e}", command.sql);
            }
        }
        session.properties = BTreeMap::new();
        session.commands = Some(commands);
        session.cut_back_legacy_output()?;
        session.settle_transactions()?;
        session.delete_push_step_topics()?;
        session.drop_stale_materializations()?;
        Ok(session)
    }

    /// Exactly-once recovery after a restart: the output transactions that tasks had open
    /// when the last process stopped are kept as far as the task's last commit recorded their
    /// end, and aborted past it (the input they came from is read again).
    fn settle_transactions(&mut self) -> Result<()> {
        let undecided = self.log.undecided();
        if undecided.is_empty() {
            return Ok(());
        }
        let ends = match self.log.dir().join("state").exists() {
            true => eddy_engine::pipeline::committed_outputs(&self.state_db()?)?,
            false => Default::default(),
        };
        for (partition, u) in undecided {
            let key = (u.writer, partition.topic().to_string(), partition.id());
            let committed_end = ends.get(&key).copied().unwrap_or(0);
            partition.resolve(u.writer, committed_end)?;
            if committed_end < u.end {
                tracing::info!(
                    topic = partition.topic(),
                    partition = partition.id(),
                    dropped = u.end - committed_end.max(u.start),
                    "dropped uncommitted output"
                );
            }
        }
        Ok(())
    }

    /// Recovery once for a data directory from before tasks: a query that crashed there
    /// between appending its output and committing it left that output pending, in no
    /// transaction, so this version would show it; that version cut each sink a query wrote
    /// alone back to the end its last commit recorded (`output/<topic>/<p>`), and so does this,
    /// before forgetting those records (its commits now record ends per task).
    fn cut_back_legacy_output(&mut self) -> Result<()> {
        if !self.log.dir().join("state").exists() {
            return Ok(());
        }
        let db = self.state_db()?;
        let legacy: Vec<(String, String, u64)> = db
            .positions_named("output/")
            .map_err(EngineError::from)?
            .into_iter()
            .filter(|(_, name, _)| name.matches('/').count() == 2)
            .collect();
        if legacy.is_empty() {
            return Ok(());
        }
        let mut forget = eddy_engine::state::Commit::new();
        for (owner, name, end) in &legacy {
            forget.delete_offset(owner, name);
            let Some((topic, p)) = name["output/".len()..].rsplit_once('/') else {
                continue;
            };
            let writers = legacy.iter().filter(|(_, n, _)| n == name).count()
                + self
                    .queries
                    .iter()
                    .filter(|q| {
                        self.catalog
                            .source(&q.sink)
                            .is_some_and(|d| d.topic == topic)
                    })
                    .count()
                    .saturating_sub(1);
            let Ok(partition) = p
                .parse::<u32>()
                .map_err(|_| ())
                .and_then(|p| self.log.partition(topic, p).map_err(|_| ()))
            else {
                continue;
            };
            if writers == 1 && partition.written_offset() > *end {
                let dropped = partition.truncate_to(*end)?;
                tracing::info!(query = %owner, topic, dropped, "dropped output the last process never committed");
            }
        }
        db.commit(forget).map_err(EngineError::from)?;
        Ok(())
    }

    /// A property as `SET` (or else the session's configuration) has it.
    pub(super) fn property(&self, name: &str) -> Option<&String> {
        self.properties.get(name).or_else(|| self.config.get(name))
    }

    /// What each persistent query is and does, in the order they started.
    pub fn query_infos(&self) -> Vec<QueryInfo> {
        self.queries
            .iter()
            .map(|q| QueryInfo {
                id: q.id.clone(),
                sql: q.text.clone(),
                sink: q.sink.clone(),
                sources: q.sources.clone(),
                status: q.status().to_string(),
                plan: q.plan.clone(),
                metrics: q.metrics.clone(),
                tasks: q
                    .tasks
                    .iter()
                    .map(|t| TaskInfo {
                        id: t.id.to_string(),
                        thread: t.thread(),
                        records_in: t.metrics.records_in.total(),
                        records_out: t.metrics.records_out.total(),
                        lag: t.metrics.lag(),
                        error: t.error(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Entries `query` wrote to the processing log since this process started.
    pub fn processing_errors(&self, query: &str) -> u64 {
        self.plog.count_of(query)
    }

    /// The approximate size of each state store, by name (`<query>/<operator>`).
    pub fn state_store_sizes(&self) -> Result<Vec<(String, u64)>> {
        match &self.state {
            Some(db) => Ok(db.store_sizes().map_err(EngineError::from)?),
            None => Ok(Vec::new()),
        }
    }

    /// The persistent queries, by id, with the sink each writes to.
    pub fn queries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.queries
            .iter()
            .map(|q| (q.id.as_str(), q.sink.as_str()))
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Executes one parsed statement; `text` is its source, kept in the catalog and, for a
    /// statement that changes the catalog or the queries, recorded in the command topic.
    pub fn execute(&mut self, stmt: &Statement, text: &str) -> Result<Outcome> {
        let outcome = self.apply(stmt, text)?;
        let persistent = matches!(
            stmt,
            Statement::CreateSource(_)
                | Statement::CreateAsSelect(_)
                | Statement::InsertInto { .. }
                | Statement::Drop { .. }
                | Statement::CreateType { .. }
                | Statement::DropType { .. }
                | Statement::Terminate(_)
                | Statement::Pause(_)
                | Statement::Resume(_)
        );
        if let (true, Some(commands)) = (persistent, &self.commands) {
            commands.append(text, &self.properties)?;
        }
        Ok(outcome)
    }

    fn apply(&mut self, stmt: &Statement, text: &str) -> Result<Outcome> {
        match stmt {
            Statement::CreateSource(c) => self.create_source(c, text),
            Statement::CreateAsSelect(c) => self.create_as_select(c, text),
            Statement::InsertInto { target, query } => self.insert_into(target, query, text),
            Statement::InsertValues {
                target,
                columns,
                values,
            } => self.insert_values(target, columns.as_deref(), values),
            Statement::Drop {
                kind,
                if_exists,
                name,
                delete_topic,
            } => self.drop_source(*kind, *if_exists, name, *delete_topic),
            Statement::Set { name, value } => {
                let old = self.properties.insert(name.clone(), value.clone());
                if name == STREAM_THREADS {
                    if let Err(e) = self.resize_stream_threads() {
                        match old {
                            Some(v) => self.properties.insert(name.clone(), v),
                            None => self.properties.remove(name),
                        };
                        return Err(e);
                    }
                }
                Ok(Outcome::Message(format!(
                    "Successfully changed local property '{name}' to '{value}'."
                )))
            }
            Statement::Unset(name) => {
                self.properties.remove(name);
                if name == STREAM_THREADS {
                    self.resize_stream_threads()?;
                }
                Ok(Outcome::Message(format!(
                    "Successfully unset local property '{name}'."
                )))
            }
            Statement::CreateType {
                if_not_exists,
                name,
                ty,
            } => {
                if self.catalog.types.contains_key(name) {
                    if *if_not_exists {
                        return Ok(Outcome::Message(format!("Type {name} already exists")));
                    }
                    return invalid(format!("Cannot register custom type '{name}' since it is already registered with type: {}", self.catalog.types[name]));
                }
                let resolved = self.catalog.resolve(ty).map_err(SqlError::Invalid)?;
                self.catalog.types.insert(name.clone(), resolved);
                Ok(Outcome::Message(format!(
                    "Registered custom type with name '{name}'"
                )))
            }
            Statement::DropType { if_exists, name } => match self.catalog.types.remove(name) {
                Some(_) => Ok(Outcome::Message(format!("Dropped type '{name}'"))),
                None if *if_exists => Ok(Outcome::Message(format!("Type {name} does not exist"))),
                None => invalid(format!("Type {name} does not exist.")),
            },
            Statement::Terminate(id) => {
                let (mut stopped, kept): (Vec<RunningQuery>, Vec<RunningQuery>) =
                    std::mem::take(&mut self.queries)
                        .into_iter()
                        .partition(|q| id.as_ref().is_none_or(|id| q.id.eq_ignore_ascii_case(id)));
                // The hidden steps of a stopped n-way join stop with it.
                let sinks: Vec<String> = stopped.iter().map(|q| q.sink.clone()).collect();
                let (steps, kept): (Vec<RunningQuery>, Vec<RunningQuery>) =
                    kept.into_iter().partition(|q| {
                        crate::join::join_step_of(&q.sink)
                            .is_some_and(|s| sinks.iter().any(|k| k == s))
                    });
                stopped.extend(steps);
                self.queries = kept;
                if stopped.is_empty() && id.is_some() {
                    return invalid(format!(
                        "Unknown queryId: {}",
                        id.as_deref().unwrap_or_default()
                    ));
                }
                self.stop_queries(stopped)?;
                Ok(Outcome::Message("Query terminated.".into()))
            }
            Statement::Pause(id) => self.pause_queries(id.as_deref(), true),
            Statement::Resume(id) => self.pause_queries(id.as_deref(), false),
            Statement::Show(what) => self.show(what),
            Statement::Query(select) if select.emit.is_none() => self.pull_query(select),
            Statement::Query(select) => self.push_query(select),
            Statement::Print(print) => self.print_topic(print),
            Statement::DescribeFunction(name) => self.describe_function(name),
            Statement::Explain(inner) => self.explain_statement(inner, text),
            Statement::ExplainQuery(id) => self.explain_query(id),
            Statement::Define { name, value } => {
                self.variables
                    .insert(name.to_ascii_lowercase(), value.clone());
                Ok(Outcome::Message(format!("Defined variable {name}")))
            }
            Statement::Undefine(name) => match self.variables.remove(&name.to_ascii_lowercase()) {
                Some(_) => Ok(Outcome::Message(format!("Undefined variable {name}"))),
                None => Ok(Outcome::Message(format!("Variable '{name}' is undefined"))),
            },
            Statement::Describe { name, extended } => self.describe(name, *extended),
        }
    }

    pub(super) fn format_defaults(&self) -> FormatDefaults<'_> {
        (
            self.properties
                .get("ksql.persistence.default.format.key")
                .map(String::as_str),
            self.properties
                .get("ksql.persistence.default.format.value")
                .map(String::as_str),
        )
    }

    /// `ksql.persistence.wrap.single.values`: whether single value columns are wrapped by
    /// default.
    pub(super) fn wrap_default(&self) -> bool {
        self.properties
            .get("ksql.persistence.wrap.single.values")
            .is_none_or(|v| !v.eq_ignore_ascii_case("false"))
    }

    /// `auto.offset.reset`, also under the name ksqlDB's REST clients pass to Kafka Streams.
    fn reads_from_beginning(&self) -> bool {
        ["auto.offset.reset", "ksql.streams.auto.offset.reset"]
            .iter()
            .filter_map(|k| self.properties.get(*k))
            .any(|v| v.eq_ignore_ascii_case("earliest"))
    }

    /// How long a stateful query may go between commits under load: `commit.interval.ms`,
    /// also under the name ksqlDB passes to Kafka Streams, else ksqlDB's default (2 s).
    fn commit_interval(&self) -> Result<std::time::Duration> {
        let keys = ["commit.interval.ms", "ksql.streams.commit.interval.ms"];
        match keys.iter().find_map(|k| self.properties.get(*k)) {
            None => Ok(eddy_engine::pipeline::DEFAULT_COMMIT_INTERVAL),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) => Ok(std::time::Duration::from_millis(ms)),
                Err(_) => invalid(format!(
                    "Invalid value {v} for configuration commit.interval.ms: Not a number of milliseconds"
                )),
            },
        }
    }

    /// Whether persistent queries that keep no state are exactly-once too: ksqlDB's
    /// `processing.guarantee` set to `exactly_once_v2` (or the older `exactly_once`). Stateful
    /// queries always are; by default a stateless one is at least once, as in ksqlDB.
    fn stateless_exactly_once(&self) -> Result<bool> {
        let keys = ["ksql.streams.processing.guarantee", "processing.guarantee"];
        match keys.iter().find_map(|k| self.property(k)) {
            None => Ok(false),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "at_least_once" => Ok(false),
                "exactly_once" | "exactly_once_v2" => Ok(true),
                _ => invalid(format!(
                    "Invalid value {v} for configuration processing.guarantee: String must be one of: at_least_once, exactly_once, exactly_once_v2"
                )),
            },
        }
    }

    /// Bytes committed to the state stores so far (0 if no stateful query ran).
    pub fn state_bytes_committed(&self) -> u64 {
        self.state.as_ref().map_or(0, StateDb::committed_bytes)
    }

    /// How a query reads `def`'s topic.
    pub(super) fn source_for(&self, def: &SourceDef) -> Result<Source> {
        let (key, value) = codecs(def)?;
        let event_time = match &def.timestamp_column {
            Some(c) => EventTime::Column {
                index: def
                    .key_columns
                    .iter()
                    .chain(&def.value_columns)
                    .position(|v| &v.name == c)
                    .expect("validated"),
                format: def
                    .timestamp_format
                    .as_deref()
                    .map(TimestampFormat::new)
                    .transpose()
                    .map_err(SqlError::Invalid)?,
            },
            None => EventTime::RecordTimestamp,
        };
        let headers = def
            .header_columns
            .iter()
            .map(|(c, name)| HeaderColumn {
                field: c.field(),
                name: name.clone(),
            })
            .collect();
        let mut source = Source::new(self.log.topic(&def.topic)?, key, value, headers, event_time);
        source.drop_null_keys = def.kind == SourceKind::Table;
        source.fail_on_bad_timestamp = self
            .properties
            .get("ksql.timestamp.throw.on.invalid")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if let Some(w) = def.window {
            source = source.with_window(match w.size_ms {
                Some(size) => SourceWindow::Time {
                    size_ms: size as i64,
                },
                None => SourceWindow::Session,
            });
        }
        Ok(source)
    }

    /// The state database, `<data dir>/state`, opened on first use.
    fn state_db(&mut self) -> Result<StateDb> {
        if let Some(db) = &self.state {
            return Ok(db.clone());
        }
        let db = StateDb::open(self.log.dir().join("state"), self.state_options.clone())
            .map_err(EngineError::from)?;
        self.state = Some(db.clone());
        Ok(db)
    }
}

fn kind_name(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Stream => "STREAM",
        SourceKind::Table => "TABLE",
    }
}

fn schema_text(keys: &[Column], values: &[Column]) -> String {
    keys.iter()
        .map(|c| format!("`{}` {} KEY", c.name, c.ty))
        .chain(values.iter().map(|c| format!("`{}` {}", c.name, c.ty)))
        .collect::<Vec<_>>()
        .join(", ")
}

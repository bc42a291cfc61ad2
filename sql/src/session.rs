//! A session: executes statements against a data directory, keeping the catalog and the
//! persistent queries it started.
//!
//! [`Session::run_until_idle`] is the deterministic driver: it runs each query, in the order
//! they were created, over everything readable, and repeats until none has anything left. A
//! query that reads another's output therefore sees it after the upstream query consumed its
//! input, as ksqlDB's test runner specifies.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::catalog::MemTable;
use datafusion::common::ScalarValue;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::optimizer::Analyzer;
use eddy_engine::schema::source_schema;
use eddy_engine::{
    EventTime, Format, HeaderColumn, Pipeline, ProcessingLog, QueryTask, Sink, Source,
    TimestampFormat,
};
use eddy_log::{Log, TopicConfig};

use crate::ast::*;
use crate::catalog::{Catalog, Column, SourceDef};
use crate::command_log::CommandLog;
use crate::error::{invalid, unsupported, Missing, Result, SqlError};
use crate::planner::plan_select;
use crate::rewrite::rewrite;
use crate::types::SqlType;
use crate::with_clause::{
    check_wrapping, codecs, formats, timestamp_column, wrap_single, FormatDefaults,
};

/// What a statement did, for the REPL and the test runner to show.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Message(String),
    QueryStarted { id: String, message: String },
}

struct RunningQuery {
    id: String,
    run: QueryRun,
    sink: String,
    sources: Vec<String>,
}

/// How a persistent query runs: driven by [`Session::run_until_idle`], or on its own task.
enum QueryRun {
    Driven(Box<Pipeline>),
    Background(QueryTask),
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
    /// Where statements are recorded for replay; `None` for an ephemeral session.
    commands: Option<CommandLog>,
    /// Set by [`Session::run_in_background`]: queries run on tasks of this runtime.
    background: Option<tokio::runtime::Handle>,
}

impl Session {
    pub fn new(log: Log) -> Session {
        let mut config = SessionConfig::new();
        let opts = config.options_mut();
        opts.sql_parser.enable_ident_normalization = false;
        opts.sql_parser.map_string_types_to_utf8view = false;
        // ksqlDB reads `1.5` as a DECIMAL literal.
        opts.sql_parser.parse_float_as_decimal = true;
        Session {
            plog: ProcessingLog::new(log.clone()),
            log,
            catalog: Catalog::default(),
            df: SessionContext::new_with_config(config),
            queries: Vec::new(),
            properties: BTreeMap::new(),
            next_query: 0,
            commands: None,
            background: None,
        }
    }

    /// A session whose catalog and queries persist in the data directory: it replays the
    /// command topic (rebuilding the catalog and restarting the persistent queries, which resume
    /// from their committed offsets), then records every statement that changes them.
    pub fn open(log: Log) -> Result<Session> {
        let mut session = Session::new(log);
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
        Ok(session)
    }

    /// The persistent queries, by id, with the sink each writes to.
    pub fn queries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.queries
            .iter()
            .map(|q| (q.id.as_str(), q.sink.as_str()))
    }

    /// From now on, persistent queries run continuously on blocking tasks of `runtime`, each
    /// woken by appends to its source; the queries already started move there too.
    pub fn run_in_background(&mut self, runtime: tokio::runtime::Handle) {
        let (log, plog) = (self.log.clone(), self.plog.clone());
        self.queries = std::mem::take(&mut self.queries)
            .into_iter()
            .map(|mut q| {
                q.run = match q.run {
                    QueryRun::Driven(p) => QueryRun::Background(QueryTask::spawn(
                        &runtime,
                        *p,
                        log.clone(),
                        plog.clone(),
                    )),
                    running => running,
                };
                q
            })
            .collect();
        self.background = Some(runtime);
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
            Statement::InsertInto { target, query } => self.insert_into(target, query),
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
                self.properties.insert(name.clone(), value.clone());
                Ok(Outcome::Message(format!(
                    "Successfully changed local property '{name}' to '{value}'."
                )))
            }
            Statement::Unset(name) => {
                self.properties.remove(name);
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
                let (stopped, kept): (Vec<RunningQuery>, Vec<RunningQuery>) =
                    std::mem::take(&mut self.queries)
                        .into_iter()
                        .partition(|q| id.as_ref().is_none_or(|id| q.id.eq_ignore_ascii_case(id)));
                self.queries = kept;
                if stopped.is_empty() && id.is_some() {
                    return invalid(format!(
                        "Unknown queryId: {}",
                        id.as_deref().unwrap_or_default()
                    ));
                }
                for q in stopped {
                    if let QueryRun::Background(mut task) = q.run {
                        if let Err(e) = task.stop() {
                            tracing::warn!(query = %q.id, "the query had failed: {e}");
                        }
                    }
                }
                Ok(Outcome::Message("Query terminated.".into()))
            }
            other => Err(unsupported(
                Missing::Feature,
                format!("{} statements in this mode", statement_kind(other)),
            )),
        }
    }

    /// Runs every driven persistent query until none has anything left to read.
    pub fn run_until_idle(&mut self) -> Result<()> {
        loop {
            let mut progress = 0;
            for q in &mut self.queries {
                if let QueryRun::Driven(p) = &mut q.run {
                    progress += p.run_available(&self.log, &self.plog)?;
                }
            }
            if progress == 0 {
                return Ok(());
            }
        }
    }

    fn format_defaults(&self) -> FormatDefaults<'_> {
        (
            self.properties
                .get("ksql.persistence.default.format.key")
                .map(String::as_str),
            self.properties
                .get("ksql.persistence.default.format.value")
                .map(String::as_str),
        )
    }

    fn reads_from_beginning(&self) -> bool {
        self.properties
            .get("auto.offset.reset")
            .is_some_and(|v| v.eq_ignore_ascii_case("earliest"))
    }

    fn create_source(&mut self, c: &CreateSource, text: &str) -> Result<Outcome> {
        let what = kind_name(c.kind);
        if let Some(existing) = self.catalog.source(&c.name) {
            if c.if_not_exists {
                return Ok(Outcome::Message(format!(
                    "Cannot add {what} {}: A {} with the same name already exists.",
                    c.name,
                    kind_name(existing.kind)
                )));
            }
            if !c.or_replace {
                return invalid(format!(
                    "Cannot add {what} '{}': A {} with the same name already exists",
                    c.name,
                    kind_name(existing.kind).to_lowercase()
                ));
            }
        }
        let props = &c.properties;
        let Some(topic) = props.text("KAFKA_TOPIC") else {
            return invalid(
                "Missing required property \"KAFKA_TOPIC\" which has no default value.",
            );
        };
        let (key_format, value_format) = formats(props, None, self.format_defaults())?;
        let mut key_columns = Vec::new();
        let mut value_columns = Vec::new();
        let mut header_columns = Vec::new();
        for col in &c.columns {
            let ty = self.catalog.resolve(&col.ty).map_err(SqlError::Invalid)?;
            if key_columns
                .iter()
                .chain(&value_columns)
                .chain(
                    header_columns
                        .iter()
                        .map(|(h, _): &(Column, Option<String>)| h),
                )
                .any(|x: &Column| x.name == col.name)
            {
                return invalid(format!("Duplicate column names: {}", col.name));
            }
            if crate::planner::RESERVED.contains(&col.name.as_str()) {
                return invalid(format!(
                    "'{}' is a reserved column name. You cannot use it as a name for a column.",
                    col.name
                ));
            }
            let column = Column {
                name: col.name.clone(),
                ty,
            };
            match (&col.role, c.kind) {
                (ColumnRole::Key { primary: true }, SourceKind::Stream) => {
                    return invalid(format!("Column `{}` is a 'PRIMARY KEY' column: please use 'KEY' for streams.\nTables have PRIMARY KEYs, which are unique and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL constraints.", col.name))
                }
                (ColumnRole::Key { primary: false }, SourceKind::Table) => {
                    return invalid(format!("Column `{}` is a 'KEY' column: please use 'PRIMARY KEY' for tables.\nTables have PRIMARY KEYs, which are unique and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL constraints.", col.name))
                }
                (ColumnRole::Key { .. }, _) => key_columns.push(column),
                (ColumnRole::Value, _) => value_columns.push(column),
                (ColumnRole::Headers, _) => {
                    let expected = SqlType::Array(Box::new(SqlType::Struct(vec![("KEY".into(), SqlType::String), ("VALUE".into(), SqlType::Bytes)])));
                    if column.ty != expected {
                        return invalid(format!("Invalid type for HEADERS column: expected {expected}, got {}", column.ty));
                    }
                    if header_columns.iter().any(|(_, h): &(Column, Option<String>)| h.is_none()) {
                        return invalid("Schema already contains a HEADERS column.");
                    }
                    header_columns.push((column, None));
                }
                (ColumnRole::Header(name), _) => {
                    if column.ty != SqlType::Bytes {
                        return invalid(format!("Invalid type for HEADER('{name}') column: expected BYTES, got {}", column.ty));
                    }
                    header_columns.push((column, Some(name.clone())));
                }
            }
        }
        if c.kind == SourceKind::Table && key_columns.is_empty() {
            return invalid("Tables require a PRIMARY KEY. Please define the PRIMARY KEY.");
        }
        if value_columns.is_empty() && c.columns.is_empty() {
            return Err(unsupported(
                Missing::Feature,
                "inferring columns from a schema registry",
            ));
        }
        let all: Vec<Column> = key_columns.iter().chain(&value_columns).cloned().collect();
        let (timestamp_column, timestamp_format) = timestamp_column(props, &all)?;
        check_wrapping(props, &value_format, value_columns.len())?;
        let def = SourceDef {
            name: c.name.clone(),
            kind: c.kind,
            topic: topic.clone(),
            key_columns,
            value_columns,
            header_columns,
            key_format,
            value_format,
            wrap_single_value: wrap_single(props)?,
            timestamp_column,
            timestamp_format,
            read_only: c.read_only,
            sql: text.to_string(),
        };
        codecs(&def)?;
        if self.log.topic(&topic).is_err() {
            let partitions = match props.text("PARTITIONS") {
                Some(p) => p.parse::<u32>().map_err(|_| SqlError::Invalid(format!("invalid PARTITIONS {p}")))?,
                None => {
                    return invalid(format!(
                        "Topic '{topic}' does not exist. If you want to create a new topic for the {} please re-run the statement providing the required 'PARTITIONS' configuration in the WITH clause (and optionally 'REPLICAS'). For example: CREATE {} {} (...) WITH (KAFKA_TOPIC='{topic}', PARTITIONS=2, ...);",
                        what.to_lowercase(), what, c.name
                    ))
                }
            };
            self.log
                .create_topic(&topic, TopicConfig::with_partitions(partitions))?;
        }
        self.register(def)?;
        Ok(Outcome::Message(format!("{what} created")))
    }

    fn register(&mut self, def: SourceDef) -> Result<()> {
        let fields =
            |cols: &mut dyn Iterator<Item = &Column>| cols.map(Column::field).collect::<Vec<_>>();
        let schema = source_schema(
            &fields(&mut def.key_columns.iter()),
            &fields(&mut def.value_columns.iter()),
            &fields(&mut def.header_columns.iter().map(|(c, _)| c)),
        );
        let _ = self.df.deregister_table(def.name.as_str());
        self.df.register_table(
            datafusion::common::TableReference::bare(def.name.clone()),
            Arc::new(MemTable::try_new(schema, vec![vec![]])?),
        )?;
        self.catalog.sources.insert(def.name.clone(), def);
        Ok(())
    }

    fn create_as_select(&mut self, c: &CreateAsSelect, text: &str) -> Result<Outcome> {
        let what = kind_name(c.kind);
        if let Some(existing) = self.catalog.source(&c.name) {
            if c.if_not_exists {
                return Ok(Outcome::Message(format!(
                    "Cannot add {what} {}: A {} with the same name already exists.",
                    c.name,
                    kind_name(existing.kind)
                )));
            }
            if !c.or_replace {
                return invalid(format!(
                    "Cannot add {what} '{}': A {} with the same name already exists",
                    c.name,
                    kind_name(existing.kind).to_lowercase()
                ));
            }
        }
        let state = self.df.state();
        let planned = plan_select(&state, &self.catalog, &c.query)?;
        if planned.result_kind != c.kind {
            let (produces, use_) = match planned.result_kind {
                SourceKind::Stream => ("STREAM", "CREATE STREAM AS SELECT"),
                SourceKind::Table => ("TABLE", "CREATE TABLE AS SELECT"),
            };
            return invalid(format!("Invalid result type. Your SELECT query produces a {produces}. Please use {use_} statement instead."));
        }
        let props = &c.properties;
        let source = planned.source.clone();
        let topic = props.text("KAFKA_TOPIC").unwrap_or_else(|| c.name.clone());
        let (mut key_format, value_format) = formats(props, Some(&source), self.format_defaults())?;
        if planned.key_columns.is_empty() {
            // No key (PARTITION BY NULL, or a keyless source): nothing to format.
            if props.get("KEY_FORMAT").is_some() {
                return invalid(format!(
                    "Key format specified for {} without key columns.",
                    kind_name(c.kind).to_lowercase()
                ));
            }
            key_format = Format::None;
        }
        let all: Vec<Column> = planned
            .key_columns
            .iter()
            .chain(&planned.value_columns)
            .cloned()
            .collect();
        let sink_ts = timestamp_column(props, &all)?;
        let def = SourceDef {
            name: c.name.clone(),
            kind: c.kind,
            topic: topic.clone(),
            key_columns: planned.key_columns.clone(),
            value_columns: planned.value_columns.clone(),
            header_columns: Vec::new(),
            key_format,
            value_format,
            // Like ksqlDB, a query's sink does not inherit its source's wrapping.
            wrap_single_value: wrap_single(props)?,
            timestamp_column: sink_ts.0,
            timestamp_format: sink_ts.1,
            read_only: false,
            sql: text.to_string(),
        };
        if def.value_columns.is_empty() {
            return invalid("The projection contains no value columns.");
        }
        check_wrapping(props, &def.value_format, def.value_columns.len())?;
        codecs(&def)?;
        let partitions = match props.text("PARTITIONS") {
            Some(p) => p
                .parse::<u32>()
                .map_err(|_| SqlError::Invalid(format!("invalid PARTITIONS {p}")))?,
            None => self.log.topic(&source.topic)?.partition_count(),
        };
        if self.log.topic(&topic).is_err() {
            self.log
                .create_topic(&topic, TopicConfig::with_partitions(partitions))?;
        }
        let id = format!(
            "{}_{}_{}",
            if c.kind == SourceKind::Stream {
                "CSAS"
            } else {
                "CTAS"
            },
            c.name,
            self.next_query
        );
        self.start_query(id.clone(), planned, &def)?;
        self.register(def)?;
        Ok(Outcome::QueryStarted {
            message: format!("Created query with ID {id}"),
            id,
        })
    }

    fn insert_into(&mut self, target: &str, query: &Select) -> Result<Outcome> {
        let Some(def) = self.catalog.source(target).cloned() else {
            return invalid(format!("{target} does not exist."));
        };
        if def.read_only {
            return invalid(format!(
                "Cannot insert into read-only {} {target}.",
                kind_name(def.kind).to_lowercase()
            ));
        }
        if !def.header_columns.is_empty() {
            return invalid(format!(
                "Cannot insert into {target} because it has header columns"
            ));
        }
        let state = self.df.state();
        let planned = plan_select(&state, &self.catalog, query)?;
        let same = |a: &[Column], b: &[Column]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.ty == y.ty)
        };
        if !same(&planned.key_columns, &def.key_columns)
            || !same(&planned.value_columns, &def.value_columns)
        {
            return invalid(format!(
                "Incompatible schema between results and sink.\nResult schema is {}\nSink schema is {}",
                schema_text(&planned.key_columns, &planned.value_columns),
                def.schema_text()
            ));
        }
        let id = format!("INSERTQUERY_{}", self.next_query);
        self.start_query(id.clone(), planned, &def)?;
        Ok(Outcome::QueryStarted {
            message: format!("Created query with ID {id}"),
            id,
        })
    }

    fn start_query(
        &mut self,
        id: String,
        planned: crate::planner::PlannedSelect,
        sink_def: &SourceDef,
    ) -> Result<()> {
        let source_def = &planned.source;
        let (key, value) = codecs(source_def)?;
        let event_time = match &source_def.timestamp_column {
            Some(c) => EventTime::Column {
                index: source_def
                    .key_columns
                    .iter()
                    .chain(&source_def.value_columns)
                    .position(|v| &v.name == c)
                    .expect("validated"),
                format: source_def
                    .timestamp_format
                    .as_deref()
                    .map(TimestampFormat::new)
                    .transpose()
                    .map_err(SqlError::Invalid)?,
            },
            None => EventTime::RecordTimestamp,
        };
        let headers = source_def
            .header_columns
            .iter()
            .map(|(c, name)| HeaderColumn {
                field: c.field(),
                name: name.clone(),
            })
            .collect();
        let mut source = Source::new(
            self.log.topic(&source_def.topic)?,
            key,
            value,
            headers,
            event_time,
        );
        source.drop_null_keys = source_def.kind == SourceKind::Table;
        let (sink_key, sink_value) = codecs(sink_def)?;
        let timestamp_column = match &sink_def.timestamp_column {
            Some(c) => match sink_def.key_columns.iter().position(|v| &v.name == c) {
                Some(k) => planned.key_indices[k],
                None => {
                    planned.value_indices[sink_def
                        .value_columns
                        .iter()
                        .position(|v| &v.name == c)
                        .expect("validated")]
                }
            },
            None => planned.rowtime_index,
        };
        let sink = Sink {
            topic: self.log.topic(&sink_def.topic)?,
            key: sink_key,
            value: sink_value,
            key_columns: planned.key_indices.clone(),
            value_columns: planned.value_indices.clone(),
            timestamp_column,
            timestamp_format: sink_def
                .timestamp_format
                .as_deref()
                .map(TimestampFormat::new)
                .transpose()
                .map_err(SqlError::Invalid)?,
            null_value_column: Some(planned.null_value_index),
            null_key_if_all_null: planned.keys_pass_through,
            headers_column: Some(planned.headers_index),
        };
        let id_for_list = id.clone();
        let pipeline = Pipeline::new(
            &self.log,
            id,
            source,
            planned.operators,
            sink,
            self.reads_from_beginning(),
        );
        self.next_query += 1;
        let run = match &self.background {
            Some(rt) => QueryRun::Background(QueryTask::spawn(
                rt,
                pipeline,
                self.log.clone(),
                self.plog.clone(),
            )),
            None => QueryRun::Driven(Box::new(pipeline)),
        };
        self.queries.push(RunningQuery {
            id: id_for_list,
            run,
            sink: sink_def.name.clone(),
            sources: vec![source_def.name.clone()],
        });
        Ok(())
    }

    fn insert_values(
        &mut self,
        target: &str,
        columns: Option<&[String]>,
        values: &[sqlparser::ast::Expr],
    ) -> Result<Outcome> {
        let Some(def) = self.catalog.source(target).cloned() else {
            return invalid(format!("{target} does not exist."));
        };
        if def.read_only {
            return invalid(format!(
                "Cannot insert values into read-only {}: {target}",
                kind_name(def.kind).to_lowercase()
            ));
        }
        let all: Vec<Column> = def.all_columns().cloned().collect();
        let names: Vec<String> = match columns {
            Some(c) => c.to_vec(),
            None => all.iter().map(|c| c.name.clone()).collect(),
        };
        let headers: Vec<&str> = def
            .header_columns
            .iter()
            .map(|(c, _)| c.name.as_str())
            .filter(|h| names.iter().any(|n| n == h))
            .collect();
        if !headers.is_empty() {
            return invalid(format!(
                "Cannot insert into HEADER columns: {}",
                headers.join(", ")
            ));
        }
        if names.len() != values.len() {
            return invalid(format!(
                "Expected a value for each column. Expected Columns: {names:?}. Got {} values",
                values.len()
            ));
        }
        let mut rowtime = None;
        let mut given: BTreeMap<String, ScalarValue> = BTreeMap::new();
        for (name, expr) in names.iter().zip(values) {
            let target_type = match name.as_str() {
                "ROWTIME" => SqlType::Bigint,
                n => match all.iter().find(|c| c.name == n) {
                    Some(c) => c.ty.clone(),
                    None => return invalid(format!("Column name {n} does not exist.")),
                },
            };
            let v = self.evaluate_constant(expr, &target_type)?;
            if name == "ROWTIME" {
                rowtime = match v {
                    ScalarValue::Int64(t) => t,
                    _ => None,
                };
            } else {
                given.insert(name.clone(), v);
            }
        }
        let value_of = |c: &Column| {
            given
                .get(&c.name)
                .cloned()
                .map_or_else(|| ScalarValue::try_from(&c.ty.to_arrow()), Ok)
        };
        let keys = def
            .key_columns
            .iter()
            .map(value_of)
            .collect::<Result<Vec<_>, _>>()?;
        let vals = def
            .value_columns
            .iter()
            .map(value_of)
            .collect::<Result<Vec<_>, _>>()?;
        let (key, value) = codecs(&def)?;
        let timestamp = match &def.timestamp_column {
            Some(c) => match given.get(c) {
                Some(ScalarValue::Int64(Some(t)))
                | Some(ScalarValue::TimestampMillisecond(Some(t), _)) => *t,
                _ => rowtime.unwrap_or_else(now_ms),
            },
            None => rowtime.unwrap_or_else(now_ms),
        };
        let sink = Sink {
            topic: self.log.topic(&def.topic)?,
            key,
            value,
            key_columns: vec![],
            value_columns: vec![],
            timestamp_column: 0,
            timestamp_format: None,
            null_value_column: None,
            null_key_if_all_null: true,
            headers_column: None,
        };
        sink.write_values(&keys, &vals, timestamp)?;
        Ok(Outcome::Message("Inserted 1 row".into()))
    }

    /// Evaluates a constant expression and casts it to `ty`.
    fn evaluate_constant(&self, expr: &sqlparser::ast::Expr, ty: &SqlType) -> Result<ScalarValue> {
        let mut e = expr.clone();
        rewrite(&mut e);
        let state = self.df.state();
        let plan =
            futures::executor::block_on(state.create_logical_plan(&format!("SELECT {e} AS v")))?;
        let plan = Analyzer::new().execute_and_check(plan, state.config_options(), |_, _| {})?;
        let datafusion::logical_expr::LogicalPlan::Projection(p) = &plan else {
            return invalid(format!("{expr} is not a constant"));
        };
        let physical = crate::planner::physical_expr(&state, p.expr[0].clone(), p.input.schema())?;
        let empty = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(Vec::<Field>::new())),
            vec![],
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let array = physical.evaluate(&empty)?.into_array(1)?;
        let array = datafusion::arrow::compute::cast(&array, &ty.to_arrow())
            .map_err(|e| SqlError::Invalid(format!("cannot use {expr} as a {ty}: {e}")))?;
        Ok(ScalarValue::try_from_array(&array, 0)?)
    }

    fn drop_source(
        &mut self,
        kind: SourceKind,
        if_exists: bool,
        name: &str,
        delete_topic: bool,
    ) -> Result<Outcome> {
        let Some(def) = self.catalog.source(name).cloned() else {
            if if_exists {
                return Ok(Outcome::Message(format!("Source {name} does not exist.")));
            }
            return invalid(format!("Source {name} does not exist."));
        };
        if def.kind != kind {
            return invalid(format!(
                "Incompatible data source type is {}, but statement was DROP {}",
                kind_name(def.kind),
                kind_name(kind)
            ));
        }
        let readers: Vec<&str> = self
            .queries
            .iter()
            .filter(|q| q.sources.iter().any(|s| s == name))
            .map(|q| q.id.as_str())
            .collect();
        let writers: Vec<&str> = self
            .queries
            .iter()
            .filter(|q| q.sink == name)
            .map(|q| q.id.as_str())
            .collect();
        if !readers.is_empty() || !writers.is_empty() {
            return invalid(format!(
                "Cannot drop {name}.\nThe following queries read from this source: [{}].\nThe following queries write into this source: [{}].\nYou need to terminate them before dropping {name}.",
                readers.join(", "),
                writers.join(", ")
            ));
        }
        self.catalog.sources.remove(name);
        let _ = self.df.deregister_table(name);
        if delete_topic {
            match self.log.delete_topic(&def.topic) {
                // Replaying a DROP ... DELETE TOPIC finds the topic already gone.
                Ok(()) | Err(eddy_log::LogError::UnknownTopic(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Outcome::Message(format!(
            "Source `{name}` (topic: {}) was dropped.",
            def.topic
        )))
    }
}

fn kind_name(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Stream => "STREAM",
        SourceKind::Table => "TABLE",
    }
}

fn statement_kind(s: &Statement) -> &'static str {
    match s {
        Statement::Query(_) => "SELECT",
        Statement::Show(_) => "SHOW",
        Statement::Describe { .. } | Statement::DescribeFunction(_) => "DESCRIBE",
        Statement::Explain(_) | Statement::ExplainQuery(_) => "EXPLAIN",
        Statement::Print(_) => "PRINT",
        Statement::Define { .. } | Statement::Undefine(_) => "DEFINE",
        _ => "these",
    }
}

fn schema_text(keys: &[Column], values: &[Column]) -> String {
    keys.iter()
        .map(|c| format!("`{}` {} KEY", c.name, c.ty))
        .chain(values.iter().map(|c| format!("`{}` {}", c.name, c.ty)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

//! CREATE STREAM/TABLE, with columns or AS SELECT: validating the definition, creating the
//! topic, registering the source and starting the query.

use std::sync::Arc;

use datafusion::catalog::MemTable;
use eddy_engine::schema::source_schema;
use eddy_engine::Format;
use eddy_log::TopicConfig;

use super::{kind_name, Outcome, Session};
use crate::ast::*;
use crate::catalog::{Column, SourceDef};
use crate::error::{invalid, unsupported, Missing, Result, SqlError};
use crate::planner::plan_select;
use crate::types::SqlType;
use crate::with_clause::{
    check_map_keys, check_wrapping, codecs, formats, timestamp_column, wrap_single,
};

impl Session {
    /// Whether `name` is free for a new source: `Some(message)` ends a CREATE IF NOT EXISTS of an
    /// existing name quietly, an error refuses a plain CREATE, `None` goes on (free, or OR
    /// REPLACE).
    fn name_taken(
        &self,
        name: &str,
        kind: SourceKind,
        if_not_exists: bool,
        or_replace: bool,
    ) -> Result<Option<Outcome>> {
        let Some(existing) = self.catalog.source(name) else {
            return Ok(None);
        };
        let (what, other) = (kind_name(kind), kind_name(existing.kind));
        if if_not_exists {
            return Ok(Some(Outcome::Message(format!(
                "Cannot add {what} {name}: A {other} with the same name already exists."
            ))));
        }
        if !or_replace {
            return invalid(format!(
                "Cannot add {what} '{name}': A {} with the same name already exists",
                other.to_lowercase()
            ));
        }
        Ok(None)
    }

    pub(super) fn create_source(&mut self, c: &CreateSource, text: &str) -> Result<Outcome> {
        let what = kind_name(c.kind);
        if c.read_only && c.or_replace {
            return invalid(format!(
                "Cannot add {} '{}': CREATE OR REPLACE is not supported on source {}s.",
                what.to_lowercase(),
                c.name,
                what.to_lowercase()
            ));
        }
        if c.or_replace && self.catalog.source(&c.name).is_some_and(|s| s.read_only) {
            return invalid(format!(
                "Cannot add {} '{}': CREATE OR REPLACE is not supported on source {}s.",
                what.to_lowercase(),
                c.name,
                what.to_lowercase()
            ));
        }
        if let Some(done) = self.name_taken(&c.name, c.kind, c.if_not_exists, c.or_replace)? {
            return Ok(done);
        }
        let props = &c.properties;
        if props.get("VALUE_AVRO_SCHEMA_FULL_NAME").is_some() {
            // Only AVRO names its schema, and Eddy's formats are not AVRO.
            let (_, value) = formats(props, None, self.format_defaults())?;
            return invalid(format!(
                "{} does not support the following configs: [fullSchemaName]",
                value.name()
            ));
        }
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
        if key_columns.is_empty() && props.get("WINDOW_TYPE").is_some() {
            return invalid("Windowed sources require a key column.");
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
        check_map_keys(&value_format, &value_columns)?;
        let def = SourceDef {
            name: c.name.clone(),
            kind: c.kind,
            topic: topic.clone(),
            key_columns,
            value_columns,
            header_columns,
            key_format,
            value_format,
            wrap_single_value: wrap_single(props, self.wrap_default())?,
            timestamp_column,
            timestamp_format,
            window: crate::with_clause::source_window(props)?,
            read_only: c.read_only,
            sql: text.to_string(),
            key_schema_id: 0,
            value_schema_id: 0,
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
        let def = self.register_schemas(def, false);
        let queryable = def.read_only;
        self.register(def, queryable)?;
        Ok(Outcome::Message(format!("{what} created")))
    }

    /// Adds a source to the catalog; a table is also materialized for pull queries if
    /// `materialize`. As in ksqlDB, those are the tables of `CREATE SOURCE TABLE` and of a
    /// `CREATE TABLE AS SELECT` without GROUP BY; an aggregation's state is its table's
    /// materialization already, and a plain `CREATE TABLE` is not queryable. Joins keep their
    /// own copies of the tables they read (`eddy_engine::table_rows`), so no table is kept
    /// twice unless a pull query may ask for it.
    pub(super) fn register(&mut self, def: SourceDef, materialize: bool) -> Result<()> {
        let fields =
            |cols: &mut dyn Iterator<Item = &Column>| cols.map(Column::field).collect::<Vec<_>>();
        let schema = source_schema(
            &fields(&mut def.key_columns.iter()),
            &fields(&mut def.value_columns.iter()),
            &fields(&mut def.header_columns.iter().map(|(c, _)| c)),
            def.window.is_some(),
        );
        let _ = self
            .df
            .deregister_table(datafusion::common::TableReference::bare(def.name.clone()));
        self.df.register_table(
            datafusion::common::TableReference::bare(def.name.clone()),
            Arc::new(MemTable::try_new(schema, vec![vec![]])?),
        )?;
        self.catalog.sources.insert(def.name.clone(), def.clone());
        if !materialize {
            return Ok(());
        }
        self.materialize(&def)
    }

    /// Registers the schemas of `def`'s schema-registry formats under its topic's subjects and
    /// frames its records with their ids. A query's sink (`always`) registers its schema as the
    /// subject's latest; a source declared over a topic only when the subject has none, since
    /// a producer's own schema is then the topic's.
    fn register_schemas(&mut self, mut def: SourceDef, always: bool) -> SourceDef {
        let fields = |cols: &[Column]| cols.iter().map(Column::field).collect::<Vec<_>>();
        let key_name = format!("{}Key", camel_case(&def.name));
        let sides = [
            (
                "key",
                &def.key_format,
                fields(&def.key_columns),
                false,
                key_name,
            ),
            (
                "value",
                &def.value_format,
                fields(&def.value_columns),
                def.wrap_single_value,
                "io.confluent.ksql.avro_schemas.KsqlDataSourceSchema".to_string(),
            ),
        ];
        let mut ids = [0, 0];
        for (i, (side, format, fields, wrap, name)) in sides.into_iter().enumerate() {
            if fields.is_empty() {
                continue;
            }
            let subject = format!("{}-{side}", def.topic);
            let Some(schema) = crate::schema_registry::derived_schema(format, &fields, wrap, &name)
            else {
                continue;
            };
            ids[i] = match self.schema_registry.latest(&subject) {
                Some(id) if !always => id,
                _ => self.schema_registry.register(&subject, schema),
            };
        }
        (def.key_schema_id, def.value_schema_id) = (ids[0], ids[1]);
        def
    }

    /// The source a `CREATE ... AS SELECT` makes, from its planned query: columns, formats,
    /// topic and timestamp, checked.
    pub(super) fn sink_def(
        &self,
        c: &CreateAsSelect,
        planned: &crate::planner::PlannedSelect,
        text: &str,
    ) -> Result<SourceDef> {
        let props = &c.properties;
        let source = planned.source.clone();
        let topic = props.text("KAFKA_TOPIC").unwrap_or_else(|| {
            let prefix = self.properties.get("ksql.output.topic.name.prefix");
            format!("{}{}", prefix.map_or("", String::as_str), c.name)
        });
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
            wrap_single_value: wrap_single(props, self.wrap_default())?,
            timestamp_column: sink_ts.0,
            timestamp_format: sink_ts.1,
            window: match &c.query.window {
                Some(w) => Some(window_info(w)),
                None if c.query.group_by.is_empty() => source.window,
                None => None,
            },
            read_only: false,
            sql: text.to_string(),
            key_schema_id: 0,
            value_schema_id: 0,
        };
        if def.value_columns.is_empty() {
            return invalid("The projection contains no value columns.");
        }
        check_wrapping(props, &def.value_format, def.value_columns.len())?;
        check_map_keys(&def.value_format, &def.value_columns)?;
        codecs(&def)?;
        Ok(def)
    }

    pub(super) fn create_as_select(&mut self, c: &CreateAsSelect, text: &str) -> Result<Outcome> {
        if c.query.limit.is_some() {
            // A persistent query never ends, so it has no rows to stop after.
            let statement = match c.kind {
                SourceKind::Stream => "CREATE STREAM AS SELECT",
                SourceKind::Table => "CREATE TABLE AS SELECT",
            };
            return invalid(format!(
                "{statement} statements don't support LIMIT clause."
            ));
        }
        if let Some(done) = self.name_taken(&c.name, c.kind, c.if_not_exists, c.or_replace)? {
            return Ok(done);
        }
        if c.query.from.joins.len() > 1 {
            return self.create_n_way(c, text);
        }
        let plan =
            |s: &Session| plan_select(&s.df.state(), &s.catalog, &c.query, &c.name, &s.properties);
        let planned = plan(self)?;
        self.check_copartitioned(&c.query, &planned)?;
        if planned.result_kind != c.kind {
            let (produces, use_) = match planned.result_kind {
                SourceKind::Stream => ("STREAM", "CREATE STREAM AS SELECT"),
                SourceKind::Table => ("TABLE", "CREATE TABLE AS SELECT"),
            };
            return invalid(format!("Invalid result type. Your SELECT query produces a {produces}. Please use {use_} statement instead."));
        }
        let def = self.sink_def(c, &planned, text)?;
        let def = self.register_schemas(def, true);
        let (props, source, topic) = (&c.properties, &planned.source, def.topic.clone());
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
        self.start_query(id.clone(), planned, &plan, &def, text)?;
        // A hidden n-way join step is read by the next step only, never pulled from.
        let materialize = c.query.group_by.is_empty() && !crate::join::is_join_step(&c.name);
        self.register(def, materialize)?;
        Ok(Outcome::QueryStarted {
            message: format!("Created query with ID {id}"),
            id,
        })
    }
}

fn window_info(w: &WindowSpec) -> crate::catalog::WindowInfo {
    use crate::catalog::{WindowInfo, WindowType};
    match *w {
        WindowSpec::Tumbling { size_ms, .. } => WindowInfo {
            kind: WindowType::Tumbling,
            size_ms: Some(size_ms),
        },
        WindowSpec::Hopping { size_ms, .. } => WindowInfo {
            kind: WindowType::Hopping,
            size_ms: Some(size_ms),
        },
        WindowSpec::Session { .. } => WindowInfo {
            kind: WindowType::Session,
            size_ms: None,
        },
    }
}

/// `my_sink` as `MySink`: how ksqlDB names a sink's Avro key record.
fn camel_case(name: &str) -> String {
    name.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let lower = p.to_ascii_lowercase();
            let mut c = lower.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

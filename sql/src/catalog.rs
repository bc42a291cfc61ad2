//! The catalog: the streams, tables and types a session knows.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::Field;
use eddy_engine::Format;

use crate::ast::SourceKind;
use crate::types::SqlType;

/// A column of a source.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
}

impl Column {
    pub fn field(&self) -> Field {
        Field::new(&self.name, self.ty.to_arrow(), true)
    }
}

/// The window of a windowed source, as ksqlDB describes it (`windowType`, `windowSize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowInfo {
    pub kind: WindowType,
    /// The size in ms of a time window; sessions have none.
    pub size_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowType {
    Tumbling,
    Hopping,
    Session,
}

impl WindowType {
    pub fn name(self) -> &'static str {
        match self {
            WindowType::Tumbling => "TUMBLING",
            WindowType::Hopping => "HOPPING",
            WindowType::Session => "SESSION",
        }
    }
}

/// A stream or table: where its records are and how to read them.
#[derive(Clone, Debug)]
pub struct SourceDef {
    pub name: String,
    pub kind: SourceKind,
    pub topic: String,
    pub key_columns: Vec<Column>,
    pub value_columns: Vec<Column>,
    /// Columns read from the record's headers: `HEADERS` (name `None`) or `HEADER('name')`.
    pub header_columns: Vec<(Column, Option<String>)>,
    pub key_format: Format,
    pub value_format: Format,
    /// JSON values with one column: wrapped in an object or bare.
    pub wrap_single_value: bool,
    /// The value column holding event time, if not the record timestamp.
    pub timestamp_column: Option<String>,
    /// `TIMESTAMP_FORMAT`: the Java pattern of a STRING timestamp column.
    pub timestamp_format: Option<String>,
    /// A windowed table's window: its keys carry the window's bounds.
    pub window: Option<WindowInfo>,
    /// Created by `CREATE SOURCE ...`: no query may write to it.
    pub read_only: bool,
    /// The statement that created it.
    pub sql: String,
    /// The schema-registry ids its key and value records are framed with (0: none).
    pub key_schema_id: u32,
    pub value_schema_id: u32,
}

impl SourceDef {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.all_columns().find(|c| c.name == name)
    }

    /// Key, value and header columns, in the order `SELECT *` gives them.
    pub fn all_columns(&self) -> impl Iterator<Item = &Column> {
        self.key_columns
            .iter()
            .chain(&self.value_columns)
            .chain(self.header_columns.iter().map(|(c, _)| c))
    }

    /// The schema as ksqlDB prints it: `` `K` STRING KEY, `V` INTEGER``.
    pub fn schema_text(&self) -> String {
        let key_word = match self.kind {
            SourceKind::Stream => "KEY",
            SourceKind::Table => "PRIMARY KEY",
        };
        self.key_columns
            .iter()
            .map(|c| format!("`{}` {} {key_word}", c.name, c.ty))
            .chain(
                self.value_columns
                    .iter()
                    .map(|c| format!("`{}` {}", c.name, c.ty)),
            )
            .chain(self.header_columns.iter().map(|(c, h)| match h {
                None => format!("`{}` {} HEADERS", c.name, c.ty),
                Some(name) => format!("`{}` {} HEADER('{name}')", c.name, c.ty),
            }))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Default, Clone)]
pub struct Catalog {
    pub sources: BTreeMap<String, SourceDef>,
    pub types: BTreeMap<String, SqlType>,
}

impl Catalog {
    pub fn source(&self, name: &str) -> Option<&SourceDef> {
        self.sources.get(name)
    }

    /// Replaces named types with their definitions, recursively.
    pub fn resolve(&self, ty: &SqlType) -> Result<SqlType, String> {
        Ok(match ty {
            SqlType::Named(n) => match self.types.get(n) {
                Some(t) => self.resolve(t)?,
                None => return Err(format!("unknown type {n}")),
            },
            SqlType::Array(t) => SqlType::Array(Box::new(self.resolve(t)?)),
            SqlType::Map(k, v) => {
                SqlType::Map(Box::new(self.resolve(k)?), Box::new(self.resolve(v)?))
            }
            SqlType::Struct(fs) => SqlType::Struct(
                fs.iter()
                    .map(|(n, t)| Ok((n.clone(), self.resolve(t)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }
}

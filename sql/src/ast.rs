//! The statements of Eddy's SQL, ksqlDB's dialect.
//!
//! Expressions are `sqlparser`'s [`Expr`]: the ksqlDB-specific parts of the grammar are the
//! statements and clauses, which this module models; expressions are standard SQL plus a few
//! operators (`->`, lambdas) that `sqlparser` already represents.

use datafusion::sql::sqlparser::ast::{Expr, SelectItem};

use crate::types::SqlType;

/// A name as written: unquoted names are upper-cased (ksqlDB's rule), quoted ones kept as is.
pub type Name = String;

#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    CreateSource(CreateSource),
    CreateAsSelect(CreateAsSelect),
    InsertInto {
        target: Name,
        query: Box<Select>,
    },
    InsertValues {
        target: Name,
        columns: Option<Vec<Name>>,
        values: Vec<Expr>,
    },
    Query(Box<Select>),
    Drop {
        kind: SourceKind,
        if_exists: bool,
        name: Name,
        delete_topic: bool,
    },
    Show(ShowKind),
    Describe {
        name: Name,
        extended: bool,
    },
    DescribeFunction(Name),
    Explain(Box<Statement>),
    ExplainQuery(String),
    Terminate(Option<String>),
    /// `PAUSE id | ALL`: the query's tasks stop running, keeping their state and positions.
    Pause(Option<String>),
    /// `RESUME id | ALL`: a paused query runs again from where it paused.
    Resume(Option<String>),
    Print(Print),
    Set {
        name: String,
        value: String,
    },
    Unset(String),
    Define {
        name: String,
        value: String,
    },
    Undefine(String),
    CreateType {
        if_not_exists: bool,
        name: Name,
        ty: SqlType,
    },
    DropType {
        if_exists: bool,
        name: Name,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Stream,
    Table,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CreateSource {
    pub or_replace: bool,
    /// `CREATE SOURCE STREAM|TABLE`: read-only, materialized without a query.
    pub read_only: bool,
    pub kind: SourceKind,
    pub if_not_exists: bool,
    pub name: Name,
    pub columns: Vec<ColumnDef>,
    pub properties: Properties,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDef {
    pub name: Name,
    pub ty: SqlType,
    pub role: ColumnRole,
}

/// Where a column's value lives in a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnRole {
    Value,
    /// `KEY` (streams) or `PRIMARY KEY` (tables).
    Key {
        primary: bool,
    },
    /// `HEADERS`: all headers as `ARRAY<STRUCT<KEY STRING, VALUE BYTES>>`.
    Headers,
    /// `HEADER('name')`: one header's bytes.
    Header(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CreateAsSelect {
    pub or_replace: bool,
    pub kind: SourceKind,
    pub if_not_exists: bool,
    pub name: Name,
    pub properties: Properties,
    pub query: Box<Select>,
}

/// `WITH (KEY = value, ...)`: keys upper-cased, values literals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Properties(pub Vec<(String, PropertyValue)>);

#[derive(Clone, Debug, PartialEq)]
pub enum PropertyValue {
    String(String),
    Number(String),
    Boolean(bool),
}

impl PropertyValue {
    pub fn as_text(&self) -> String {
        match self {
            PropertyValue::String(s) | PropertyValue::Number(s) => s.clone(),
            PropertyValue::Boolean(b) => b.to_string(),
        }
    }
}

impl Properties {
    pub fn get(&self, key: &str) -> Option<&PropertyValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key).map(PropertyValue::as_text)
    }
}

/// A ksqlDB `SELECT`.
#[derive(Clone, Debug, PartialEq)]
pub struct Select {
    pub items: Vec<SelectItem>,
    pub from: FromClause,
    pub window: Option<WindowSpec>,
    pub where_clause: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub partition_by: Vec<Expr>,
    pub having: Option<Expr>,
    pub emit: Option<Emit>,
    pub limit: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FromClause {
    pub source: Relation,
    pub joins: Vec<Join>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Relation {
    pub name: Name,
    pub alias: Option<Name>,
}

impl Relation {
    /// The name columns are qualified with: the alias if any.
    pub fn qualifier(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Join {
    pub kind: JoinKind,
    pub relation: Relation,
    pub within: Option<Within>,
    pub on: Expr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

/// `WITHIN n unit` or `WITHIN (before, after)`, with an optional grace period, in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Within {
    pub before_ms: u64,
    pub after_ms: u64,
    pub grace_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowSpec {
    Tumbling {
        size_ms: u64,
        retention_ms: Option<u64>,
        grace_ms: Option<u64>,
    },
    Hopping {
        size_ms: u64,
        advance_ms: u64,
        retention_ms: Option<u64>,
        grace_ms: Option<u64>,
    },
    Session {
        gap_ms: u64,
        retention_ms: Option<u64>,
        grace_ms: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    Changes,
    Final,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShowKind {
    Streams { extended: bool },
    Tables { extended: bool },
    Topics { all: bool, extended: bool },
    Queries { extended: bool },
    Functions,
    Properties,
    Types,
    Variables,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Print {
    pub topic: String,
    pub from_beginning: bool,
    pub interval: Option<u64>,
    pub limit: Option<u64>,
}

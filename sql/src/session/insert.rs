//! INSERT INTO ... SELECT (a query writing into an existing source) and INSERT INTO ...
//! VALUES (one record).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use eddy_engine::Sink;

use super::{kind_name, schema_text, Outcome, Session};
use crate::ast::*;
use crate::catalog::{Column, SourceDef};
use crate::error::{invalid, Result, SqlError};
use crate::planner::plan_select;
use crate::rewrite::rewrite;
use crate::types::SqlType;
use crate::with_clause::codecs;

/// Where a row was appended: its partition, and the offset that partition's durable offset
/// must reach before the row is acknowledged.
pub type Appended = (Arc<Partition>, u64);
use eddy_log::{now_ms, Partition, Record};

impl Session {
    pub(super) fn insert_into(
        &mut self,
        target: &str,
        query: &Select,
        text: &str,
    ) -> Result<Outcome> {
        if query.limit.is_some() {
            return invalid("INSERT INTO statements don't support LIMIT clause.");
        }
        let Some(def) = self.catalog.source(target).cloned() else {
            return invalid(format!("{target} does not exist."));
        };
        if def.read_only {
            return invalid(format!(
                "Cannot insert into read-only {} {target}.",
                kind_name(def.kind).to_lowercase()
            ));
        }
        if def.kind == SourceKind::Table {
            return invalid(format!(
                "INSERT INTO can only be used to insert into a stream. {target} is a table."
            ));
        }
        if !def.header_columns.is_empty() {
            return invalid(format!(
                "Cannot insert into {target} because it has header columns"
            ));
        }
        let plan =
            |s: &Session| plan_select(&s.df.state(), &s.catalog, query, target, &s.properties);
        let planned = plan(self)?;
        self.check_copartitioned(query, &planned)?;
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
        self.start_query(id.clone(), planned, &plan, &def, text)?;
        Ok(Outcome::QueryStarted {
            message: format!("Created query with ID {id}"),
            id,
        })
    }

    pub(super) fn insert_values(
        &mut self,
        target: &str,
        columns: Option<&[String]>,
        values: &[sqlparser::ast::Expr],
    ) -> Result<Outcome> {
        let def = self.values_target(target)?;
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
        // A value names no column; a qualified name whose qualifier is not the target is not
        // a source ksqlDB knows here.
        for v in values {
            let mut unknown = None;
            let _ = sqlparser::ast::visit_expressions(v, |e| {
                if let sqlparser::ast::Expr::CompoundIdentifier(parts) = e {
                    let qualifier = crate::parser::normalize(&parts[0]);
                    if parts.len() > 1 && qualifier != target {
                        unknown = Some(qualifier);
                        return std::ops::ControlFlow::Break(());
                    }
                }
                std::ops::ControlFlow::Continue(())
            });
            if let Some(q) = unknown {
                return invalid(format!(
                    "Failed to prepare statement: '{q}' is not a valid stream/table name or alias."
                ));
            }
        }
        // The pseudo-columns the log assigns.
        if let Some(n) = names
            .iter()
            .find(|n| *n == "ROWPARTITION" || *n == "ROWOFFSET")
        {
            return invalid(format!("Inserting into column `{n}` is not allowed."));
        }
        if names.len() != values.len() {
            return match columns {
                Some(c) => invalid(format!(
                    "Failed to prepare statement: Expected number columns and values to match: {}, {}",
                    c.len(),
                    values.len()
                )),
                None => invalid(format!(
                    "Expected a value for each column. Expected Columns: {names:?}. Got {} values",
                    values.len()
                )),
            };
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
        let (partition, next) = self.write_row(&def, given, rowtime)?;
        partition.wait_durable_blocking(next)?;
        Ok(Outcome::Message("Inserted 1 row".into()))
    }

    /// Rows given as JSON objects of column names to values (names match as written, then
    /// upper-cased, and `ROWTIME` sets the record's timestamp), appended together (one
    /// append per partition) and not waited for: for a caller that acknowledges many rows
    /// with one group commit, and whose readers then wake once for them (the REST API's
    /// `/inserts-stream`). One result per row, in order: the row's partition and the offset
    /// that partition's durable offset must reach, or why the row was refused.
    pub fn insert_json_rows(
        &mut self,
        target: &str,
        rows: &[&serde_json::Map<String, serde_json::Value>],
    ) -> Vec<Result<Appended>> {
        let refused = |e: &SqlError| SqlError::Invalid(e.to_string());
        let sink = self
            .values_target(target)
            .and_then(|def| Ok((self.row_sink(&def)?, def)));
        let (sink, def) = match sink {
            Ok(s) => s,
            Err(e) => return rows.iter().map(|_| Err(refused(&e))).collect(),
        };
        let mut results: Vec<Option<Result<Appended>>> = rows.iter().map(|_| None).collect();
        let mut by_partition: BTreeMap<u32, Vec<(usize, Record)>> = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            let encoded = json_values(&def, row)
                .and_then(|(given, rowtime)| row_record(&def, &sink, &given, rowtime));
            match encoded {
                Ok((p, record)) => by_partition.entry(p).or_default().push((i, record)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        for (p, group) in by_partition {
            let (indexes, records): (Vec<usize>, Vec<Record>) = group.into_iter().unzip();
            let appended = sink
                .topic
                .partition(p)
                .map_err(SqlError::from)
                .and_then(|partition| {
                    let info = partition.append_unacknowledged(&records)?;
                    Ok((partition.clone(), info.base_offset))
                });
            for (k, i) in indexes.into_iter().enumerate() {
                results[i] = Some(match &appended {
                    Ok((partition, base)) => Ok((partition.clone(), base + k as u64 + 1)),
                    Err(e) => Err(refused(e)),
                });
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every row has a result"))
            .collect()
    }

    /// The source `target` names, if rows may be inserted into it.
    fn values_target(&self, target: &str) -> Result<SourceDef> {
        let Some(def) = self.catalog.source(target).cloned() else {
            return invalid(format!("{target} does not exist."));
        };
        if def.read_only {
            return invalid(format!(
                "Cannot insert values into read-only {}: {target}",
                kind_name(def.kind).to_lowercase()
            ));
        }
        Ok(def)
    }

    /// Appends one record to `def`'s topic from its columns' values (missing ones are null),
    /// without waiting for it to be acknowledged.
    fn write_row(
        &self,
        def: &SourceDef,
        given: BTreeMap<String, ScalarValue>,
        rowtime: Option<i64>,
    ) -> Result<Appended> {
        let sink = self.row_sink(def)?;
        let (p, record) = row_record(def, &sink, &given, rowtime)?;
        let partition = sink.topic.partition(p)?.clone();
        let info = partition.append_unacknowledged(&[record])?;
        Ok((partition, info.next_offset()))
    }

    /// What writes rows into `def`'s topic with its formats.
    fn row_sink(&self, def: &SourceDef) -> Result<Sink> {
        let (key, value) = codecs(def)?;
        Ok(Sink {
            window: None,
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
        })
    }

    /// Evaluates a constant expression and casts it to `ty`.
    fn evaluate_constant(&self, expr: &sqlparser::ast::Expr, ty: &SqlType) -> Result<ScalarValue> {
        let mut e = expr.clone();
        rewrite(&mut e);
        let state = self.df.state();
        let plan =
            futures::executor::block_on(state.create_logical_plan(&format!("SELECT {e} AS v")))?;
        let plan = crate::user_lists::analyzer().execute_and_check(
            plan,
            state.config_options(),
            |_, _| {},
        )?;
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
        let target = ty.to_arrow();
        if let (DataType::Struct(none), DataType::Struct(fields)) = (array.data_type(), &target) {
            if none.is_empty() {
                // STRUCT(): every field of the target null.
                let children = fields
                    .iter()
                    .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), 1))
                    .collect();
                let s =
                    datafusion::arrow::array::StructArray::try_new(fields.clone(), children, None)
                        .map_err(|e| {
                            SqlError::Invalid(format!("cannot use {expr} as a {ty}: {e}"))
                        })?;
                return Ok(ScalarValue::try_from_array(&s, 0)?);
            }
        }
        let array = datafusion::arrow::compute::cast(&array, &target)
            .map_err(|e| SqlError::Invalid(format!("cannot use {expr} as a {ty}: {e}")))?;
        Ok(ScalarValue::try_from_array(&array, 0)?)
    }
}

/// A JSON row's values by column (names match as written, then upper-cased) and its `ROWTIME`.
fn json_values(
    def: &SourceDef,
    row: &serde_json::Map<String, serde_json::Value>,
) -> Result<(BTreeMap<String, ScalarValue>, Option<i64>)> {
    let all = || def.key_columns.iter().chain(&def.value_columns);
    // Upper-cased, `name` matches a column whose name has no lower-case letter and equals it
    // but for case: found without allocating, for every field of every row.
    let upper = |c: &&Column, name: &str| {
        c.name.eq_ignore_ascii_case(name) && !c.name.bytes().any(|b| b.is_ascii_lowercase())
    };
    let mut rowtime = None;
    let mut given: BTreeMap<String, ScalarValue> = BTreeMap::new();
    for (name, v) in row {
        if name.eq_ignore_ascii_case("ROWTIME") {
            rowtime = v.as_i64();
            continue;
        }
        let Some(c) = all()
            .find(|c| &c.name == name)
            .or_else(|| all().find(|c| upper(c, name)))
        else {
            return invalid(format!("Column name {name} does not exist."));
        };
        let value = eddy_engine::scalar_from_json(v, &c.ty.to_arrow())
            .map_err(|e| SqlError::Invalid(format!("Invalid value for column {}: {e}", c.name)))?;
        given.insert(c.name.clone(), value);
    }
    Ok((given, rowtime))
}

/// The record for a row of `def` (missing columns are null) and the partition it goes to.
fn row_record(
    def: &SourceDef,
    sink: &Sink,
    given: &BTreeMap<String, ScalarValue>,
    rowtime: Option<i64>,
) -> Result<(u32, Record)> {
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
    let timestamp = match &def.timestamp_column {
        Some(c) => match given.get(c) {
            Some(ScalarValue::Int64(Some(t)))
            | Some(ScalarValue::TimestampMillisecond(Some(t), _)) => *t,
            _ => rowtime.unwrap_or_else(now_ms),
        },
        None => rowtime.unwrap_or_else(now_ms),
    };
    Ok(sink.encode_values(&keys, &vals, timestamp)?)
}

//! Operators: the nodes of a query's graph, each turning a batch into a batch.
//!
//! An operator processes Arrow record batches and keeps whatever state it needs. When an
//! expression fails on some rows (a bad cast, a function error), the operator evaluates the
//! batch row by row to find them, reports each to the processing log, and goes on with the
//! rest: one bad record never stops a query. As in ksqlDB, a failing filter drops its row, and
//! a failing projected column is null in its row, which stays.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{concat, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::Result;
use crate::processing_log::{ProcessingLog, RecordOrigin};
use crate::schema::{ROWOFFSET, ROWPARTITION};

/// What an operator may use besides its input.
pub struct OperatorContext<'a> {
    pub query_id: &'a str,
    pub source_topic: &'a str,
    pub processing_log: &'a ProcessingLog,
}

impl OperatorContext<'_> {
    /// Reports row `row` of `batch` as unprocessable. Source batches carry ROWPARTITION and
    /// ROWOFFSET, which say where the record came from.
    pub fn report_row(&self, batch: &RecordBatch, row: usize, message: &str) -> Result<()> {
        let origin = origin_of(batch, row, self.source_topic);
        self.processing_log
            .report(self.query_id, origin.as_ref(), message)
    }
}

fn origin_of(batch: &RecordBatch, row: usize, topic: &str) -> Option<RecordOrigin> {
    let p = batch
        .column_by_name(ROWPARTITION)?
        .as_primitive_opt::<datafusion::arrow::datatypes::Int32Type>()?
        .value(row);
    let o = batch
        .column_by_name(ROWOFFSET)?
        .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()?
        .value(row);
    Some(RecordOrigin {
        topic: topic.to_string(),
        partition: p as u32,
        offset: o as u64,
    })
}

/// A node of a query's operator graph.
pub trait Operator: Send {
    /// A one-line description, for EXPLAIN.
    fn describe(&self) -> String;
    fn output_schema(&self) -> SchemaRef;
    fn process(&mut self, batch: RecordBatch, ctx: &OperatorContext<'_>) -> Result<RecordBatch>;
    /// Stages the state changed since the last call in `commit`, which the pipeline applies
    /// together with the input offsets the changes reflect. Stateless operators have nothing to
    /// stage.
    fn checkpoint(&mut self, _commit: &mut eddy_state::Commit) -> Result<()> {
        Ok(())
    }
    /// Whether the changes it holds for the next checkpoint have reached the bound it keeps
    /// in memory, so that the pipeline should commit now rather than at its interval.
    fn wants_commit(&self) -> bool {
        false
    }
    /// How far (ms of event time) one input of the pipeline may be read ahead of another
    /// without changing this operator's results; `None`: any. A stream-stream join tolerates
    /// its grace period: within it, a record of the lagging side is still joined.
    fn skew_tolerance_ms(&self) -> Option<i64> {
        None
    }
}

/// Keeps the rows for which a predicate is true.
///
/// Over a table, a row that fails the predicate is not dropped but turned into a deletion of
/// its key (its `__NULL_VALUE` flag set), as a table's filter forwards tombstones: a row that
/// stops matching must disappear downstream.
pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
    schema: SchemaRef,
    /// For tables: the index of the `__NULL_VALUE` column to set instead of dropping rows.
    tombstone_column: Option<usize>,
}

impl Filter {
    pub fn new(predicate: Arc<dyn PhysicalExpr>, schema: SchemaRef) -> Filter {
        Filter {
            predicate,
            schema,
            tombstone_column: None,
        }
    }

    /// A filter over a table's changelog.
    pub fn for_table(predicate: Arc<dyn PhysicalExpr>, schema: SchemaRef) -> Result<Filter> {
        let i = schema.index_of(crate::schema::NULL_VALUE)?;
        Ok(Filter {
            predicate,
            schema,
            tombstone_column: Some(i),
        })
    }

    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mask = self.mask(batch)?;
        match self.tombstone_column {
            None => Ok(filter_record_batch(batch, &mask)?),
            Some(i) => {
                // Deleted = already a tombstone, or not (true) under the predicate.
                let kept = if mask.null_count() > 0 {
                    datafusion::arrow::compute::prep_null_mask_filter(&mask)
                } else {
                    mask
                };
                let deleted = datafusion::arrow::compute::or(
                    batch.column(i).as_boolean(),
                    &datafusion::arrow::compute::not(&kept)?,
                )?;
                let mut columns = batch.columns().to_vec();
                columns[i] = Arc::new(deleted);
                Ok(RecordBatch::try_new(batch.schema(), columns)?)
            }
        }
    }

    fn mask(&self, batch: &RecordBatch) -> Result<datafusion::arrow::array::BooleanArray> {
        let v = self
            .predicate
            .evaluate(batch)?
            .into_array(batch.num_rows())?;
        Ok(v.as_boolean().clone())
    }
}

impl Operator for Filter {
    fn describe(&self) -> String {
        format!("Filter: {}", self.predicate)
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch, ctx: &OperatorContext<'_>) -> Result<RecordBatch> {
        match self.apply(&batch) {
            Ok(out) => Ok(out),
            Err(_) => row_by_row(&batch, ctx, &self.schema, |row| self.apply(row)),
        }
    }
}

/// Computes the output columns from expressions over the input.
pub struct Project {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl Project {
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Project {
        Project { exprs, schema }
    }

    fn eval(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = self
            .exprs
            .iter()
            .zip(self.schema.fields())
            .map(|(e, f)| eval_column(e, f, batch))
            .collect::<Result<Vec<_>>>()?;
        self.assemble(batch, columns)
    }

    /// As ksqlDB's SelectValueMapper does: a column whose expression fails on a row is null in
    /// that row, and the failure goes to the processing log; the row stays. A column that may
    /// not be null (an internal one) cannot take a null, and fails the batch as before.
    fn eval_nulling(&self, batch: &RecordBatch, ctx: &OperatorContext<'_>) -> Result<RecordBatch> {
        let mut columns = Vec::with_capacity(self.exprs.len());
        for (e, f) in self.exprs.iter().zip(self.schema.fields()) {
            if let Ok(c) = eval_column(e, f, batch) {
                columns.push(c);
                continue;
            }
            if !f.is_nullable() {
                return Err(crate::EngineError::Plan(format!("{} failed", f.name())));
            }
            let mut parts: Vec<ArrayRef> = Vec::with_capacity(batch.num_rows());
            for i in 0..batch.num_rows() {
                match eval_column(e, f, &batch.slice(i, 1)) {
                    Ok(c) => parts.push(c),
                    Err(err) => {
                        ctx.report_row(
                            batch,
                            i,
                            &format!("Error computing expression for column {}: {err}", f.name()),
                        )?;
                        parts.push(new_null_array(f.data_type(), 1));
                    }
                }
            }
            let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            columns.push(concat(&parts)?);
        }
        self.assemble(batch, columns)
    }

    fn assemble(&self, batch: &RecordBatch, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(batch.num_rows())),
        )?)
    }
}

/// One output column: `e` over `batch`, cast to `field`'s type.
fn eval_column(e: &Arc<dyn PhysicalExpr>, field: &Field, batch: &RecordBatch) -> Result<ArrayRef> {
    let c = e.evaluate(batch)?.into_array(batch.num_rows())?;
    Ok(if c.data_type() == field.data_type() {
        c
    } else {
        datafusion::arrow::compute::cast(&c, field.data_type())?
    })
}

impl Operator for Project {
    fn describe(&self) -> String {
        let all = self.exprs.iter().zip(self.schema.fields());
        let visible = all.clone().filter(|(_, f)| !f.name().starts_with("__"));
        // A projection of only internal columns (before an aggregate) shows them all.
        let shown: Vec<_> = match visible.clone().count() {
            0 => all.collect(),
            _ => visible.collect(),
        };
        let cols: Vec<String> = shown
            .into_iter()
            .map(|(e, f)| format!("{e} AS {}", f.name()))
            .collect();
        format!("Project: {}", cols.join(", "))
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn process(&mut self, batch: RecordBatch, ctx: &OperatorContext<'_>) -> Result<RecordBatch> {
        match self.eval(&batch) {
            Ok(out) => Ok(out),
            Err(_) => match self.eval_nulling(&batch, ctx) {
                Ok(out) => Ok(out),
                Err(_) => row_by_row(&batch, ctx, &self.schema, |row| self.eval(row)),
            },
        }
    }
}

/// Applies `f` to each row alone, reporting the rows it fails on.
fn row_by_row(
    batch: &RecordBatch,
    ctx: &OperatorContext<'_>,
    schema: &SchemaRef,
    f: impl Fn(&RecordBatch) -> Result<RecordBatch>,
) -> Result<RecordBatch> {
    let mut good = Vec::new();
    for i in 0..batch.num_rows() {
        let row = batch.slice(i, 1);
        match f(&row) {
            Ok(out) => good.push(out),
            Err(e) => ctx.report_row(
                batch,
                i,
                &format!("error evaluating the query on this record: {e}"),
            )?,
        }
    }
    Ok(concat_batches(schema, &good)?)
}

//! Higher-order functions with lambdas: `TRANSFORM(array, x => ...)`,
//! `TRANSFORM(map, (k, v) => ..., (k, v) => ...)`, `FILTER(array or map, ...)` and
//! `REDUCE(array or map, initial, (state, x) => ...)`.
//!
//! DataFusion has no lambdas, so [`encode`] (in `encode.rs`) turns each lambda into two string literals, its
//! parameters and its body (already rewritten into DataFusion's SQL; both hex-encoded, as a
//! nested lambda's literal would otherwise need quotes within quotes), and calls
//! `ksql_transform` and friends. The columns a lambda uses besides its parameters follow as
//! more arguments, after a literal naming them. The functions plan the body once per argument
//! types against a schema of the parameters and those columns, as a physical expression, and
//! evaluate it over all the elements of a batch at once (REDUCE: over the i-th elements of
//! every row at step i), each element seeing its row's columns.
//!
//! As in ksqlDB, arithmetic inside a lambda on a null fails (Java's boxed numbers), and a
//! failure anywhere in a row's lambda makes that row's result null, not the batch's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, ListArray, MapArray, RecordBatch, RecordBatchOptions,
    StructArray, UInt32Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{cast, concat, interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema};
use datafusion::common::{exec_err, plan_err, DFSchema, Result, ScalarValue};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::physical_expr::PhysicalExpr;

mod encode;

pub(crate) use encode::encode;

use super::udf_with;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Transform,
    Filter,
    Reduce,
}

impl Kind {
    pub(super) fn of(name: &str) -> Option<Kind> {
        match name {
            "transform" => Some(Kind::Transform),
            "filter" => Some(Kind::Filter),
            "reduce" => Some(Kind::Reduce),
            _ => None,
        }
    }

    pub(super) fn udf_name(self) -> &'static str {
        match self {
            Kind::Transform => "ksql_transform",
            Kind::Filter => "ksql_filter",
            Kind::Reduce => "ksql_reduce",
        }
    }

    /// How many plain arguments come before the lambdas.
    fn leading(self) -> usize {
        match self {
            Kind::Reduce => 2,
            _ => 1,
        }
    }
}

pub(super) fn functions() -> Vec<ScalarUDF> {
    let mut all: Vec<ScalarUDF> = [Kind::Transform, Kind::Filter, Kind::Reduce]
        .into_iter()
        .map(|kind| {
            ScalarUDF::from(LambdaUdf {
                kind,
                signature: Signature::variadic_any(Volatility::Immutable),
                planner: OnceLock::new(),
                compiled: Mutex::default(),
            })
        })
        .collect();
    all.push(udf_with(
        "ksql_nonnull",
        Signature::any(1, Volatility::Immutable),
        |t| Ok(t[0].clone()),
        |args, _| {
            if args[0].null_count() > 0 {
                return exec_err!("arithmetic on a null value in a lambda");
            }
            Ok(args[0].clone())
        },
    ));
    all
}

/// A lambda planned for its parameters' types.
struct Compiled {
    params: Vec<String>,
    expr: Arc<dyn PhysicalExpr>,
    out: DataType,
}

type CacheKey = (String, String, Vec<DataType>);

struct LambdaUdf {
    kind: Kind,
    signature: Signature,
    /// Plans lambda bodies: a session of its own, made on first use.
    planner: OnceLock<SessionState>,
    compiled: Mutex<HashMap<CacheKey, Arc<Compiled>>>,
}

impl std::fmt::Debug for LambdaUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind.udf_name())
    }
}

impl PartialEq for LambdaUdf {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Eq for LambdaUdf {}

impl std::hash::Hash for LambdaUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state)
    }
}

impl LambdaUdf {
    /// Plans a lambda whose parameters (hex-encoded JSON) have the first types of `types`,
    /// and whose other columns (`captured`) the rest.
    fn compile(
        &self,
        params: &str,
        body: &str,
        types: &[DataType],
        captured: &[String],
    ) -> Result<Arc<Compiled>> {
        let key = (params.to_string(), body.to_string(), types.to_vec());
        if let Some(c) = self.compiled.lock().expect("not poisoned").get(&key) {
            return Ok(c.clone());
        }
        let mut names: Vec<String> = decode(params)?;
        let body = String::from_utf8(hex::decode(body).unwrap_or_default()).unwrap_or_default();
        if names.len() + captured.len() != types.len() {
            return plan_err!(
                "{} takes a lambda of {} parameters here, not {}",
                self.kind
                    .udf_name()
                    .trim_start_matches("ksql_")
                    .to_uppercase(),
                types.len() - captured.len(),
                names.len()
            );
        }
        names.extend(captured.iter().cloned());
        let schema = Schema::new(
            names
                .iter()
                .zip(types)
                .map(|(n, t)| Field::new(n, t.clone(), true))
                .collect::<Vec<_>>(),
        );
        let df_schema = DFSchema::try_from(schema.clone())?;
        let state = self.planner.get_or_init(|| super::context().state());
        let logical = state.create_logical_expr(&body, &df_schema)?;
        // Some functions (coalesce) only run once the simplifier has rewritten them.
        let context = datafusion::logical_expr::simplify::SimplifyContext::builder()
            .with_schema(Arc::new(df_schema.clone()))
            .build();
        let logical = datafusion::optimizer::simplify_expressions::ExprSimplifier::new(context)
            .simplify(logical)?;
        let expr = state.create_physical_expr(logical, &df_schema)?;
        let out = expr.data_type(&schema)?;
        let compiled = Arc::new(Compiled {
            params: names,
            expr,
            out,
        });
        self.compiled
            .lock()
            .expect("not poisoned")
            .insert(key, compiled.clone());
        Ok(compiled)
    }

    /// The lambdas of a call whose argument types are `types` and whose literal arguments are
    /// `literal(i)`, planned.
    fn lambdas(
        &self,
        types: &[DataType],
        literal: impl Fn(usize) -> Option<String>,
    ) -> Result<Vec<Arc<Compiled>>> {
        let lead = self.kind.leading();
        let params: Vec<DataType> = match (&types[0], self.kind) {
            (DataType::List(item), Kind::Reduce) => {
                vec![types[1].clone(), item.data_type().clone()]
            }
            (DataType::List(item), _) => vec![item.data_type().clone()],
            (DataType::Map(entries, _), kind) => {
                let DataType::Struct(kv) = entries.data_type() else {
                    return plan_err!("a map without entries");
                };
                let kv = vec![kv[0].data_type().clone(), kv[1].data_type().clone()];
                match kind {
                    Kind::Reduce => [vec![types[1].clone()], kv].concat(),
                    _ => kv,
                }
            }
            (DataType::Null, _) => return Ok(Vec::new()),
            (other, _) => {
                return plan_err!(
                    "{} needs an array or a map, not {other}",
                    self.kind
                        .udf_name()
                        .trim_start_matches("ksql_")
                        .to_uppercase()
                )
            }
        };
        let wanted = match (&types[0], self.kind) {
            (DataType::Map(..), Kind::Transform) => 2,
            _ => 1,
        };
        let end = lead + 2 * wanted;
        if types.len() < end || types.len() == end + 1 {
            return plan_err!(
                "{} takes {} lambda(s) here",
                self.kind
                    .udf_name()
                    .trim_start_matches("ksql_")
                    .to_uppercase(),
                wanted
            );
        }
        let captured: Vec<String> = match literal(end) {
            Some(names) => decode(&names)?,
            None => Vec::new(),
        };
        let mut all = params;
        all.extend(types.iter().skip(end + 1).cloned());
        (0..wanted)
            .map(|i| {
                let (p, b) = (lead + 2 * i, lead + 2 * i + 1);
                match (literal(p), literal(b)) {
                    (Some(p), Some(b)) => self.compile(&p, &b, &all, &captured),
                    _ => plan_err!("a lambda must be written in the call"),
                }
            })
            .collect()
    }

    fn result_type(&self, types: &[DataType], lambdas: &[Arc<Compiled>]) -> Result<DataType> {
        Ok(match (&types[0], self.kind, lambdas) {
            (DataType::Null, _, _) => DataType::Null,
            (DataType::List(_), Kind::Transform, [l]) => {
                DataType::List(Arc::new(Field::new("item", l.out.clone(), true)))
            }
            (DataType::Map(..), Kind::Transform, [k, v]) => map_type(&k.out, &v.out),
            (_, Kind::Filter, _) => types[0].clone(),
            (_, Kind::Reduce, _) => types[1].clone(),
            _ => return plan_err!("unexpected lambda arguments"),
        })
    }

    fn run(
        &self,
        args: &[ArrayRef],
        rows: usize,
        lambdas: &[Arc<Compiled>],
        out: &DataType,
    ) -> Result<ArrayRef> {
        let coll = &args[0];
        if coll.data_type().is_null() {
            return Ok(new_null_array(out, rows));
        }
        let captured = args
            .get(self.kind.leading() + 2 * lambdas.len() + 1..)
            .unwrap_or_default();
        let with_captured = |mut columns: Vec<ArrayRef>| -> Result<Vec<ArrayRef>> {
            let (offsets, elements) = elements(coll)?;
            columns.extend(per_element(captured, &offsets, elements[0].len())?);
            Ok(columns)
        };
        match (self.kind, lambdas) {
            (Kind::Transform, [l]) => {
                let list = coll.as_list::<i32>();
                let values = eval(l, with_captured(vec![list.values().clone()])?)?;
                let item: FieldRef = Arc::new(Field::new("item", values.data_type().clone(), true));
                Ok(Arc::new(ListArray::try_new(
                    item,
                    list.offsets().clone(),
                    values,
                    list.nulls().cloned(),
                )?))
            }
            (Kind::Transform, [k, v]) => {
                let map = coll.as_map();
                let cols = with_captured(vec![map.keys().clone(), map.values().clone()])?;
                let (keys, values) = (eval(k, cols.clone())?, eval(v, cols)?);
                let DataType::Map(field, _) = map_type(keys.data_type(), values.data_type()) else {
                    unreachable!("map_type makes maps")
                };
                let DataType::Struct(fields) = field.data_type() else {
                    unreachable!("map entries are structs")
                };
                // Two entries mapped to one key make no map: ksqlDB's TRANSFORM fails on that
                // row, which a query shows as null.
                let nulls = without_duplicate_keys(&keys, map.offsets(), map.nulls())?;
                let entries = StructArray::try_new(fields.clone(), vec![keys, values], None)?;
                Ok(Arc::new(MapArray::try_new(
                    field,
                    map.offsets().clone(),
                    entries,
                    nulls,
                    false,
                )?))
            }
            (Kind::Filter, [l]) => {
                let (offsets, columns) = elements(coll)?;
                let keep = eval(l, with_captured(columns)?)?;
                let keep = keep.as_boolean();
                let mut picks = Vec::new();
                let mut new_offsets = vec![0i32];
                for row in 0..rows {
                    for i in offsets[row]..offsets[row + 1] {
                        if keep.is_valid(i) && keep.value(i) {
                            picks.push(i as u32);
                        }
                    }
                    new_offsets.push(picks.len() as i32);
                }
                let picks = UInt32Array::from(picks);
                let offsets = OffsetBuffer::new(new_offsets.into());
                match coll.data_type() {
                    DataType::List(item) => {
                        let list = coll.as_list::<i32>();
                        Ok(Arc::new(ListArray::try_new(
                            item.clone(),
                            offsets,
                            take(list.values(), &picks, None)?,
                            list.nulls().cloned(),
                        )?))
                    }
                    DataType::Map(field, sorted) => {
                        let map = coll.as_map();
                        let entries = take(map.entries(), &picks, None)?;
                        Ok(Arc::new(MapArray::try_new(
                            field.clone(),
                            offsets,
                            entries.as_struct().clone(),
                            map.nulls().cloned(),
                            *sorted,
                        )?))
                    }
                    other => exec_err!("FILTER needs an array or a map, not {other}"),
                }
            }
            (Kind::Reduce, [l]) => {
                let (offsets, columns) = elements(coll)?;
                let mut state = cast(&args[1], out)?;
                let len = |row: usize| {
                    if coll.is_valid(row) {
                        offsets[row + 1] - offsets[row]
                    } else {
                        0
                    }
                };
                let longest = (0..rows).map(len).max().unwrap_or(0);
                for step in 0..longest {
                    let live: Vec<u32> = (0..rows)
                        .filter(|&r| len(r) > step)
                        .map(|r| r as u32)
                        .collect();
                    let at = UInt32Array::from(
                        live.iter()
                            .map(|&r| (offsets[r as usize] + step) as u32)
                            .collect::<Vec<_>>(),
                    );
                    let live_rows = UInt32Array::from(live.clone());
                    let mut inputs = vec![take(&state, &live_rows, None)?];
                    for c in &columns {
                        inputs.push(take(c, &at, None)?);
                    }
                    for c in captured {
                        inputs.push(take(c, &live_rows, None)?);
                    }
                    let next = cast(&eval(l, inputs)?, out)?;
                    // Live rows take their new state, the others keep theirs.
                    let mut picks: Vec<(usize, usize)> = (0..rows).map(|r| (0, r)).collect();
                    for (j, &r) in live.iter().enumerate() {
                        picks[r as usize] = (1, j);
                    }
                    state = interleave(&[state.as_ref(), next.as_ref()], &picks)?;
                }
                Ok(state)
            }
            _ => exec_err!("unexpected lambda arguments"),
        }
    }
}

/// Names hex-encoded as a JSON array.
fn decode(hex_json: &str) -> Result<Vec<String>> {
    let text = hex::decode(hex_json)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    match text.and_then(|t| serde_json::from_str(&t).ok()) {
        Some(names) => Ok(names),
        None => plan_err!("malformed lambda names '{hex_json}'"),
    }
}

/// The map type TRANSFORM builds from keys and values of these types.
fn map_type(key: &DataType, value: &DataType) -> DataType {
    let fields = Fields::from(vec![
        Field::new("key", key.clone(), false),
        Field::new("value", value.clone(), true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(fields), false)),
        false,
    )
}

/// The element offsets of an array or map column and its element columns (the array's
/// values, or the map's keys and values).
fn elements(coll: &ArrayRef) -> Result<(Vec<usize>, Vec<ArrayRef>)> {
    match coll.data_type() {
        DataType::List(_) => {
            let list = coll.as_list::<i32>();
            let offsets = list.value_offsets().iter().map(|&o| o as usize).collect();
            Ok((offsets, vec![list.values().clone()]))
        }
        DataType::Map(..) => {
            let map = coll.as_map();
            let offsets = map.value_offsets().iter().map(|&o| o as usize).collect();
            Ok((offsets, vec![map.keys().clone(), map.values().clone()]))
        }
        other => exec_err!("a lambda needs an array or a map, not {other}"),
    }
}

/// The captured columns' values for each of `n` elements, by the row whose range of
/// `offsets` holds the element.
fn per_element(captured: &[ArrayRef], offsets: &[usize], n: usize) -> Result<Vec<ArrayRef>> {
    if captured.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = vec![0u32; n];
    for (row, range) in offsets.windows(2).enumerate() {
        for r in &mut rows[range[0]..range[1]] {
            *r = row as u32;
        }
    }
    let rows = UInt32Array::from(rows);
    captured.iter().map(|c| Ok(take(c, &rows, None)?)).collect()
}

/// Evaluates a lambda over columns holding its parameters (and captured columns).
fn eval(lambda: &Compiled, columns: Vec<ArrayRef>) -> Result<ArrayRef> {
    let rows = columns.first().map_or(0, |c| c.len());
    let schema = Schema::new(
        lambda
            .params
            .iter()
            .zip(&columns)
            .map(|(n, c)| Field::new(n, c.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new_with_options(
        Arc::new(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?;
    lambda.expr.evaluate(&batch)?.into_array(rows)
}

fn literal_text(v: Option<&ScalarValue>) -> Option<String> {
    match v? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

impl ScalarUDFImpl for LambdaUdf {
    fn name(&self) -> &str {
        self.kind.udf_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        plan_err!("the type of a lambda function depends on its lambdas")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let lambdas = self.lambdas(&types, |i| {
            literal_text(args.scalar_arguments.get(i).copied().flatten())
        })?;
        Ok(Arc::new(Field::new(
            self.name(),
            self.result_type(&types, &lambdas)?,
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types: Vec<DataType> = args.args.iter().map(|a| a.data_type()).collect();
        let literal = |i: usize| match args.args.get(i) {
            Some(ColumnarValue::Scalar(s)) => literal_text(Some(s)),
            _ => None,
        };
        let lambdas = self.lambdas(&types, literal)?;
        let out = args.return_field.data_type().clone();
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let result = match self.run(&arrays, rows, &lambdas, &out) {
            Ok(a) => a,
            // Find the rows that fail: their result is null.
            Err(_) => {
                let mut parts = Vec::with_capacity(rows);
                for row in 0..rows {
                    let one: Vec<ArrayRef> = arrays.iter().map(|a| a.slice(row, 1)).collect();
                    parts.push(
                        self.run(&one, 1, &lambdas, &out)
                            .unwrap_or_else(|_| new_null_array(&out, 1)),
                    );
                }
                let refs: Vec<&dyn Array> = parts.iter().map(|p| p.as_ref()).collect();
                concat(&refs)?
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// The validity of each map of `offsets` over `keys`: as `nulls` says, and null where two of
/// its keys are equal.
fn without_duplicate_keys(
    keys: &ArrayRef,
    offsets: &datafusion::arrow::buffer::OffsetBuffer<i32>,
    nulls: Option<&datafusion::arrow::buffer::NullBuffer>,
) -> Result<Option<datafusion::arrow::buffer::NullBuffer>> {
    use datafusion::arrow::row::{RowConverter, SortField};
    let converter = RowConverter::new(vec![SortField::new(keys.data_type().clone())])?;
    let rows = converter.convert_columns(std::slice::from_ref(keys))?;
    let mut seen = std::collections::HashSet::new();
    let mut any = false;
    let valid: Vec<bool> = offsets
        .windows(2)
        .enumerate()
        .map(|(row, w)| {
            seen.clear();
            let unique = (w[0] as usize..w[1] as usize).all(|i| seen.insert(rows.row(i)));
            any |= !unique;
            unique && nulls.is_none_or(|n| n.is_valid(row))
        })
        .collect();
    Ok(match any {
        true => Some(datafusion::arrow::buffer::NullBuffer::from(valid)),
        false => nulls.cloned(),
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::Int32Type;
    use sqlparser::parser::Parser;

    /// Evaluates ksqlDB expressions with DataFusion, as the planner rewrites them.
    fn eval(exprs: &[&str]) -> Vec<ArrayRef> {
        let items: Vec<String> = exprs
            .iter()
            .map(|text| {
                let mut e = Parser::new(&crate::dialect::KsqlDialect)
                    .try_with_sql(text)
                    .unwrap()
                    .parse_expr()
                    .unwrap();
                crate::rewrite::rewrite(&mut e);
                e.to_string()
            })
            .collect();
        let ctx = super::super::context();
        let sql = format!(
            "SELECT {} FROM (VALUES (CAST(10 AS INT))) AS t(\"K\")",
            items.join(", ")
        );
        let batches = futures::executor::block_on(async {
            ctx.sql(&sql).await.unwrap().collect().await.unwrap()
        });
        batches[0].columns().to_vec()
    }

    use super::*;

    fn ints(a: &ArrayRef) -> Vec<Option<i32>> {
        a.as_list::<i32>()
            .value(0)
            .as_primitive::<Int32Type>()
            .iter()
            .collect()
    }

    #[test]
    fn lambdas_see_their_parameters_and_the_row() {
        let out = eval(&[
            "TRANSFORM(ARRAY[1, 2], x => x + k)",
            "FILTER(ARRAY[1, NULL, 3], x => x > 1)",
            "REDUCE(ARRAY[1, 2, 3], 0, (s, x) => s + x * k)",
            "TRANSFORM(ARRAY[ARRAY[1], ARRAY[2, 3]], a => REDUCE(a, 0, (s, x) => s + x))",
        ]);
        assert_eq!(ints(&out[0]), vec![Some(11), Some(12)]);
        assert_eq!(ints(&out[1]), vec![Some(3)]);
        assert_eq!(out[2].as_primitive::<Int32Type>().value(0), 60);
        assert_eq!(ints(&out[3]), vec![Some(1), Some(5)]);
    }

    #[test]
    fn arithmetic_on_null_in_a_lambda_nulls_the_row() {
        let out = eval(&[
            "TRANSFORM(ARRAY[1, NULL], x => x + 1)",
            "REDUCE(ARRAY[1, NULL], CAST(0 AS BIGINT), (s, x) => s + x)",
        ]);
        assert!(out[0].is_null(0));
        let reduced: &Int64Array = out[1].as_primitive();
        assert!(reduced.is_null(0));
    }
}

//! ksqlDB's scalar functions that DataFusion does not have under the same name and meaning,
//! registered as DataFusion UDFs under ksqlDB's names (lower-cased, as planning looks them up).
//!
//! One module per family, as ksqlDB's function reference groups them. Most functions are a
//! [`udf`]: a name, a signature, a result type and a body over whole argument columns; a value
//! a function cannot compute for one row (a date that does not parse, a malformed URL) is null
//! for that row, as in ksqlDB, rather than failing the batch.

mod cast;
mod collections;
mod datetime;
mod json;
mod lambda;
mod math;
mod strings;
mod url;

pub(crate) use cast::udf as cast_udf;
pub(crate) use datetime::is_time_unit;
pub(crate) use lambda::encode as encode_lambdas;

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// A DataFusion context for ksqlDB's SQL as Eddy rewrites it, with every function of this
/// module.
pub fn context() -> SessionContext {
    let mut config = datafusion::execution::context::SessionConfig::new();
    let opts = config.options_mut();
    // Names arrive quoted, exactly as ksqlDB resolves them.
    opts.sql_parser.enable_ident_normalization = false;
    opts.sql_parser.map_string_types_to_utf8view = false;
    // ksqlDB reads `1.5` as a DECIMAL literal.
    opts.sql_parser.parse_float_as_decimal = true;
    let mut ctx = SessionContext::new_with_config(config);
    register(&mut ctx);
    ctx
}

/// Registers every function of this module with `ctx`.
pub fn register(ctx: &mut SessionContext) {
    // Registered after DataFusion's own planners, which leave `+` on strings alone.
    let planner = Arc::new(KsqlOperators);
    if let Err(e) = datafusion::execution::FunctionRegistry::register_expr_planner(ctx, planner) {
        tracing::warn!("cannot register ksqlDB's operators: {e}");
    }
    let families = [
        cast::functions(),
        collections::functions(),
        datetime::functions(),
        json::functions(),
        lambda::functions(),
        math::functions(),
        strings::functions(),
        url::functions(),
    ];
    for f in families.into_iter().flatten() {
        ctx.register_udf(f);
    }
}

/// The body of a [`udf`]: the argument columns (scalars expanded) and the number of rows, to
/// the result column.
type Body = dyn Fn(&[ArrayRef], usize) -> Result<ArrayRef> + Send + Sync;

/// The result type of a [`udf`] for its argument types.
type Returns = dyn Fn(&[DataType]) -> Result<DataType> + Send + Sync;

/// Checks a [`udf`]'s argument types and gives the types to convert them to.
type Coerce = dyn Fn(&[DataType]) -> Result<Vec<DataType>> + Send + Sync;

/// A scalar function assembled from closures.
struct Udf {
    name: &'static str,
    signature: Signature,
    returns: Box<Returns>,
    body: Box<Body>,
    coerce: Option<Box<Coerce>>,
}

impl std::fmt::Debug for Udf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Udf").field("name", &self.name).finish()
    }
}

// A function is known by its name: the registry holds one per name.
impl PartialEq for Udf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Udf {}

impl std::hash::Hash for Udf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for Udf {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        (self.returns)(args)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = (self.body)(&arrays, args.number_rows)?;
        Ok(ColumnarValue::Array(out))
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match &self.coerce {
            Some(coerce) => coerce(args),
            None => datafusion::common::not_impl_err!("{} has no type coercion", self.name),
        }
    }
}

/// A function named `name` (lower case) whose result type depends on its arguments' types.
fn udf_with(
    name: &'static str,
    signature: Signature,
    returns: impl Fn(&[DataType]) -> Result<DataType> + Send + Sync + 'static,
    body: impl Fn(&[ArrayRef], usize) -> Result<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::from(Udf {
        name,
        signature,
        returns: Box::new(returns),
        body: Box::new(body),
        coerce: None,
    })
}

/// A function whose argument types `coerce` checks (failing as ksqlDB does, when planning)
/// and converts, where DataFusion's own coercion would accept more.
fn udf_checked(
    name: &'static str,
    returns: DataType,
    coerce: impl Fn(&[DataType]) -> Result<Vec<DataType>> + Send + Sync + 'static,
    body: impl Fn(&[ArrayRef], usize) -> Result<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    udf_checked_with(name, move |_| returns.clone(), coerce, body)
}

/// [`udf_checked`] with a result type that depends on the argument types.
fn udf_checked_with(
    name: &'static str,
    returns: impl Fn(&[DataType]) -> DataType + Send + Sync + 'static,
    coerce: impl Fn(&[DataType]) -> Result<Vec<DataType>> + Send + Sync + 'static,
    body: impl Fn(&[ArrayRef], usize) -> Result<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::from(Udf {
        name,
        signature: Signature::user_defined(Volatility::Immutable),
        returns: Box::new(move |t| Ok(returns(t))),
        body: Box::new(body),
        coerce: Some(Box::new(coerce)),
    })
}

/// ksqlDB's error for arguments a function does not take.
fn wrong_arguments<T>(name: &str, args: &[DataType]) -> Result<T> {
    let names: Vec<String> = args
        .iter()
        .map(|t| {
            crate::types::SqlType::from_arrow(t).map_or_else(|| t.to_string(), |s| s.to_string())
        })
        .collect();
    datafusion::common::plan_err!(
        "Function '{name}' does not accept parameters ({}).",
        names.join(", ")
    )
}

/// A function named `name` (lower case) that returns `returns` whatever its arguments.
fn udf(
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: impl Fn(&[ArrayRef], usize) -> Result<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    udf_with(name, signature, move |_| Ok(returns.clone()), body)
}

/// A deterministic function of exactly these argument types (others are coerced to them).
fn exact(types: Vec<DataType>) -> Signature {
    Signature::exact(types, Volatility::Immutable)
}

/// A column read as strings, whatever type it has.
fn strings(a: &ArrayRef) -> Result<StringArray> {
    Ok(cast(a, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// A column read as 64-bit integers.
fn int64s(a: &ArrayRef) -> Result<Int64Array> {
    Ok(cast(a, &DataType::Int64)?
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .clone())
}

/// A string function applied row by row: the value of each argument (null when null), to the
/// result (null for none).
fn map_strings(
    args: &[ArrayRef],
    rows: usize,
    f: impl Fn(&[Option<&str>]) -> Option<String>,
) -> Result<ArrayRef> {
    let cols = args.iter().map(strings).collect::<Result<Vec<_>>>()?;
    let mut values = Vec::with_capacity(cols.len());
    let out: StringArray = (0..rows)
        .map(|row| {
            values.clear();
            values.extend(cols.iter().map(|c| (!c.is_null(row)).then(|| c.value(row))));
            f(&values)
        })
        .collect();
    Ok(Arc::new(out))
}

/// ksqlDB's operators that standard SQL spells differently: `+` on two strings concatenates
/// them (null if either is null, as `||`); arrays, maps and structs cannot be ordered; a
/// comparison with a null is false.
#[derive(Debug)]
struct KsqlOperators;

/// An operand as ksqlDB prints it in messages: a column by name, a string literal quoted.
fn ksql_text(e: &datafusion::logical_expr::Expr) -> String {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Expr;
    let list = |args: &[Expr]| args.iter().map(ksql_text).collect::<Vec<_>>().join(", ");
    match e {
        Expr::Column(c) => c.name.clone(),
        Expr::Literal(ScalarValue::Null, _) => "null".into(),
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => format!("'{s}'"),
        // The constructors, as they were written.
        Expr::ScalarFunction(f) if f.name() == "make_array" => format!("ARRAY[{}]", list(&f.args)),
        // `MAP(k := v, ...)`, which DataFusion plans as `map(make_array(k, ...), make_array(v, ...))`.
        Expr::ScalarFunction(f) if f.name() == "map" && f.args.len() == 2 => {
            let items = |e: &Expr| match e {
                Expr::ScalarFunction(a) if a.name() == "make_array" => a.args.clone(),
                other => vec![other.clone()],
            };
            let entries: Vec<String> = items(&f.args[0])
                .iter()
                .zip(items(&f.args[1]).iter())
                .map(|(k, v)| format!("{}:={}", ksql_text(k), ksql_text(v)))
                .collect();
            format!("MAP({})", entries.join(", "))
        }
        Expr::Literal(v, _) => v.to_string(),
        // Eddy's own casts of literals (an integer literal is typed INT) are not the user's.
        Expr::Cast(c) if matches!(c.expr.as_ref(), Expr::Literal(..)) => ksql_text(&c.expr),
        other => other.to_string(),
    }
}

/// ksqlDB's refusal of an arithmetic operator or a comparison with a bare NULL, which has no
/// type to compute in (a typed null, `CAST(NULL AS INT)`, is fine; `IS NULL` tests for null).
fn null_operand(
    expr: &datafusion::logical_expr::planner::RawBinaryExpr,
    schema: &datafusion::common::DFSchema,
) -> Option<String> {
    use datafusion::logical_expr::{Expr, ExprSchemable};
    use sqlparser::ast::BinaryOperator as Op;
    let untyped = |e: &Expr| matches!(e, Expr::Literal(datafusion::common::ScalarValue::Null, _));
    if !untyped(&expr.left) && !untyped(&expr.right) {
        return None;
    }
    // ksqlDB names a bare NULL's type `null` in arithmetic and `NULL` in comparisons.
    let type_of = |e: &Expr, null: &str| match e.get_type(schema) {
        _ if untyped(e) => null.to_string(),
        Ok(t) => cast::name_of(&t),
        Err(_) => "unknown".to_string(),
    };
    let (l, r) = (&expr.left, &expr.right);
    match expr.op {
        Op::Plus | Op::Minus | Op::Multiply | Op::Divide | Op::Modulo => Some(format!(
            "Error processing expression: ({} {} {}). Arithmetic on types {} and {} are not supported.",
            ksql_text(l),
            expr.op,
            ksql_text(r),
            type_of(l, "null"),
            type_of(r, "null")
        )),
        Op::Eq | Op::NotEq | Op::Lt | Op::LtEq | Op::Gt | Op::GtEq => {
            let symbol = match expr.op {
                Op::NotEq => "<>".to_string(),
                ref op => op.to_string(),
            };
            Some(format!(
                "Comparison with NULL not supported: {} {symbol} {}\nUse 'IS NULL' or 'IS NOT NULL' instead.",
                type_of(l, "NULL"),
                type_of(r, "NULL")
            ))
        }
        _ => None,
    }
}

impl datafusion::logical_expr::planner::ExprPlanner for KsqlOperators {
    fn plan_binary_op(
        &self,
        expr: datafusion::logical_expr::planner::RawBinaryExpr,
        schema: &datafusion::common::DFSchema,
    ) -> Result<
        datafusion::logical_expr::planner::PlannerResult<
            datafusion::logical_expr::planner::RawBinaryExpr,
        >,
    > {
        use datafusion::logical_expr::planner::PlannerResult;
        use datafusion::logical_expr::ExprSchemable;
        let is_string = |e: &datafusion::logical_expr::Expr| {
            matches!(
                e.get_type(schema),
                Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            )
        };
        use sqlparser::ast::BinaryOperator as Op;
        if let Some(message) = null_operand(&expr, schema) {
            return datafusion::common::plan_err!("{message}");
        }
        let order = match expr.op {
            Op::Lt => Some("LESS_THAN"),
            Op::LtEq => Some("LESS_THAN_OR_EQUAL"),
            Op::Gt => Some("GREATER_THAN"),
            Op::GtEq => Some("GREATER_THAN_OR_EQUAL"),
            _ => None,
        };
        if let Some(order) = order {
            // ksqlDB orders only scalars.
            let nested = |e: &datafusion::logical_expr::Expr| match e.get_type(schema) {
                Ok(t @ (DataType::List(_) | DataType::Map(..) | DataType::Struct(_))) => Some(t),
                _ => None,
            };
            if let (Some(l), Some(r)) = (nested(&expr.left), nested(&expr.right)) {
                let name = |e: &datafusion::logical_expr::Expr| match e {
                    datafusion::logical_expr::Expr::Column(c) => c.name.clone(),
                    other => other.to_string(),
                };
                return datafusion::common::plan_err!(
                    "Cannot compare {} ({}) to {} ({}) with {order}.",
                    name(&expr.left),
                    cast::name_of(&l),
                    name(&expr.right),
                    cast::name_of(&r)
                );
            }
        }
        // ksqlDB compares numbers with numbers, strings with strings (and with times, which it
        // parses), booleans with booleans; anything else is refused when the statement is
        // created, not cast at run time.
        let family = |e: &datafusion::logical_expr::Expr| match e.get_type(schema) {
            // ROWTIME and the window bounds are numbers that ksqlDB also compares with
            // date-time strings.
            _ if matches!(e, datafusion::logical_expr::Expr::Column(c)
                if ["ROWTIME", "WINDOWSTART", "WINDOWEND"]
                    .iter()
                    .any(|n| c.name.eq_ignore_ascii_case(n))) =>
            {
                None
            }
            Ok(t) if t.is_numeric() => Some("number"),
            Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => Some("string"),
            Ok(DataType::Boolean) => Some("boolean"),
            _ => None,
        };
        let relation = match expr.op {
            Op::Eq => Some("EQUAL"),
            Op::NotEq => Some("NOT_EQUAL"),
            _ => order,
        };
        if let (Some(relation), Some(l), Some(r)) =
            (relation, family(&expr.left), family(&expr.right))
        {
            if l != r {
                let sql = |e: &datafusion::logical_expr::Expr| {
                    e.get_type(schema)
                        .ok()
                        .and_then(|t| crate::types::SqlType::from_arrow(&t))
                        .map_or_else(|| "?".to_string(), |s| s.to_string())
                };
                return datafusion::common::plan_err!(
                    "Cannot compare {} ({}) to {} ({}) with {relation}.",
                    ksql_text(&expr.left),
                    sql(&expr.left),
                    ksql_text(&expr.right),
                    sql(&expr.right)
                );
            }
        }
        // A comparison with null is false, not null (ksqlDB compares in Java): `NOT (a > b)`
        // holds when a is null.
        use datafusion::logical_expr::Operator as DfOp;
        let comparison = match expr.op {
            Op::Eq => Some(DfOp::Eq),
            Op::NotEq => Some(DfOp::NotEq),
            Op::Lt => Some(DfOp::Lt),
            Op::LtEq => Some(DfOp::LtEq),
            Op::Gt => Some(DfOp::Gt),
            Op::GtEq => Some(DfOp::GtEq),
            _ => None,
        };
        if let Some(op) = comparison {
            let compared = datafusion::logical_expr::binary_expr(expr.left, op, expr.right);
            return Ok(PlannerResult::Planned(
                datafusion::functions::core::expr_fn::coalesce(vec![
                    compared,
                    datafusion::logical_expr::lit(false),
                ]),
            ));
        }
        if expr.op == Op::Plus && is_string(&expr.left) && is_string(&expr.right) {
            return Ok(PlannerResult::Planned(
                datafusion::logical_expr::binary_expr(
                    expr.left,
                    datafusion::logical_expr::Operator::StringConcat,
                    expr.right,
                ),
            ));
        }
        Ok(PlannerResult::Original(expr))
    }
}

/// ksqlDB's `MAP<STRING, STRING>`.
fn string_map_type() -> DataType {
    crate::types::SqlType::Map(
        Box::new(crate::types::SqlType::String),
        Box::new(crate::types::SqlType::String),
    )
    .to_arrow()
}

/// A `MAP<STRING, STRING>` column of these rows (null for none).
fn string_maps(rows: impl Iterator<Item = Option<Vec<(String, Option<String>)>>>) -> ArrayRef {
    use datafusion::arrow::array::{MapBuilder, MapFieldNames, StringBuilder};
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let mut b = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    for row in rows {
        match row {
            Some(entries) => {
                for (k, v) in entries {
                    b.keys().append_value(k);
                    b.values().append_option(v);
                }
                b.append(true)
                    .expect("keys and values are appended in pairs");
            }
            None => b
                .append(false)
                .expect("keys and values are appended in pairs"),
        }
    }
    Arc::new(b.finish())
}

/// An `ARRAY<STRING>` column of these rows (null for none).
fn string_lists(rows: impl Iterator<Item = Option<Vec<Option<String>>>>) -> ArrayRef {
    use datafusion::arrow::array::{ListBuilder, StringBuilder};
    let mut b = ListBuilder::new(StringBuilder::new());
    for row in rows {
        match row {
            Some(items) => {
                for item in items {
                    b.values().append_option(item);
                }
                b.append(true);
            }
            None => b.append(false),
        }
    }
    Arc::new(b.finish())
}

/// `ARRAY<STRING>`, as [`string_lists`] builds it.
fn string_list_type() -> DataType {
    DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
        "item",
        DataType::Utf8,
        true,
    )))
}

/// Values computed once per distinct text (a pattern, a format, a zone) within one batch,
/// which nearly always holds a single one.
struct PerText<T> {
    made: std::collections::HashMap<String, Option<T>>,
    make: fn(&str) -> Option<T>,
}

impl<T> PerText<T> {
    fn new(make: fn(&str) -> Option<T>) -> Self {
        PerText {
            made: std::collections::HashMap::new(),
            make,
        }
    }

    fn get(&mut self, text: &str) -> Option<&T> {
        if !self.made.contains_key(text) {
            let v = (self.make)(text);
            self.made.insert(text.to_string(), v);
        }
        self.made.get(text).and_then(Option::as_ref)
    }
}

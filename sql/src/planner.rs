//! Planning a ksqlDB `SELECT` into the engine's operators.
//!
//! The select list and `WHERE` are rewritten into standard SQL over one table (the source,
//! whose columns are the pseudo-columns, keys and values) and planned by DataFusion, which
//! resolves names and functions and coerces types. The analyzed logical plan of a stateless
//! query is a projection over an optional filter over the scan; each becomes an operator whose
//! expressions are DataFusion physical expressions evaluated on the source's batches.
//!
//! ksqlDB's naming rules apply to the output: an unaliased column keeps its name, `a->b` is
//! named `B` (with `_1`, `_2`... if that clashes), other expressions `KSQL_COL_0`, `KSQL_COL_1`...
//! The key of the output is the source's key columns, which must be selected, or the
//! `PARTITION BY` expressions.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use eddy_engine::schema::{HEADERS, NULL_VALUE};
use eddy_engine::{Filter, Operator, Project};
use sqlparser::ast::{Expr, SelectItem};

use crate::ast::{Select, SourceKind};
use crate::catalog::{Catalog, Column, SourceDef};
use crate::error::{invalid, unsupported, Missing, Result, SqlError};
use crate::output_key::{only_keys, partition_keys, selected_keys, star_partitioned};
use crate::rewrite::rewrite;
pub(crate) use crate::select_items::select_items;
use crate::select_items::take_table_function;
use crate::types::SqlType;

/// Pseudo-columns, which a projection must alias.
pub(crate) const PSEUDO: &[&str] = &[
    "ROWTIME",
    "ROWPARTITION",
    "ROWOFFSET",
    "WINDOWSTART",
    "WINDOWEND",
];
/// Names no output column may take.
pub const RESERVED: &[&str] = &[
    "ROWTIME",
    "ROWPARTITION",
    "ROWOFFSET",
    "WINDOWSTART",
    "WINDOWEND",
];

/// Name of the hidden output column that carries each row's event time to the sink.
pub const ROWTIME_OUT: &str = "__ROWTIME";

/// A stateless query, planned.
pub struct PlannedSelect {
    pub source: SourceDef,
    pub operators: Vec<Box<dyn Operator>>,
    /// Output key columns then value columns, as the sink writes them.
    pub key_columns: Vec<Column>,
    pub value_columns: Vec<Column>,
    /// Indices in the operators' output batch of the key and value columns.
    pub key_indices: Vec<usize>,
    pub value_indices: Vec<usize>,
    pub rowtime_index: usize,
    /// Index of the flag that marks rows whose value was null.
    pub null_value_index: usize,
    /// Index of the input record's headers, which the output record gets.
    pub headers_index: Option<usize>,
    /// The output key is the source's key, unchanged (no PARTITION BY).
    pub keys_pass_through: bool,
    /// What the query produces: a stream from a stream, a table from a table.
    pub result_kind: SourceKind,
    /// Indices of the window bounds in the output, for a windowed result's keys.
    pub window_columns: Option<(usize, usize)>,
    /// For GROUP BY queries: the aggregate and the operators around it (`operators` is empty).
    pub aggregate: Option<crate::aggregation::PlannedAggregate>,
    /// For a join: how the combined rows `source` describes are made; the query reads the
    /// join's stream.
    pub join: Option<crate::join::PlannedJoin>,
    /// A table join's WHERE, which must remember the keys it passed (see [`TableWhere`]); not
    /// among `operators`.
    pub table_where: Option<TableWhere>,
}

/// WHERE over a table join's rows: a row that fails it deletes its key downstream only if the
/// key's last row passed (Kafka Streams' table filter with old values, which its table joins
/// send). The session runs it as a filter that keeps the passed keys in a store.
pub struct TableWhere {
    pub predicate: Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    /// The combined rows' schema, which the predicate reads.
    pub schema: SchemaRef,
    /// The key columns in those rows.
    pub key_columns: Vec<usize>,
}

/// The name the combined source of a join is planned under.
const JOINED: &str = "__JOINED";

/// A join query: planned over its combined source (see [`crate::join`]).
fn plan_join(
    state: &SessionState,
    catalog: &Catalog,
    select: &Select,
    sink_name: &str,
    properties: &std::collections::BTreeMap<String, String>,
    transient: bool,
) -> Result<PlannedSelect> {
    let type_of = |source: &SourceDef, e: &Expr| -> Result<crate::types::SqlType> {
        let t = expr_type(state, source, e)?;
        crate::types::SqlType::from_arrow(&t)
            .ok_or_else(|| SqlError::Invalid(format!("cannot join on {e}, of type {t}")))
    };
    let attempt = |key_from_right: bool| -> Result<PlannedSelect> {
        let (def, rewritten, join) =
            crate::join::combine(catalog, select, JOINED, key_from_right, &type_of)?;
        let mut combined = catalog.clone();
        combined.sources.insert(JOINED.to_string(), def.clone());
        let schema_provider = state
            .catalog_list()
            .catalog(&state.config_options().catalog.default_catalog)
            .and_then(|c| c.schema(&state.config_options().catalog.default_schema))
            .ok_or_else(|| SqlError::Invalid("no default schema".into()))?;
        let fields = |cols: &[Column]| cols.iter().map(Column::field).collect::<Vec<_>>();
        let layout = eddy_engine::schema::source_schema(
            &fields(&def.key_columns),
            &fields(&def.value_columns),
            &[],
            def.window.is_some(),
        );
        schema_provider.register_table(
            JOINED.to_string(),
            Arc::new(datafusion::datasource::MemTable::try_new(
                layout,
                vec![vec![]],
            )?),
        )?;
        let planned = plan(
            state, &combined, &rewritten, sink_name, properties, transient,
        );
        let _ = schema_provider.deregister_table(JOINED);
        let mut planned = planned?;
        planned.join = Some(join);
        Ok(planned)
    };
    match attempt(false) {
        // The projection may select the table's join column as the key instead.
        Err(SqlError::Invalid(m)) if m.starts_with("Key missing from projection") => {
            attempt(true).map_err(|_| SqlError::Invalid(m))
        }
        other => other,
    }
}

pub fn plan_select(
    state: &SessionState,
    catalog: &Catalog,
    select: &Select,
    sink_name: &str,
    properties: &std::collections::BTreeMap<String, String>,
) -> Result<PlannedSelect> {
    plan(state, catalog, select, sink_name, properties, false)
}

/// Plans a query whose rows are shown rather than written (a pull or push query), by ksqlDB's
/// rules for those: the result is exactly the projection, in its order (nothing added, the key
/// need not be selected), pseudo-columns and window bounds may be selected, and `SELECT *` over
/// a windowed source includes the window bounds after the key. The result has no key columns:
/// every column is in `value_columns`, in projection order.
pub fn plan_transient(
    state: &SessionState,
    catalog: &Catalog,
    select: &Select,
    properties: &std::collections::BTreeMap<String, String>,
) -> Result<PlannedSelect> {
    let mut planned = plan(
        state,
        catalog,
        select,
        &select.from.source.name,
        properties,
        true,
    )?;
    let mut all: Vec<(usize, Column)> = planned
        .key_indices
        .iter()
        .copied()
        .zip(planned.key_columns.drain(..))
        .chain(
            planned
                .value_indices
                .iter()
                .copied()
                .zip(planned.value_columns.drain(..)),
        )
        .collect();
    all.sort_by_key(|(i, _)| *i);
    planned.key_indices.clear();
    planned.value_indices = all.iter().map(|(i, _)| *i).collect();
    planned.value_columns = all.into_iter().map(|(_, c)| c).collect();
    planned.window_columns = None;
    Ok(planned)
}

fn plan(
    state: &SessionState,
    catalog: &Catalog,
    select: &Select,
    sink_name: &str,
    properties: &std::collections::BTreeMap<String, String>,
    transient: bool,
) -> Result<PlannedSelect> {
    if !select.from.joins.is_empty() {
        return plan_join(state, catalog, select, sink_name, properties, transient);
    }
    let relation = &select.from.source;
    let Some(source) = catalog.source(&relation.name) else {
        return invalid(format!("{} does not exist.", relation.name));
    };
    if !select.group_by.is_empty() {
        return crate::aggregation::plan_aggregate(
            state, properties, select, source, sink_name, transient,
        );
    }
    if transient && select.window.is_none() && crate::aggregation::has_aggregate_calls(select) {
        // ksqlDB's push query aggregates without GROUP BY over one group of every row.
        let mut whole = select.clone();
        whole.group_by = vec![Expr::value(sqlparser::ast::Value::Number(
            "1".into(),
            false,
        ))];
        return crate::aggregation::plan_aggregate(
            state, properties, &whole, source, sink_name, transient,
        );
    }
    if select.window.is_some() || select.having.is_some() {
        return invalid("WINDOW and HAVING need a GROUP BY clause.");
    }
    if source.kind == SourceKind::Table && !select.partition_by.is_empty() {
        return Err(unsupported(Missing::Feature, "PARTITION BY over a table"));
    }
    let source_names: BTreeSet<String> = source.all_columns().map(|c| c.name.clone()).collect();
    let is_null =
        |e: &Expr| matches!(e, Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::Null));
    let partition_by: Vec<&Expr> = select.partition_by.iter().filter(|e| !is_null(e)).collect();
    if partition_by.len() < select.partition_by.len() && select.partition_by.len() > 1 {
        return invalid("Cannot PARTITION BY multiple columns including NULL");
    }
    let star_only = matches!(select.items.as_slice(), [SelectItem::Wildcard(_)]);
    let (items, key_items) = if !partition_by.is_empty() && star_only {
        star_partitioned(source, relation.qualifier(), &partition_by, &source_names)
    } else {
        let items = select_items(select, source, &source_names, transient)?;
        let key_items = if transient {
            Vec::new()
        } else if select.partition_by.is_empty() {
            selected_keys(&items, source, relation.qualifier())?
        } else {
            partition_keys(&items, &partition_by)?
        };
        (items, key_items)
    };

    // Table functions: the projection computes their arrays, an Explode operator after it
    // turns each row into one per element.
    let mut items = items;
    let exploded: Vec<usize> = items
        .iter_mut()
        .enumerate()
        .filter_map(|(i, it)| take_table_function(&mut it.expr).then_some(i))
        .collect();
    if !exploded.is_empty() && source.kind == SourceKind::Table {
        return invalid("Table source is not supported with table functions");
    }

    // Standard SQL for DataFusion.
    let mut sql_items: Vec<String> = items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let mut e = it.expr.clone();
            rewrite(&mut e);
            let name = crate::rewrite::quoted(&it.name);
            // ksqlDB computes a new key from the record's value unless it needs only key
            // columns: a null value (a tombstone) gets a null key, even by ROWTIME.
            if !partition_by.is_empty() && key_items.contains(&i) && !only_keys(&it.expr, source) {
                format!("CASE WHEN \"{NULL_VALUE}\" THEN NULL ELSE {e} END AS {name}")
            } else {
                format!("{e} AS {name}")
            }
        })
        .collect();
    sql_items.push(format!("\"ROWTIME\" AS \"{ROWTIME_OUT}\""));
    sql_items.push(format!("\"{NULL_VALUE}\" AS \"{NULL_VALUE}\""));
    sql_items.push(format!("\"{HEADERS}\" AS \"{HEADERS}\""));
    if source.window.is_some() {
        // A windowed source's results keep their input's window.
        sql_items.push("\"WINDOWSTART\" AS \"__WINDOWSTART\"".into());
        sql_items.push("\"WINDOWEND\" AS \"__WINDOWEND\"".into());
    }
    let SourcePlan {
        filter,
        predicate,
        projection,
        schema: proj_schema,
    } = plan_over_source(
        state,
        &sql_items,
        source,
        relation,
        select.where_clause.as_ref(),
    )?;
    let table_join = source.name == JOINED && source.kind == SourceKind::Table;
    let table_where = match predicate {
        Some((predicate, schema)) if table_join => Some(TableWhere {
            predicate,
            schema,
            key_columns: (0..source.key_columns.len())
                .map(|i| eddy_engine::schema::PSEUDO_COLUMNS + i)
                .collect(),
        }),
        _ => None,
    };
    let mut operators: Vec<Box<dyn Operator>> = match table_where {
        Some(_) => Vec::new(),
        None => filter.into_iter().collect(),
    };
    let (exprs, input) = projection;
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, item_name) in
        proj_schema
            .fields()
            .iter()
            .zip(items.iter().map(|i| i.name.as_str()).chain([
                ROWTIME_OUT,
                NULL_VALUE,
                HEADERS,
                "__WINDOWSTART",
                "__WINDOWEND",
            ]))
    {
        let (field, column) = output_column(item_name, f.data_type())?;
        fields.push(field);
        columns.push(column);
    }
    let out_schema: SchemaRef = Arc::new(Schema::new(fields));
    operators.push(project(state, exprs, &input, out_schema.clone())?);
    if !exploded.is_empty() {
        for &i in &exploded {
            columns[i].ty = match &columns[i].ty {
                SqlType::Array(element) => element.as_ref().clone(),
                other => {
                    return invalid(format!(
                        "EXPLODE needs an array, but {} is {other}",
                        columns[i].name
                    ))
                }
            };
        }
        operators.push(Box::new(eddy_engine::explode::Explode::new(
            &out_schema,
            exploded,
        )?));
    }

    let rowtime_index = items.len();
    let value_indices: Vec<usize> = (0..items.len())
        .filter(|i| !key_items.contains(i))
        .collect();
    Ok(PlannedSelect {
        source: source.clone(),
        operators,
        key_columns: key_items.iter().map(|&i| columns[i].clone()).collect(),
        value_columns: value_indices.iter().map(|&i| columns[i].clone()).collect(),
        key_indices: key_items,
        value_indices,
        rowtime_index,
        null_value_index: rowtime_index + 1,
        headers_index: Some(rowtime_index + 2),
        result_kind: source.kind,
        keys_pass_through: select.partition_by.is_empty(),
        window_columns: source
            .window
            .map(|_| (rowtime_index + 3, rowtime_index + 4)),
        aggregate: None,
        join: None,
        table_where,
    })
}

/// A projection's expressions and the schema they read.
pub(crate) type Projection = (
    Vec<datafusion::logical_expr::Expr>,
    datafusion::common::DFSchema,
);

/// A query over one source, planned: its WHERE as an operator, its projection and the
/// projection's output schema.
pub(crate) struct SourcePlan {
    pub filter: Option<Box<dyn Operator>>,
    /// The WHERE predicate the filter runs, and the schema it reads.
    pub predicate: Option<(Arc<dyn datafusion::physical_expr::PhysicalExpr>, SchemaRef)>,
    pub projection: Projection,
    pub schema: Arc<Schema>,
}

/// Plans `SELECT <items> FROM <source> [AS <alias>] [WHERE ...]` with DataFusion: the WHERE
/// clause as an operator (over a table, a filter that turns rejected rows into deletions) and
/// the projection's expressions over their input schema, with the projection's output schema.
pub(crate) fn plan_over_source(
    state: &SessionState,
    items: &[String],
    source: &SourceDef,
    relation: &crate::ast::Relation,
    where_clause: Option<&Expr>,
) -> Result<SourcePlan> {
    let mut sql = format!(
        "SELECT {} FROM {}",
        items.join(", "),
        crate::rewrite::quoted(&source.name)
    );
    if let Some(alias) = &relation.alias {
        sql.push_str(&format!(" AS {}", crate::rewrite::quoted(alias)));
    }
    if let Some(w) = where_clause {
        let mut w = w.clone();
        crate::rewrite::rewrite_time_literals(&mut w);
        rewrite(&mut w);
        sql.push_str(&format!(" WHERE {w}"));
    }
    let plan = futures::executor::block_on(state.create_logical_plan(&sql)).map_err(|e| {
        match crate::error::unresolved_column(&e) {
            Some(column) => SqlError::Invalid(format!(
                "{} column '{column}' cannot be resolved.",
                if where_clause.is_some_and(|w| names_column(w, &column)) {
                    "WHERE"
                } else {
                    "SELECT"
                }
            )),
            None => e.into(),
        }
    })?;
    let plan =
        crate::user_lists::analyzer().execute_and_check(plan, state.config_options(), |_, _| {})?;
    let (filter, projection, schema) = decompose(&plan)?;
    let (filter, predicate): (Option<Box<dyn Operator>>, _) = match filter {
        Some((predicate, input)) => {
            let physical = physical_expr(state, predicate, &input)?;
            let input = Arc::new(input.as_arrow().clone());
            let op: Box<dyn Operator> = match source.kind {
                SourceKind::Stream => Box::new(Filter::new(physical.clone(), input.clone())),
                SourceKind::Table => Box::new(Filter::for_table(physical.clone(), input.clone())?),
            };
            (Some(op), Some((physical, input)))
        }
        None => (None, None),
    };
    Ok(SourcePlan {
        filter,
        predicate,
        projection,
        schema,
    })
}

/// The type of `e`, an expression over the columns of `source`.
pub(crate) fn expr_type(
    state: &SessionState,
    source: &SourceDef,
    e: &Expr,
) -> Result<datafusion::arrow::datatypes::DataType> {
    let mut e = e.clone();
    rewrite(&mut e);
    let relation = crate::ast::Relation {
        name: source.name.clone(),
        alias: None,
    };
    let plan = plan_over_source(
        state,
        &[format!("{e} AS \"__JOIN_KEY\"")],
        source,
        &relation,
        None,
    )?;
    Ok(plan.schema.field(0).data_type().clone())
}

/// The output column `name` of a query, of the SQL type of a DataFusion expression's `ty`
/// (nullable, as every ksqlDB column is): its Arrow field and its catalog column.
pub(crate) fn output_column(name: &str, ty: &DataType) -> Result<(Field, Column)> {
    let sql = SqlType::from_arrow(ty).ok_or_else(|| {
        SqlError::Invalid(format!(
            "the expression for {name} has type {ty}, which has no SQL type"
        ))
    })?;
    let field = Field::new(name, sql.to_arrow(), true);
    let column = Column {
        name: name.to_string(),
        ty: sql,
    };
    Ok((field, column))
}

/// A projection operator computing `exprs` (over `input`) as the columns of `schema`.
pub(crate) fn project(
    state: &SessionState,
    exprs: Vec<datafusion::logical_expr::Expr>,
    input: &datafusion::common::DFSchema,
    schema: SchemaRef,
) -> Result<Box<dyn Operator>> {
    let physical = exprs
        .into_iter()
        .map(|e| physical_expr(state, e, input))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Box::new(Project::new(physical, schema)))
}

/// A physical expression for `expr`, simplified first: some of DataFusion's functions (such as
/// `coalesce`) only run after the simplifier has rewritten them.
pub(crate) fn physical_expr(
    state: &SessionState,
    expr: datafusion::logical_expr::Expr,
    schema: &datafusion::common::DFSchema,
) -> Result<Arc<dyn datafusion::physical_expr::PhysicalExpr>> {
    let context = datafusion::logical_expr::simplify::SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .build();
    let simplified =
        datafusion::optimizer::simplify_expressions::ExprSimplifier::new(context).simplify(expr)?;
    Ok(state.create_physical_expr(simplified, schema)?)
}

pub(crate) type Decomposed = (
    Option<(datafusion::logical_expr::Expr, datafusion::common::DFSchema)>,
    (
        Vec<datafusion::logical_expr::Expr>,
        datafusion::common::DFSchema,
    ),
    Arc<Schema>,
);

/// Splits the analyzed plan of a stateless query into its filter and projection.
pub(crate) fn decompose(plan: &LogicalPlan) -> Result<Decomposed> {
    let LogicalPlan::Projection(p) = plan else {
        return Err(unsupported(
            Missing::Feature,
            format!("a query planned as {}", plan.display()),
        ));
    };
    let proj_input = p.input.schema().as_ref().clone();
    let out_schema = Arc::new(p.schema.as_arrow().clone());
    let filter = match p.input.as_ref() {
        LogicalPlan::Filter(f) => Some((f.predicate.clone(), f.input.schema().as_ref().clone())),
        LogicalPlan::TableScan(_) | LogicalPlan::SubqueryAlias(_) => None,
        other => {
            return Err(unsupported(
                Missing::Feature,
                format!("a query planned as {}", other.display()),
            ))
        }
    };
    Ok((filter, (p.expr.clone(), proj_input), out_schema))
}

/// Whether `expr` names the column `column` (`NAME` or `QUALIFIER.NAME`, as the user wrote it).
fn names_column(expr: &Expr, column: &str) -> bool {
    use std::ops::ControlFlow;
    let found = sqlparser::ast::visit_expressions(expr, |e| {
        let named = match e {
            Expr::Identifier(i) => i.value.eq_ignore_ascii_case(column),
            Expr::CompoundIdentifier(parts) => parts
                .iter()
                .map(|p| p.value.as_str())
                .collect::<Vec<_>>()
                .join(".")
                .eq_ignore_ascii_case(column),
            _ => false,
        };
        if named {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    found.is_break()
}

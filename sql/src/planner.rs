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

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::Analyzer;
use eddy_engine::schema::NULL_VALUE;
use eddy_engine::{Filter, Operator, Project};
use sqlparser::ast::{Expr, SelectItem};

use crate::ast::{Select, SourceKind};
use crate::catalog::{Catalog, Column, SourceDef};
use crate::error::{invalid, unsupported, Missing, Result, SqlError};
use crate::parser::normalize;
use crate::rewrite::{natural_name, rewrite};
use crate::types::SqlType;

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
    /// What the query produces: a stream from a stream, a table from a table.
    pub result_kind: SourceKind,
}

struct Item {
    expr: Expr,
    name: String,
}

pub fn plan_select(
    state: &SessionState,
    catalog: &Catalog,
    select: &Select,
) -> Result<PlannedSelect> {
    if !select.from.joins.is_empty() {
        return Err(unsupported(Missing::Feature, "joins"));
    }
    if select.window.is_some() || !select.group_by.is_empty() || select.having.is_some() {
        return Err(unsupported(Missing::Feature, "aggregations and windows"));
    }
    let relation = &select.from.source;
    let Some(source) = catalog.source(&relation.name) else {
        return invalid(format!("{} does not exist.", relation.name));
    };
    if source.kind == SourceKind::Table {
        return Err(unsupported(Missing::Feature, "queries over tables"));
    }
    let source_names: BTreeSet<String> = source
        .key_columns
        .iter()
        .chain(&source.value_columns)
        .map(|c| c.name.clone())
        .collect();
    let items = select_items(select, source, &source_names)?;

    // Which outputs are keys.
    let mut key_items: Vec<usize> = Vec::new();
    if select.partition_by.is_empty() {
        for key in &source.key_columns {
            let found = items
                .iter()
                .position(|it| refers_to(&it.expr, &key.name, relation.qualifier()));
            match found {
                Some(i) => key_items.push(i),
                None => {
                    return invalid(format!(
                        "Key missing from projection (ie, SELECT). The query used to build the result must include the key column {} in its projection (eg, SELECT {}...).",
                        key.name, key.name
                    ))
                }
            }
        }
    } else {
        for p in &select.partition_by {
            if matches!(p, Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::Null)) {
                continue;
            }
            let mut want = p.clone();
            rewrite(&mut want);
            let found = items.iter().position(|it| {
                let mut e = it.expr.clone();
                rewrite(&mut e);
                e.to_string() == want.to_string()
            });
            match found {
                Some(i) => key_items.push(i),
                None => {
                    return invalid(format!(
                        "The query used to build the result must include the partitioning expression {p} in its projection (eg, SELECT {p}...)."
                    ))
                }
            }
        }
    }

    // Standard SQL for DataFusion.
    let mut sql_items: Vec<String> = items
        .iter()
        .map(|it| {
            let mut e = it.expr.clone();
            rewrite(&mut e);
            format!("{e} AS {}", crate::rewrite::quoted(&it.name))
        })
        .collect();
    sql_items.push(format!("\"ROWTIME\" AS \"{ROWTIME_OUT}\""));
    sql_items.push(format!("\"{NULL_VALUE}\" AS \"{NULL_VALUE}\""));
    let mut sql = format!(
        "SELECT {} FROM {}",
        sql_items.join(", "),
        crate::rewrite::quoted(&source.name)
    );
    if let Some(alias) = &relation.alias {
        sql.push_str(&format!(" AS {}", crate::rewrite::quoted(alias)));
    }
    if let Some(w) = &select.where_clause {
        let mut w = w.clone();
        rewrite(&mut w);
        sql.push_str(&format!(" WHERE {w}"));
    }
    let plan = futures::executor::block_on(state.create_logical_plan(&sql))?;
    let plan = Analyzer::new().execute_and_check(plan, state.config_options(), |_, _| {})?;
    let (filter, projection, proj_schema) = decompose(&plan)?;

    let mut operators: Vec<Box<dyn Operator>> = Vec::new();
    if let Some((predicate, input)) = filter {
        let physical = state.create_physical_expr(predicate, &input)?;
        operators.push(Box::new(Filter::new(
            physical,
            Arc::new(input.as_arrow().clone()),
        )));
    }
    let (exprs, input) = projection;
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, item_name) in proj_schema.fields().iter().zip(
        items
            .iter()
            .map(|i| i.name.as_str())
            .chain([ROWTIME_OUT, NULL_VALUE]),
    ) {
        let ty = SqlType::from_arrow(f.data_type()).ok_or_else(|| {
            SqlError::Invalid(format!(
                "the expression for {item_name} has type {}, which has no SQL type",
                f.data_type()
            ))
        })?;
        fields.push(Field::new(item_name, ty.to_arrow(), true));
        columns.push(Column {
            name: item_name.to_string(),
            ty,
        });
    }
    let out_schema: SchemaRef = Arc::new(Schema::new(fields));
    let physical = exprs
        .into_iter()
        .map(|e| state.create_physical_expr(e, &input))
        .collect::<Result<Vec<_>, _>>()?;
    operators.push(Box::new(Project::new(physical, out_schema)));

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
        result_kind: source.kind,
    })
}

/// Whether `e` is a plain reference to column `name` of the source.
fn refers_to(e: &Expr, name: &str, qualifier: &str) -> bool {
    match e {
        Expr::Identifier(id) => normalize(id) == name,
        Expr::CompoundIdentifier(ids) if ids.len() == 2 => {
            normalize(&ids[0]) == qualifier && normalize(&ids[1]) == name
        }
        Expr::Nested(inner) => refers_to(inner, name, qualifier),
        _ => false,
    }
}

fn select_items(
    select: &Select,
    source: &SourceDef,
    source_names: &BTreeSet<String>,
) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut generated = 0usize;
    let column_item = |c: &Column| Item {
        expr: Expr::Identifier(crate::rewrite::quoted(&c.name)),
        name: c.name.clone(),
    };
    for item in &select.items {
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(_, _) => {
                for c in source.key_columns.iter().chain(&source.value_columns) {
                    items.push(column_item(c));
                }
            }
            SelectItem::ExprWithAlias { expr, alias } => items.push(Item {
                expr: expr.clone(),
                name: normalize(alias),
            }),
            SelectItem::ExprWithAliases { .. } => {
                return invalid("a select item can have only one alias")
            }
            SelectItem::UnnamedExpr(expr) => {
                let name = match (natural_name(expr), expr) {
                    (Some(n), Expr::Identifier(_) | Expr::CompoundIdentifier(_)) => n,
                    (Some(n), _) => {
                        // A struct field: its name, made unique against the source's columns.
                        let mut candidate = n.clone();
                        let mut i = 0;
                        while source_names.contains(&candidate) || used.contains(&candidate) {
                            i += 1;
                            candidate = format!("{n}_{i}");
                        }
                        candidate
                    }
                    (None, _) => loop {
                        let candidate = format!("KSQL_COL_{generated}");
                        generated += 1;
                        if !source_names.contains(&candidate) && !used.contains(&candidate) {
                            break candidate;
                        }
                    },
                };
                items.push(Item {
                    expr: expr.clone(),
                    name,
                });
            }
        }
        if let Some(last) = items.last() {
            used.insert(last.name.clone());
        }
    }
    let mut seen = BTreeSet::new();
    for it in &items {
        if !seen.insert(it.name.clone()) {
            return invalid(format!(
                "Duplicate column name in the projection: {}",
                it.name
            ));
        }
    }
    Ok(items)
}

type Decomposed = (
    Option<(datafusion::logical_expr::Expr, datafusion::common::DFSchema)>,
    (
        Vec<datafusion::logical_expr::Expr>,
        datafusion::common::DFSchema,
    ),
    Arc<Schema>,
);

/// Splits the analyzed plan of a stateless query into its filter and projection.
fn decompose(plan: &LogicalPlan) -> Result<Decomposed> {
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

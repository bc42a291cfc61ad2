//! Planning `GROUP BY` queries (and `WINDOW`, `HAVING`) into a projection, an aggregate and a
//! projection.
//!
//! ```text
//! source -> [WHERE] -> pre-projection -> Aggregate -> [HAVING] -> post-projection -> sink
//! ```
//!
//! The select list and HAVING are rewritten on the AST: each aggregate call becomes a column
//! `__AGGn` and each GROUP BY expression a column `__Gn`. The pre-projection computes, per input
//! row, the grouping values `__Gn` and the aggregates' arguments; the [`Aggregate`] operator
//! (engine) keeps the groups; the post-projection computes the select list over
//! `__G*`, `__AGG*`, `WINDOWSTART` and `WINDOWEND`. Both projections are planned by DataFusion,
//! which types them. An expression left referring to a source column after the rewrite is not
//! part of the GROUP BY, which ksqlDB rejects.
//!
//! The result is a table keyed by the GROUP BY expressions, in their order, named by the
//! select items that are exactly those expressions.
//!
//! [`Aggregate`]: eddy_engine::aggregate::Aggregate

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::execution::context::SessionState;
use datafusion::physical_expr::PhysicalExpr;
use eddy_engine::aggregate::{
    AggCall, AggFunc, AggregateSpec, WindowKind, WindowSpec as EngineWindow, AGG_ROWTIME,
    WINDOWEND, WINDOWSTART,
};
use eddy_engine::schema::{HEADERS, NULL_VALUE};
use eddy_engine::Operator;
use sqlparser::ast::{Expr, Ident, VisitMut};

use crate::ast::{Emit, Select, SourceKind, WindowSpec};
use crate::catalog::SourceDef;
use crate::error::{invalid, Result, SqlError};
use crate::planner::{
    decompose, output_column, physical_expr, plan_over_source, project, select_items,
    PlannedSelect, ROWTIME_OUT,
};
use crate::rewrite::{quoted, rewrite};
use crate::types::SqlType;

mod calls;
mod groups;

use calls::{literal_bool, literal_int, unknown_function, Call, ExtractAggregates};
use groups::{canonical, refers_to_source, unnested, ReplaceGroups};

/// Name under which the aggregate's output is registered while the post-projection is planned.
const AGGREGATE_TABLE: &str = "__EDDY_AGGREGATE";
const WSTART_OUT: &str = "__WINDOWSTART";
const WEND_OUT: &str = "__WINDOWEND";

/// What the session needs, besides [`PlannedSelect`], to run an aggregation.
pub struct PlannedAggregate {
    /// Operators before the aggregate: the WHERE filter and the pre-projection.
    pub before: Vec<Box<dyn Operator>>,
    pub spec: AggregateSpec,
    /// HAVING, over the aggregate's output: its predicate, the schema it reads, and the
    /// columns that identify a group (the key and the window bounds).
    pub having: Option<(Arc<dyn PhysicalExpr>, SchemaRef, Vec<usize>)>,
    /// The post-projection.
    pub after: Vec<Box<dyn Operator>>,
    /// Whether a persistent query sends the pre-projected rows through a repartition topic
    /// keyed by the groups, as ksqlDB does: a table's aggregation always, a stream's when it
    /// is grouped by anything but exactly its key columns, in order.
    pub repartition: bool,
}

fn engine_window(w: &WindowSpec, emit: Option<Emit>) -> EngineWindow {
    let (kind, retention, grace) = match *w {
        WindowSpec::Tumbling {
            size_ms,
            retention_ms,
            grace_ms,
        } => (
            WindowKind::Tumbling {
                size: size_ms as i64,
            },
            retention_ms,
            grace_ms,
        ),
        WindowSpec::Hopping {
            size_ms,
            advance_ms,
            retention_ms,
            grace_ms,
        } => (
            WindowKind::Hopping {
                size: size_ms as i64,
                advance: advance_ms as i64,
            },
            retention_ms,
            grace_ms,
        ),
        WindowSpec::Session {
            gap_ms,
            retention_ms,
            grace_ms,
        } => (
            WindowKind::Session { gap: gap_ms as i64 },
            retention_ms,
            grace_ms,
        ),
    };
    let mut spec = EngineWindow::new(kind);
    spec.emit_final = emit == Some(Emit::Final);
    // Without GRACE PERIOD, a window of EMIT CHANGES takes late records for a day, and one of
    // EMIT FINAL closes at its end (ksqlDB's defaults).
    match grace {
        Some(g) => spec.grace_ms = g as i64,
        None if spec.emit_final => spec.grace_ms = 0,
        None => {}
    }
    spec.retention_ms = retention.map(|r| r as i64);
    spec
}

/// Plans a GROUP BY query.
/// Whether the select list calls an aggregate function.
pub fn has_aggregate_calls(select: &Select) -> bool {
    let mut found = false;
    for item in &select.items {
        let _ = sqlparser::ast::visit_expressions(item, |e| {
            if let Expr::Function(f) = e {
                let name = f.name.to_string().to_ascii_uppercase();
                found |= eddy_engine::aggregate::AggFunc::by_name(&name).is_some();
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
    found
}

pub fn plan_aggregate(
    state: &SessionState,
    properties: &BTreeMap<String, String>,
    select: &Select,
    source: &SourceDef,
    sink_name: &str,
    transient: bool,
) -> Result<PlannedSelect> {
    let relation = &select.from.source;
    let qualifier = relation.qualifier();
    let source_names: BTreeSet<String> = source.all_columns().map(|c| c.name.clone()).collect();
    let mut items = select_items(select, source, &source_names, transient)?;
    if source.value_format == eddy_engine::Format::Kafka {
        return invalid(format!(
            "Source(s) {} are using the 'KAFKA' value format. This format does not yet support GROUP BY.",
            source.name
        ));
    }
    if select.emit == Some(Emit::Final) && select.window.is_none() {
        return invalid("EMIT FINAL is only supported for windowed aggregations.");
    }
    // `GROUP BY (a, b)` is one grouping set: the same as `GROUP BY a, b`.
    let group_by: Vec<Expr> = match select.group_by.as_slice() {
        [Expr::Tuple(items)] => items.clone(),
        other => other.to_vec(),
    };

    // GROUP BY expressions, each once.
    let mut groups: Vec<String> = Vec::new();
    for g in &group_by {
        let text = canonical(g, qualifier);
        if groups.contains(&text) {
            return invalid(format!("Duplicate GROUP BY expression: {g}"));
        }
        let mut probe = g.clone();
        let mut found = Vec::new();
        let _ = probe.visit(&mut ExtractAggregates {
            calls: &mut found,
            error: None,
        });
        if let Some(c) = found.first() {
            return invalid(format!(
                "GROUP BY does not support aggregate functions: {} is an aggregate function.",
                c.name
            ));
        }
        groups.push(text);
    }

    // Aggregate calls out of the select list and HAVING.
    let mut calls: Vec<Call> = Vec::new();
    let mut having = select.having.clone();
    for e in items.iter_mut().map(|i| &mut i.expr).chain(having.as_mut()) {
        let mut v = ExtractAggregates {
            calls: &mut calls,
            error: None,
        };
        let _ = e.visit(&mut v);
        if let Some(err) = v.error {
            return Err(err);
        }
    }
    if calls.is_empty() {
        if let Some(name) = unknown_function(state, items.iter().map(|i| &i.expr)) {
            return Err(crate::error::unsupported(
                crate::error::Missing::Function,
                format!("the function {name}"),
            ));
        }
        return invalid(
            "GROUP BY requires aggregate functions in either the SELECT or HAVING clause.",
        );
    }
    if source.kind == SourceKind::Table {
        let bad: Vec<&str> = calls
            .iter()
            .filter(|c| !c.func.supports_undo())
            .map(|c| c.name.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !bad.is_empty() {
            let list = match bad.as_slice() {
                [one] => one.to_string(),
                [init @ .., last] => format!("{} and {last}", init.join(", ")),
                [] => unreachable!(),
            };
            return invalid(format!("The aggregation functions {list} cannot be applied to a table source, only to a stream source."));
        }
    }

    // GROUP BY expressions into __Gn, then whatever still reads the source is an error.
    let originals: Vec<String> = items.iter().map(|i| i.expr.to_string()).collect();
    for e in items.iter_mut().map(|i| &mut i.expr).chain(having.as_mut()) {
        let _ = e.visit(&mut ReplaceGroups {
            groups: &groups,
            qualifier,
        });
    }
    let leftovers: Vec<String> = items
        .iter()
        .zip(&originals)
        .filter(|(i, _)| refers_to_source(&i.expr, &source_names))
        .map(|(_, o)| o.to_ascii_uppercase())
        .collect();
    if !leftovers.is_empty() {
        return invalid(format!(
            "Non-aggregate SELECT expression(s) not part of GROUP BY: {}\nEither add the column(s) to the GROUP BY or remove them from the SELECT.",
            leftovers.join(", ")
        ));
    }
    if let Some(h) = &having {
        if refers_to_source(h, &source_names) {
            return invalid(format!(
                "Non-aggregate HAVING expression not part of GROUP BY: {}",
                select
                    .having
                    .as_ref()
                    .expect("having")
                    .to_string()
                    .to_ascii_uppercase()
            ));
        }
    }

    // The key: the items that are exactly a GROUP BY expression, in GROUP BY order.
    let mut key_items = Vec::new();
    let mut missing = Vec::new();
    for (gi, g) in group_by.iter().enumerate() {
        let want = format!("\"__G{gi}\"");
        let found: Vec<usize> = (0..items.len())
            .filter(|&i| unnested(&items[i].expr).to_string() == want)
            .collect();
        match found.as_slice() {
            [] => missing.push(crate::rewrite::natural_name(g).unwrap_or_else(|| g.to_string())),
            [i] => key_items.push(*i),
            [a, b, ..] => {
                return invalid(format!(
                    "The projection contains a key column more than once: `{}` and `{}`.",
                    items[*a].name, items[*b].name
                ))
            }
        }
    }
    // A pull or push query shows what it selects: it need not select the key.
    if !missing.is_empty() && !transient {
        let (word, list) = match missing.as_slice() {
            [one] => ("expression", one.clone()),
            [init @ .., last] => ("expressions", format!("{} and {last}", init.join(", "))),
            [] => unreachable!(),
        };
        return invalid(format!(
            "The query used to build `{sink_name}` must include the grouping {word} {list} in its projection (eg, SELECT {}...).",
            missing.join(", ")
        ));
    }

    let key_texts: Vec<String> = source
        .key_columns
        .iter()
        .map(|k| {
            canonical(
                &Expr::Identifier(Ident::with_quote('`', &k.name)),
                qualifier,
            )
        })
        .collect();
    // ksqlDB repartitions a table's aggregation whatever its groups (Kafka Streams'
    // `KTable.groupBy`), a stream's unless it is grouped by exactly its key columns.
    let repartition = source.kind == SourceKind::Table || groups != key_texts;

    // The pre-projection over the source.
    let mut pre: Vec<String> = Vec::new();
    for (i, g) in group_by.iter().enumerate() {
        let mut g = g.clone();
        rewrite(&mut g);
        pre.push(format!("{g} AS \"__G{i}\""));
    }
    let ng = group_by.len();
    let mut arg_columns = Vec::new();
    for (j, c) in calls.iter().enumerate() {
        match c.args.first() {
            Some(a) => {
                let mut a = a.clone();
                rewrite(&mut a);
                pre.push(format!("{a} AS \"__A{j}\""));
                arg_columns.push(Some(pre.len() - 1));
            }
            None => arg_columns.push(None),
        }
    }
    let rowtime_in = pre.len();
    pre.push("\"ROWTIME\" AS \"__ROWTIME_IN\"".into());
    let null_in = pre.len();
    pre.push(format!("\"{NULL_VALUE}\" AS \"{NULL_VALUE}\""));
    let headers_in = pre.len();
    pre.push(format!("\"{HEADERS}\" AS \"{HEADERS}\""));
    let table_key = if source.kind == SourceKind::Table {
        let start = pre.len();
        for (i, k) in source.key_columns.iter().enumerate() {
            pre.push(format!("{} AS \"__SK{i}\"", quoted(&k.name)));
        }
        Some((start..pre.len()).collect::<Vec<_>>())
    } else {
        None
    };
    let crate::planner::SourcePlan {
        filter,
        projection: (exprs, input),
        schema: pre_schema,
        ..
    } = plan_over_source(state, &pre, source, relation, select.where_clause.as_ref()).map_err(
        |e| {
            // WHERE filters the rows before they are windowed: they have no window bounds.
            let message = e.to_string();
            let unresolved = |clause: &str| {
                message
                    .strip_prefix(clause)
                    .and_then(|m| m.strip_prefix(" column '"))
                    .and_then(|m| m.strip_suffix("' cannot be resolved."))
                    .filter(|c| *c == WINDOWSTART || *c == WINDOWEND)
            };
            if let Some(c) = unresolved("WHERE") {
                return SqlError::Invalid(format!(
                    "Error in WHERE expression: Unknown column {c}."
                ));
            }
            // An aggregate's argument, or HAVING, is computed from the rows too.
            match unresolved("SELECT") {
                Some(c) if select.window.is_some() => SqlError::Invalid(format!(
                    "Window bounds column {c} can only be used in the SELECT clause of windowed aggregations"
                )),
                _ => e,
            }
        },
    )?;
    let mut before: Vec<Box<dyn Operator>> = filter.into_iter().collect();
    let pre_fields: Vec<Field> = pre_schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), f.data_type().clone(), true))
        .collect();
    before.push(project(
        state,
        exprs,
        &input,
        Arc::new(Schema::new(pre_fields.clone())),
    )?);

    // The aggregate.
    let mut agg_calls = Vec::new();
    for (j, c) in calls.iter().enumerate() {
        let (arg, arg_type) = match arg_columns[j] {
            Some(i) => (i, pre_fields[i].data_type().clone()),
            None => (null_in, DataType::Boolean),
        };
        let params = &c.args[c.args.len().min(1)..];
        if let Some((i, p)) = params
            .iter()
            .enumerate()
            .find(|(_, p)| literal_int(p).is_none() && literal_bool(p).is_none())
        {
            return invalid(format!(
                "Parameter {} passed to function {} must be a literal constant, but was expression: '{p}'",
                i + 2,
                c.name
            ));
        }
        let mut call = AggCall {
            func: c.func,
            arg,
            arg_type,
            n: None,
            ignore_nulls: true,
            returns_array: false,
        };
        match c.func {
            AggFunc::TopK | AggFunc::TopKDistinct => {
                call.n = Some(params.first().and_then(literal_int).ok_or_else(|| {
                    SqlError::Invalid(format!("{} needs a constant number of values", c.name))
                })?);
            }
            AggFunc::EarliestByOffset | AggFunc::LatestByOffset => match params {
                [] => {}
                [b] if literal_bool(b).is_some() => {
                    call.ignore_nulls = literal_bool(b).expect("bool")
                }
                [n] => {
                    call.n = literal_int(n);
                    call.returns_array = true;
                }
                [n, b, ..] => {
                    call.n = literal_int(n);
                    call.returns_array = true;
                    call.ignore_nulls = literal_bool(b).unwrap_or(true);
                }
            },
            AggFunc::CollectList | AggFunc::CollectSet => {
                let setting = match c.func {
                    AggFunc::CollectList => "ksql.functions.collect_list.limit",
                    _ => "ksql.functions.collect_set.limit",
                };
                call.n = Some(
                    properties
                        .get(setting)
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(1000),
                );
            }
            _ => {}
        }
        let typed = [
            AggFunc::Sum,
            AggFunc::Avg,
            AggFunc::StddevSample,
            AggFunc::Correlation,
        ];
        if typed.contains(&c.func) && call.init().is_err() {
            return invalid(format!(
                "Function '{}' does not accept parameters ({}).",
                c.name,
                SqlType::from_arrow(&call.arg_type)
                    .map_or_else(|| call.arg_type.to_string(), |t| t.to_string())
            ));
        }
        agg_calls.push(call);
    }
    let group_fields: Vec<Field> = pre_fields[..ng]
        .iter()
        .enumerate()
        .map(|(i, f)| Field::new(format!("__G{i}"), f.data_type().clone(), true))
        .collect();
    let window = select
        .window
        .as_ref()
        .map(|w| engine_window(w, select.emit));
    let spec = AggregateSpec {
        group_fields,
        calls: agg_calls,
        rowtime: rowtime_in,
        null_value: null_in,
        headers: headers_in,
        window,
        table_key,
        changes: None,
    };
    let agg_schema = eddy_engine::aggregate::Aggregate::output_schema_of(&spec);

    // The post-projection over the aggregate's output.
    let mut post: Vec<String> = items
        .iter()
        .map(|it| {
            let mut e = it.expr.clone();
            rewrite(&mut e);
            format!("{e} AS {}", quoted(&it.name))
        })
        .collect();
    post.push(format!("\"{AGG_ROWTIME}\" AS \"{ROWTIME_OUT}\""));
    post.push(format!("\"{NULL_VALUE}\" AS \"{NULL_VALUE}\""));
    post.push(format!("\"{WINDOWSTART}\" AS \"{WSTART_OUT}\""));
    post.push(format!("\"{WINDOWEND}\" AS \"{WEND_OUT}\""));
    post.push(format!("\"{HEADERS}\" AS \"{HEADERS}\""));
    let mut sql = format!("SELECT {} FROM \"{AGGREGATE_TABLE}\"", post.join(", "));
    if let Some(h) = &having {
        let mut h = h.clone();
        rewrite(&mut h);
        sql.push_str(&format!(" WHERE {h}"));
    }
    let schema_provider = state
        .catalog_list()
        .catalog(&state.config_options().catalog.default_catalog)
        .and_then(|c| c.schema(&state.config_options().catalog.default_schema))
        .ok_or_else(|| SqlError::Invalid("no default schema".into()))?;
    schema_provider.register_table(
        AGGREGATE_TABLE.to_string(),
        Arc::new(MemTable::try_new(agg_schema, vec![vec![]])?),
    )?;
    let planned = futures::executor::block_on(state.create_logical_plan(&sql));
    let _ = schema_provider.deregister_table(AGGREGATE_TABLE);
    let plan = planned.map_err(|e| match e {
        datafusion::error::DataFusionError::SchemaError(..)
            if select.window.is_none() && sql.contains(WINDOWSTART) =>
        {
            SqlError::Invalid("SELECT column 'WINDOWSTART' cannot be resolved.".into())
        }
        other => other.into(),
    })?;
    let plan =
        crate::user_lists::analyzer().execute_and_check(plan, state.config_options(), |_, _| {})?;
    let (filter, (exprs, input), out_schema) = decompose(&plan)?;
    let mut after: Vec<Box<dyn Operator>> = Vec::new();
    let mut having_filter = None;
    if let Some((predicate, input)) = filter {
        let physical = physical_expr(state, predicate, &input)?;
        let mut keys: Vec<usize> = (0..ng).collect();
        if select.window.is_some() {
            let n = spec.calls.len();
            keys.extend([ng + n, ng + n + 1]);
        }
        having_filter = Some((
            physical,
            Arc::new(input.as_arrow().clone()) as SchemaRef,
            keys,
        ));
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    let names = items.iter().map(|i| i.name.as_str()).chain([
        ROWTIME_OUT,
        NULL_VALUE,
        WSTART_OUT,
        WEND_OUT,
        HEADERS,
    ]);
    for (f, name) in out_schema.fields().iter().zip(names) {
        let (field, column) = output_column(name, f.data_type())?;
        fields.push(field);
        columns.push(column);
    }
    after.push(project(
        state,
        exprs,
        &input,
        Arc::new(Schema::new(fields)),
    )?);

    let n = items.len();
    let value_indices: Vec<usize> = (0..n).filter(|i| !key_items.contains(i)).collect();
    let planned = PlannedSelect {
        source: source.clone(),
        operators: Vec::new(),
        key_columns: key_items.iter().map(|&i| columns[i].clone()).collect(),
        value_columns: value_indices.iter().map(|&i| columns[i].clone()).collect(),
        key_indices: key_items,
        value_indices,
        rowtime_index: n,
        null_value_index: n + 1,
        headers_index: Some(n + 4),
        keys_pass_through: false,
        result_kind: SourceKind::Table,
        window_columns: select.window.as_ref().map(|_| (n + 2, n + 3)),
        aggregate: Some(PlannedAggregate {
            before,
            spec,
            having: having_filter,
            after,
            repartition,
        }),
        join: None,
        table_where: None,
    };
    Ok(planned)
}

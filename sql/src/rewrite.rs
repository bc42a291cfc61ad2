//! Rewrites ksqlDB expressions into the SQL DataFusion plans.
//!
//! - Identifiers follow ksqlDB's rule (unquoted names are upper case) and are then quoted, so
//!   DataFusion, with its own normalization off, sees exact column names.
//! - `a->b` (struct field) becomes `get_field(a, 'B')`.
//! - Function names are looked up in DataFusion's lower-case registry; ksqlDB's names that
//!   differ are mapped to the equivalent function.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    ObjectNamePart, Value,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::parser::normalize;

/// A quoted identifier holding exactly `name`.
pub(crate) fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

/// ksqlDB's function names that DataFusion spells differently.
fn function_name(ksql: &str) -> String {
    let lower = ksql.to_ascii_lowercase();
    match lower.as_str() {
        "ucase" => "upper",
        "lcase" => "lower",
        "len" => "character_length",
        "ifnull" => "coalesce",
        "slice" => "array_slice",
        other => other,
    }
    .to_string()
}

/// The function that has ksqlDB's meaning for a call of `name` with `f`'s arguments, adding
/// the arguments that select it: DataFusion's REGEXP_REPLACE replaces only the first match
/// unless told `'g'`, its ARRAY_SORT puts nulls first; ROUND and TRUNC are ksqlDB's own.
fn ksql_variant(name: &str, f: &mut sqlparser::ast::Function) -> String {
    let FunctionArguments::List(list) = &mut f.args else {
        return name.to_string();
    };
    let count = list.args.len();
    let mut add = |text: &str| {
        list.args
            .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(string_literal(
                text,
            ))))
    };
    match (name, count) {
        ("regexp_replace", 3) => add("g"),
        ("array_sort", 1) => {
            add("ASC");
            add("NULLS LAST");
        }
        ("array_sort", 2) => add("NULLS LAST"),
        ("round", _) => return "ksql_round".into(),
        ("trunc", _) => return "ksql_trunc".into(),
        _ => {}
    }
    name.to_string()
}

/// Functions whose first argument is a time unit.
const UNIT_FIRST: [&str; 6] = [
    "timeadd",
    "timesub",
    "timestampadd",
    "timestampsub",
    "dateadd",
    "datesub",
];

/// A call of function `name` with `args`.
pub(crate) fn call(name: &str, args: Vec<Expr>) -> Expr {
    let mut e = Parser::new(&GenericDialect {})
        .try_with_sql(&format!("{name}(0)"))
        .and_then(|mut p| p.parse_expr())
        .expect("a call parses");
    if let Expr::Function(f) = &mut e {
        if let FunctionArguments::List(list) = &mut f.args {
            list.args = args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect();
        }
    }
    e
}

pub(crate) fn string_literal(s: &str) -> Expr {
    Expr::Value(Value::SingleQuotedString(s.to_string()).into())
}

/// Rewrites `e` in place for DataFusion.
pub(crate) fn rewrite(e: &mut Expr) {
    let _ = sqlparser::ast::visit_expressions_mut(e, |expr| {
        match expr {
            Expr::Identifier(id) => *id = quoted(&normalize(id)),
            // ksqlDB's SUBSTRING counts from 1 and from the end, as standard SQL's does not.
            Expr::Substring {
                expr: inner,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![std::mem::replace(
                    inner.as_mut(),
                    Expr::Value(Value::Null.into()),
                )];
                args.extend(substring_from.take().map(|e| *e));
                args.extend(substring_for.take().map(|e| *e));
                *expr = call("ksql_substring", args);
            }
            // Through the registry, so that ksqlDB's make_array (which unifies structs) is used.
            Expr::Array(array) => {
                let elems = std::mem::take(&mut array.elem);
                *expr = call("make_array", elems);
            }
            // ksqlDB's TRIM is Java's, which also strips tabs and control characters.
            Expr::Trim {
                expr: inner,
                trim_where: None,
                trim_what: None,
                trim_characters: None,
            } => {
                let inner = std::mem::replace(inner.as_mut(), Expr::Value(Value::Null.into()));
                *expr = call("ksql_trim", vec![inner]);
            }
            Expr::CompoundIdentifier(ids) => {
                ids.iter_mut().for_each(|id| *id = quoted(&normalize(id)))
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Arrow,
                right,
            } => {
                let field = match right.as_ref() {
                    Expr::Identifier(id) => Some(id.value.clone()),
                    _ => None,
                };
                if let Some(field) = field {
                    let base = std::mem::replace(left.as_mut(), Expr::Value(Value::Null.into()));
                    *expr = call("get_field", vec![base, string_literal(&field)]);
                } else if let Expr::CompoundFieldAccess { root, access_chain } = right.as_mut() {
                    // `a->b[1]` parses as `a->(b[1])`: subscript the field instead.
                    if let Expr::Identifier(id) = root.as_ref() {
                        let field = id.value.clone();
                        let base =
                            std::mem::replace(left.as_mut(), Expr::Value(Value::Null.into()));
                        *expr = Expr::CompoundFieldAccess {
                            root: Box::new(call("get_field", vec![base, string_literal(&field)])),
                            access_chain: std::mem::take(access_chain),
                        };
                    }
                }
            }
            // ksqlDB reads a literal in E notation as a DOUBLE.
            Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if n.contains(['e', 'E'])) => {
                let literal = expr.clone();
                *expr = Expr::Cast {
                    kind: sqlparser::ast::CastKind::Cast,
                    expr: Box::new(literal),
                    data_type: sqlparser::ast::DataType::Double(
                        sqlparser::ast::ExactNumberInfo::None,
                    ),
                    array: false,
                    format: None,
                };
            }
            // ksqlDB types an integer literal as INT when it fits, DataFusion as BIGINT.
            Expr::Value(v) if matches!(&v.value, Value::Number(n, false) if n.parse::<i32>().is_ok()) =>
            {
                let literal = expr.clone();
                *expr = Expr::Cast {
                    kind: sqlparser::ast::CastKind::Cast,
                    expr: Box::new(literal),
                    data_type: sqlparser::ast::DataType::Int(None),
                    array: false,
                    format: None,
                };
            }
            Expr::Function(f) => {
                if let [ObjectNamePart::Identifier(id)] = f.name.0.as_slice() {
                    let name = function_name(&id.value);
                    // TIMEADD(MILLISECONDS, 5, t) and the like name their unit as a word.
                    if UNIT_FIRST.contains(&name.as_str()) {
                        if let FunctionArguments::List(list) = &mut f.args {
                            if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) =
                                list.args.first_mut()
                            {
                                if let Expr::Identifier(unit) = first {
                                    if crate::functions::is_time_unit(&unit.value) {
                                        *first = string_literal(&unit.value.to_ascii_uppercase());
                                    }
                                }
                            }
                        }
                    }
                    let name = ksql_variant(&name, f);
                    f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(&name))]);
                    crate::functions::encode_lambdas(&name, f);
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

/// ksqlDB compares ROWTIME, WINDOWSTART and WINDOWEND with strings as timestamps:
/// `ROWTIME > '2018-01-01T00:00:00'` compares with that instant's epoch milliseconds. Rewrites
/// such string literals into numbers; call before [`rewrite`].
pub(crate) fn rewrite_time_literals(e: &mut Expr) {
    fn is_time(e: &Expr) -> bool {
        matches!(e, Expr::Identifier(id) if matches!(normalize(id).as_str(), "ROWTIME" | "WINDOWSTART" | "WINDOWEND"))
    }
    fn to_millis(e: &mut Expr) {
        if let Expr::Value(v) = e {
            if let Value::SingleQuotedString(s) = &v.value {
                if let Some(ms) = eddy_engine::parse_partial_iso(s) {
                    *e = Expr::Value(Value::Number(ms.to_string(), false).into());
                }
            }
        }
    }
    let _ = sqlparser::ast::visit_expressions_mut(e, |expr| {
        match expr {
            Expr::BinaryOp {
                left,
                op:
                    BinaryOperator::Eq
                    | BinaryOperator::NotEq
                    | BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq,
                right,
            } => {
                if is_time(left) {
                    to_millis(right);
                } else if is_time(right) {
                    to_millis(left);
                }
            }
            Expr::Between {
                expr, low, high, ..
            } if is_time(expr) => {
                to_millis(low);
                to_millis(high);
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The column name ksqlDB gives an unaliased select item, if it is not a generated one: a
/// column's own name, or a struct field's name for `a->b`.
pub(crate) fn natural_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(id) => Some(normalize(id)),
        Expr::CompoundIdentifier(ids) => ids.last().map(normalize),
        Expr::BinaryOp {
            op: BinaryOperator::Arrow,
            right,
            ..
        } => natural_name(right),
        Expr::Nested(inner) => natural_name(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::KsqlDialect;

    fn rewritten(sql: &str) -> String {
        let mut e = Parser::new(&KsqlDialect)
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap();
        rewrite(&mut e);
        e.to_string()
    }

    #[test]
    fn quotes_names_and_maps_functions() {
        assert_eq!(
            rewritten("ucase(name) || `Mixed`"),
            r#"upper("NAME") || "Mixed""#
        );
        assert_eq!(
            rewritten("a->b->c = 1"),
            r#"get_field(get_field("A", 'B'), 'C') = CAST(1 AS INT)"#
        );
        assert_eq!(rewritten("t.id"), r#""T"."ID""#);
        assert_eq!(
            rewritten("3000000000 + 1.5"),
            "3000000000 + 1.5",
            "only INT-sized integers are cast"
        );
    }

    #[test]
    fn parses_struct_and_map_constructors() {
        assert_eq!(
            rewritten("STRUCT(a := 1, `b` := 'x')"),
            r#"named_struct('A', CAST(1 AS INT), 'b', 'x')"#
        );
        assert_eq!(rewritten("MAP('k' := v)"), r#"make_map('k', "V")"#);
    }
}

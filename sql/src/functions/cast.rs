//! CAST to ARRAY, MAP and STRUCT types, by ksqlDB's rules: an array or map casts its elements,
//! a struct takes the target's fields by name (null where the source has none) and casts
//! each; any of them casts to STRING as Java prints it (`[1, 2]`, `{k=v}`, `Struct{A=1}`).
//! Narrowing an integer wraps, as Java's `(int)` does. The dialect turns such casts into
//! `ksql_cast(value, '<type>')`; casts to other types are DataFusion's.

use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, ListArray, MapArray, StringArray, StructArray,
};
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int32Type, Int64Type};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::types::SqlType;

pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![udf().as_ref().clone()]
}

/// `ksql_cast(value, '<type>')`.
pub(crate) fn udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::from(KsqlCast {
        signature: Signature::any(2, Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct KsqlCast {
    signature: Signature,
}

/// The target type named by the second argument.
fn target(v: Option<&ScalarValue>) -> Result<DataType> {
    let Some(ScalarValue::Utf8(Some(text))) = v else {
        return plan_err!("ksql_cast needs its target type as a literal");
    };
    match crate::parser::parse_type(text) {
        Ok(t) => Ok(t.to_arrow()),
        Err(e) => plan_err!("invalid type in CAST: {}", e.message),
    }
}

pub(super) fn name_of(t: &DataType) -> String {
    SqlType::from_arrow(t).map_or_else(|| t.to_string(), |s| s.to_string())
}

/// Whether ksqlDB casts `from` to `to`.
fn castable(from: &DataType, to: &DataType) -> bool {
    match (from, to) {
        (DataType::Null, _) | (_, DataType::Utf8) => true,
        (DataType::List(f), DataType::List(t)) => castable(f.data_type(), t.data_type()),
        (DataType::Map(f, _), DataType::Map(t, _)) => castable(f.data_type(), t.data_type()),
        (DataType::Struct(_), DataType::Struct(_)) => true,
        (DataType::List(_) | DataType::Map(..) | DataType::Struct(_), _)
        | (_, DataType::List(_) | DataType::Map(..) | DataType::Struct(_)) => false,
        (f, t) => can_cast_types(f, t),
    }
}

impl ScalarUDFImpl for KsqlCast {
    fn name(&self) -> &str {
        "ksql_cast"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        plan_err!("the type of a CAST is its target")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let to = target(args.scalar_arguments.get(1).copied().flatten())?;
        let from = args.arg_fields[0].data_type();
        if !castable(from, &to) {
            return plan_err!(
                "Cast of {} to {} is not supported",
                name_of(from),
                name_of(&to)
            );
        }
        Ok(Arc::new(Field::new(self.name(), to, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let value = args.args[0].clone().into_array(args.number_rows)?;
        Ok(ColumnarValue::Array(cast_value(
            &value,
            args.return_field.data_type(),
        )?))
    }
}

/// `a` cast to `to` by ksqlDB's rules.
pub(super) fn cast_value(a: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if a.data_type() == to {
        return Ok(a.clone());
    }
    Ok(match (a.data_type(), to) {
        (DataType::Null, _) => new_null_array(to, a.len()),
        (DataType::List(_), DataType::List(item)) => {
            let list = a.as_list::<i32>();
            Arc::new(ListArray::try_new(
                item.clone(),
                list.offsets().clone(),
                cast_value(list.values(), item.data_type())?,
                list.nulls().cloned(),
            )?)
        }
        (DataType::Map(..), DataType::Map(entries, sorted)) => {
            let map = a.as_map();
            let DataType::Struct(kv) = entries.data_type() else {
                return exec_err!("a map type without entries");
            };
            let columns = vec![
                cast_value(map.keys(), kv[0].data_type())?,
                cast_value(map.values(), kv[1].data_type())?,
            ];
            Arc::new(MapArray::try_new(
                entries.clone(),
                map.offsets().clone(),
                StructArray::try_new(kv.clone(), columns, None)?,
                map.nulls().cloned(),
                *sorted,
            )?)
        }
        (DataType::Struct(from), DataType::Struct(fields)) => {
            let s = a.as_struct();
            let columns = fields
                .iter()
                .map(|f| match from.iter().position(|g| g.name() == f.name()) {
                    Some(i) => cast_value(s.column(i), f.data_type()),
                    None => Ok(new_null_array(f.data_type(), a.len())),
                })
                .collect::<Result<Vec<_>>>()?;
            Arc::new(StructArray::try_new(
                fields.clone(),
                columns,
                s.nulls().cloned(),
            )?)
        }
        (DataType::List(_) | DataType::Map(..) | DataType::Struct(_), DataType::Utf8) => {
            let out: StringArray = (0..a.len())
                .map(|row| a.is_valid(row).then(|| java_text(a, row)).transpose())
                .collect::<Result<_>>()?;
            Arc::new(out)
        }
        (DataType::Utf8, DataType::Date32) => {
            let out: datafusion::arrow::array::Date32Array = a
                .as_string::<i32>()
                .iter()
                .map(|v| v.and_then(date_days))
                .collect();
            Arc::new(out)
        }
        // Java's narrowing conversion keeps the low bits.
        (DataType::Int64, DataType::Int32) => Arc::new(
            a.as_primitive::<Int64Type>()
                .unary::<_, Int32Type>(|v| v as i32),
        ),
        _ => cast(a, to)?,
    })
}

/// A date as ksqlDB reads one from text: `yyyy-MM-dd`, or the start of a month (`yyyy-MM`) or
/// year (`yyyy`), or the date of a `yyyy-MM-ddTHH:mm...` timestamp; in days since the epoch.
fn date_days(text: &str) -> Option<i32> {
    let text = text.trim();
    let date = match text.len() {
        4 => format!("{text}-01-01"),
        7 => format!("{text}-01"),
        n if n > 10 && text.as_bytes()[10] == b'T' => text[..10].to_string(),
        _ => text.to_string(),
    };
    let d = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((d - epoch).num_days()).ok()
}

/// Row `row` of `a` as Java's `toString` prints it.
fn java_text(a: &ArrayRef, row: usize) -> Result<String> {
    if a.is_null(row) {
        return Ok("null".into());
    }
    Ok(match a.data_type() {
        DataType::List(_) => {
            let items = a.as_list::<i32>().value(row);
            let parts = (0..items.len())
                .map(|i| java_text(&items, i))
                .collect::<Result<Vec<_>>>()?;
            format!("[{}]", parts.join(", "))
        }
        DataType::Map(..) => {
            let entries = a.as_map().value(row);
            let (k, v) = (entries.column(0), entries.column(1));
            let parts = (0..entries.len())
                .map(|i| Ok(format!("{}={}", java_text(k, i)?, java_text(v, i)?)))
                .collect::<Result<Vec<_>>>()?;
            format!("{{{}}}", parts.join(", "))
        }
        DataType::Struct(fields) => {
            // Kafka Connect's Struct prints the fields that are set.
            let s = a.as_struct();
            let parts = fields
                .iter()
                .zip(s.columns())
                .filter(|(_, c)| c.is_valid(row))
                .map(|(f, c)| Ok(format!("{}={}", f.name(), java_text(c, row)?)))
                .collect::<Result<Vec<_>>>()?;
            format!("Struct{{{}}}", parts.join(","))
        }
        DataType::Float64 => eddy_engine::java_double(
            a.as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(row),
        ),
        _ => array_value_to_string(a, row)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_cast_by_field_name_and_print_as_java() {
        let from = SqlType::Struct(vec![
            ("f0".into(), SqlType::Int),
            ("f1".into(), SqlType::Int),
        ]);
        let to = crate::parser::parse_type("STRUCT<`f0` STRING, F3 STRING>")
            .unwrap()
            .to_arrow();
        let DataType::Struct(fields) = from.to_arrow() else {
            unreachable!()
        };
        let s: ArrayRef = Arc::new(StructArray::new(
            fields,
            vec![
                Arc::new(datafusion::arrow::array::Int32Array::from(vec![1])),
                Arc::new(datafusion::arrow::array::Int32Array::from(vec![3])),
            ],
            None,
        ));
        assert_eq!(java_text(&s, 0).unwrap(), "Struct{f0=1,f1=3}");
        let cast = cast_value(&s, &to).unwrap();
        let cast = cast.as_struct();
        assert_eq!(cast.column(0).as_string::<i32>().value(0), "1");
        assert!(cast.column(1).is_null(0));
        assert!(!castable(&DataType::Utf8, &to));
    }
}

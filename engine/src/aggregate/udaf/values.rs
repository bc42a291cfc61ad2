//! Arithmetic on aggregate states' values, as Java computes it.

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

pub(super) fn zero(t: &DataType) -> Result<ScalarValue, String> {
    Ok(match t {
        DataType::Int32 => ScalarValue::Int32(Some(0)),
        DataType::Int64 => ScalarValue::Int64(Some(0)),
        DataType::Float64 => ScalarValue::Float64(Some(0.0)),
        DataType::Decimal128(p, s) => ScalarValue::Decimal128(Some(0), *p, *s),
        other => {
            return Err(format!(
                "cannot sum {}",
                crate::schema::sql_type_name(other)
            ))
        }
    })
}

/// `a + b` (or `a - b`) in the type of `a`, as Java computes it: integers wrap, decimals that
/// no longer fit their precision are an error.
pub(super) fn add(a: &ScalarValue, b: &ScalarValue, negate: bool) -> Result<ScalarValue, String> {
    // Casting a scalar goes through an array: only when the types differ.
    let cast;
    let b = if a.data_type() == b.data_type() {
        b
    } else {
        cast = b.cast_to(&a.data_type()).map_err(|e| e.to_string())?;
        &cast
    };
    Ok(match (a, b) {
        (ScalarValue::Int32(Some(x)), ScalarValue::Int32(Some(y))) => {
            ScalarValue::Int32(Some(if negate {
                x.wrapping_sub(*y)
            } else {
                x.wrapping_add(*y)
            }))
        }
        (ScalarValue::Int64(Some(x)), ScalarValue::Int64(Some(y))) => {
            ScalarValue::Int64(Some(if negate {
                x.wrapping_sub(*y)
            } else {
                x.wrapping_add(*y)
            }))
        }
        (ScalarValue::Float64(Some(x)), ScalarValue::Float64(Some(y))) => {
            ScalarValue::Float64(Some(if negate { x - y } else { x + y }))
        }
        (ScalarValue::Decimal128(Some(x), p, s), ScalarValue::Decimal128(Some(y), _, _)) => {
            let r = if negate { x - y } else { x + y };
            if r.unsigned_abs() >= 10u128.pow(u32::from(*p)) {
                return Err("Numeric field overflow".into());
            }
            ScalarValue::Decimal128(Some(r), *p, *s)
        }
        _ => a.clone(),
    })
}

/// The statistical aggregates take numbers of these types, as ksqlDB's do.
pub(super) fn number(t: &DataType) -> Result<(), String> {
    match t {
        DataType::Int32 | DataType::Int64 | DataType::Float64 => Ok(()),
        other => Err(format!(
            "a number is needed, not {}",
            crate::schema::sql_type_name(other)
        )),
    }
}

/// A number as a double; `None` for null.
pub(super) fn as_f64(v: &ScalarValue) -> Result<Option<f64>, String> {
    Ok(match v {
        ScalarValue::Int32(i) => i.map(f64::from),
        ScalarValue::Int64(i) => i.map(|i| i as f64),
        ScalarValue::Float64(f) => *f,
        v if v.is_null() => None,
        other => return Err(format!("not a number: {other}")),
    })
}

/// CORRELATION's argument, the struct of its two columns, as a pair of doubles; `None` when
/// either is null.
pub(super) fn pair(v: &ScalarValue) -> Result<Option<(f64, f64)>, String> {
    let ScalarValue::Struct(s) = v else {
        return Ok(None);
    };
    if s.is_null(0) || s.num_columns() != 2 {
        return Ok(None);
    }
    let field = |i: usize| {
        ScalarValue::try_from_array(s.column(i), 0)
            .map_err(|e| e.to_string())
            .and_then(|v| as_f64(&v))
    };
    Ok(field(0)?.zip(field(1)?))
}

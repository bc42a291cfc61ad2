//! Numeric functions: GEO_DISTANCE, SIGN, ROUND and TRUNC with ksqlDB's result types, and the
//! logarithms and square root with Java's results (NaN, -Infinity) where DataFusion fails.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int32Array, Int64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use super::{udf, udf_checked_with, wrong_arguments};

pub(super) fn functions() -> Vec<ScalarUDF> {
    let f = || {
        Signature::one_of(
            vec![TypeSignature::Exact(vec![DataType::Float64])],
            Volatility::Immutable,
        )
    };
    vec![
        udf("sqrt", f(), DataType::Float64, |a, _| {
            doubles(&a[0], f64::sqrt)
        }),
        udf("ln", f(), DataType::Float64, |a, _| doubles(&a[0], f64::ln)),
        // LOG(x) is the natural logarithm; LOG(base, x) is NaN for a base <= 0 or 1, or x < 0.
        udf(
            "log",
            Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Float64]),
                    TypeSignature::Exact(vec![DataType::Float64, DataType::Float64]),
                ],
                Volatility::Immutable,
            ),
            DataType::Float64,
            |a, _| {
                if a.len() == 1 {
                    return doubles(&a[0], f64::ln);
                }
                let (base, x) = (
                    a[0].as_primitive::<Float64Type>(),
                    a[1].as_primitive::<Float64Type>(),
                );
                let out: Float64Array = base
                    .iter()
                    .zip(x.iter())
                    .map(|(b, x)| {
                        let (b, x) = (b?, x?);
                        Some(if b <= 0.0 || b == 1.0 || x < 0.0 {
                            f64::NAN
                        } else {
                            x.ln() / b.ln()
                        })
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        ),
        rounding("ksql_round", Rounding::HalfUp),
        whole_number("floor", false),
        whole_number("ceil", true),
        rounding("ksql_trunc", Rounding::Down),
        ScalarUDF::from(GeoDistance::default()),
        // SIGN(x): -1, 0 or 1 as an INT, whatever the numeric type of x.
        udf(
            "sign",
            Signature::one_of(
                vec![TypeSignature::Exact(vec![DataType::Float64])],
                Volatility::Immutable,
            ),
            DataType::Int32,
            |args, _| {
                let x = cast(&args[0], &DataType::Float64)?;
                let out: Int32Array = x
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| {
                        v.map(|v| {
                            if v > 0.0 {
                                1
                            } else if v < 0.0 {
                                -1
                            } else {
                                0
                            }
                        })
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        ),
    ]
}

/// FLOOR and CEIL: the nearest whole number below (or above) x, in x's own type (ksqlDB's
/// overloads: an INT stays an INT, a DECIMAL keeps its precision and scale), where
/// DataFusion's would make every number a DOUBLE.
fn whole_number(name: &'static str, up: bool) -> ScalarUDF {
    let result = |t: &[DataType]| -> DataType { t[0].clone() };
    let coerce = move |t: &[DataType]| -> Result<Vec<DataType>> {
        match t {
            [DataType::Int8 | DataType::Int16 | DataType::Int32] => Ok(vec![DataType::Int32]),
            [DataType::Int64] => Ok(vec![DataType::Int64]),
            [DataType::Float32 | DataType::Float64 | DataType::Null] => Ok(vec![DataType::Float64]),
            [d @ DataType::Decimal128(..)] => Ok(vec![d.clone()]),
            _ => wrong_arguments(name, t),
        }
    };
    udf_checked_with(name, result, coerce, move |a, _| match a[0].data_type() {
        DataType::Float64 => doubles(&a[0], if up { f64::ceil } else { f64::floor }),
        DataType::Decimal128(p, s) => {
            let factor = 10i128.pow(u32::try_from(*s).unwrap_or(0));
            let x = a[0].as_primitive::<datafusion::arrow::datatypes::Decimal128Type>();
            let out: Decimal128Array = x.unary(|v| {
                let q = v.div_euclid(factor);
                let q = if up && v.rem_euclid(factor) != 0 {
                    q + 1
                } else {
                    q
                };
                q * factor
            });
            Ok(Arc::new(out.with_precision_and_scale(*p, *s)?))
        }
        // Whole numbers already.
        _ => Ok(a[0].clone()),
    })
}

fn doubles(a: &ArrayRef, f: fn(f64) -> f64) -> Result<ArrayRef> {
    let x = cast(a, &DataType::Float64)?;
    let out: Float64Array = x.as_primitive::<Float64Type>().unary(f);
    Ok(Arc::new(out))
}

#[derive(Clone, Copy)]
enum Rounding {
    /// ROUND: half away from zero for decimals (`HALF_UP`), half up for doubles.
    HalfUp,
    /// TRUNC: toward zero.
    Down,
}

/// A double to a whole number: half toward positive infinity (Java's Math.round, which
/// ksqlDB's ROUND uses for doubles at any number of places), or toward zero.
fn whole(x: f64, mode: Rounding) -> f64 {
    match mode {
        Rounding::HalfUp => (x + 0.5).floor(),
        Rounding::Down => x.trunc(),
    }
}

/// An unscaled decimal `v` of scale `scale` to `digits` decimal places, at the same scale.
fn round_decimal(v: i128, scale: i8, digits: i64, mode: Rounding) -> Option<i128> {
    let drop = i64::from(scale) - digits;
    if drop <= 0 {
        return Some(v);
    }
    let factor = 10i128.checked_pow(u32::try_from(drop).ok()?)?;
    let (q, r) = (v / factor, v % factor);
    let q = match mode {
        Rounding::HalfUp if r.abs() * 2 >= factor => q + v.signum(),
        _ => q,
    };
    q.checked_mul(factor)
}

/// ROUND and TRUNC: `f(x)` to a whole number of x's kind (an INT or BIGINT stays itself, a
/// DOUBLE becomes a BIGINT, a DECIMAL(p, s) a DECIMAL(p - s, 0)); `f(x, n)` to n decimal
/// places (negative: tens, hundreds...) in x's own type.
fn rounding(name: &'static str, mode: Rounding) -> ScalarUDF {
    let result = |t: &[DataType]| -> DataType {
        match (&t[0], t.len()) {
            (DataType::Float64, 1) => DataType::Int64,
            (DataType::Decimal128(p, s), 1) => {
                DataType::Decimal128((*p as i8 - *s).max(1) as u8, 0)
            }
            (other, _) => other.clone(),
        }
    };
    let coerce = move |t: &[DataType]| -> Result<Vec<DataType>> {
        let x = match &t[0] {
            DataType::Int8 | DataType::Int16 | DataType::Int32 => DataType::Int32,
            DataType::Int64 => DataType::Int64,
            DataType::Float32 | DataType::Float64 | DataType::Null => DataType::Float64,
            d @ DataType::Decimal128(..) => d.clone(),
            _ => return wrong_arguments(name, t),
        };
        match t.len() {
            1 => Ok(vec![x]),
            2 if t[1].is_integer() || t[1].is_null() => Ok(vec![x, DataType::Int64]),
            _ => wrong_arguments(name, t),
        }
    };
    udf_checked_with(name, result, coerce, move |a, rows| {
        let digits: Option<Int64Array> = a
            .get(1)
            .map(|d| cast(d, &DataType::Int64).map(|d| d.as_primitive().clone()))
            .transpose()?;
        let n = |row: usize| -> Option<i64> {
            match &digits {
                Some(d) => d.is_valid(row).then(|| d.value(row)),
                None => Some(0),
            }
        };
        let out: ArrayRef = match a[0].data_type() {
            DataType::Float64 => {
                let x = a[0].as_primitive::<Float64Type>();
                if digits.is_none() {
                    let out: Int64Array =
                        x.iter().map(|v| v.map(|v| whole(v, mode) as i64)).collect();
                    Arc::new(out)
                } else {
                    let out: Float64Array = (0..rows)
                        .map(|row| {
                            let (v, n) = (x.is_valid(row).then(|| x.value(row))?, n(row)?);
                            let m = 10f64.powi(n as i32);
                            Some(whole(v * m, mode) / m)
                        })
                        .collect();
                    Arc::new(out)
                }
            }
            DataType::Decimal128(p, s) => {
                let x = a[0].as_primitive::<datafusion::arrow::datatypes::Decimal128Type>();
                let (p, s) = (*p, *s);
                let out: Decimal128Array = (0..rows)
                    .map(|row| {
                        let (v, n) = (x.is_valid(row).then(|| x.value(row))?, n(row)?);
                        let rounded = round_decimal(v, s, n, mode)?;
                        match digits {
                            Some(_) => Some(rounded),
                            None => Some(rounded / 10i128.pow(s.max(0) as u32)),
                        }
                    })
                    .collect();
                let (p, s) = match digits {
                    Some(_) => (p, s),
                    None => ((p as i8 - s).max(1) as u8, 0),
                };
                Arc::new(out.with_precision_and_scale(p, s)?)
            }
            int => {
                let x = cast(&a[0], &DataType::Int64)?;
                let x = x.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let out: Int64Array = (0..rows)
                    .map(|row| {
                        let (v, n) = (x.is_valid(row).then(|| x.value(row))?, n(row)?);
                        round_decimal(i128::from(v), 0, n, mode).and_then(|r| i64::try_from(r).ok())
                    })
                    .collect();
                cast(&(Arc::new(out) as ArrayRef), int)?
            }
        };
        Ok(out)
    })
}

/// `GEO_DISTANCE(lat1, lon1, lat2, lon2 [, 'KM' | 'MI'])`: great-circle distance by the
/// haversine formula, in kilometres by default (Earth radius 6371 km, or 3959 miles).
#[derive(Debug, PartialEq, Eq, Hash)]
struct GeoDistance {
    signature: Signature,
}

impl Default for GeoDistance {
    fn default() -> Self {
        let f = DataType::Float64;
        GeoDistance {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![f.clone(), f.clone(), f.clone(), f.clone()]),
                    TypeSignature::Exact(vec![f.clone(), f.clone(), f.clone(), f, DataType::Utf8]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for GeoDistance {
    fn name(&self) -> &str {
        "geo_distance"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let coords: Vec<&Float64Array> = arrays[..4]
            .iter()
            .map(|a| a.as_primitive::<Float64Type>())
            .collect();
        let units = arrays.get(4).map(|a| a.as_string::<i32>());
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            if coords.iter().any(|c| c.is_null(row)) {
                out.push(None);
                continue;
            }
            let unit = units
                .filter(|u| !u.is_null(row))
                .map(|u| u.value(row).to_ascii_lowercase());
            let radius = match unit.as_deref() {
                None => 6371.0,
                Some(u) if u.starts_with("km") || u.starts_with("kilomet") => 6371.0,
                Some(u) if u.starts_with("mi") => 3959.0,
                Some(u) => return exec_err!("GEO_DISTANCE: unknown unit '{u}', use KM or MI"),
            };
            let [lat1, lon1, lat2, lon2] = [0, 1, 2, 3].map(|i| coords[i].value(row));
            let (dlat, dlon) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
            let a = (dlat / 2.0).sin().powi(2)
                + lat1.to_radians().cos() * lat2.to_radians().cos() * (dlon / 2.0).sin().powi(2);
            out.push(Some(2.0 * radius * a.sqrt().asin()));
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}

#[cfg(test)]
mod rounding_tests {
    use super::*;

    #[test]
    fn decimals_round_half_up_and_truncate() {
        // 1.25 (scale 2) to one place.
        assert_eq!(round_decimal(125, 2, 1, Rounding::HalfUp), Some(130));
        assert_eq!(round_decimal(-125, 2, 1, Rounding::HalfUp), Some(-130));
        assert_eq!(round_decimal(125, 2, 1, Rounding::Down), Some(120));
        // 111 (scale 0) to tens and hundreds.
        assert_eq!(round_decimal(111, 0, -1, Rounding::HalfUp), Some(110));
        assert_eq!(round_decimal(151, 0, -2, Rounding::HalfUp), Some(200));
        assert_eq!(round_decimal(125, 2, 5, Rounding::HalfUp), Some(125));
    }
}

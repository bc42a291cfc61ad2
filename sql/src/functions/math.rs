//! Numeric functions: GEO_DISTANCE and SIGN.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Float64Array, Int32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use super::udf;

pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
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

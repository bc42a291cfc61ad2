//! Functions over maps and of any value: ENTRIES, MAP_UNION and AS_VALUE; the combinations
//! CUBE_EXPLODE explodes. (Array functions are
//! DataFusion's, under ksqlDB's names where they differ: see `rewrite.rs`.)

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Builder, ListArray, ListBuilder, MapArray, StructArray,
    UInt32Array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::kernels::cmp::not_distinct;
use datafusion::arrow::compute::{cast, interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{ScalarUDF, Signature, TypeSignature, Volatility};

use super::udf_with;

pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(MakeArray {
            inner: datafusion::functions_nested::make_array::make_array_udf(),
        }),
        // AS_VALUE(x): x itself, so that a key column can also be copied into the value.
        udf_with(
            "as_value",
            Signature::any(1, Volatility::Immutable),
            |t| Ok(t[0].clone()),
            |args, _| Ok(args[0].clone()),
        ),
        // ENTRIES(map, sorted): the map's entries as an array of STRUCT<K, V>, by key if sorted.
        udf_with(
            "entries",
            Signature::any(2, Volatility::Immutable),
            |t| {
                Ok(DataType::List(Arc::new(Field::new(
                    "item",
                    DataType::Struct(entry_fields(&t[0])?),
                    true,
                ))))
            },
            entries,
        ),
        // STRUCT(): a struct without fields.
        udf_with(
            "ksql_empty_struct",
            Signature::nullary(Volatility::Immutable),
            |_| Ok(DataType::Struct(Fields::empty())),
            |_, rows| Ok(Arc::new(StructArray::new_empty_fields(rows, None))),
        ),
        greatest("greatest", true),
        greatest("least", false),
        // GENERATE_SERIES(start, end [, step]): start to end inclusive, counting down when
        // end is below start.
        udf_with(
            "generate_series",
            Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Int32, DataType::Int32]),
                    TypeSignature::Exact(vec![DataType::Int64, DataType::Int64]),
                    TypeSignature::Exact(vec![DataType::Int32, DataType::Int32, DataType::Int32]),
                    TypeSignature::Exact(vec![DataType::Int64, DataType::Int64, DataType::Int64]),
                ],
                Volatility::Immutable,
            ),
            |t| {
                let item = if t.contains(&DataType::Int64) {
                    DataType::Int64
                } else {
                    DataType::Int32
                };
                Ok(DataType::List(Arc::new(Field::new("item", item, true))))
            },
            generate_series,
        ),
        // ARRAY_REMOVE(array, x): the array without the elements equal to x (nulls for null).
        super::udf_checked_with(
            "array_remove",
            |t| t[0].clone(),
            |t| match &t[0] {
                DataType::List(item) => Ok(vec![t[0].clone(), item.data_type().clone()]),
                DataType::Null => Ok(t.to_vec()),
                _ => super::wrong_arguments("array_remove", t),
            },
            array_remove,
        ),
        // The arrays CUBE_EXPLODE(array) turns into rows: see `cube`.
        udf_with(
            "ksql_cube",
            Signature::any(1, Volatility::Immutable),
            |t| match &t[0] {
                DataType::List(_) => Ok(DataType::List(Arc::new(Field::new(
                    "item",
                    t[0].clone(),
                    true,
                )))),
                other => plan_err!("CUBE_EXPLODE needs an array, got {other}"),
            },
            cube,
        ),
        // MAP_UNION(a, b): the entries of both maps, b's value where both have a key.
        udf_with(
            "map_union",
            Signature::any(2, Volatility::Immutable),
            |t| match &t[0] {
                DataType::Map(..) if t[0] == t[1] => Ok(t[0].clone()),
                other => plan_err!(
                    "MAP_UNION needs two maps of one type, got {other} and {}",
                    t[1]
                ),
            },
            map_union,
        ),
    ]
}

/// `ARRAY[...]`: DataFusion's `make_array`, except that structs with different fields make one
/// struct type with all their fields (in order of appearance; missing ones null), as ksqlDB
/// unifies them.
#[derive(Debug, PartialEq, Eq, Hash)]
struct MakeArray {
    inner: Arc<ScalarUDF>,
}

impl MakeArray {
    /// The struct type uniting the argument types, when they are structs (or nulls) with
    /// different fields.
    fn union(types: &[DataType]) -> Option<DataType> {
        let mut union: Vec<FieldRef> = Vec::new();
        let mut shapes = Vec::new();
        for t in types {
            match t {
                DataType::Null => {}
                DataType::Struct(fields) => {
                    shapes.push(fields.iter().map(|f| f.name().clone()).collect::<Vec<_>>());
                    for f in fields {
                        if !union.iter().any(|u| u.name() == f.name()) {
                            union.push(f.clone());
                        }
                    }
                }
                _ => return None,
            }
        }
        shapes.dedup();
        (shapes.len() > 1).then(|| DataType::Struct(union.into()))
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for MakeArray {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match Self::union(types) {
            // Converted in the body, by field name, which a cast cannot do.
            Some(_) => Ok(types.to_vec()),
            None => self.inner.coerce_types(types),
        }
    }
    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        match Self::union(types) {
            Some(u) => Ok(DataType::new_list(u, true)),
            None => self.inner.return_type(types),
        }
    }
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> Result<datafusion::logical_expr::ColumnarValue> {
        let types: Vec<DataType> = args.args.iter().map(|a| a.data_type()).collect();
        let Some(union) = Self::union(&types) else {
            return self.inner.invoke_with_args(args);
        };
        let rows = args.number_rows;
        let columns = args
            .args
            .iter()
            .map(|a| super::cast::cast_value(&a.clone().into_array(rows)?, &union))
            .collect::<Result<Vec<_>>>()?;
        let sources: Vec<&dyn Array> = columns.iter().map(|c| c.as_ref()).collect();
        let picks: Vec<(usize, usize)> = (0..rows)
            .flat_map(|row| (0..columns.len()).map(move |c| (c, row)))
            .collect();
        let values = interleave(&sources, &picks)?;
        let n = columns.len() as i32;
        let offsets: Vec<i32> = (0..=rows as i32).map(|r| r * n).collect();
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            ListArray::try_new(
                Arc::new(Field::new("item", union, true)),
                OffsetBuffer::new(offsets.into()),
                values,
                None,
            )?,
        )))
    }
}

/// GREATEST and LEAST of values of one type (nulls ignored): ksqlDB widens numbers only to
/// DOUBLE, and finds INT with BIGINT (or DECIMAL) ambiguous.
fn greatest(name: &'static str, greatest: bool) -> ScalarUDF {
    let coerce = move |t: &[DataType]| -> Result<Vec<DataType>> {
        let mut kinds: Vec<&DataType> = t.iter().filter(|t| !t.is_null()).collect();
        kinds.sort_by_key(|t| t.to_string());
        kinds.dedup();
        let temporal = |t: &DataType| {
            matches!(
                t,
                DataType::Date32 | DataType::Time32(_) | DataType::Timestamp(..)
            )
        };
        let target = match kinds.as_slice() {
            [] => DataType::Null,
            [one] => (*one).clone(),
            // Decimals widen to hold every integer part and every scale.
            many if many.iter().all(|t| matches!(t, DataType::Decimal128(..))) => {
                let (mut int, mut scale) = (0i16, 0i16);
                for t in many {
                    if let DataType::Decimal128(p, s) = t {
                        int = int.max(i16::from(*p) - i16::from(*s));
                        scale = scale.max(i16::from(*s));
                    }
                }
                DataType::Decimal128((int + scale).min(38) as u8, scale as i8)
            }
            // A date, time or timestamp with text: the text is read as one.
            [a, b] if temporal(a) && b.is_string() => (*a).clone(),
            [a, b] if temporal(b) && a.is_string() => (*b).clone(),
            many if many.iter().all(|t| t.is_numeric()) => {
                if many.contains(&&DataType::Float64) {
                    DataType::Float64
                } else {
                    let names: Vec<String> = t
                        .iter()
                        .map(|t| {
                            crate::types::SqlType::from_arrow(t)
                                .map_or_else(|| t.to_string(), |s| s.to_string())
                        })
                        .collect();
                    return plan_err!(
                        "Function '{name}' cannot be resolved due to ambiguous method parameters ({}).",
                        names.join(", ")
                    );
                }
            }
            _ => return super::wrong_arguments(name, t),
        };
        Ok(vec![target; t.len()])
    };
    super::udf_checked_with(
        name,
        |t| t.first().cloned().unwrap_or(DataType::Null),
        coerce,
        move |args, _| {
            let mut best = args[0].clone();
            for next in &args[1..] {
                let better = if greatest {
                    datafusion::arrow::compute::kernels::cmp::gt(next, &best)?
                } else {
                    datafusion::arrow::compute::kernels::cmp::lt(next, &best)?
                };
                // Where best is null, take next; where next is null, keep best.
                let take_next: datafusion::arrow::array::BooleanArray = (0..best.len())
                    .map(|i| Some(next.is_valid(i) && (best.is_null(i) || better.value(i))))
                    .collect();
                best = datafusion::arrow::compute::kernels::zip::zip(&take_next, next, &best)?;
            }
            Ok(best)
        },
    )
}

fn array_remove(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let Some(list) = args[0].as_list_opt::<i32>() else {
        return Ok(args[0].clone());
    };
    let offsets = list.value_offsets();
    let values = list.values();
    // Each element beside the value of its row, to compare them in one pass.
    let mut owner = vec![0u32; values.len()];
    for row in 0..rows {
        for o in &mut owner[offsets[row] as usize..offsets[row + 1] as usize] {
            *o = row as u32;
        }
    }
    let needles = take(&args[1], &UInt32Array::from(owner), None)?;
    let equal: Vec<bool> = match not_distinct(values, &needles) {
        Ok(mask) => mask.iter().map(|b| b.unwrap_or(false)).collect(),
        // Nested elements: compare as values.
        Err(_) => (0..values.len())
            .map(|i| {
                Ok(ScalarValue::try_from_array(values, i)?
                    == ScalarValue::try_from_array(&needles, i)?)
            })
            .collect::<Result<_>>()?,
    };
    let mut keep = Vec::new();
    let mut new_offsets = vec![0i32];
    for row in 0..rows {
        let range = offsets[row] as usize..offsets[row + 1] as usize;
        keep.extend(range.filter(|&i| !equal[i]).map(|i| i as u32));
        new_offsets.push(keep.len() as i32);
    }
    let DataType::List(item) = args[0].data_type() else {
        unreachable!("a list array")
    };
    Ok(Arc::new(ListArray::try_new(
        item.clone(),
        OffsetBuffer::new(new_offsets.into()),
        take(values, &UInt32Array::from(keep), None)?,
        list.nulls().cloned(),
    )?))
}

/// ksqlDB caps CUBE_EXPLODE's input so that its 2^n output rows fit in memory.
const CUBE_MAX_ELEMENTS: usize = 20;

/// For each array of n elements, the 2^n arrays that keep some of its elements and null the
/// others, in ksqlDB's order: counting in binary from all-null to all-kept, the first element
/// the most significant bit. A null element is null in every combination, so the combinations
/// that would only differ there are left out rather than repeated. A null array has none.
fn cube(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let list = args[0].as_list::<i32>();
    let offsets = list.value_offsets();
    let values = list.values();
    // Element picks of every combination (None for a nulled element), the combinations'
    // offsets into them, and each row's offsets into the combinations.
    let mut picks: Vec<Option<u32>> = Vec::new();
    let mut inner = vec![0i32];
    let mut outer = vec![0i32];
    for (row, &start) in offsets.iter().enumerate().take(rows) {
        let (start, n) = (start as usize, list.value_length(row) as usize);
        if list.is_valid(row) {
            if n > CUBE_MAX_ELEMENTS {
                return exec_err!(
                    "CUBE_EXPLODE input size ({n}) exceeds the maximum of {CUBE_MAX_ELEMENTS}"
                );
            }
            let bit = |p: usize| 1usize << (n - 1 - p);
            let present: usize = (0..n)
                .filter(|&p| values.is_valid(start + p))
                .map(bit)
                .sum();
            for mask in (0..1usize << n).filter(|m| m & !present == 0) {
                picks.extend((0..n).map(|p| (mask & bit(p) != 0).then_some((start + p) as u32)));
                inner.push(picks.len() as i32);
            }
        }
        outer.push(inner.len() as i32 - 1);
    }
    let DataType::List(item) = args[0].data_type() else {
        unreachable!("a list array")
    };
    let arrays = ListArray::try_new(
        item.clone(),
        OffsetBuffer::new(inner.into()),
        take(values, &UInt32Array::from(picks), None)?,
        None,
    )?;
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new("item", args[0].data_type().clone(), true)),
        OffsetBuffer::new(outer.into()),
        Arc::new(arrays),
        None,
    )?))
}

fn generate_series(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let cols = args
        .iter()
        .map(|a| {
            Ok(cast(a, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .clone())
        })
        .collect::<Result<Vec<_>>>()?;
    let mut b = ListBuilder::new(Int64Builder::new());
    for row in 0..rows {
        if cols.iter().any(|c| c.is_null(row)) {
            b.append(false);
            continue;
        }
        let (start, end) = (cols[0].value(row), cols[1].value(row));
        let step = match cols.get(2) {
            Some(s) => s.value(row),
            None if end < start => -1,
            None => 1,
        };
        if step == 0 || (end - start).signum() * step.signum() < 0 {
            return exec_err!("GENERATE_SERIES step {step} cannot go from {start} to {end}");
        }
        let mut v = start;
        while (step > 0 && v <= end) || (step < 0 && v >= end) {
            b.values().append_value(v);
            v += step;
        }
        b.append(true);
    }
    let longs: ArrayRef = Arc::new(b.finish());
    let item = if args.iter().any(|a| *a.data_type() == DataType::Int64) {
        DataType::Int64
    } else {
        DataType::Int32
    };
    Ok(cast(
        &longs,
        &DataType::List(Arc::new(Field::new("item", item, true))),
    )?)
}

/// The fields `K` and `V` of ENTRIES' structs for a map type.
fn entry_fields(map: &DataType) -> Result<Fields> {
    match map {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => Ok(Fields::from(vec![
                Field::new("K", kv[0].data_type().clone(), true),
                Field::new("V", kv[1].data_type().clone(), true),
            ])),
            _ => plan_err!("ENTRIES needs a map"),
        },
        other => plan_err!("ENTRIES needs a map, got {other}"),
    }
}

fn entries(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let Some(map) = args[0].as_map_opt() else {
        return exec_err!("ENTRIES needs a map");
    };
    let sorted = args[1].as_boolean();
    let keys = map.keys();
    let mut indices: Vec<u32> = Vec::new();
    let mut offsets = vec![0i32];
    for row in 0..rows {
        if map.is_valid(row) {
            let range = map.value_offsets()[row] as u32..map.value_offsets()[row + 1] as u32;
            let mut row_indices: Vec<u32> = range.collect();
            if sorted.is_valid(row) && sorted.value(row) {
                let key = |i: u32| ScalarValue::try_from_array(keys, i as usize);
                let mut keyed = row_indices
                    .iter()
                    .map(|&i| Ok((key(i)?, i)))
                    .collect::<Result<Vec<_>>>()?;
                keyed.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
                row_indices = keyed.into_iter().map(|(_, i)| i).collect();
            }
            indices.extend(row_indices);
        }
        offsets.push(indices.len() as i32);
    }
    let indices = UInt32Array::from(indices);
    let fields = entry_fields(args[0].data_type())?;
    let columns = vec![
        take(keys, &indices, None)?,
        take(map.values(), &indices, None)?,
    ];
    let structs = StructArray::try_new(fields.clone(), columns, None)?;
    let item: FieldRef = Arc::new(Field::new("item", DataType::Struct(fields), true));
    Ok(Arc::new(ListArray::try_new(
        item,
        OffsetBuffer::new(offsets.into()),
        Arc::new(structs),
        map.nulls().cloned(),
    )?))
}

fn map_union(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let (Some(a), Some(b)) = (args[0].as_map_opt(), args[1].as_map_opt()) else {
        return exec_err!("MAP_UNION needs two maps");
    };
    let DataType::Map(field, ordered) = args[0].data_type() else {
        return exec_err!("MAP_UNION needs two maps");
    };
    let mut picks: Vec<(usize, usize)> = Vec::new();
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(rows);
    for row in 0..rows {
        let start = picks.len();
        for (side, m) in [a, b].iter().enumerate() {
            if m.is_null(row) {
                continue;
            }
            let (from, to) = (
                m.value_offsets()[row] as usize,
                m.value_offsets()[row + 1] as usize,
            );
            for i in from..to {
                let key = ScalarValue::try_from_array(m.keys(), i)?;
                // A later entry for the same key replaces the earlier one.
                let mut kept = Vec::with_capacity(picks.len() - start);
                for &(s, j) in &picks[start..] {
                    let other = [a, b][s];
                    if ScalarValue::try_from_array(other.keys(), j)? != key {
                        kept.push((s, j));
                    }
                }
                picks.truncate(start);
                picks.extend(kept);
                picks.push((side, i));
            }
        }
        valid.push(a.is_valid(row) || b.is_valid(row));
        offsets.push(picks.len() as i32);
    }
    let sources: [&dyn Array; 2] = [a.entries(), b.entries()];
    let entries = interleave(&sources, &picks)?;
    Ok(Arc::new(MapArray::try_new(
        field.clone(),
        OffsetBuffer::new(offsets.into()),
        entries.as_struct().clone(),
        Some(NullBuffer::from(valid)),
        *ordered,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;
    use datafusion::arrow::datatypes::Int32Type;

    #[test]
    fn cube_counts_from_all_null_to_all_kept_and_skips_repeats_of_null_elements() {
        let arrays: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![Some(3), None]),
        ]));
        let out = cube(&[arrays], 3).unwrap();
        let rows = out.as_list::<i32>();
        let combos = |row: usize| -> Vec<Vec<Option<i32>>> {
            let v = rows.value(row);
            let v = v.as_list::<i32>();
            (0..v.len())
                .map(|i| {
                    let a = v.value(i);
                    let a = a.as_any().downcast_ref::<Int32Array>().unwrap();
                    a.iter().collect()
                })
                .collect()
        };
        assert_eq!(
            combos(0),
            [
                vec![None, None],
                vec![None, Some(2)],
                vec![Some(1), None],
                vec![Some(1), Some(2)]
            ]
        );
        assert!(combos(1).is_empty());
        assert_eq!(combos(2), [vec![None, None], vec![Some(3), None]]);
    }
}

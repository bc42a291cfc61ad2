//! Functions over maps and of any value: ENTRIES, MAP_UNION and AS_VALUE. (Array functions are
//! DataFusion's, under ksqlDB's names where they differ: see `rewrite.rs`.)

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, ListArray, MapArray, StructArray, UInt32Array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{ScalarUDF, Signature, Volatility};

use super::udf_with;

pub(super) fn functions() -> Vec<ScalarUDF> {
    vec![
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

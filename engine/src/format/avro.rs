//! The AVRO format, as ksqlDB writes it: Confluent's frame (magic byte, schema id), then an
//! Avro binary datum of the schema ksqlDB derives from the columns.
//!
//! That schema ([`schema_json`]) is a record `KsqlDataSourceSchema` whose fields are all
//! nullable (`["null", T]`), or, for a key or an unwrapped single value, the column's type
//! itself. Nested types follow Connect's `AvroData`: array items nullable, a MAP an array of
//! `MapEntry` records (ksqlDB's map keys are optional strings, which Avro's `map` cannot say),
//! a STRUCT a record named after its parent and field. DECIMAL is `bytes` with the `decimal`
//! logical type (big-endian two's complement), TIMESTAMP `long` millis, DATE `int` days, TIME
//! `int` millis.
//!
//! Decoding reads with the same derived schema, whatever id the frame names: a record written
//! with another schema (a producer's own, registered separately) is not yet resolved against
//! it, and usually fails with a clear reason rather than reading wrong values.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::common::ScalarValue;
use serde_json::{json, Value};

use super::wire::{
    decimal_bytes, decimal_from_bytes, list_items, map_entries, read_frame, struct_values,
    unzigzag, write_frame, write_varint, zigzag, Reader,
};
use super::Codec;
use crate::value::{map_array, null_of, struct_array};

/// Avro's rule for names, `[A-Za-z_][A-Za-z0-9_]*`, for a column and its nested fields (a dot
/// becomes `_`, as ksqlDB writes it).
pub(super) fn check_name(f: &Field) -> Result<(), String> {
    let name = f.name().replace('.', "_");
    let mut chars = name.chars();
    if chars
        .next()
        .is_some_and(|c| !(c.is_ascii_alphabetic() || c == '_'))
    {
        return Err(format!(
            "Schema is not compatible with Avro: Illegal initial character: {name}"
        ));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        return Err(format!(
            "Schema is not compatible with Avro: Illegal character in: {name} ({c})"
        ));
    }
    match f.data_type() {
        DataType::Struct(fields) => fields.iter().try_for_each(|f| check_name(f)),
        DataType::List(item) => match item.data_type() {
            DataType::Struct(fields) => fields.iter().try_for_each(|f| check_name(f)),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Whether the codec's columns are written as one unwrapped datum rather than a record.
fn unwrapped(codec: &Codec) -> bool {
    codec.fields.len() == 1 && !codec.wrap_single
}

pub(super) fn encode(codec: &Codec, values: &[ScalarValue]) -> Result<bytes::Bytes, String> {
    let mut out = Vec::with_capacity(64);
    write_frame(&mut out, codec.schema_id);
    if unwrapped(codec) {
        write_datum(&mut out, codec.fields[0].data_type(), &values[0])?;
    } else {
        for (f, v) in codec.fields.iter().zip(values) {
            write_nullable(&mut out, f.data_type(), v)
                .map_err(|e| format!("column {}: {e}", f.name()))?;
        }
    }
    Ok(bytes::Bytes::from(out))
}

pub(super) fn decode(codec: &Codec, bytes: &[u8]) -> Result<Vec<ScalarValue>, String> {
    let (_id, body) = read_frame(bytes)?;
    let mut r = Reader::new(body);
    let values = if unwrapped(codec) {
        vec![read_datum(&mut r, codec.fields[0].data_type())?]
    } else {
        codec
            .fields
            .iter()
            .map(|f| {
                read_nullable(&mut r, f.data_type())
                    .map_err(|e| format!("column {}: {e}", f.name()))
            })
            .collect::<Result<_, _>>()?
    };
    if !r.is_empty() {
        return Err(format!(
            "{} bytes left after the Avro record: it was written with another schema",
            r.bytes.len()
        ));
    }
    Ok(values)
}

fn write_long(out: &mut Vec<u8>, v: i64) {
    write_varint(out, zigzag(v));
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// A `["null", T]` union: branch 0 for null, 1 for a value.
fn write_nullable(out: &mut Vec<u8>, t: &DataType, v: &ScalarValue) -> Result<(), String> {
    if v.is_null() {
        write_long(out, 0);
        return Ok(());
    }
    write_long(out, 1);
    write_datum(out, t, v)
}

fn write_datum(out: &mut Vec<u8>, t: &DataType, v: &ScalarValue) -> Result<(), String> {
    match (t, v) {
        (_, v) if v.is_null() => {
            return Err(
                "a null where the Avro schema has no null (a key, or an unwrapped value)".into(),
            )
        }
        (DataType::Boolean, ScalarValue::Boolean(Some(b))) => out.push(u8::from(*b)),
        (DataType::Int32, ScalarValue::Int32(Some(i))) => write_long(out, i64::from(*i)),
        (DataType::Int64, ScalarValue::Int64(Some(i))) => write_long(out, *i),
        (DataType::Float64, ScalarValue::Float64(Some(f))) => {
            out.extend_from_slice(&f.to_le_bytes())
        }
        (DataType::Utf8, ScalarValue::Utf8(Some(s))) => write_bytes(out, s.as_bytes()),
        (DataType::Binary, ScalarValue::Binary(Some(b))) => write_bytes(out, b),
        (DataType::Decimal128(..), ScalarValue::Decimal128(Some(u), ..)) => {
            write_bytes(out, &decimal_bytes(*u))
        }
        (DataType::Timestamp(..), ScalarValue::TimestampMillisecond(Some(t), _)) => {
            write_long(out, *t)
        }
        (DataType::Date32, ScalarValue::Date32(Some(d))) => write_long(out, i64::from(*d)),
        (DataType::Time32(_), ScalarValue::Time32Millisecond(Some(t))) => {
            write_long(out, i64::from(*t))
        }
        (DataType::List(item), v) => {
            let items = list_items(v)?;
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                for i in &items {
                    write_nullable(out, item.data_type(), i)?;
                }
            }
            write_long(out, 0);
        }
        (DataType::Map(entries, _), v) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err("a map without entries".into());
            };
            let all = map_entries(v)?;
            if !all.is_empty() {
                write_long(out, all.len() as i64);
                for (k, v) in &all {
                    write_nullable(out, kv[0].data_type(), k)?;
                    write_nullable(out, kv[1].data_type(), v)?;
                }
            }
            write_long(out, 0);
        }
        (DataType::Struct(fields), v) => {
            for (f, v) in fields.iter().zip(struct_values(v)?) {
                write_nullable(out, f.data_type(), &v)?;
            }
        }
        (t, v) => {
            return Err(format!(
                "cannot write a {} as Avro {}",
                v.data_type(),
                crate::schema::sql_type_name(t)
            ))
        }
    }
    Ok(())
}

fn read_long(r: &mut Reader<'_>, what: &str) -> Result<i64, String> {
    Ok(unzigzag(r.varint(what)?))
}

fn read_int(r: &mut Reader<'_>, what: &str) -> Result<i32, String> {
    let v = read_long(r, what)?;
    i32::try_from(v).map_err(|_| format!("{what}: {v} does not fit an Avro int"))
}

fn read_bytes<'a>(r: &mut Reader<'a>, what: &str) -> Result<&'a [u8], String> {
    let n = read_long(r, what)?;
    let n = usize::try_from(n).map_err(|_| format!("{what}: a negative length {n}"))?;
    r.take(n, what)
}

fn read_nullable(r: &mut Reader<'_>, t: &DataType) -> Result<ScalarValue, String> {
    match read_long(r, "a union branch")? {
        0 => null_of(t),
        1 => read_datum(r, t),
        b => Err(format!("union branch {b} of a [\"null\", T] union")),
    }
}

/// Avro's array blocks: a count, then that many items, until a count of 0; a negative count
/// is followed by the block's size in bytes.
fn read_blocks(
    r: &mut Reader<'_>,
    mut item: impl FnMut(&mut Reader<'_>) -> Result<(), String>,
) -> Result<(), String> {
    loop {
        let mut n = read_long(r, "an array block")?;
        if n == 0 {
            return Ok(());
        }
        if n < 0 {
            n = -n;
            read_long(r, "an array block's size")?;
        }
        for _ in 0..n {
            item(r)?;
        }
    }
}

fn read_datum(r: &mut Reader<'_>, t: &DataType) -> Result<ScalarValue, String> {
    Ok(match t {
        DataType::Boolean => ScalarValue::Boolean(Some(r.take(1, "a boolean")?[0] != 0)),
        DataType::Int32 => ScalarValue::Int32(Some(read_int(r, "an int")?)),
        DataType::Int64 => ScalarValue::Int64(Some(read_long(r, "a long")?)),
        DataType::Float64 => {
            let b = r.take(8, "a double")?;
            ScalarValue::Float64(Some(f64::from_le_bytes(b.try_into().expect("8 bytes"))))
        }
        DataType::Utf8 => {
            let b = read_bytes(r, "a string")?;
            let s = std::str::from_utf8(b).map_err(|_| "a string that is not UTF-8".to_string())?;
            ScalarValue::Utf8(Some(s.to_string()))
        }
        DataType::Binary => ScalarValue::Binary(Some(read_bytes(r, "bytes")?.to_vec())),
        DataType::Decimal128(p, s) => ScalarValue::Decimal128(
            Some(decimal_from_bytes(read_bytes(r, "a decimal")?)?),
            *p,
            *s,
        ),
        DataType::Timestamp(TimeUnit::Millisecond, tz) => {
            ScalarValue::TimestampMillisecond(Some(read_long(r, "a timestamp")?), tz.clone())
        }
        DataType::Date32 => ScalarValue::Date32(Some(read_int(r, "a date")?)),
        DataType::Time32(TimeUnit::Millisecond) => {
            ScalarValue::Time32Millisecond(Some(read_int(r, "a time")?))
        }
        DataType::List(item) => {
            let mut items = Vec::new();
            read_blocks(r, |r| {
                items.push(read_nullable(r, item.data_type())?);
                Ok(())
            })?;
            ScalarValue::List(ScalarValue::new_list_nullable(&items, item.data_type()))
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err("a map without entries".into());
            };
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            read_blocks(r, |r| {
                let k = read_nullable(r, kv[0].data_type())?;
                if k.is_null() {
                    return Err("a map entry with a null key".into());
                }
                keys.push(k);
                values.push(read_nullable(r, kv[1].data_type())?);
                Ok(())
            })?;
            ScalarValue::Map(Arc::new(map_array(entries.clone(), kv, keys, values)?))
        }
        DataType::Struct(fields) => {
            let values = fields
                .iter()
                .map(|f| read_nullable(r, f.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            ScalarValue::Struct(Arc::new(struct_array(fields, values)?))
        }
        other => return Err(format!("type {other} is not supported in Avro")),
    })
}

/// The Avro schema ksqlDB registers for `fields` (see the module's docs): `name` is the root
/// record's full name (`io.confluent.ksql.avro_schemas.KsqlDataSourceSchema` for values).
pub fn schema_json(fields: &[Field], wrap_single: bool, name: &str) -> Value {
    if fields.len() == 1 && !wrap_single {
        return type_json(fields[0].data_type(), name);
    }
    record_json(&fields.iter().cloned().collect::<Fields>(), name)
}

fn record_json(fields: &Fields, name: &str) -> Value {
    let fields: Vec<Value> = fields
        .iter()
        .map(|f| {
            let nested = format!("{name}_{}", f.name().replace('.', "_"));
            json!({
                "name": f.name().replace('.', "_"),
                "type": ["null", type_json(f.data_type(), &nested)],
                "default": null,
            })
        })
        .collect();
    let (namespace, short) = name.rsplit_once('.').unwrap_or(("", name));
    let mut record =
        json!({"type": "record", "name": short, "fields": fields, "connect.name": name});
    if !namespace.is_empty() {
        record["namespace"] = json!(namespace);
    }
    record
}

fn type_json(t: &DataType, name: &str) -> Value {
    match t {
        DataType::Boolean => json!("boolean"),
        DataType::Int32 => json!("int"),
        DataType::Int64 => json!("long"),
        DataType::Float64 => json!("double"),
        DataType::Utf8 => json!("string"),
        DataType::Binary => json!("bytes"),
        DataType::Decimal128(p, s) => json!({
            "type": "bytes", "scale": s, "precision": p, "connect.version": 1,
            "connect.parameters": {"scale": s.to_string(), "connect.decimal.precision": p.to_string()},
            "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal",
        }),
        DataType::Timestamp(..) => json!({
            "type": "long", "connect.version": 1,
            "connect.name": "org.apache.kafka.connect.data.Timestamp", "logicalType": "timestamp-millis",
        }),
        DataType::Date32 => json!({
            "type": "int", "connect.version": 1,
            "connect.name": "org.apache.kafka.connect.data.Date", "logicalType": "date",
        }),
        DataType::Time32(_) => json!({
            "type": "int", "connect.version": 1,
            "connect.name": "org.apache.kafka.connect.data.Time", "logicalType": "time-millis",
        }),
        DataType::List(item) => {
            json!({"type": "array", "items": ["null", type_json(item.data_type(), name)]})
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return json!("null");
            };
            let mut entry = record_json(
                &Fields::from(vec![
                    Field::new("key", kv[0].data_type().clone(), true),
                    Field::new("value", kv[1].data_type().clone(), true),
                ]),
                name,
            );
            entry["connect.internal.type"] = json!("MapEntry");
            let connect_name = entry["connect.name"].take();
            entry
                .as_object_mut()
                .expect("an object")
                .remove("connect.name");
            json!({"type": "array", "items": entry, "connect.name": connect_name})
        }
        DataType::Struct(fields) => record_json(fields, name),
        _ => json!("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use proptest::prelude::*;

    fn codec(fields: Vec<Field>, wrap: bool) -> Codec {
        Codec::new(Format::Avro, fields, wrap)
            .unwrap()
            .with_schema_id(3)
    }

    fn fields() -> Vec<Field> {
        vec![
            Field::new("I", DataType::Int32, true),
            Field::new("S", DataType::Utf8, true),
            Field::new("D", DataType::Decimal128(4, 2), true),
            Field::new(
                "A",
                DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                true,
            ),
        ]
    }

    #[test]
    fn writes_avro_binary_in_a_frame() {
        let c = codec(vec![Field::new("I", DataType::Int32, true)], true);
        let b = c.encode(&[ScalarValue::Int32(Some(-2))]).unwrap().unwrap();
        // frame, union branch 1, zig-zag -2 = 3
        assert_eq!(&b[..], &[0, 0, 0, 0, 3, 2, 3]);
        let b = c.encode(&[ScalarValue::Int32(None)]).unwrap().unwrap();
        assert_eq!(&b[..], &[0, 0, 0, 0, 3, 0]);
    }

    #[test]
    fn bad_bytes_give_reasons() {
        let c = codec(fields(), true);
        assert!(c
            .decode(Some(b"{\"I\":1}"))
            .unwrap_err()
            .contains("magic byte"));
        assert!(c
            .decode(Some(&[0, 0, 0, 0, 3, 2]))
            .unwrap_err()
            .contains("truncated"));
        assert!(c
            .decode(Some(&[0, 0, 0, 0, 3, 4]))
            .unwrap_err()
            .contains("union branch 2"));
    }

    #[test]
    fn the_schema_is_ksqldbs() {
        let s = schema_json(
            &fields()[..2],
            true,
            "io.confluent.ksql.avro_schemas.KsqlDataSourceSchema",
        );
        assert_eq!(
            s,
            json!({"type": "record", "name": "KsqlDataSourceSchema",
                "namespace": "io.confluent.ksql.avro_schemas",
                "fields": [
                    {"name": "I", "type": ["null", "int"], "default": null},
                    {"name": "S", "type": ["null", "string"], "default": null}],
                "connect.name": "io.confluent.ksql.avro_schemas.KsqlDataSourceSchema"})
        );
    }

    proptest! {
        #[test]
        fn rows_round_trip(
            i in proptest::option::of(any::<i32>()),
            s in proptest::option::of(".{0,8}"),
            d in proptest::option::of(-9999i128..9999),
            a in proptest::option::of(proptest::collection::vec(proptest::option::of(any::<i64>()), 0..4)),
        ) {
            let c = codec(fields(), true);
            let list = a.map(|items| {
                let items: Vec<ScalarValue> = items.into_iter().map(ScalarValue::Int64).collect();
                ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Int64))
            }).unwrap_or_else(|| null_of(fields()[3].data_type()).unwrap());
            let row = vec![
                ScalarValue::Int32(i),
                ScalarValue::Utf8(s),
                ScalarValue::Decimal128(d, 4, 2),
                list,
            ];
            let bytes = c.encode(&row).unwrap().unwrap();
            prop_assert_eq!(c.decode(Some(&bytes)).unwrap(), row);
        }
    }
}

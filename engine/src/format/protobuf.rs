//! The PROTOBUF and PROTOBUF_NOSR formats, as ksqlDB writes them: a proto3 message derived from
//! the columns (Connect's `ProtobufData`), framed for PROTOBUF (Confluent's magic byte, schema
//! id and message-index list) and bare for PROTOBUF_NOSR.
//!
//! The message ([`schema_text`]) is `ConnectDefault1` with the columns as fields 1..n, in
//! order; a STRUCT is a nested message, an ARRAY a `repeated` field (packed for numbers), a MAP
//! a `repeated` entry message with `key = 1` and `value = 2`. DECIMAL is
//! `confluent.type.Decimal` (`bytes value = 1` big-endian two's complement, `precision = 2`,
//! `scale = 3`), TIMESTAMP `google.protobuf.Timestamp`, DATE `google.type.Date`, TIME
//! `google.type.TimeOfDay`. A key is a message too: protobuf has no bare scalars.
//!
//! NULL follows `*_PROTOBUF_NULLABLE_REPRESENTATION`: by default proto3 cannot tell a missing
//! scalar from its zero value, so a NULL number, string or boolean is written as nothing and read
//! back as 0, "" or false (as ksqlDB's "primitives with null" case shows), while a missing
//! message-typed field (STRUCT, DECIMAL, TIMESTAMP, DATE, TIME) is NULL. `OPTIONAL` writes
//! scalars with explicit presence and `WRAPPER` as `google.protobuf.*Value` messages: a missing
//! field is then NULL too.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::common::ScalarValue;

use super::wire::{
    decimal_bytes, decimal_from_bytes, list_items, map_entries, read_frame, struct_values,
    write_frame, write_varint, Reader,
};
use super::Codec;
use crate::value::{map_array, null_of, struct_array};

/// `*_PROTOBUF_NULLABLE_REPRESENTATION`: how a NULL scalar is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Nullable {
    /// Plain proto3 fields: NULL is the zero value.
    #[default]
    Default,
    /// proto3 `optional` fields: explicit presence.
    Optional,
    /// `google.protobuf.*Value` wrapper messages.
    Wrapper,
}

impl Nullable {
    pub fn parse(text: &str) -> Option<Nullable> {
        match text.to_ascii_uppercase().as_str() {
            "OPTIONAL" => Some(Nullable::Optional),
            "WRAPPER" => Some(Nullable::Wrapper),
            _ => None,
        }
    }
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    write_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn len_delimited(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    tag(out, field, LEN);
    write_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// A message type, not a scalar: missing means NULL whatever the representation.
fn is_message(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Struct(_)
            | DataType::Decimal128(..)
            | DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Time32(_)
    )
}

pub(super) fn encode(
    codec: &Codec,
    values: &[ScalarValue],
    framed: bool,
    nullable: Nullable,
) -> Result<bytes::Bytes, String> {
    let mut out = Vec::with_capacity(64);
    if framed {
        write_frame(&mut out, codec.schema_id);
        // The message-index list of the first message of the schema: the single byte 0.
        out.push(0);
    }
    for (i, (f, v)) in codec.fields.iter().zip(values).enumerate() {
        write_field(&mut out, i as u32 + 1, f.data_type(), v, nullable)
            .map_err(|e| format!("column {}: {e}", f.name()))?;
    }
    Ok(bytes::Bytes::from(out))
}

/// One field of a message: nothing for a NULL (and, by default, for a scalar's zero value).
fn write_field(
    out: &mut Vec<u8>,
    n: u32,
    t: &DataType,
    v: &ScalarValue,
    nullable: Nullable,
) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    match t {
        DataType::List(item) => {
            let items = list_items(v)?;
            if is_packable(item.data_type()) {
                let mut body = Vec::new();
                for i in &items {
                    scalar_body(&mut body, i);
                }
                if !body.is_empty() {
                    len_delimited(out, n, &body);
                }
            } else {
                for i in &items {
                    let mut body = Vec::new();
                    value_body(&mut body, item.data_type(), i, Nullable::Default)?;
                    len_delimited(out, n, &body);
                }
            }
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err("a map without entries".into());
            };
            for (k, v) in map_entries(v)? {
                let mut body = Vec::new();
                write_field(&mut body, 1, kv[0].data_type(), &k, Nullable::Default)?;
                write_field(&mut body, 2, kv[1].data_type(), &v, Nullable::Default)?;
                len_delimited(out, n, &body);
            }
        }
        t if is_message(t) => {
            let mut body = Vec::new();
            value_body(&mut body, t, v, nullable)?;
            len_delimited(out, n, &body);
        }
        t => match nullable {
            Nullable::Default if is_zero(v) => {}
            Nullable::Wrapper => {
                let mut body = Vec::new();
                if !is_zero(v) {
                    write_scalar(&mut body, 1, t, v)?;
                }
                len_delimited(out, n, &body);
            }
            _ => write_scalar(out, n, t, v)?,
        },
    }
    Ok(())
}

fn is_packable(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean | DataType::Int32 | DataType::Int64 | DataType::Float64
    )
}

fn is_zero(v: &ScalarValue) -> bool {
    match v {
        ScalarValue::Boolean(Some(b)) => !b,
        ScalarValue::Int32(Some(i)) => *i == 0,
        ScalarValue::Int64(Some(i)) => *i == 0,
        ScalarValue::Float64(Some(f)) => f.to_bits() == 0,
        ScalarValue::Utf8(Some(s)) => s.is_empty(),
        ScalarValue::Binary(Some(b)) => b.is_empty(),
        _ => false,
    }
}

/// A packable scalar's body without its tag (a packed list's element).
fn scalar_body(out: &mut Vec<u8>, v: &ScalarValue) {
    match v {
        ScalarValue::Boolean(Some(b)) => out.push(u8::from(*b)),
        // int32 and int64 are plain varints of the two's complement (10 bytes when negative).
        ScalarValue::Int32(Some(i)) => write_varint(out, i64::from(*i) as u64),
        ScalarValue::Int64(Some(i)) => write_varint(out, *i as u64),
        ScalarValue::Float64(Some(f)) => out.extend_from_slice(&f.to_le_bytes()),
        // A null element of a packed list: protobuf has no null, ksqlDB writes the zero.
        ScalarValue::Boolean(None) | ScalarValue::Int32(None) | ScalarValue::Int64(None) => {
            out.push(0)
        }
        ScalarValue::Float64(None) => out.extend_from_slice(&0f64.to_le_bytes()),
        _ => {}
    }
}

fn write_scalar(out: &mut Vec<u8>, n: u32, t: &DataType, v: &ScalarValue) -> Result<(), String> {
    match (t, v) {
        (DataType::Boolean | DataType::Int32 | DataType::Int64, _) => {
            tag(out, n, VARINT);
            scalar_body(out, v);
        }
        (DataType::Float64, _) => {
            tag(out, n, FIXED64);
            scalar_body(out, v);
        }
        (DataType::Utf8, ScalarValue::Utf8(Some(s))) => len_delimited(out, n, s.as_bytes()),
        (DataType::Binary, ScalarValue::Binary(Some(b))) => len_delimited(out, n, b),
        (t, v) => {
            return Err(format!(
                "cannot write a {} as protobuf {}",
                v.data_type(),
                crate::schema::sql_type_name(t)
            ))
        }
    }
    Ok(())
}

/// The body of a message-typed value (or of a list element, which has no field of its own).
fn value_body(
    out: &mut Vec<u8>,
    t: &DataType,
    v: &ScalarValue,
    nullable: Nullable,
) -> Result<(), String> {
    match (t, v) {
        (_, v) if v.is_null() => {}
        (DataType::Struct(fields), v) => {
            for (i, (f, v)) in fields.iter().zip(struct_values(v)?).enumerate() {
                write_field(out, i as u32 + 1, f.data_type(), &v, nullable)?;
            }
        }
        (DataType::Decimal128(p, s), ScalarValue::Decimal128(Some(u), ..)) => {
            len_delimited(out, 1, &decimal_bytes(*u));
            tag(out, 2, VARINT);
            write_varint(out, u64::from(*p));
            tag(out, 3, VARINT);
            write_varint(out, i64::from(*s) as u64);
        }
        (DataType::Timestamp(..), ScalarValue::TimestampMillisecond(Some(ms), _)) => {
            let (secs, nanos) = (ms.div_euclid(1000), ms.rem_euclid(1000) * 1_000_000);
            write_field(
                out,
                1,
                &DataType::Int64,
                &ScalarValue::Int64(Some(secs)),
                Nullable::Default,
            )?;
            write_field(
                out,
                2,
                &DataType::Int32,
                &ScalarValue::Int32(Some(nanos as i32)),
                Nullable::Default,
            )?;
        }
        (DataType::Date32, ScalarValue::Date32(Some(days))) => {
            let d = NaiveDate::from_num_days_from_ce_opt(days + EPOCH_DAYS_FROM_CE)
                .ok_or_else(|| format!("date {days} out of range"))?;
            for (n, part) in [(1, d.year()), (2, d.month() as i32), (3, d.day() as i32)] {
                write_field(
                    out,
                    n,
                    &DataType::Int32,
                    &ScalarValue::Int32(Some(part)),
                    Nullable::Default,
                )?;
            }
        }
        (DataType::Time32(_), ScalarValue::Time32Millisecond(Some(ms))) => {
            let parts = [
                ms / 3_600_000,
                ms / 60_000 % 60,
                ms / 1000 % 60,
                ms % 1000 * 1_000_000,
            ];
            for (n, part) in (1..).zip(parts) {
                write_field(
                    out,
                    n,
                    &DataType::Int32,
                    &ScalarValue::Int32(Some(part)),
                    Nullable::Default,
                )?;
            }
        }
        (t, v) if !is_message(t) => {
            // A list element of a string or bytes type: its bytes are the body.
            match v {
                ScalarValue::Utf8(Some(s)) => out.extend_from_slice(s.as_bytes()),
                ScalarValue::Binary(Some(b)) => out.extend_from_slice(b),
                other => {
                    return Err(format!(
                        "cannot write a {} in a protobuf list",
                        other.data_type()
                    ))
                }
            }
        }
        (t, v) => {
            return Err(format!(
                "cannot write a {} as protobuf {}",
                v.data_type(),
                crate::schema::sql_type_name(t)
            ))
        }
    }
    Ok(())
}

/// 1970-01-01 counted in chrono's days from the common era.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

pub(super) fn decode(
    codec: &Codec,
    bytes: &[u8],
    framed: bool,
    nullable: Nullable,
) -> Result<Vec<ScalarValue>, String> {
    let body = if framed {
        let (_id, body) = read_frame(bytes)?;
        let mut r = Reader::new(body);
        // The message-index list, zig-zag varints: a count (0 meaning [0]), then the indexes.
        let count = super::wire::unzigzag(r.varint("the message indexes")?);
        for _ in 0..count {
            r.varint("a message index")?;
        }
        r.bytes
    } else {
        bytes
    };
    let fields: Fields = codec.fields.iter().cloned().collect();
    read_message(body, &fields, nullable)
}

/// Each field's bytes as the wire gives them: a varint, a fixed number or a slice.
enum Wire<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Fixed32,
    Len(&'a [u8]),
}

fn read_message(
    body: &[u8],
    fields: &Fields,
    nullable: Nullable,
) -> Result<Vec<ScalarValue>, String> {
    // The occurrences of each field, in order: the last wins for a singular field, all count for
    // a repeated one.
    let mut seen: Vec<Vec<Wire<'_>>> = (0..fields.len()).map(|_| Vec::new()).collect();
    let mut r = Reader::new(body);
    while !r.is_empty() {
        let key = r.varint("a field tag")?;
        let (n, wire) = ((key >> 3) as usize, (key & 7) as u8);
        let value = match wire {
            VARINT => Wire::Varint(r.varint("a varint field")?),
            FIXED64 => Wire::Fixed64(r.take(8, "a 64-bit field")?.try_into().expect("8 bytes")),
            FIXED32 => {
                r.take(4, "a 32-bit field")?;
                Wire::Fixed32
            }
            LEN => {
                let len = r.varint("a length")? as usize;
                Wire::Len(r.take(len, "a length-delimited field")?)
            }
            other => {
                return Err(format!(
                    "field {n} has wire type {other}, which proto3 does not use"
                ))
            }
        };
        // Fields this schema does not know are skipped, as protobuf readers do.
        if n >= 1 && n <= fields.len() {
            seen[n - 1].push(value);
        }
    }
    fields
        .iter()
        .zip(seen)
        .map(|(f, occurrences)| {
            read_field(f.data_type(), &occurrences, nullable)
                .map_err(|e| format!("field {}: {e}", f.name()))
        })
        .collect()
}

fn read_field(t: &DataType, occ: &[Wire<'_>], nullable: Nullable) -> Result<ScalarValue, String> {
    match t {
        DataType::List(item) => {
            let mut items = Vec::new();
            for w in occ {
                match (w, is_packable(item.data_type())) {
                    (Wire::Len(b), true) => {
                        let mut r = Reader::new(b);
                        while !r.is_empty() {
                            items.push(packed_element(&mut r, item.data_type())?);
                        }
                    }
                    (w, _) => items.push(read_single(item.data_type(), w, Nullable::Default)?),
                }
            }
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &items,
                item.data_type(),
            )))
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err("a map without entries".into());
            };
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            for w in occ {
                let Wire::Len(b) = w else {
                    return Err("a map entry that is not a message".into());
                };
                let mut kvs = read_message(b, kv, Nullable::Default)?.into_iter();
                keys.push(kvs.next().expect("two fields"));
                values.push(kvs.next().expect("two fields"));
            }
            Ok(ScalarValue::Map(Arc::new(map_array(
                entries.clone(),
                kv,
                keys,
                values,
            )?)))
        }
        t => match occ.last() {
            None if is_message(t) || nullable != Nullable::Default => null_of(t),
            None => zero_of(t),
            Some(w) => read_single(t, w, nullable),
        },
    }
}

fn zero_of(t: &DataType) -> Result<ScalarValue, String> {
    Ok(match t {
        DataType::Boolean => ScalarValue::Boolean(Some(false)),
        DataType::Int32 => ScalarValue::Int32(Some(0)),
        DataType::Int64 => ScalarValue::Int64(Some(0)),
        DataType::Float64 => ScalarValue::Float64(Some(0.0)),
        DataType::Utf8 => ScalarValue::Utf8(Some(String::new())),
        DataType::Binary => ScalarValue::Binary(Some(Vec::new())),
        t => null_of(t)?,
    })
}

fn packed_element(r: &mut Reader<'_>, t: &DataType) -> Result<ScalarValue, String> {
    match t {
        DataType::Float64 => {
            let b = r.take(8, "a packed double")?;
            Ok(ScalarValue::Float64(Some(f64::from_le_bytes(
                b.try_into().expect("8 bytes"),
            ))))
        }
        t => varint_scalar(t, r.varint("a packed varint")?),
    }
}

fn varint_scalar(t: &DataType, v: u64) -> Result<ScalarValue, String> {
    Ok(match t {
        DataType::Boolean => ScalarValue::Boolean(Some(v != 0)),
        DataType::Int32 => ScalarValue::Int32(Some(v as i64 as i32)),
        DataType::Int64 => ScalarValue::Int64(Some(v as i64)),
        t => {
            return Err(format!(
                "a varint where the schema has {}",
                crate::schema::sql_type_name(t)
            ))
        }
    })
}

fn read_single(t: &DataType, w: &Wire<'_>, nullable: Nullable) -> Result<ScalarValue, String> {
    let utf8 = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(|s| ScalarValue::Utf8(Some(s.to_string())))
            .map_err(|_| "a string that is not UTF-8".to_string())
    };
    match (t, w) {
        // A wrapper message: its field 1, the zero value when missing.
        (t, Wire::Len(b)) if nullable == Nullable::Wrapper && !is_message(t) => {
            let mut v = read_message(
                b,
                &Fields::from(vec![Field::new("value", t.clone(), true)]),
                Nullable::Default,
            )?;
            Ok(v.remove(0))
        }
        (DataType::Float64, Wire::Fixed64(b)) => {
            Ok(ScalarValue::Float64(Some(f64::from_le_bytes(*b))))
        }
        (t, Wire::Varint(v)) => varint_scalar(t, *v),
        (DataType::Utf8, Wire::Len(b)) => utf8(b),
        (DataType::Binary, Wire::Len(b)) => Ok(ScalarValue::Binary(Some(b.to_vec()))),
        (DataType::Struct(fields), Wire::Len(b)) => {
            let values = read_message(b, fields, nullable)?;
            Ok(ScalarValue::Struct(Arc::new(struct_array(fields, values)?)))
        }
        (DataType::Decimal128(p, s), Wire::Len(b)) => {
            let parts = read_message(
                b,
                &Fields::from(vec![
                    Field::new("value", DataType::Binary, true),
                    Field::new("precision", DataType::Int32, true),
                    Field::new("scale", DataType::Int32, true),
                ]),
                Nullable::Default,
            )?;
            let ScalarValue::Binary(Some(unscaled)) = &parts[0] else {
                unreachable!()
            };
            let ScalarValue::Int32(Some(scale)) = parts[2] else {
                unreachable!()
            };
            let unscaled = decimal_from_bytes(unscaled)?;
            Ok(ScalarValue::Decimal128(
                Some(rescale(unscaled, scale, *s)?),
                *p,
                *s,
            ))
        }
        (DataType::Timestamp(TimeUnit::Millisecond, tz), Wire::Len(b)) => {
            let parts = read_message(
                b,
                &int_fields(&[DataType::Int64, DataType::Int32]),
                Nullable::Default,
            )?;
            let (ScalarValue::Int64(Some(secs)), ScalarValue::Int32(Some(nanos))) =
                (&parts[0], &parts[1])
            else {
                unreachable!()
            };
            let millis = secs
                .checked_mul(1000)
                .and_then(|ms| ms.checked_add(i64::from(*nanos) / 1_000_000))
                .ok_or_else(|| format!("a timestamp of {secs} seconds is out of range"))?;
            Ok(ScalarValue::TimestampMillisecond(Some(millis), tz.clone()))
        }
        (DataType::Date32, Wire::Len(b)) => {
            let p = ints(read_message(
                b,
                &int_fields(&[const { DataType::Int32 }; 3]),
                Nullable::Default,
            )?);
            let d = NaiveDate::from_ymd_opt(p[0], p[1] as u32, p[2] as u32)
                .ok_or_else(|| format!("no date {}-{}-{}", p[0], p[1], p[2]))?;
            Ok(ScalarValue::Date32(Some(
                d.num_days_from_ce() - EPOCH_DAYS_FROM_CE,
            )))
        }
        (DataType::Time32(_), Wire::Len(b)) => {
            let p = ints(read_message(
                b,
                &int_fields(&[const { DataType::Int32 }; 4]),
                Nullable::Default,
            )?);
            // google.type.TimeOfDay's ranges (24:00 ends a day, second 60 is a leap second).
            let valid = (0..=24).contains(&p[0])
                && (0..60).contains(&p[1])
                && (0..=60).contains(&p[2])
                && (0..1_000_000_000).contains(&p[3]);
            if !valid {
                return Err(format!(
                    "no time of day {}:{}:{}.{}",
                    p[0], p[1], p[2], p[3]
                ));
            }
            Ok(ScalarValue::Time32Millisecond(Some(
                p[0] * 3_600_000 + p[1] * 60_000 + p[2] * 1000 + p[3] / 1_000_000,
            )))
        }
        (t, _) => Err(format!(
            "the wire type does not match the schema's {}",
            crate::schema::sql_type_name(t)
        )),
    }
}

fn int_fields(types: &[DataType]) -> Fields {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| Field::new(format!("f{i}"), t.clone(), true))
        .collect()
}

fn ints(values: Vec<ScalarValue>) -> Vec<i32> {
    values
        .into_iter()
        .map(|v| match v {
            ScalarValue::Int32(Some(i)) => i,
            _ => 0,
        })
        .collect()
}

/// A decimal written at `from` scale, at the column's `to` scale (exact, or an error).
fn rescale(unscaled: i128, from: i32, to: i8) -> Result<i128, String> {
    let to = i32::from(to);
    if from == to {
        return Ok(unscaled);
    }
    let factor = 10i128
        .checked_pow((to - from).unsigned_abs())
        .ok_or("a decimal scale out of range")?;
    if to > from {
        unscaled
            .checked_mul(factor)
            .ok_or_else(|| "a decimal out of range".into())
    } else if unscaled % factor == 0 {
        Ok(unscaled / factor)
    } else {
        Err(format!("a decimal of scale {from} does not fit scale {to}"))
    }
}

/// The `.proto` text ksqlDB registers for `fields` (see the module's docs).
pub fn schema_text(fields: &[Field], nullable: Nullable) -> String {
    let mut imports = std::collections::BTreeSet::new();
    let mut body = String::new();
    let mut counter = 1;
    message_text(
        &mut body,
        &mut imports,
        &mut counter,
        "",
        &fields.iter().cloned().collect(),
        nullable,
    );
    let mut out = String::from("syntax = \"proto3\";\n\n");
    for i in &imports {
        out.push_str(&format!("import \"{i}\";\n"));
    }
    if !imports.is_empty() {
        out.push('\n');
    }
    out.push_str(&body);
    out
}

fn message_text(
    out: &mut String,
    imports: &mut std::collections::BTreeSet<&'static str>,
    counter: &mut usize,
    indent: &str,
    fields: &Fields,
    nullable: Nullable,
) {
    let name = format!("ConnectDefault{counter}");
    *counter += 1;
    out.push_str(&format!("{indent}message {name} {{\n"));
    let inner = format!("{indent}  ");
    let mut nested = String::new();
    for (i, f) in fields.iter().enumerate() {
        let (label, ty) = match f.data_type() {
            DataType::List(item) => (
                "repeated ",
                type_name(
                    item.data_type(),
                    imports,
                    counter,
                    &inner,
                    &mut nested,
                    Nullable::Default,
                ),
            ),
            DataType::Map(entries, _) => {
                let DataType::Struct(kv) = entries.data_type() else {
                    continue;
                };
                let entry = format!("ConnectDefault{}Entry", *counter);
                *counter += 1;
                // Confluent's schemas set each nested message off with a blank line.
                nested.push_str(&format!("\n{inner}message {entry} {{\n"));
                let deeper = format!("{inner}  ");
                let mut more = String::new();
                for (n, f) in [(1, &kv[0]), (2, &kv[1])] {
                    let t = type_name(
                        f.data_type(),
                        imports,
                        counter,
                        &deeper,
                        &mut more,
                        Nullable::Default,
                    );
                    nested.push_str(&format!("{deeper}{t} {} = {n};\n", f.name()));
                }
                nested.push_str(&more);
                nested.push_str(&format!("{inner}}}\n"));
                ("repeated ", entry)
            }
            t => {
                let label = if nullable == Nullable::Optional && !is_message(t) {
                    "optional "
                } else {
                    ""
                };
                (
                    label,
                    type_name(t, imports, counter, &inner, &mut nested, nullable),
                )
            }
        };
        out.push_str(&format!("{inner}{label}{ty} {} = {};\n", f.name(), i + 1));
    }
    out.push_str(&nested);
    out.push_str(&format!("{indent}}}\n"));
}

fn type_name(
    t: &DataType,
    imports: &mut std::collections::BTreeSet<&'static str>,
    counter: &mut usize,
    indent: &str,
    nested: &mut String,
    nullable: Nullable,
) -> String {
    let wrapper = |imports: &mut std::collections::BTreeSet<&'static str>, w: &str, plain: &str| {
        if nullable == Nullable::Wrapper {
            imports.insert("google/protobuf/wrappers.proto");
            format!("google.protobuf.{w}")
        } else {
            plain.to_string()
        }
    };
    match t {
        DataType::Boolean => wrapper(imports, "BoolValue", "bool"),
        DataType::Int32 => wrapper(imports, "Int32Value", "int32"),
        DataType::Int64 => wrapper(imports, "Int64Value", "int64"),
        DataType::Float64 => wrapper(imports, "DoubleValue", "double"),
        DataType::Utf8 => wrapper(imports, "StringValue", "string"),
        DataType::Binary => wrapper(imports, "BytesValue", "bytes"),
        DataType::Decimal128(..) => {
            imports.insert("confluent/type/decimal.proto");
            "confluent.type.Decimal".into()
        }
        DataType::Timestamp(..) => {
            imports.insert("google/protobuf/timestamp.proto");
            "google.protobuf.Timestamp".into()
        }
        DataType::Date32 => {
            imports.insert("google/type/date.proto");
            "google.type.Date".into()
        }
        DataType::Time32(_) => {
            imports.insert("google/type/TimeOfDay.proto");
            "google.type.TimeOfDay".into()
        }
        DataType::Struct(fields) => {
            let name = format!("ConnectDefault{}", *counter);
            nested.push('\n');
            message_text(nested, imports, counter, indent, fields, nullable);
            name
        }
        other => format!("/* {other} */ bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use proptest::prelude::*;

    fn codec(nullable: Nullable) -> Codec {
        let fields = vec![
            Field::new("I", DataType::Int32, true),
            Field::new("L", DataType::Int64, true),
            Field::new("S", DataType::Utf8, true),
            Field::new("T", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("D", DataType::Date32, true),
            Field::new(
                "A",
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                true,
            ),
        ];
        Codec::new(Format::ProtobufNoSr { nullable }, fields, true).unwrap()
    }

    fn row(
        i: Option<i32>,
        l: Option<i64>,
        s: Option<&str>,
        t: Option<i64>,
        d: Option<i32>,
        a: &[i32],
    ) -> Vec<ScalarValue> {
        let items: Vec<ScalarValue> = a.iter().map(|x| ScalarValue::Int32(Some(*x))).collect();
        vec![
            ScalarValue::Int32(i),
            ScalarValue::Int64(l),
            ScalarValue::Utf8(s.map(str::to_string)),
            ScalarValue::TimestampMillisecond(t, None),
            ScalarValue::Date32(d),
            ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Int32)),
        ]
    }

    #[test]
    fn writes_protobufs_wire_format() {
        let c = Codec::new(
            Format::ProtobufNoSr {
                nullable: Nullable::Default,
            },
            vec![
                Field::new("I", DataType::Int32, true),
                Field::new("S", DataType::Utf8, true),
            ],
            true,
        )
        .unwrap();
        let b = c
            .encode(&[
                ScalarValue::Int32(Some(150)),
                ScalarValue::Utf8(Some("hi".into())),
            ])
            .unwrap()
            .unwrap();
        assert_eq!(&b[..], &[0x08, 0x96, 0x01, 0x12, 2, b'h', b'i']);
    }

    #[test]
    fn nulls_follow_the_nullable_representation() {
        let nulls = row(None, None, None, None, None, &[]);
        let c = codec(Nullable::Default);
        let b = c.encode(&nulls).unwrap().unwrap();
        assert_eq!(
            c.decode(Some(&b)).unwrap(),
            row(Some(0), Some(0), Some(""), None, None, &[]),
            "proto3 scalars read back as their zero; messages as NULL"
        );
        for n in [Nullable::Optional, Nullable::Wrapper] {
            let c = codec(n);
            let b = c.encode(&nulls).unwrap().unwrap();
            assert_eq!(c.decode(Some(&b)).unwrap(), nulls, "{n:?}");
            let zeros = row(Some(0), Some(0), Some(""), Some(0), Some(0), &[0]);
            let b = c.encode(&zeros).unwrap().unwrap();
            assert_eq!(c.decode(Some(&b)).unwrap(), zeros, "{n:?}");
        }
    }

    #[test]
    fn the_schema_is_ksqldbs() {
        let fields = vec![
            Field::new("I", DataType::Int32, true),
            Field::new("S", DataType::Utf8, true),
        ];
        assert_eq!(
            schema_text(&fields, Nullable::Default),
            "syntax = \"proto3\";\n\nmessage ConnectDefault1 {\n  int32 I = 1;\n  string S = 2;\n}\n"
        );
    }

    #[test]
    fn bad_bytes_give_reasons() {
        let c = codec(Nullable::Default);
        assert!(c
            .decode(Some(&[0x12, 5, b'a']))
            .unwrap_err()
            .contains("truncated"));
        assert!(c.decode(Some(&[0x0f])).unwrap_err().contains("wire type 7"));
    }

    proptest! {
        #[test]
        fn rows_round_trip(
            i in any::<i32>(), l in any::<i64>(), s in ".{0,8}",
            t in -1_000_000_000_000i64..1_000_000_000_000_000,
            d in -100_000i32..100_000,
            a in proptest::collection::vec(any::<i32>(), 0..4),
            n in prop_oneof![Just(Nullable::Default), Just(Nullable::Optional), Just(Nullable::Wrapper)],
        ) {
            let c = codec(n);
            let r = row(Some(i), Some(l), Some(&s), Some(t), Some(d), &a);
            let b = c.encode(&r).unwrap().unwrap();
            prop_assert_eq!(c.decode(Some(&b)).unwrap(), r);
        }
    }
}

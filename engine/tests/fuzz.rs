//! Fuzz target of every format's decoder (see `eddy-fuzz`): whatever bytes a record holds,
//! decoding gives values or an error (which sends the record to the processing log), never a
//! panic. An input's first byte picks the codec, the rest is the record.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use eddy_engine::format::{Format, Nullable};
use eddy_engine::Codec;

/// Columns of every SQL type, nested ones included.
fn fields() -> Vec<Field> {
    let map = DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Int32, true),
            ])),
            false,
        )),
        false,
    );
    let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let record = DataType::Struct(Fields::from(vec![
        Field::new("A", DataType::Int64, true),
        Field::new("B", list.clone(), true),
    ]));
    [
        ("B", DataType::Boolean),
        ("I", DataType::Int32),
        ("L", DataType::Int64),
        ("D", DataType::Float64),
        ("DEC", DataType::Decimal128(6, 2)),
        ("S", DataType::Utf8),
        ("BY", DataType::Binary),
        ("TS", DataType::Timestamp(TimeUnit::Millisecond, None)),
        ("DT", DataType::Date32),
        ("TM", DataType::Time32(TimeUnit::Millisecond)),
        ("ARR", list),
        ("M", map),
        ("ST", record),
    ]
    .into_iter()
    .map(|(n, t)| Field::new(n, t, true))
    .collect()
}

/// A codec per format over all the columns, and a KAFKA codec per single type.
fn codecs() -> Vec<Codec> {
    let all = fields();
    let mut out = Vec::new();
    for format in [
        Format::Json,
        Format::Delimited { delimiter: ',' },
        Format::Avro,
        Format::Protobuf {
            nullable: Nullable::Default,
        },
        Format::ProtobufNoSr {
            nullable: Nullable::Default,
        },
        Format::JsonSr,
        Format::Rows,
    ] {
        if let Ok(c) = Codec::new(format.clone(), all.clone(), true) {
            out.push(c);
        }
        // A single column, unwrapped, as a value may be.
        if let Ok(c) = Codec::new(format, vec![all[5].clone()], false) {
            out.push(c);
        }
    }
    for f in &all {
        if let Ok(c) = Codec::new(Format::Kafka, vec![f.clone()], false) {
            out.push(c);
        }
    }
    out
}

#[test]
fn fuzz_format_decoders() {
    let codecs = codecs();
    assert!(codecs.len() > 10, "{} codecs", codecs.len());
    // Seeds: one row written by each codec, decoded from JSON first.
    let json = &codecs[0];
    let row = br#"{"B":true,"I":-7,"L":1234567890123,"D":2.5,"DEC":12.34,"S":"text, \"quoted\"","BY":"AQID","TS":1700000000000,"DT":19000,"TM":3600000,"ARR":["a",null,"c"],"M":{"k":1,"n":null},"ST":{"A":5,"B":["x"]}}"#;
    let values = json.decode(Some(row)).expect("the seed row decodes");
    let mut seeds = Vec::new();
    for (i, codec) in codecs.iter().enumerate() {
        let mine: Vec<_> = match codec.fields.len() {
            1 => {
                let at = fields().iter().position(|f| f == &codec.fields[0]).unwrap();
                vec![values[at].clone()]
            }
            _ => values.clone(),
        };
        if let Ok(Some(bytes)) = codec.encode(&mine) {
            seeds.push([&[i as u8][..], &bytes].concat());
        }
    }
    assert!(seeds.len() > 10, "{} seeds", seeds.len());
    eddy_fuzz::run("formats", seeds, |input| {
        let Some((&pick, record)) = input.split_first() else {
            return;
        };
        let codec = &codecs[pick as usize % codecs.len()];
        if let Ok(values) = codec.decode(Some(record)) {
            assert_eq!(values.len(), codec.fields.len());
        }
        let _ = codec.decode_columns([Some(record), None].into_iter());
    });
}

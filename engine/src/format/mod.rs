//! Record formats: how a record's key or value bytes hold a list of columns.
//!
//! A [`Codec`] is a format bound to the columns it carries (the key columns or the value
//! columns of a source). Decoding turns bytes into one [`ScalarValue`] per column, or a reason
//! the bytes are bad, which the caller sends to the processing log; encoding is the reverse.
//! Formats follow ksqlDB's serialization exactly, since other programs read what Eddy writes.
//!
//! - [`json`]: an object of columns (or, for a single unwrapped column, the bare value);
//! - [`delimited`]: one line of delimited text (CSV quoting);
//! - [`kafka`]: one primitive in Kafka's serializers' binary form (big-endian numbers, UTF-8);
//! - [`avro`]: an Avro datum in Confluent's schema-registry frame;
//! - [`protobuf`]: a proto3 message, framed (PROTOBUF) or bare (PROTOBUF_NOSR);
//! - `JSON_SR`: JSON in Confluent's schema-registry frame;
//! - `NONE`: no columns, bytes ignored.
//!
//! The schema-registry formats write the schema ksqlDB derives from the columns, under the
//! schema id the codec is given ([`Codec::with_schema_id`]).

pub mod avro;
pub mod delimited;
pub mod json;
pub mod json_batch;
pub mod kafka;
pub mod protobuf;
pub mod rows;
mod wire;

pub use protobuf::Nullable;

use bytes::Bytes;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;

use crate::error::EngineError;

/// The records written one after another into `buffer`, the `ends` of each, as records
/// that share it (one allocation for a batch, not one per record).
fn split_rows(buffer: Vec<u8>, ends: Vec<usize>) -> Vec<Bytes> {
    let all = Bytes::from(buffer);
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let row = all.slice(start..end);
            start = end;
            row
        })
        .collect()
}

/// A serialization format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Delimited {
        delimiter: char,
    },
    Kafka,
    None,
    Avro,
    /// Confluent's protobuf, framed with a schema id.
    Protobuf {
        nullable: Nullable,
    },
    /// Plain protobuf, no registry.
    ProtobufNoSr {
        nullable: Nullable,
    },
    /// JSON in Confluent's frame.
    JsonSr,
    /// Eddy's own encoding of whole rows (`crate::state_codec`), for internal topics such as
    /// repartition topics: any column type, read back exactly. Not a `*_FORMAT` users pick.
    Rows,
}

impl Format {
    /// Parses a `*_FORMAT` property value. `None` for formats Eddy does not implement yet.
    pub fn parse(name: &str, delimiter: Option<char>) -> Option<Format> {
        Some(match name.to_ascii_uppercase().as_str() {
            "JSON" => Format::Json,
            "DELIMITED" => Format::Delimited {
                delimiter: delimiter.unwrap_or(','),
            },
            "KAFKA" => Format::Kafka,
            "NONE" => Format::None,
            "AVRO" => Format::Avro,
            "PROTOBUF" => Format::Protobuf {
                nullable: Nullable::Default,
            },
            "PROTOBUF_NOSR" => Format::ProtobufNoSr {
                nullable: Nullable::Default,
            },
            "JSON_SR" => Format::JsonSr,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Delimited { .. } => "DELIMITED",
            Format::Kafka => "KAFKA",
            Format::None => "NONE",
            Format::Avro => "AVRO",
            Format::Protobuf { .. } => "PROTOBUF",
            Format::ProtobufNoSr { .. } => "PROTOBUF_NOSR",
            Format::JsonSr => "JSON_SR",
            Format::Rows => "ROWS",
        }
    }

    /// Whether records carry Confluent's frame with a schema id from a registry.
    pub fn uses_registry(&self) -> bool {
        matches!(
            self,
            Format::Avro | Format::Protobuf { .. } | Format::JsonSr
        )
    }
}

/// A format bound to the columns it carries.
#[derive(Clone, Debug)]
pub struct Codec {
    pub format: Format,
    pub fields: Vec<Field>,
    /// JSON with a single column: whether the value is wrapped in an object (ksqlDB's
    /// `WRAP_SINGLE_VALUE`, default true for values). Keys are never wrapped.
    pub wrap_single: bool,
    /// The schema id a schema-registry format frames its records with.
    pub schema_id: u32,
}

impl Codec {
    /// Binds `format` to `fields`, or says why the format cannot hold them.
    pub fn new(
        format: Format,
        fields: Vec<Field>,
        wrap_single: bool,
    ) -> Result<Codec, EngineError> {
        Self::check(&format, &fields).map_err(EngineError::Plan)?;
        Ok(Codec {
            format,
            fields,
            wrap_single,
            schema_id: 0,
        })
    }

    /// The codec framing what it writes with `schema_id` (the schema-registry formats).
    pub fn with_schema_id(mut self, schema_id: u32) -> Codec {
        self.schema_id = schema_id;
        self
    }

    fn check(format: &Format, fields: &[Field]) -> Result<(), String> {
        match format {
            Format::Kafka if fields.len() > 1 => {
                return Err(format!(
                    "the KAFKA format supports only one column, found {}",
                    fields.len()
                ));
            }
            Format::Kafka => {
                if let Some(f) = fields.first() {
                    kafka::check_type(f.data_type())?;
                }
            }
            Format::Avro => {
                for f in fields {
                    avro::check_name(f)?;
                }
            }
            Format::None if !fields.is_empty() => {
                return Err("the NONE format cannot hold columns".into());
            }
            Format::Delimited { .. } => {
                for f in fields {
                    if matches!(
                        f.data_type(),
                        DataType::List(_) | DataType::Map(_, _) | DataType::Struct(_)
                    ) {
                        return Err(format!(
                            "The 'DELIMITED' format does not support type '{}', column: `{}`",
                            crate::schema::sql_type_name(f.data_type())
                                .split('<')
                                .next()
                                .unwrap_or_default(),
                            f.name()
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// One value per field. Null bytes decode to all nulls.
    pub fn decode(&self, bytes: Option<&[u8]>) -> Result<Vec<ScalarValue>, String> {
        let Some(bytes) = bytes else {
            return self
                .fields
                .iter()
                .map(|f| ScalarValue::try_from(f.data_type()).map_err(|e| e.to_string()))
                .collect();
        };
        match &self.format {
            Format::Json => json::decode(self, bytes),
            Format::Delimited { delimiter } => delimited::decode(&self.fields, *delimiter, bytes),
            Format::Kafka => match self.fields.first() {
                Some(f) => Ok(vec![kafka::decode(f.data_type(), bytes)?]),
                None => Ok(Vec::new()),
            },
            Format::None => Ok(Vec::new()),
            Format::Avro => avro::decode(self, bytes),
            Format::Protobuf { nullable } => protobuf::decode(self, bytes, true, *nullable),
            Format::ProtobufNoSr { nullable } => protobuf::decode(self, bytes, false, *nullable),
            Format::JsonSr => {
                let (_id, body) = wire::read_frame(bytes).map_err(|e| {
                    format!("{e} (JSON_SR values start with the magic byte 0 and a schema id)")
                })?;
                json::decode(self, body)
            }
            Format::Rows => {
                let types: Vec<DataType> =
                    self.fields.iter().map(|f| f.data_type().clone()).collect();
                crate::state_codec::decode_row(&types, bytes)
            }
        }
    }

    /// The columns of many records' bytes at once where the format reads them without
    /// going through values one by one (a KAFKA STRING: the common key; ROWS); `None` otherwise, or
    /// if one does not decode, for [`Codec::decode`] to read and report.
    pub fn decode_columns<'a>(
        &self,
        bytes: impl ExactSizeIterator<Item = Option<&'a [u8]>>,
    ) -> Option<Vec<ArrayRef>> {
        match (&self.format, self.fields.as_slice()) {
            (Format::Kafka, [f]) if *f.data_type() == DataType::Utf8 => {
                Some(vec![kafka::decode_strings(bytes)?])
            }
            (Format::Rows, _) => rows::decode_batch(&self.fields, bytes),
            _ => None,
        }
    }

    /// Each row's bytes of `columns` (the fields, in order) at once where the format writes
    /// them without going through values one by one (a KAFKA STRING; ROWS); `None` otherwise, for
    /// [`Codec::encode`] to write row by row. A null is `None`, as `encode` writes it.
    pub fn encode_columns(&self, columns: &[&ArrayRef]) -> Option<Vec<Option<Bytes>>> {
        match (&self.format, self.fields.as_slice(), columns) {
            (Format::Kafka, [f], [c]) if *f.data_type() == DataType::Utf8 => {
                kafka::encode_strings(c)
            }
            (Format::Rows, _, _) => Some(
                rows::encode_batch(self, columns)?
                    .into_iter()
                    .map(Some)
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The bytes for one row's values (in field order). `None` when there is nothing to
    /// write: no columns, or a KAFKA null.
    pub fn encode(&self, values: &[ScalarValue]) -> Result<Option<Bytes>, String> {
        if self.fields.is_empty() {
            return Ok(None);
        }
        match &self.format {
            Format::Json => json::encode(self, values).map(Some),
            Format::Delimited { delimiter } => delimited::encode(values, *delimiter).map(Some),
            Format::Kafka => kafka::encode(&values[0]),
            Format::None => Ok(None),
            Format::Avro => avro::encode(self, values).map(Some),
            Format::Protobuf { nullable } => {
                protobuf::encode(self, values, true, *nullable).map(Some)
            }
            Format::ProtobufNoSr { nullable } => {
                protobuf::encode(self, values, false, *nullable).map(Some)
            }
            Format::JsonSr => {
                let body = json::encode(self, values)?;
                let mut out = Vec::with_capacity(body.len() + wire::FRAME_LEN);
                wire::write_frame(&mut out, self.schema_id);
                out.extend_from_slice(&body);
                Ok(Some(bytes::Bytes::from(out)))
            }
            Format::Rows => crate::state_codec::encode_row(values).map(|b| Some(Bytes::from(b))),
        }
    }
}

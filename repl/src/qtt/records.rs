//! The suite's records and Eddy's, each way: an input record of a case made into a log record
//! (its key and value serialized in the source's formats, or taken as raw bytes), and an output
//! record shown as the suite writes it (JSON parsed, KAFKA primitives as numbers, a windowed
//! key's window split off).

use base64::Engine as _;
use bytes::Bytes;
use eddy_engine::{scalar_from_json, write_scalar_json, Format};
use eddy_log::{Header, Log, Record};
use eddy_sql::catalog::SourceDef;
use eddy_sql::with_clause::codecs;
use eddy_sql::Session;
use serde_json::Value;

pub(super) fn raw_bytes(v: &Value) -> Option<Bytes> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Bytes::from(s.clone())),
        other => Some(Bytes::from(other.to_string())),
    }
}

/// Appends the case's input `i` to partition 0 of its topic, encoded as its topic's source
/// reads it.
pub(super) fn append_input(
    session: &Session,
    log: &Log,
    i: usize,
    input: &Value,
) -> Result<(), String> {
    let record = input_record(session, input).map_err(|e| format!("input {}: {e}", i + 1))?;
    let topic = input
        .get("topic")
        .and_then(Value::as_str)
        .unwrap_or_default();
    log.partition(topic, 0)
        .and_then(|p| p.append(&[record]))
        .map_err(|e| e.to_string())?;
    Ok(())
}

pub(super) fn input_record(session: &Session, input: &Value) -> Result<Record, String> {
    let topic = input
        .get("topic")
        .and_then(Value::as_str)
        .ok_or("no topic")?;
    let key = input.get("key").unwrap_or(&Value::Null);
    let value = input.get("value").unwrap_or(&Value::Null);
    let (key_bytes, value_bytes) = match source_on(session, topic) {
        None => (raw_bytes(key), raw_bytes(value)),
        Some(def) => {
            let (key_codec, value_codec) = codecs(def).map_err(|e| e.to_string())?;
            // The suite writes keys and values as the format shows them: JSON as JSON, DELIMITED
            // as its text; KAFKA primitives are typed by the column.
            let key_bytes = match (&def.key_format, key) {
                (_, Value::Null) => None,
                (_, k) if def.key_columns.is_empty() => raw_bytes(k),
                (Format::Json, k) => Some(Bytes::from(k.to_string())),
                (Format::Kafka, k) => {
                    key_codec.encode(&[scalar_from_json(k, &def.key_columns[0].ty.to_arrow())?])?
                }
                (f, k) if is_binary(f) => through_json(&key_codec, k)?,
                (_, k) => raw_bytes(k),
            };
            let value_bytes = match (&def.value_format, value) {
                (_, Value::Null) => None,
                (Format::Json, v) => Some(Bytes::from(v.to_string())),
                (Format::Delimited { .. }, v) => raw_bytes(v),
                (Format::Kafka, v) => value_codec
                    .encode(&[scalar_from_json(v, &def.value_columns[0].ty.to_arrow())?])?,
                // A source's format is never an internal one.
                (Format::None | Format::Rows, _) => None,
                (_, v) => through_json(&value_codec, v)?,
            };
            (key_bytes, value_bytes)
        }
    };
    // A windowed key: the key's bytes, then (for a session) the end, then the start.
    let key_bytes = match (input.get("window"), key_bytes) {
        (Some(w), Some(k)) => {
            let bound = |name: &str| w.get(name).and_then(Value::as_i64).unwrap_or(0);
            let mut bytes = k.to_vec();
            if w.get("type").and_then(Value::as_str) == Some("session") {
                bytes.extend_from_slice(&bound("end").to_be_bytes());
            }
            bytes.extend_from_slice(&bound("start").to_be_bytes());
            Some(Bytes::from(bytes))
        }
        (_, key) => key,
    };
    let headers = match input.get("headers").and_then(Value::as_array) {
        None => Vec::new(),
        Some(hs) => hs
            .iter()
            .map(|h| {
                let name = h
                    .get("KEY")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let value = match h.get("VALUE").and_then(Value::as_str) {
                    Some(b64) => Some(Bytes::from(
                        base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map_err(|e| e.to_string())?,
                    )),
                    None => None,
                };
                Ok(Header { name, value })
            })
            .collect::<Result<_, String>>()?,
    };
    Ok(Record {
        key: key_bytes,
        value: value_bytes,
        timestamp: input.get("timestamp").and_then(Value::as_i64).unwrap_or(0),
        headers,
    })
}

/// The schema-registry and protobuf formats, which the suite writes as JSON for the runner to
/// serialize, as ksqlDB's runner serializes them with the subject's schema.
fn is_binary(format: &Format) -> bool {
    matches!(
        format,
        Format::Avro | Format::Protobuf { .. } | Format::ProtobufNoSr { .. } | Format::JsonSr
    )
}

/// Whether the suite shows a single column inside its record: a protobuf record is always a
/// message (protobuf has no bare scalars), even a key's.
fn wrapped(codec: &eddy_engine::Codec) -> bool {
    codec.wrap_single
        || matches!(
            codec.format,
            Format::Protobuf { .. } | Format::ProtobufNoSr { .. }
        )
}

/// The suite's JSON read as the codec's columns (ksqlDB's coercions, fields matched
/// case-insensitively), then written in the codec's format.
fn through_json(codec: &eddy_engine::Codec, v: &Value) -> Result<Option<Bytes>, String> {
    let json = eddy_engine::Codec::new(Format::Json, codec.fields.clone(), wrapped(codec))
        .map_err(|e| e.to_string())?;
    let values = json.decode(Some(v.to_string().as_bytes()))?;
    codec.encode(&values)
}

/// Bytes as the suite shows them: JSON parsed, text as a string, KAFKA primitives as numbers.
pub(super) fn as_json(
    bytes: Option<&[u8]>,
    format: &Format,
    codec: &eddy_engine::Codec,
) -> Result<Value, String> {
    let Some(b) = bytes else {
        return Ok(Value::Null);
    };
    match format {
        Format::Json => serde_json::from_slice(b).map_err(|e| format!("output is not JSON: {e}")),
        Format::Delimited { .. } => Ok(Value::String(String::from_utf8_lossy(b).into_owned())),
        Format::None => Ok(Value::Null),
        // Internal topics only; a case never names one as an output.
        Format::Rows => Ok(Value::String(String::from_utf8_lossy(b).into_owned())),
        Format::Avro | Format::Protobuf { .. } | Format::ProtobufNoSr { .. } | Format::JsonSr => {
            let values = codec.decode(Some(b))?;
            let text = |v: &datafusion::common::ScalarValue| -> Result<Value, String> {
                let mut text = String::new();
                write_scalar_json(&mut text, v)?;
                serde_json::from_str(&text).map_err(|e| e.to_string())
            };
            if codec.fields.len() == 1 && !wrapped(codec) {
                return text(&values[0]);
            }
            let mut object = serde_json::Map::new();
            for (f, v) in codec.fields.iter().zip(&values) {
                object.insert(f.name().clone(), text(v)?);
            }
            Ok(Value::Object(object))
        }
        Format::Kafka => {
            let values = codec.decode(Some(b))?;
            if values.len() != 1 {
                return Ok(Value::String(String::from_utf8_lossy(b).into_owned()));
            }
            let mut text = String::new();
            write_scalar_json(&mut text, &values[0])?;
            serde_json::from_str(&text).map_err(|e| e.to_string())
        }
    }
}

/// A windowed source's key without its window, and the window as the suite writes it.
pub(super) fn split_window<'k>(
    def: Option<&SourceDef>,
    key: Option<&'k [u8]>,
) -> (Option<&'k [u8]>, Option<Value>) {
    let (Some(w), Some(k)) = (def.and_then(|d| d.window), key) else {
        return (key, None);
    };
    let be = |b: &[u8]| i64::from_be_bytes(b.try_into().expect("8 bytes"));
    match w.size_ms {
        Some(size) if k.len() >= 8 => {
            let start = be(&k[k.len() - 8..]);
            let window =
                serde_json::json!({"start": start, "end": start + size as i64, "type": "time"});
            (Some(&k[..k.len() - 8]), Some(window))
        }
        None if k.len() >= 16 => {
            let end = be(&k[k.len() - 16..k.len() - 8]);
            let start = be(&k[k.len() - 8..]);
            let window = serde_json::json!({"start": start, "end": end, "type": "session"});
            (Some(&k[..k.len() - 16]), Some(window))
        }
        _ => (key, None),
    }
}

pub(super) fn show(def: Option<&SourceDef>, key: Option<&[u8]>, value: Option<&[u8]>) -> String {
    let text = |b: Option<&[u8]>| {
        b.map_or("null".to_string(), |b| {
            String::from_utf8_lossy(b).into_owned()
        })
    };
    match def {
        Some(d) if d.key_format == Format::Kafka && !d.key_columns.is_empty() => {
            let k = codecs(d)
                .ok()
                .and_then(|(kc, _)| as_json(key, &d.key_format, &kc).ok())
                .map_or_else(|| text(key), |v| v.to_string());
            format!("{k} -> {}", text(value))
        }
        _ => format!("{} -> {}", text(key), text(value)),
    }
}

/// The source declared on `topic`, preferring one created from a topic over a query's sink.
pub(super) fn source_on<'s>(session: &'s Session, topic: &str) -> Option<&'s SourceDef> {
    let mut on_topic = session
        .catalog
        .sources
        .values()
        .filter(|s| s.topic == topic);
    let all: Vec<&SourceDef> = on_topic.by_ref().collect();
    all.iter()
        .find(|s| !s.sql.to_ascii_uppercase().contains(" AS SELECT"))
        .or(all.first())
        .copied()
}

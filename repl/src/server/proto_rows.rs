//! Pull query results as protobuf (`Accept: application/vnd.ksql.v1+protobuf`), as ksqlDB
//! serves them: the header also carries `protoSchema`, the proto3 message of a row (the PROTOBUF
//! format's `ConnectDefault1`, a field per column in order), and each row is that message's
//! bytes, base64 in `protobufBytes`. Clients that cannot take JSON numbers exactly (64-bit
//! integers, decimals) read rows this way.

use axum::http::{header, HeaderMap};
use base64::Engine;
use datafusion::arrow::datatypes::Field;
use datafusion::common::ScalarValue;
use eddy_engine::format::protobuf::schema_text;
use eddy_engine::format::Nullable;
use eddy_engine::{Codec, Format};
use eddy_sql::{result_schema_text, ResultColumn};
use serde_json::json;

/// The media type a client asks for protobuf rows with.
pub(super) const MEDIA_TYPE: &str = "application/vnd.ksql.v1+protobuf";

/// Whether the request asks for protobuf rows.
pub(super) fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(MEDIA_TYPE))
}

/// The whole response: a JSON array of the header, the rows and the final message, if any.
pub(super) fn body(
    query_id: &str,
    schema: &[ResultColumn],
    rows: &[Vec<ScalarValue>],
    end: Option<&str>,
) -> Result<String, String> {
    let fields: Vec<Field> = schema
        .iter()
        .map(|c| Field::new(&c.name, c.ty.to_arrow(), true))
        .collect();
    let nullable = Nullable::Default;
    let codec = Codec::new(Format::ProtobufNoSr { nullable }, fields.clone(), false)
        .map_err(|e| e.to_string())?;
    let header = json!({"header": {
        "queryId": query_id,
        "schema": result_schema_text(schema),
        "protoSchema": schema_text(&fields, nullable),
    }});
    let mut out = format!("[{header}\n");
    for row in rows {
        let bytes = codec.encode(row)?.unwrap_or_default();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        out.push_str(&format!(
            ",{}\n",
            json!({"row": {"protobufBytes": encoded}})
        ));
    }
    if let Some(m) = end {
        out.push_str(&format!(",{}\n", json!({ "finalMessage": m })));
    }
    out.push_str("]\n");
    Ok(out)
}

//! The schema registry the schema-registry formats (AVRO, PROTOBUF, JSON_SR) frame their
//! records with: subjects (`<topic>-key`, `<topic>-value`, Confluent's TopicNameStrategy) hold
//! versions, each a schema with a global id; the same schema under any subject has the same id,
//! and ids are handed out 1, 2, ... in registration order, as Confluent's registry does.
//!
//! What a source registers is the schema ksqlDB derives from its columns: a `CREATE STREAM`
//! or `CREATE TABLE` with columns registers it only when the subject has none yet (a producer's
//! schema stays the latest), a `CREATE ... AS SELECT` always (a new version when it differs).
//!
//! Today the registry lives in the session: it is rebuilt, with the same ids, when the
//! command log replays the statements at start. Confluent's REST API over it and storage of
//! its own (schemas registered by producers) are still to come.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::{DataType, Field};
use eddy_engine::format::{avro, protobuf};
use eddy_engine::Format;
use serde_json::{json, Value};

/// A registered schema: its type (`AVRO`, `PROTOBUF`, `JSON`) and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct SchemaRegistry {
    /// Schemas by id - 1.
    schemas: Vec<Schema>,
    /// Each subject's versions, oldest first, as schema ids.
    subjects: BTreeMap<String, Vec<u32>>,
}

impl SchemaRegistry {
    /// Registers `schema` under `subject`: its id, the one it already has if registered
    /// anywhere, and a new version of the subject unless it is the latest already.
    pub fn register(&mut self, subject: &str, schema: Schema) -> u32 {
        let id = match self.schemas.iter().position(|s| *s == schema) {
            Some(i) => i as u32 + 1,
            None => {
                self.schemas.push(schema);
                self.schemas.len() as u32
            }
        };
        let versions = self.subjects.entry(subject.to_string()).or_default();
        if versions.last() != Some(&id) {
            versions.push(id);
        }
        id
    }

    /// The id of the subject's latest version.
    pub fn latest(&self, subject: &str) -> Option<u32> {
        self.subjects.get(subject).and_then(|v| v.last().copied())
    }

    pub fn schema(&self, id: u32) -> Option<&Schema> {
        self.schemas.get((id as usize).checked_sub(1)?)
    }
}

/// The schema ksqlDB registers for columns in `format`; `None` for formats without a registry.
/// `record_name` is the full name of Avro's root record.
pub fn derived_schema(
    format: &Format,
    fields: &[Field],
    wrap_single: bool,
    record_name: &str,
) -> Option<Schema> {
    Some(match format {
        Format::Avro => Schema {
            kind: "AVRO",
            text: avro::schema_json(fields, wrap_single, record_name).to_string(),
        },
        Format::Protobuf { nullable } => Schema {
            kind: "PROTOBUF",
            text: protobuf::schema_text(fields, *nullable),
        },
        Format::JsonSr => Schema {
            kind: "JSON",
            text: json_schema(fields).to_string(),
        },
        _ => return None,
    })
}

/// A JSON schema of an object of nullable columns, as Connect's `JsonSchemaData` writes one.
fn json_schema(fields: &[Field]) -> Value {
    let properties: serde_json::Map<String, Value> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                f.name().clone(),
                json!({"connect.index": i, "oneOf": [{"type": "null"}, json_type(f.data_type())]}),
            )
        })
        .collect();
    json!({"type": "object", "properties": properties})
}

fn json_type(t: &DataType) -> Value {
    match t {
        DataType::Boolean => json!({"type": "boolean"}),
        DataType::Int32 => json!({"type": "integer", "connect.type": "int32"}),
        DataType::Int64 => json!({"type": "integer", "connect.type": "int64"}),
        DataType::Float64 => json!({"type": "number", "connect.type": "float64"}),
        DataType::Utf8 => json!({"type": "string"}),
        DataType::Binary => json!({"type": "string", "connect.type": "bytes"}),
        DataType::List(item) => json!({"type": "array", "items": json_type(item.data_type())}),
        DataType::Map(..) => json!({"type": "object", "connect.type": "map"}),
        DataType::Struct(fields) => json_schema(
            &fields
                .iter()
                .map(|f| f.as_ref().clone())
                .collect::<Vec<_>>(),
        ),
        _ => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> Schema {
        Schema {
            kind: "AVRO",
            text: text.into(),
        }
    }

    #[test]
    fn ids_are_global_and_versions_per_subject() {
        let mut r = SchemaRegistry::default();
        assert_eq!(r.register("a-value", schema("1")), 1);
        assert_eq!(r.register("b-value", schema("2")), 2);
        assert_eq!(
            r.register("c-value", schema("1")),
            1,
            "the same schema, the same id"
        );
        assert_eq!(r.register("a-value", schema("1")), 1, "no new version");
        assert_eq!(r.register("a-value", schema("2")), 2);
        assert_eq!(r.latest("a-value"), Some(2));
        assert_eq!(r.subjects["a-value"], vec![1, 2]);
        assert_eq!(r.schema(2).unwrap().text, "2");
        assert_eq!(r.schema(0), None);
    }
}

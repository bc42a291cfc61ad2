//! Reading QTT files and expanding their tests into cases.
//!
//! A test with `format: [A, B]` runs once per format, `{FORMAT}` replaced in its statements;
//! one with `config: [x, y]` runs once per value, replacing the single property set to
//! `"{CONFIG}"`. The case name is `<file stem> - <test name>[ - <format>][ - <prop>=<value>]`.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

/// One runnable case.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub statements: Vec<String>,
    pub properties: Map<String, Value>,
    pub inputs: Vec<Value>,
    pub outputs: Vec<Value>,
    pub topics: Vec<Value>,
    pub expected_exception: Option<Value>,
    pub post: Option<Value>,
    /// Why the case is skipped before it runs, if it is.
    pub skip: Option<String>,
    /// A REST case (it has `responses` or `expectedError`): run through the HTTP server.
    pub rest: Option<Rest>,
}

/// What a REST case checks besides outputs.
#[derive(Clone, Debug)]
pub struct Rest {
    /// One per statement: `{"admin": {...}}` or `{"query": [...]}`.
    pub responses: Vec<Value>,
    /// `{type, message, status}` of the request that must fail.
    pub expected_error: Option<Value>,
    /// Rows compare in order (otherwise as a multiset).
    pub verify_order: bool,
    /// Inputs are produced only once a push query runs (it reads from the end).
    pub wait_for_push_query: bool,
    /// Each query is asked again for protobuf rows (`testPullWithProtoFormat`), answered by
    /// `queryProto` responses after the others.
    pub proto_pull: bool,
}

/// Strips `//` comments outside strings: QTT files are lenient JSON.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for n in chars.by_ref() {
                if n == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn load(path: &Path) -> Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value = serde_json::from_str(&strip_comments(&text))
        .with_context(|| format!("parsing {}", path.display()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cases = Vec::new();
    for test in doc
        .get("tests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        cases.extend(expand(&stem, test));
    }
    Ok(cases)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| s.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn expand(stem: &str, test: &Value) -> Vec<Case> {
    let name = test
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("unnamed");
    let formats = strings(test.get("format"));
    let configs = strings(test.get("config"));
    let props = test
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let format_variants: Vec<Option<String>> = if formats.is_empty() {
        vec![None]
    } else {
        formats.into_iter().map(Some).collect()
    };
    let config_variants: Vec<Option<String>> = if configs.is_empty() {
        vec![None]
    } else {
        configs.into_iter().map(Some).collect()
    };
    let mut out = Vec::new();
    for format in &format_variants {
        for config in &config_variants {
            let mut case_name = format!("{stem} - {name}");
            if let Some(f) = format {
                case_name.push_str(&format!(" - {f}"));
            }
            let mut properties = props.clone();
            if let Some(c) = config {
                for (k, v) in properties.iter_mut() {
                    if v.as_str() == Some("{CONFIG}") {
                        *v = Value::String(c.clone());
                        case_name.push_str(&format!(" - {k}={c}"));
                    }
                }
            }
            let statements: Vec<String> = strings(test.get("statements"))
                .into_iter()
                .map(|s| match format {
                    Some(f) => s.replace("{FORMAT}", f),
                    None => s,
                })
                .collect();
            let inputs = test
                .get("inputs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let outputs = test
                .get("outputs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let topics = test
                .get("topics")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let skip = skip_reason(test, &inputs, &outputs, &topics);
            let rest = (test.get("responses").is_some() || test.get("expectedError").is_some())
                .then(|| Rest {
                    responses: test
                        .get("responses")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    expected_error: test.get("expectedError").cloned(),
                    verify_order: test
                        .pointer("/outputConditions/verifyOrder")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    wait_for_push_query: test
                        .pointer("/inputConditions/waitForActivePushQuery")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    proto_pull: test
                        .get("testPullWithProtoFormat")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                });
            out.push(Case {
                name: case_name,
                statements,
                properties,
                inputs,
                outputs,
                topics,
                expected_exception: test.get("expectedException").cloned(),
                post: test.get("post").cloned(),
                skip,
                rest,
            });
        }
    }
    out
}

fn skip_reason(
    test: &Value,
    inputs: &[Value],
    outputs: &[Value],
    topics: &[Value],
) -> Option<String> {
    if test.get("enabled").and_then(Value::as_bool) == Some(false) {
        return Some("disabled in the suite".into());
    }
    let schema_fields = [
        "keySchema",
        "valueSchema",
        "schemaId",
        "keySchemaId",
        "valueSchemaId",
        "keySchemaReferences",
        "valueSchemaReferences",
    ];
    for r in inputs.iter().chain(outputs).chain(topics) {
        if schema_fields.iter().any(|f| r.get(f).is_some()) {
            return Some("needs a schema registry".into());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_comments_but_not_urls_in_strings() {
        let s = strip_comments("{\"a\": \"http://x\", // note\n \"b\": 1}");
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["a"], "http://x");
        assert_eq!(v["b"], 1);
    }

    #[test]
    fn expands_formats_and_configs() {
        let test = serde_json::json!({
            "name": "t", "format": ["JSON", "AVRO"], "config": ["a", "b"],
            "properties": {"p": "{CONFIG}"},
            "statements": ["CREATE STREAM S (X INT) WITH (kafka_topic='t', value_format='{FORMAT}');"]
        });
        let cases = expand("file", &test);
        let names: Vec<_> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "file - t - JSON - p=a",
                "file - t - JSON - p=b",
                "file - t - AVRO - p=a",
                "file - t - AVRO - p=b"
            ]
        );
        assert!(cases.iter().all(|c| c.skip.is_none()));
        assert!(cases[0].statements[0].contains("value_format='JSON'"));
        assert!(cases[2].statements[0].contains("value_format='AVRO'"));
    }
}

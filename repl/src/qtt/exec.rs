//! Running one case: a fresh embedded log, the statements, the inputs one by one, then the
//! outputs and the created sources checked.

use base64::Engine as _;
use eddy_log::{Log, LogOptions, ReadLimits, TopicConfig};
use eddy_sql::with_clause::codecs;
use eddy_sql::{parse_schema, parse_statements, Missing, Session, SqlError};
use serde_json::Value;

use super::case::Case;
use super::compare::diff;
use super::records::{append_input, as_json, show, source_on, split_window};

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

pub fn run(case: &Case) -> Verdict {
    if let Some(why) = &case.skip {
        return Verdict::Skip(why.clone());
    }
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return Verdict::Fail(format!("cannot make a scratch directory: {e}")),
    };
    let log = match scratch_log(dir.path()) {
        Ok(l) => l,
        Err(e) => return Verdict::Fail(e),
    };
    match run_in(case, &log) {
        Ok(v) => v,
        Err(e) => Verdict::Fail(e),
    }
}

pub(super) fn skip_for(e: &SqlError) -> Option<String> {
    match e {
        SqlError::Unsupported {
            kind: Missing::Format | Missing::Function,
            what,
        } => Some(format!("needs {what}")),
        _ => None,
    }
}

/// Creates the topics a case needs before its statements run: those its inputs name, those
/// listed under `topics`, and those of the sources its statements declare, as ksqlDB's test
/// framework does.
pub(super) fn create_topics(case: &Case, log: &Log) -> Result<(), String> {
    for t in &case.topics {
        if let Some(name) = t.get("name").and_then(Value::as_str) {
            let partitions = t.get("partitions").and_then(Value::as_u64).unwrap_or(1) as u32;
            if log.topic(name).is_err() {
                log.create_topic(name, TopicConfig::with_partitions(partitions))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    for r in &case.inputs {
        if let Some(name) = r.get("topic").and_then(Value::as_str) {
            if log.topic(name).is_err() {
                log.create_topic(name, TopicConfig::with_partitions(1))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    // ... and those of the sources the statements declare.
    for text in &case.statements {
        let Ok(stmts) = parse_statements(text) else {
            continue;
        };
        for (stmt, _) in stmts {
            if let eddy_sql::ast::Statement::CreateSource(c) = stmt {
                if let Some(topic) = c.properties.text("KAFKA_TOPIC") {
                    let partitions = c
                        .properties
                        .text("PARTITIONS")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(1);
                    if log.topic(&topic).is_err() && eddy_log::validate_topic_name(&topic).is_ok() {
                        log.create_topic(&topic, TopicConfig::with_partitions(partitions))
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The log a case runs on, in a scratch directory.
pub(super) fn scratch_log(dir: &std::path::Path) -> Result<Log, String> {
    let options = LogOptions {
        fsync: eddy_log::FsyncPolicy::Never,
        background: false,
        ..LogOptions::default()
    };
    Log::open(dir, options).map_err(|e| format!("cannot open a log: {e}"))
}

fn run_in(case: &Case, log: &Log) -> Result<Verdict, String> {
    create_topics(case, log)?;
    let mut session = Session::new(log.clone());
    session
        .properties
        .insert("auto.offset.reset".into(), "earliest".into());
    for (k, v) in &case.properties {
        session.properties.insert(
            k.clone(),
            v.as_str().map_or_else(|| v.to_string(), str::to_string),
        );
    }

    let expect_error = case.expected_exception.is_some();
    let count = case.statements.len();
    for (i, text) in case.statements.iter().enumerate() {
        let last = i + 1 == count;
        let result = parse_statements(text)
            .map_err(SqlError::from)
            .and_then(|stmts| {
                for (stmt, stmt_text) in &stmts {
                    session.execute(stmt, stmt_text)?;
                }
                Ok(())
            });
        if let Err(e) = result {
            if let Some(why) = skip_for(&e) {
                return Ok(Verdict::Skip(why));
            }
            return Ok(if expect_error && last {
                Verdict::Pass
            } else if expect_error {
                Verdict::Fail(format!("statement {} was rejected, but the suite expects only the last one to fail: {e}", i + 1))
            } else {
                Verdict::Fail(format!("statement {} failed: {e}", i + 1))
            });
        }
    }

    // A query that fails as it runs is the last statement failing, when the suite expects it.
    if let Err(e) = session.run_until_idle() {
        return Ok(if expect_error {
            Verdict::Pass
        } else {
            Verdict::Fail(format!("running the queries: {e}"))
        });
    }
    let mut marks = Vec::with_capacity(case.inputs.len());
    for (i, input) in case.inputs.iter().enumerate() {
        append_input(&session, log, i, input)?;
        if let Err(e) = session.run_until_idle() {
            return Ok(if expect_error {
                Verdict::Pass
            } else {
                Verdict::Fail(format!("processing input {}: {e}", i + 1))
            });
        }
        marks.push(ends(log));
    }
    if expect_error {
        return Ok(Verdict::Fail(format!(
            "expected the statements to be rejected ({}), but all were accepted",
            case.expected_exception
                .as_ref()
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("no message")
        )));
    }
    if let Some(d) = check_outputs(&session, log, &case.outputs, &marks)? {
        return Ok(Verdict::Fail(d));
    }
    if let Some(d) = check_post(&session, log, case.post.as_ref())? {
        return Ok(Verdict::Fail(d));
    }
    Ok(Verdict::Pass)
}

/// The end offset of every partition of every topic: taken after each input is processed, they
/// tell which input produced which output record.
pub(super) type Ends = std::collections::HashMap<String, Vec<u64>>;

pub(super) fn ends(log: &Log) -> Ends {
    log.topics()
        .iter()
        .map(|t| {
            let ends = t.partitions().iter().map(|p| p.end_offset()).collect();
            (t.name().to_string(), ends)
        })
        .collect()
}

/// Compares each topic's records with the expected ones in production order: by the input that
/// produced them (`marks`, the ends after each input), then partition and offset, as ksqlDB's
/// runner sees the records a query produces.
pub(super) fn check_outputs(
    session: &Session,
    log: &Log,
    outputs: &[Value],
    marks: &[Ends],
) -> Result<Option<String>, String> {
    let mut topics: Vec<&str> = Vec::new();
    for o in outputs {
        let t = o.get("topic").and_then(Value::as_str).unwrap_or_default();
        if !topics.contains(&t) {
            topics.push(t);
        }
    }
    for topic in topics {
        let expected: Vec<&Value> = outputs
            .iter()
            .filter(|o| o.get("topic").and_then(Value::as_str) == Some(topic))
            .collect();
        let Ok(t) = log.topic(topic) else {
            return Ok(Some(format!(
                "topic {topic}: expected {} records but the topic does not exist",
                expected.len()
            )));
        };
        let mut actual = Vec::new();
        for (pi, p) in t.partitions().iter().enumerate() {
            let mut offset = p.start_offset();
            loop {
                let batch = p
                    .read(offset, ReadLimits::default())
                    .map_err(|e| e.to_string())?;
                let Some(last) = batch.last() else { break };
                offset = last.offset + 1;
                actual.extend(batch.into_iter().map(|r| (pi, r)));
            }
        }
        let step = |partition: usize, offset: u64| {
            marks
                .iter()
                .position(|m| {
                    m.get(topic)
                        .and_then(|ends| ends.get(partition))
                        .is_some_and(|end| offset < *end)
                })
                .unwrap_or(marks.len())
        };
        actual.sort_by_key(|(p, r)| (step(*p, r.offset), *p, r.offset));
        let actual: Vec<_> = actual.into_iter().map(|(_, r)| r).collect();
        if actual.len() != expected.len() {
            let def = source_on(session, topic);
            let shown: Vec<String> = actual
                .iter()
                .take(5)
                .map(|r| show(def, r.record.key.as_deref(), r.record.value.as_deref()))
                .collect();
            return Ok(Some(format!(
                "topic {topic}: expected {} records, got {}: {}",
                expected.len(),
                actual.len(),
                shown.join(" | ")
            )));
        }
        let def = source_on(session, topic);
        for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
            let (key, window) = split_window(def, a.record.key.as_deref());
            if let Some(d) = diff(
                e.get("window").unwrap_or(&Value::Null),
                &window.unwrap_or(Value::Null),
            ) {
                return Ok(Some(format!("topic {topic} record {}: window: {d}", i + 1)));
            }
            let (ak, av) = match def {
                Some(d) => {
                    let (kc, vc) = codecs(d).map_err(|e| e.to_string())?;
                    (
                        as_json(key, &d.key_format, &kc)?,
                        as_json(a.record.value.as_deref(), &d.value_format, &vc)?,
                    )
                }
                None => (
                    a.record.key.as_deref().map_or(Value::Null, |b| {
                        Value::String(String::from_utf8_lossy(b).into_owned())
                    }),
                    a.record.value.as_deref().map_or(Value::Null, |b| {
                        serde_json::from_slice(b).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(b).into_owned())
                        })
                    }),
                ),
            };
            let ek = e.get("key").unwrap_or(&Value::Null);
            if let Some(d) = diff(ek, &ak) {
                return Ok(Some(format!("topic {topic} record {}: key: {d}", i + 1)));
            }
            let ev = e.get("value").unwrap_or(&Value::Null);
            if let Some(d) = diff(ev, &av) {
                return Ok(Some(format!("topic {topic} record {}: value: {d}", i + 1)));
            }
            if let Some(ts) = e.get("timestamp").and_then(Value::as_i64) {
                if ts != a.record.timestamp {
                    return Ok(Some(format!(
                        "topic {topic} record {}: expected timestamp {ts} but got {}",
                        i + 1,
                        a.record.timestamp
                    )));
                }
            }
            if let Some(expected_headers) = e.get("headers").and_then(Value::as_array) {
                let actual_headers: Vec<Value> = a
                    .record
                    .headers
                    .iter()
                    .map(|h| {
                        serde_json::json!({
                            "KEY": h.name,
                            "VALUE": h.value.as_deref().map(|v| base64::engine::general_purpose::STANDARD.encode(v)),
                        })
                    })
                    .collect();
                if let Some(d) = diff(
                    &Value::Array(expected_headers.clone()),
                    &Value::Array(actual_headers),
                ) {
                    return Ok(Some(format!(
                        "topic {topic} record {}: headers: {d}",
                        i + 1
                    )));
                }
            }
        }
    }
    Ok(None)
}

fn check_post(
    session: &Session,
    log: &Log,
    post: Option<&Value>,
) -> Result<Option<String>, String> {
    let Some(post) = post else { return Ok(None) };
    for expected in post
        .get("sources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = expected
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(def) = session.catalog.source(name) else {
            return Ok(Some(format!("post: source {name} does not exist")));
        };
        if let Some(t) = expected.get("type").and_then(Value::as_str) {
            let actual = match def.kind {
                eddy_sql::ast::SourceKind::Stream => "stream",
                eddy_sql::ast::SourceKind::Table => "table",
            };
            if !t.eq_ignore_ascii_case(actual) {
                return Ok(Some(format!("post: {name} is a {actual}, expected a {t}")));
            }
        }
        if let Some(schema) = expected.get("schema").and_then(Value::as_str) {
            let want = parse_schema(schema)
                .map_err(|e| format!("post: cannot read the expected schema '{schema}': {e}"))?;
            let want: Vec<(String, String, bool)> = want
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        c.ty.to_string(),
                        matches!(c.role, eddy_sql::ast::ColumnRole::Key { .. }),
                    )
                })
                .collect();
            let have: Vec<(String, String, bool)> = def
                .key_columns
                .iter()
                .map(|c| (c.name.clone(), c.ty.to_string(), true))
                .chain(
                    def.value_columns
                        .iter()
                        .map(|c| (c.name.clone(), c.ty.to_string(), false)),
                )
                .collect();
            if want != have {
                return Ok(Some(format!(
                    "post: {name} has schema {}, expected {schema}",
                    def.schema_text()
                )));
            }
        }
        if let Some(kf) = expected.get("keyFormat").and_then(Value::as_object) {
            let have_type = def.window.map(|w| w.kind.name());
            if let Some(want) = kf.get("windowType").and_then(Value::as_str) {
                if Some(want) != have_type {
                    return Ok(Some(format!(
                        "post: {name} has window type {have_type:?}, expected {want}"
                    )));
                }
            }
            if let Some(want) = kf.get("windowSize").and_then(Value::as_u64) {
                let have = def.window.and_then(|w| w.size_ms);
                if Some(want) != have {
                    return Ok(Some(format!(
                        "post: {name} has window size {have:?}, expected {want}"
                    )));
                }
            }
        }
        for (field, actual) in [
            ("keyFormat", &def.key_format),
            ("valueFormat", &def.value_format),
        ] {
            let want = match expected.get(field) {
                Some(Value::Object(o)) => o.get("format").and_then(Value::as_str),
                Some(Value::String(s)) => Some(s.as_str()),
                _ => None,
            };
            if let Some(w) = want {
                if !w.eq_ignore_ascii_case(actual.name()) {
                    return Ok(Some(format!(
                        "post: {name} has {field} {}, expected {w}",
                        actual.name()
                    )));
                }
            }
        }
    }
    if let Some(pattern) = post
        .get("topics")
        .and_then(|t| t.get("blacklist"))
        .and_then(Value::as_str)
    {
        let re = regex::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("post: bad blacklist regex: {e}"))?;
        if let Some(t) = log.topics().iter().find(|t| re.is_match(t.name())) {
            return Ok(Some(format!(
                "post: topic {} exists but must not",
                t.name()
            )));
        }
    }
    Ok(None)
}

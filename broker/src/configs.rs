//! Topics' settings under Kafka's names: DescribeConfigs, AlterConfigs and
//! IncrementalAlterConfigs, over the log's [`TopicConfig`] (names and values: the log's
//! `kafka_config.rs`).
//!
//! A change is durable before it is answered and applies from each partition's next append,
//! segment roll or cleaner pass. AlterConfigs replaces a topic's whole set, as Kafka's does:
//! what it does not name goes back to its default. IncrementalAlterConfigs sets or deletes
//! (resets) one setting at a time, and appends to or subtracts from a list setting (here only
//! `cleanup.policy`). The broker's own settings are its command line's and are only described.

use std::sync::Arc;

use eddy_log::{LogError, TopicConfig};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::admin::str;
use crate::{error_code, Broker};

/// Config resource types.
const TOPIC_RESOURCE: i8 = 2;
const BROKER_RESOURCE: i8 = 4;
/// DescribeConfigs config sources.
pub(crate) const SOURCE_TOPIC: i8 = 1;
pub(crate) const SOURCE_DEFAULT: i8 = 5;
/// DescribeConfigs config type STRING (v3+).
const TYPE_STRING: i8 = 2;
/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;
/// Settings whose value is a comma-separated list, which APPEND and SUBTRACT change.
const LIST_SETTINGS: &[&str] = &["cleanup.policy"];

pub(crate) fn describe_configs(
    b: &Arc<Broker>,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let wanted = |name: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            match r.resource_type {
                TOPIC_RESOURCE => match b.log.topic(r.resource_name.as_str()) {
                    Ok(t) => result.with_configs(
                        t.config()
                            .kafka_entries()
                            .into_iter()
                            .filter(|e| wanted(e.name))
                            .map(|e| config_entry(e.name, e.value, e.is_default))
                            .collect(),
                    ),
                    Err(e) => result
                        .with_error_code(error_code(&e))
                        .with_error_message(Some(str(e.to_string()))),
                },
                // Tools ask for the broker's settings too; these are the ones clients read.
                BROKER_RESOURCE => result.with_configs(
                    [
                        (
                            "auto.create.topics.enable",
                            b.config.auto_create_topics.to_string(),
                        ),
                        ("num.partitions", b.config.default_partitions.to_string()),
                        (
                            "socket.request.max.bytes",
                            b.config.max_request_bytes.to_string(),
                        ),
                    ]
                    .into_iter()
                    .filter(|(n, _)| wanted(n))
                    .map(|(n, v)| config_entry(n, v, true))
                    .collect(),
                ),
                _ => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str("only topic and broker configs are described"))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn config_entry(name: &str, value: String, is_default: bool) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str(name))
        .with_value(Some(str(value)))
        .with_config_source(if is_default {
            SOURCE_DEFAULT
        } else {
            SOURCE_TOPIC
        })
        .with_config_type(TYPE_STRING)
}

/// One resource's change: its type and name, and what to do to a topic's settings.
type Change<'a> = Box<dyn FnOnce(&mut TopicConfig) -> Result<(), LogError> + 'a>;

/// Applies `change` to the topic `name` (only checks it, with `validate_only`): Kafka's error
/// code (0 when it succeeds) and message for the resource's response.
fn alter(
    b: &Broker,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: Change<'_>,
) -> (i16, Option<StrBytes>) {
    match try_alter(b, resource_type, name, validate_only, change) {
        Ok(()) => (0, None),
        Err((code, message)) => (code, Some(str(message))),
    }
}

fn try_alter(
    b: &Broker,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: Change<'_>,
) -> Result<(), (i16, String)> {
    match resource_type {
        TOPIC_RESOURCE => {}
        BROKER_RESOURCE => {
            return Err((
                ResponseError::InvalidRequest.code(),
                "the broker's settings are set when it starts".into(),
            ))
        }
        _ => {
            return Err((
                ResponseError::InvalidRequest.code(),
                "only topic settings can be altered".into(),
            ))
        }
    }
    let fail = |e: LogError| (error_code(&e), e.to_string());
    if validate_only {
        let topic = b.log.topic(name).map_err(fail)?;
        let mut config = topic.config().clone();
        return change(&mut config).map_err(fail);
    }
    b.log
        .alter_topic_config(name, change)
        .map(|_| ())
        .map_err(fail)
}

pub(crate) fn alter_configs(b: &Arc<Broker>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let response = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let configs = r.configs;
            let change: Change<'_> = Box::new(move |config: &mut TopicConfig| {
                // The whole set: everything back to its default, then what is named.
                for entry in config.kafka_entries() {
                    config.reset_kafka(entry.name)?;
                }
                for c in &configs {
                    match &c.value {
                        Some(v) => config.set_kafka(c.name.as_str(), v.as_str())?,
                        None => config.reset_kafka(c.name.as_str())?,
                    }
                }
                Ok(())
            });
            let (code, message) = alter(
                b,
                r.resource_type,
                r.resource_name.as_str(),
                req.validate_only,
                change,
            );
            response.with_error_code(code).with_error_message(message)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

pub(crate) fn incremental_alter_configs(
    b: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let response =
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone());
            let configs = r.configs;
            let change: Change<'_> = Box::new(move |config: &mut TopicConfig| {
                for c in &configs {
                    let name = c.name.as_str();
                    match (c.config_operation, &c.value) {
                        (SET, Some(v)) => config.set_kafka(name, v.as_str())?,
                        (SET, None) | (DELETE, _) => config.reset_kafka(name)?,
                        (APPEND | SUBTRACT, Some(v)) if LIST_SETTINGS.contains(&name) => {
                            let list = changed_list(config, name, c.config_operation, v.as_str())?;
                            config.set_kafka(name, &list)?
                        }
                        (op, _) => {
                            return Err(LogError::InvalidConfig(format!(
                                "operation {op} on {name} is not supported: set the whole value"
                            )))
                        }
                    }
                }
                Ok(())
            });
            let (code, message) = alter(
                b,
                r.resource_type,
                r.resource_name.as_str(),
                req.validate_only,
                change,
            );
            response.with_error_code(code).with_error_message(message)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The list setting `name` with the items of `value` appended (once each) or subtracted.
fn changed_list(
    config: &TopicConfig,
    name: &str,
    operation: i8,
    value: &str,
) -> Result<String, LogError> {
    let current = config
        .kafka_entries()
        .into_iter()
        .find(|e| e.name == name)
        .map(|e| e.value)
        .unwrap_or_default();
    let mut items: Vec<&str> = current
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if operation == APPEND {
            if !items.contains(&item) {
                items.push(item);
            }
        } else {
            items.retain(|i| *i != item);
        }
    }
    if items.is_empty() {
        return Err(LogError::InvalidConfig(format!("{name} cannot be empty")));
    }
    Ok(items.join(","))
}

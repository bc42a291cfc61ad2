//! SHOW / LIST and DESCRIBE: what the catalog, the log and the running queries hold, as tables.

use super::explain::{rate_text, thousands};
use super::{kind_name, Outcome, Session};
use crate::ast::{ShowKind, SourceKind};
use crate::error::{invalid, Result};

impl Session {
    pub(super) fn show(&self, what: &ShowKind) -> Result<Outcome> {
        let table = |columns: &[&str], rows: Vec<Vec<String>>| Outcome::Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
        };
        Ok(match what {
            ShowKind::Streams { .. } | ShowKind::Tables { .. } => {
                let kind = if matches!(what, ShowKind::Streams { .. }) {
                    SourceKind::Stream
                } else {
                    SourceKind::Table
                };
                let rows = self
                    .catalog
                    .sources
                    .values()
                    .filter(|s| s.kind == kind && !crate::join::is_join_step(&s.name))
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            s.topic.clone(),
                            s.key_format.name().to_string(),
                            s.value_format.name().to_string(),
                        ]
                    })
                    .collect();
                let name = if kind == SourceKind::Stream {
                    "Stream Name"
                } else {
                    "Table Name"
                };
                table(&[name, "Kafka Topic", "Key Format", "Value Format"], rows)
            }
            ShowKind::Topics { all, .. } => {
                let rows = self
                    .log
                    .topics()
                    .iter()
                    .filter(|t| *all || !is_internal_topic(t.name()))
                    .map(|t| vec![t.name().to_string(), t.partition_count().to_string()])
                    .collect();
                table(&["Kafka Topic", "Partitions"], rows)
            }
            ShowKind::Queries { .. } => {
                let lag = self.lag();
                let rows = self
                    .queries
                    .iter()
                    .map(|q| {
                        vec![
                            q.id.clone(),
                            q.status().to_string(),
                            q.sink.clone(),
                            q.sources.join(", "),
                            thousands(q.metrics.records_in.total()),
                            rate_text(q.metrics.records_in.per_second()),
                            rate_text(q.metrics.records_out.per_second()),
                            lag_text(&lag, &q.id),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "Query ID",
                        "Status",
                        "Sink Name",
                        "Sources",
                        "Records In",
                        "In/s (1 min)",
                        "Out/s (1 min)",
                        "Lag (per partition)",
                    ],
                    rows,
                )
            }
            ShowKind::Properties => {
                let rows = self
                    .properties
                    .iter()
                    .map(|(k, v)| vec![k.clone(), v.clone()])
                    .collect();
                table(&["Property", "Value"], rows)
            }
            ShowKind::Types => {
                let rows = self
                    .catalog
                    .types
                    .iter()
                    .map(|(n, t)| vec![n.clone(), t.to_string()])
                    .collect();
                table(&["Type Name", "Schema"], rows)
            }
            ShowKind::Variables => {
                let rows = self
                    .variables
                    .iter()
                    .map(|(k, v)| vec![k.clone(), v.clone()])
                    .collect();
                table(&["Variable Name", "Value"], rows)
            }
            ShowKind::Functions => return self.show_functions(),
        })
    }

    pub(super) fn describe(&self, name: &str, extended: bool) -> Result<Outcome> {
        let Some(def) = self.catalog.source(name) else {
            return invalid(format!(
                "Could not find STREAM/TABLE '{name}' in the Metastore"
            ));
        };
        let key_word = if def.kind == SourceKind::Stream {
            "(key)"
        } else {
            "(primary key)"
        };
        let mut rows: Vec<Vec<String>> = def
            .key_columns
            .iter()
            .map(|c| vec![c.name.clone(), format!("{} {key_word}", c.ty)])
            .collect();
        rows.extend(
            def.value_columns
                .iter()
                .map(|c| vec![c.name.clone(), c.ty.to_string()]),
        );
        rows.extend(def.header_columns.iter().map(|(c, h)| {
            let role = h
                .as_ref()
                .map_or("(headers)".to_string(), |h| format!("(header('{h}'))"));
            vec![c.name.clone(), format!("{} {role}", c.ty)]
        }));
        let columns = vec!["Field".to_string(), "Type".to_string()];
        if !extended {
            return Ok(Outcome::Table { columns, rows });
        }
        let topic = self.log.topic(&def.topic)?;
        let messages = topic.message_count();
        let lag = self.lag();
        let listing = |pick: &dyn Fn(&super::RunningQuery) -> bool| -> String {
            let lines: Vec<String> = self
                .queries
                .iter()
                .filter(|q| pick(q))
                .map(|q| {
                    format!(
                        "{} ({}) : {}\n  lag per partition: {}\n  tasks:\n{}",
                        q.id,
                        q.status(),
                        q.text.trim(),
                        lag_text(&lag, &q.id),
                        task_lines(q)
                            .iter()
                            .map(|l| format!("    {l}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    )
                })
                .collect();
            if lines.is_empty() {
                "(none)".into()
            } else {
                lines.join("\n")
            }
        };
        let readers = listing(&|q| q.sources.iter().any(|s| s == name));
        let writers = listing(&|q| q.sink == name);
        let written: f64 = self
            .queries
            .iter()
            .filter(|q| q.sink == name)
            .map(|q| q.metrics.records_out.per_second())
            .fold(0.0, |a, b| a + b);
        let errors: u64 = self
            .queries
            .iter()
            .filter(|q| q.sources.iter().any(|s| s == name))
            .map(|q| self.plog.count_of(&q.id))
            .sum();
        let kind = kind_name(def.kind);
        let timestamp = def
            .timestamp_column
            .clone()
            .unwrap_or_else(|| "Not set - using <ROWTIME>".into());
        Ok(Outcome::Message(format!(
            "Name                 : {}\nType                 : {kind}\nTimestamp field      : {timestamp}\nKey format           : {}\nValue format         : {}\nKafka topic          : {} (partitions: {})\nStatement            : {}\n\n{}\n\nQueries that read from this {kind}\n-----------------------------------\n{readers}\n\nQueries that write into this {kind}\n-----------------------------------\n{writers}\n\nRuntime statistics: messages: {}, written by queries: {}, processing-log errors: {errors}",
            def.name,
            def.key_format.name(),
            def.value_format.name(),
            def.topic,
            topic.partition_count(),
            def.sql.trim(),
            format_table(&columns, &rows),
            thousands(messages),
            rate_text(written),
        )))
    }
}

/// A query's lag as "total (partition: lag, ...)", from [`Session::lag`]'s rows: how many
/// records what it reads holds beyond what its tasks have committed. The total counts its
/// repartition topics too; the partitions listed are its sources' (named `topic/partition`
/// when it reads several).
fn lag_text(lag: &[(String, String, u32, u64)], query: &str) -> String {
    let mine: Vec<&(String, String, u32, u64)> = lag.iter().filter(|(q, ..)| q == query).collect();
    if mine.is_empty() {
        return "-".into();
    }
    let total: u64 = mine.iter().map(|(.., l)| l).sum();
    let sources: Vec<&&(String, String, u32, u64)> = mine
        .iter()
        .filter(|(_, t, ..)| !is_internal_topic(t))
        .collect();
    let several = sources.iter().any(|(_, t, ..)| *t != sources[0].1);
    let each: Vec<String> = sources
        .iter()
        .map(|(_, t, p, l)| match several {
            true => format!("{t}/{p}: {}", thousands(*l)),
            false => format!("{p}: {}", thousands(*l)),
        })
        .collect();
    format!("{} ({})", thousands(total), each.join(", "))
}

/// A query's tasks, one per line: `0_1 on stream-thread-2: 1,234 in, 1,200 out, lag 0`.
pub(super) fn task_lines(q: &super::RunningQuery) -> Vec<String> {
    q.tasks
        .iter()
        .map(|t| {
            let m = &t.metrics;
            let failed = t
                .error()
                .map(|e| format!(", failed: {e}"))
                .unwrap_or_default();
            format!(
                "{} on {}: {} in, {} out, lag {}{failed}",
                t.id,
                t.thread(),
                thousands(m.records_in.total()),
                thousands(m.records_out.total()),
                thousands(m.lag()),
            )
        })
        .collect()
}

/// Rows as an aligned text table with a header line, as the ksql CLI prints them.
pub fn format_table(columns: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([columns[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect::<Vec<_>>()
            .join("|")
            .trim_end()
            .to_string()
    };
    let rule = widths
        .iter()
        .map(|w| "-".repeat(w + 2))
        .collect::<Vec<_>>()
        .join("+");
    let mut out = vec![line(columns), rule];
    out.extend(rows.iter().map(|r| line(r)));
    out.join("\n")
}

/// Topics Eddy keeps for itself (the command topic, consumer offsets, state changelogs), which
/// SHOW TOPICS leaves out and SHOW ALL TOPICS lists.
pub fn is_internal_topic(name: &str) -> bool {
    name.starts_with("__") || name.starts_with("_eddy-")
}

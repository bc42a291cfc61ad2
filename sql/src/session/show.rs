//! SHOW / LIST and DESCRIBE: what the catalog, the log and the running queries hold, as tables.

use super::{kind_name, Outcome, Session};
use crate::ast::{ShowKind, SourceKind};
use crate::error::{invalid, unsupported, Missing, Result};

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
                    .filter(|s| s.kind == kind)
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
                    .filter(|t| *all || !t.name().starts_with("__"))
                    .map(|t| vec![t.name().to_string(), t.partition_count().to_string()])
                    .collect();
                table(&["Kafka Topic", "Partitions"], rows)
            }
            ShowKind::Queries { .. } => {
                let rows = self
                    .queries
                    .iter()
                    .map(|q| {
                        let state = match &q.run {
                            super::QueryRun::Driven(_) => "RUNNING (driven)",
                            super::QueryRun::Background(t) if t.is_finished() => "ERROR",
                            super::QueryRun::Background(_) => "RUNNING",
                            super::QueryRun::Stopped => "STOPPED",
                        };
                        vec![
                            q.id.clone(),
                            state.to_string(),
                            q.sink.clone(),
                            q.sources.join(", "),
                        ]
                    })
                    .collect();
                table(&["Query ID", "Status", "Sink Name", "Sources"], rows)
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
            ShowKind::Functions | ShowKind::Variables => {
                return Err(unsupported(
                    Missing::Feature,
                    "SHOW FUNCTIONS and SHOW VARIABLES",
                ))
            }
        })
    }

    pub(super) fn describe(&self, name: &str) -> Result<Outcome> {
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
        let _ = kind_name;
        Ok(Outcome::Table {
            columns: vec!["Field".into(), "Type".into()],
            rows,
        })
    }
}

//! DROP STREAM and DROP TABLE, and what a dropped source or a terminated query leaves to
//! clean up: catalog entry, materialization, topic (with DELETE TOPIC) and query state.

use super::{kind_name, Outcome, RunningQuery, Session};
use crate::ast::SourceKind;
use crate::catalog::SourceDef;
use crate::error::{invalid, Result};

impl Session {
    /// Removes `def` from the catalog and its materialization, and its topic if asked.
    pub(super) fn forget_source(&mut self, def: &SourceDef, delete_topic: bool) -> Result<()> {
        self.catalog.sources.remove(&def.name);
        let _ = self
            .df
            .deregister_table(datafusion::common::TableReference::bare(def.name.clone()));
        self.dematerialize(&def.name)?;
        if delete_topic {
            match self.log.delete_topic(&def.topic) {
                // Replaying a DROP ... DELETE TOPIC finds the topic already gone.
                Ok(()) | Err(eddy_log::LogError::UnknownTopic(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Stops queries taken out of `self.queries` and drops their state.
    pub(super) fn stop_queries(&mut self, stopped: Vec<RunningQuery>) -> Result<()> {
        for mut q in stopped {
            super::tasks::stop_all(&q.id, &mut q.tasks);
            self.drop_state_of(&q.id)?;
        }
        Ok(())
    }

    /// DROP STREAM / DROP TABLE: refused while queries read or write the source.
    pub(super) fn drop_source(
        &mut self,
        kind: SourceKind,
        if_exists: bool,
        name: &str,
        delete_topic: bool,
    ) -> Result<Outcome> {
        let Some(def) = self.catalog.source(name).cloned() else {
            if if_exists {
                return Ok(Outcome::Message(format!("Source {name} does not exist.")));
            }
            return invalid(format!("Source {name} does not exist."));
        };
        if def.kind != kind {
            return invalid(format!(
                "Incompatible data source type is {}, but statement was DROP {}",
                kind_name(def.kind),
                kind_name(kind)
            ));
        }
        if delete_topic && def.read_only {
            return invalid(format!("Cannot delete topic for read-only source: {name}"));
        }
        let readers: Vec<&str> = self
            .queries
            .iter()
            .filter(|q| q.sources.iter().any(|s| s == name))
            .map(|q| q.id.as_str())
            .collect();
        let writers: Vec<&str> = self
            .queries
            .iter()
            .filter(|q| q.sink == name)
            .map(|q| q.id.as_str())
            .collect();
        if !readers.is_empty() || !writers.is_empty() {
            return invalid(format!(
                "Cannot drop {name}.\nThe following queries read from this source: [{}].\nThe following queries write into this source: [{}].\nYou need to terminate them before dropping {name}.",
                readers.join(", "),
                writers.join(", ")
            ));
        }
        self.forget_source(&def, delete_topic)?;
        // The hidden steps of the n-way join that wrote it go with it.
        self.drop_join_steps(name)?;
        Ok(Outcome::Message(format!(
            "Source `{name}` (topic: {}) was dropped.",
            def.topic
        )))
    }
}

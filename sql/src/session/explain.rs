//! EXPLAIN: what a query is and the operator graph it runs as, for a running persistent query
//! (`EXPLAIN <query id>`) or for a statement without running it (`EXPLAIN SELECT ...`,
//! `EXPLAIN CREATE STREAM ... AS SELECT ...`, `EXPLAIN INSERT INTO ... SELECT ...`).

use eddy_engine::Pipeline;

use super::{Outcome, RunningQuery, Session};
use crate::ast::{Select, Statement};
use crate::error::{invalid, Result};

/// A rate for people: `1,234.5/s`.
pub(super) fn rate_text(per_second: f64) -> String {
    if per_second >= 100.0 {
        format!("{}/s", thousands(per_second.round() as u64))
    } else {
        format!("{per_second:.1}/s")
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A statement's text without its leading `EXPLAIN`.
fn without_explain(text: &str) -> &str {
    let t = text.trim();
    match t.get(..7) {
        Some(w) if w.eq_ignore_ascii_case("EXPLAIN") => t[7..].trim(),
        _ => t,
    }
}

impl RunningQuery {
    pub(super) fn status(&self) -> &'static str {
        if self.tasks.iter().any(|t| t.error().is_some()) {
            "ERROR"
        } else if !self.tasks.is_empty() && self.tasks.iter().all(|t| t.paused()) {
            "PAUSED"
        } else {
            "RUNNING"
        }
    }
}

/// A plan as arrows from node to node; a sub-topology's heading starts a new chain.
fn plan_lines(plan: &[String]) -> String {
    let mut first = true;
    plan.iter()
        .map(|line| {
            if line.starts_with(SUBTOPOLOGY) {
                first = true;
                return line.clone();
            }
            let arrow = if first { "  " } else { "  -> " };
            first = false;
            format!("{arrow}{line}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How a sub-topology's heading in a plan starts.
pub(super) const SUBTOPOLOGY: &str = "Sub-topology ";

impl Session {
    pub(super) fn explain_query(&self, id: &str) -> Result<Outcome> {
        let Some(q) = self.queries.iter().find(|q| q.id.eq_ignore_ascii_case(id)) else {
            return invalid(format!("Query with id:{id} does not exist, use SHOW QUERIES to view the full set of queries."));
        };
        let m = &q.metrics;
        Ok(Outcome::Message(format!(
            "ID                   : {}\nQuery Type           : PERSISTENT\nSQL                  : {}\nStatus               : {}\nSources              : {}\nSink                 : {}\nRecords in           : {} ({})\nRecords out          : {} ({})\nProcessing-log errors: {}\n\nExecution plan:\n{}\n\nTasks:\n{}",
            q.id,
            q.text.trim(),
            q.status(),
            q.sources.join(", "),
            q.sink,
            thousands(m.records_in.total()),
            rate_text(m.records_in.per_second()),
            thousands(m.records_out.total()),
            rate_text(m.records_out.per_second()),
            self.plog.count_of(&q.id),
            plan_lines(&q.plan),
            super::show::task_lines(q)
                .iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
        )))
    }

    /// The plan of a statement that would start a query, without starting it.
    pub(super) fn explain_statement(&mut self, stmt: &Statement, text: &str) -> Result<Outcome> {
        let (select, sink): (&Select, Option<&str>) = match stmt {
            Statement::Query(s) => (s, None),
            Statement::CreateAsSelect(c) => (&c.query, Some(&c.name)),
            Statement::InsertInto { target, query } => (query, Some(target)),
            _ => return invalid("EXPLAIN takes a query id, a SELECT, a CREATE ... AS SELECT or an INSERT INTO ... SELECT."),
        };
        let name = &select.from.source.name;
        let mut planned = self.plan_for_reading(select)?;
        let operators = self.operators_of(&mut planned, None)?;
        let source = self.source_of(&planned)?;
        // A transient pipeline commits nothing: building one to describe it leaves no trace.
        let pipeline = Pipeline::transient(&self.log, "explain".into(), source, operators, false)?;
        let joined = self.join_inputs(&planned, "transient", None, false, None)?;
        let pipeline = self.with_join(pipeline, joined, false)?;
        let mut plan = pipeline.describe();
        let query_type = match sink {
            Some(sink) => {
                plan.push(format!("Sink: {sink}"));
                "PERSISTENT"
            }
            None => "PUSH",
        };
        Ok(Outcome::Message(format!(
            "Query Type           : {query_type}\nSQL                  : {}\nSources              : {name}\n\nExecution plan:\n{}",
            without_explain(text),
            plan_lines(&plan)
        )))
    }
}

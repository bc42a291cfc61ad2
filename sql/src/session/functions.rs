//! SHOW FUNCTIONS and DESCRIBE FUNCTION: the functions a query can call, from the planner's
//! registry (DataFusion's built-ins and Eddy's ksqlDB functions, with their documentation) and
//! the engine's aggregates, the table functions.

use eddy_engine::aggregate::udaf::AGGREGATES;

use crate::select_items::TABLE_FUNCTIONS;

use super::{Outcome, Session};
use crate::error::{invalid, Result};

/// Internal helpers the planner rewrites calls to; not for users to call by name.
fn is_internal(name: &str) -> bool {
    name.starts_with("ksql_") || name.starts_with("__")
}

impl Session {
    /// The names of every function, upper-case and sorted (also for the REPL's completion).
    pub fn function_names(&self) -> Vec<String> {
        let state = self.df.state();
        let mut names: Vec<String> = state
            .scalar_functions()
            .keys()
            .filter(|n| !is_internal(n))
            .map(|n| n.to_ascii_uppercase())
            .chain(AGGREGATES.iter().map(|(n, _, _)| n.to_string()))
            .chain(TABLE_FUNCTIONS.iter().map(|(n, _, _)| n.to_string()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub(super) fn show_functions(&self) -> Result<Outcome> {
        let state = self.df.state();
        let mut rows: Vec<Vec<String>> = AGGREGATES
            .iter()
            .map(|(n, _, _)| vec![n.to_string(), "AGGREGATE".into()])
            .chain(
                TABLE_FUNCTIONS
                    .iter()
                    .map(|(n, _, _)| vec![n.to_string(), "TABLE".into()]),
            )
            .collect();
        for (name, udf) in state.scalar_functions() {
            if is_internal(name)
                || AGGREGATES
                    .iter()
                    .any(|(a, _, _)| a.eq_ignore_ascii_case(name))
            {
                continue;
            }
            let category = udf.documentation().map_or("OTHER".to_string(), |d| {
                d.doc_section.label.to_ascii_uppercase()
            });
            rows.push(vec![name.to_ascii_uppercase(), category]);
        }
        rows.sort();
        rows.dedup();
        Ok(Outcome::Table {
            columns: vec!["Function Name".into(), "Category".into()],
            rows,
        })
    }

    pub(super) fn describe_function(&self, name: &str) -> Result<Outcome> {
        let aggregates = AGGREGATES.iter().map(|f| ("AGGREGATE", f));
        let tables = TABLE_FUNCTIONS.iter().map(|f| ("TABLE", f));
        if let Some((kind, (n, syntax, about))) = aggregates
            .chain(tables)
            .find(|(_, (n, _, _))| n.eq_ignore_ascii_case(name))
        {
            return Ok(Outcome::Message(format!(
                "Name        : {n}\nType        : {kind}\nOverview    : {about}\nSyntax      : {syntax}"
            )));
        }
        let state = self.df.state();
        let Some(udf) = state
            .scalar_functions()
            .get(&name.to_ascii_lowercase())
            .filter(|_| !is_internal(&name.to_ascii_lowercase()))
        else {
            return invalid(format!(
                "Can't find any functions with the name '{name}'. SHOW FUNCTIONS lists them."
            ));
        };
        let mut text = format!(
            "Name        : {}\nType        : SCALAR",
            name.to_ascii_uppercase()
        );
        match udf.documentation() {
            Some(doc) => {
                text.push_str(&format!(
                    "\nCategory    : {}\nOverview    : {}\nSyntax      : {}",
                    doc.doc_section.label,
                    doc.description.trim(),
                    doc.syntax_example
                ));
                for (arg, about) in doc.arguments.iter().flatten() {
                    text.push_str(&format!("\n  {arg:<10}: {}", about.trim()));
                }
                if let Some(example) = &doc.sql_example {
                    // DataFusion's examples are Markdown code blocks.
                    let lines: Vec<&str> = example
                        .trim()
                        .lines()
                        .filter(|l| !l.starts_with("```"))
                        .collect();
                    text.push_str(&format!("\nExample:\n{}", lines.join("\n")));
                }
            }
            None => text.push_str(&format!(
                "\nSignature   : {:?}",
                udf.signature().type_signature
            )),
        }
        Ok(Outcome::Message(text))
    }
}

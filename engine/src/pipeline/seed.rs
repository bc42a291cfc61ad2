//! Inputs whose operators keep state over the whole of their topic: a join's copies of its
//! tables (see [`crate::table_rows`]). Such an input is also read to its end first in each turn
//! of the pipeline's inputs, so that a stream record meets every table row appended before it
//! was read.
//!
//! Such a query may start at the end of its topics (`auto.offset.reset` is `latest`) and still
//! needs every row that came before, or a change would meet an empty other side.
//! [`Pipeline::with_table_inputs`] makes it read each partition from its start instead:
//! the records before where it would have started, its *seed*, go through the input's own
//! operators, which build their state from them, and no further, so they produce no output.
//! Where each seed ends is committed with the query's state when the query is created, so a
//! restart part way through still stops the seed at the same record. No input reads past its
//! seed until every seed is read: a live change must not meet a copy still being built. A transient query (a push
//! query) seeds again each time it starts, into state it keeps in memory.

use eddy_state::Commit;

use super::{input_position, Pipeline};
use crate::error::Result;

/// The name under which a query's seed end for a partition is committed.
fn seed_end(topic: &str, partition: u32) -> String {
    format!("seed/{topic}/{partition}")
}

impl Pipeline {
    /// Makes the inputs `tables` (by index) tables the operators keep a copy of: read from
    /// their start, the records before where they would have started only building the state
    /// of the input's own operators (see the module docs), and to their end first in each
    /// turn. A
    /// partition the query has a committed position for resumes there, with the seed end it
    /// recorded.
    pub fn with_table_inputs(mut self, tables: &[usize]) -> Result<Pipeline> {
        let mut commit = Commit::new();
        for (i, input) in self.inputs.iter_mut().enumerate() {
            if input.upstream.is_some() || !tables.contains(&i) {
                continue;
            }
            input.table = true;
            let topic = input.source.topic.clone();
            input.seed_until = vec![0; input.positions.len()];
            for &p in &input.parts {
                let position = &mut input.positions[p];
                let id = p as u32;
                let name = seed_end(topic.name(), id);
                let (seeded, resumed) = match &self.state {
                    Some(db) => (
                        db.offset(&self.id, &name)?,
                        db.offset(&self.id, &input_position(topic.name(), id))?
                            .is_some(),
                    ),
                    None => (None, false),
                };
                input.seed_until[p] = match (seeded, resumed) {
                    (Some(until), true) => until,
                    // A query from before seeding existed.
                    (None, true) => 0,
                    (seeded, false) => {
                        let until = seeded.unwrap_or(*position);
                        if seeded.is_none() {
                            commit.set_offset(&self.id, &name, until);
                        }
                        *position = topic.partition(id)?.start_offset();
                        until
                    }
                };
            }
        }
        if let Some(db) = &self.state {
            db.commit(commit)?;
        }
        self.attach_metrics();
        Ok(self)
    }

    /// Whether any input partition is still seeding.
    pub(super) fn any_seeding(&self) -> bool {
        self.inputs.iter().any(|input| {
            input.parts.iter().any(|&p| {
                input
                    .seed_until
                    .get(p)
                    .is_some_and(|&until| input.positions[p] < until)
            })
        })
    }

    /// Where input `i`'s partition `p` stops seeding, if it has not yet.
    pub(super) fn seeding(&self, i: usize, p: usize) -> Option<u64> {
        let input = &self.inputs[i];
        input
            .seed_until
            .get(p)
            .copied()
            .filter(|&until| input.positions[p] < until)
    }
}

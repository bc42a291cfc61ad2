//! Aggregation: `GROUP BY` with ksqlDB's aggregate functions, optionally windowed.
//!
//! An [`Aggregate`] operator takes batches whose first columns are the grouping values and
//! whose other columns hold the aggregates' arguments, the event time and the tombstone flag
//! (the SQL planner computes them with a projection in front of it). For every input row it
//! updates the row's group and emits the group's new result, in input order: this is ksqlDB's
//! `EMIT CHANGES` with record caching off, where every update is an output record. With
//! `EMIT FINAL` a window's result is held back until the window closes.
//!
//! Over a table, a row replaces the previous row with the same key: the operator remembers each
//! key's last row, takes its values back out of the group they went to ([`udaf::AggCall::undo`])
//! and emits that group too when it differs from the new one. When the table's rows are
//! repartitioned by their groups first, a [`Regroup`] before the topic does that bookkeeping
//! and the aggregate after it applies the changes it sends ([`ChangeColumns`]).
//!
//! The groups live in a [`GroupState`]: an in-memory map in front of a RocksDB store, written
//! back once per commit of the query (see [`crate::pipeline`]).

mod expiry;
mod group;
mod group_state;
mod having;
mod operator;
mod output;
mod regroup;
mod row;
mod stats;
mod table;
pub mod udaf;
pub mod window;
mod window_index;

pub use group::PrevRow;
pub use group_state::{Backing, GroupState};
pub use having::HavingFilter;
pub use operator::{Aggregate, AggregateSpec, AggregateState, AGG_ROWTIME, WINDOWEND, WINDOWSTART};
pub use regroup::{ChangeColumns, Regroup};
pub use udaf::{AggCall, AggFunc};
pub use window::{WindowKind, WindowSpec};

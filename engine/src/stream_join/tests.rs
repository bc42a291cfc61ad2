use std::collections::BTreeSet;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, Int32Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::physical_expr::expressions::Column as ColumnExpr;
use proptest::prelude::*;

use super::*;
use crate::processing_log::ProcessingLog;
use crate::schema::{no_headers, source_schema};
use crate::staged_store::StagedStore;
use crate::table_join::Keep;

/// One side's batches: `K INT KEY, V BIGINT`.
fn side_schema() -> SchemaRef {
    source_schema(
        &[Field::new("K", DataType::Int32, true)],
        &[Field::new("V", DataType::Int64, true)],
        &[],
        false,
    )
}

/// Buffers kept only in memory.
fn in_memory() -> JoinStores {
    JoinStores {
        left: StagedStore::in_memory(),
        right: StagedStore::in_memory(),
        waiting: StagedStore::in_memory(),
    }
}

/// A join of two such sides, as `K, L_V, R_V`.
fn join(
    windows: JoinWindows,
    keep: Keep,
    stores: JoinStores,
) -> (StreamStreamJoin, StreamStreamJoin) {
    let out = source_schema(
        &[Field::new("K", DataType::Int32, true)],
        &[
            Field::new("L_V", DataType::Int64, true),
            Field::new("R_V", DataType::Int64, true),
        ],
        &[],
        false,
    );
    let buffered = vec![DataType::Int32, DataType::Int64];
    let state = StreamJoinState::new(
        windows,
        keep,
        vec![DataType::Int32],
        [buffered.clone(), buffered],
        stores,
    )
    .unwrap();
    let output = vec![
        StreamJoinColumn::Key(0),
        StreamJoinColumn::Column(JoinSide::Left, 1),
        StreamJoinColumn::Column(JoinSide::Right, 1),
    ];
    let side = |s| {
        StreamStreamJoin::new(
            s,
            state.clone(),
            vec![Arc::new(ColumnExpr::new("K", PSEUDO_COLUMNS)) as Arc<dyn PhysicalExpr>],
            vec![PSEUDO_COLUMNS, PSEUDO_COLUMNS + 1],
            output.clone(),
            &side_schema(),
            out.clone(),
        )
        .unwrap()
    };
    (side(JoinSide::Left), side(JoinSide::Right))
}

/// A one-record batch: key `k`, value `v`, at `t`.
fn record(k: i32, v: i64, t: i64) -> RecordBatch {
    RecordBatch::try_new(
        side_schema(),
        vec![
            Arc::new(Int64Array::from(vec![t])),
            Arc::new(Int32Array::from(vec![0])),
            Arc::new(Int64Array::from(vec![v])),
            Arc::new(Int32Array::from(vec![k])),
            Arc::new(Int64Array::from(vec![v])),
            Arc::new(BooleanArray::from(vec![false])),
            no_headers(1),
        ],
    )
    .unwrap()
}

/// Runs `records` (side is left, key, time; the value is the record's index) through a join;
/// returns (left value, right value, time) per output row, `-1` for a missing side.
fn run(windows: JoinWindows, keep: Keep, records: &[(bool, i32, i64)]) -> Vec<(i64, i64, i64)> {
    let dir = tempfile::tempdir().unwrap();
    let log = eddy_log::Log::open(dir.path(), Default::default()).unwrap();
    let plog = ProcessingLog::new(log);
    let ctx = OperatorContext {
        query_id: "q",
        source_topic: "t",
        processing_log: &plog,
    };
    let (mut left, mut right) = join(windows, keep, in_memory());
    let mut out = Vec::new();
    for (i, &(is_left, k, t)) in records.iter().enumerate() {
        let op = if is_left { &mut left } else { &mut right };
        let b = op.process(record(k, i as i64, t), &ctx).unwrap();
        let value = |c: usize, row: usize| {
            let a = b.column(c).as_primitive::<Int64Type>();
            if a.is_null(row) {
                -1
            } else {
                a.value(row)
            }
        };
        for row in 0..b.num_rows() {
            out.push((
                value(PSEUDO_COLUMNS + 1, row),
                value(PSEUDO_COLUMNS + 2, row),
                b.column(0).as_primitive::<Int64Type>().value(row),
            ));
        }
    }
    out
}

fn records() -> impl Strategy<Value = Vec<(bool, i32, i64)>> {
    prop::collection::vec((any::<bool>(), 0..3i32, 0..20_000i64), 0..40)
}

proptest! {
    /// With retention longer than the input spans, an inner join emits each pair of records
    /// whose keys are equal and whose times are within the window exactly once, at the later
    /// time, whatever order they come in.
    #[test]
    fn inner_joins_emit_exactly_the_pairs_within_the_window(
        records in records(),
        before in 0..3_000i64,
        after in 0..3_000i64,
    ) {
        let windows = JoinWindows::new(before, after, Some(1_000_000));
        let got = run(windows, Keep::Inner, &records);
        let mut expected = BTreeSet::new();
        for (i, l) in records.iter().enumerate().filter(|(_, r)| r.0) {
            for (j, r) in records.iter().enumerate().filter(|(_, r)| !r.0) {
                if l.1 == r.1 && r.2 >= l.2 - before && r.2 <= l.2 + after {
                    expected.insert((i as i64, j as i64, l.2.max(r.2)));
                }
            }
        }
        prop_assert_eq!(got.len(), expected.len());
        prop_assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected);
    }

    /// A left join with a grace period pads a left record at most once, and never a right
    /// record.
    #[test]
    fn left_joins_pad_each_left_record_at_most_once(
        records in records(),
        window in 0..3_000i64,
        grace in 0..3_000i64,
    ) {
        let windows = JoinWindows::new(window, window, Some(grace));
        let got = run(windows, Keep::Left, &records);
        prop_assert!(got.iter().all(|(l, _, _)| *l >= 0), "every row has its left record");
        let padded: Vec<i64> = got.iter().filter(|r| r.1 < 0).map(|r| r.0).collect();
        let unique: BTreeSet<&i64> = padded.iter().collect();
        prop_assert_eq!(unique.len(), padded.len(), "padded once");
    }
}

#[test]
fn a_late_record_misses_records_its_buffer_has_expired() {
    // Retention 1 s + 1 s + 0 grace: the right side's buffer has seen time 10 s, so a left
    // record at 1 s finds nothing, though a right record at 1.5 s was buffered.
    let windows = JoinWindows::new(1_000, 1_000, Some(0));
    let got = run(
        windows,
        Keep::Inner,
        &[(false, 1, 1_500), (false, 2, 10_000), (true, 1, 1_000)],
    );
    assert!(got.is_empty(), "{got:?}");
}

/// Expired buffer records are deleted by range, which the changelog does not log: the
/// changelog sheds them by time instead, and a store restored from it still joins.
#[test]
fn a_buffer_changelog_drops_expired_records_and_still_restores() {
    let dir = tempfile::tempdir().unwrap();
    let log = eddy_log::Log::open(dir.path().join("log"), Default::default()).unwrap();
    let plog = ProcessingLog::new(log.clone());
    let ctx = OperatorContext {
        query_id: "q",
        source_topic: "t",
        processing_log: &plog,
    };
    // Small changelog segments, so that the first ones are sealed and can go.
    let changelog = eddy_state::changelog::topic_name("q/join-left");
    let mut config = eddy_log::TopicConfig::with_partitions(1);
    config.compact = true;
    config.segment_bytes = 1024;
    log.create_topic(&changelog, config).unwrap();
    let windows = JoinWindows::new(1_000, 1_000, Some(0));
    let stores = |db: &eddy_state::StateDb| JoinStores {
        left: StagedStore::open(&eddy_state::StateScope::new(db, &log, "q"), "join-left").unwrap(),
        right: StagedStore::open(&eddy_state::StateScope::new(db, &log, "q"), "join-right")
            .unwrap(),
        waiting: StagedStore::open(&eddy_state::StateScope::new(db, &log, "q"), "join-waiting")
            .unwrap(),
    };
    let options = eddy_state::StateOptions::default;
    let db = eddy_state::StateDb::open(dir.path().join("state"), options()).unwrap();
    let (mut left, _) = join(windows, Keep::Inner, stores(&db));
    // 1000 left records a second apart: 1000 s against a 2 s retention.
    for i in 0..1_000 {
        left.process(record(i % 7, i as i64, i as i64 * 1_000), &ctx)
            .unwrap();
        let mut commit = eddy_state::Commit::new();
        left.checkpoint(&mut commit).unwrap();
        db.commit(commit).unwrap();
    }
    let partition = log.partition(&changelog, 0).unwrap();
    let kept = partition.end_offset() - partition.start_offset();
    assert!(partition.start_offset() > 0, "nothing was dropped");
    // What is left: about two of the buffer's 60 s segments, and the open changelog segment.
    assert!(
        kept < 300,
        "{kept} records kept of {}",
        partition.end_offset()
    );
    drop((left, db));

    // The local copy lost: restored from what the changelog kept, the newest records join.
    let db = eddy_state::StateDb::open(dir.path().join("state2"), options()).unwrap();
    let (_, mut right) = join(windows, Keep::Inner, stores(&db));
    let out = right.process(record(999 % 7, -1, 999_500), &ctx).unwrap();
    let left_values = out.column(PSEUDO_COLUMNS + 1).as_primitive::<Int64Type>();
    assert_eq!(left_values.values().to_vec(), [999]);
}

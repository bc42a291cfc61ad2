use super::*;
use proptest::prelude::*;

fn call(func: AggFunc, t: DataType) -> AggCall {
    AggCall {
        func,
        arg: 0,
        arg_type: t,
        n: None,
        ignore_nulls: true,
        returns_array: false,
    }
}

fn int(v: Option<i64>) -> ScalarValue {
    ScalarValue::Int64(v)
}

fn run(c: &AggCall, values: &[Option<i64>]) -> Acc {
    let mut acc = c.init().unwrap();
    for v in values {
        c.update(&mut acc, &int(*v)).unwrap();
    }
    acc
}

fn list(values: &[i64]) -> ScalarValue {
    let items: Vec<ScalarValue> = values.iter().map(|v| int(Some(*v))).collect();
    ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Int64))
}

#[test]
fn ksql_semantics_of_the_basic_aggregates() {
    let values = [Some(3), None, Some(5), Some(-1)];
    let r = |f| {
        let c = call(f, DataType::Int64);
        c.result(&run(&c, &values)).unwrap()
    };
    assert_eq!(r(AggFunc::Count), int(Some(3)), "COUNT(x) skips nulls");
    assert_eq!(r(AggFunc::CountStar), int(Some(4)));
    assert_eq!(r(AggFunc::Sum), int(Some(7)));
    assert_eq!(r(AggFunc::Min), int(Some(-1)));
    assert_eq!(r(AggFunc::Max), int(Some(5)));
    assert_eq!(r(AggFunc::Avg), ScalarValue::Float64(Some(7.0 / 3.0)));
    assert_eq!(r(AggFunc::LatestByOffset), int(Some(-1)));
    assert_eq!(r(AggFunc::EarliestByOffset), int(Some(3)));
    let sum = call(AggFunc::Sum, DataType::Int64);
    assert_eq!(
        sum.result(&sum.init().unwrap()).unwrap(),
        int(Some(0)),
        "SUM of nothing is 0"
    );
}

#[test]
fn bounded_and_ordered_collections() {
    let mut top = call(AggFunc::TopK, DataType::Int64);
    top.n = Some(2);
    assert_eq!(
        top.result(&run(&top, &[Some(1), Some(9), None, Some(4)]))
            .unwrap(),
        list(&[9, 4])
    );
    let mut latest = call(AggFunc::LatestByOffset, DataType::Int64);
    latest.n = Some(2);
    latest.returns_array = true;
    assert_eq!(
        latest
            .result(&run(&latest, &[Some(1), Some(2), Some(3)]))
            .unwrap(),
        list(&[2, 3])
    );
    let mut limited = call(AggFunc::CollectList, DataType::Int64);
    limited.n = Some(2);
    assert_eq!(
        limited
            .result(&run(&limited, &[Some(1), Some(2), Some(3)]))
            .unwrap(),
        list(&[1, 2])
    );
}

#[test]
fn undo_takes_a_value_back() {
    let list_call = call(AggFunc::CollectList, DataType::Int64);
    let mut acc = run(&list_call, &[Some(1), Some(2), Some(1)]);
    list_call.undo(&mut acc, &int(Some(1))).unwrap();
    assert_eq!(
        list_call.result(&acc).unwrap(),
        list(&[1, 2]),
        "the last occurrence goes"
    );
    let count = call(AggFunc::Count, DataType::Int64);
    let mut acc = run(&count, &[Some(1), Some(2)]);
    count.undo(&mut acc, &int(Some(2))).unwrap();
    count.undo(&mut acc, &int(None)).unwrap();
    assert_eq!(count.result(&acc).unwrap(), int(Some(1)));
}

#[test]
fn decimal_sums_overflow_their_precision() {
    let c = call(AggFunc::Sum, DataType::Decimal128(3, 1));
    let mut acc = c.init().unwrap();
    c.update(&mut acc, &ScalarValue::Decimal128(Some(900), 3, 1))
        .unwrap();
    let err = c
        .update(&mut acc, &ScalarValue::Decimal128(Some(200), 3, 1))
        .unwrap_err();
    assert_eq!(err, "Numeric field overflow");
}

fn all_funcs() -> Vec<AggCall> {
    [
        AggFunc::Count,
        AggFunc::CountStar,
        AggFunc::CountDistinct,
        AggFunc::Sum,
        AggFunc::Avg,
        AggFunc::Min,
        AggFunc::Max,
        AggFunc::CollectList,
        AggFunc::CollectSet,
        AggFunc::EarliestByOffset,
        AggFunc::LatestByOffset,
        AggFunc::TopK,
        AggFunc::TopKDistinct,
        AggFunc::Attr,
    ]
    .into_iter()
    .map(|f| {
        let mut c = call(f, DataType::Int64);
        c.n = Some(3);
        c
    })
    .collect()
}

proptest! {
    #[test]
    fn states_round_trip_through_the_store(values in proptest::collection::vec(proptest::option::of(-1000i64..1000), 0..20)) {
        for c in all_funcs() {
            let acc = run(&c, &values);
            let mut bytes = Vec::new();
            c.encode(&acc, &mut bytes).unwrap();
            let mut input = bytes.as_slice();
            prop_assert_eq!(c.decode(&mut input).unwrap(), acc, "{:?}", c.func);
            prop_assert!(input.is_empty());
        }
    }

    /// The column-reading fast path agrees with the `ScalarValue` one, for every function and
    /// the argument types the fast path reads itself (sums that wrap included).
    #[test]
    fn updating_from_a_column_equals_updating_from_values(values in proptest::collection::vec(proptest::option::of(any::<i32>()), 0..20)) {
        use datafusion::arrow::array::{Float64Array, Int32Array, Int64Array};
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter(values.iter().map(|v| v.map(|x| i64::from(x) << 32)))),
            Arc::new(Int32Array::from_iter(values.iter().copied())),
            Arc::new(Float64Array::from_iter(values.iter().map(|v| v.map(f64::from)))),
        ];
        for column in &columns {
            for mut c in all_funcs() {
                c.arg_type = column.data_type().clone();
                let (Ok(mut by_value), Ok(mut by_column)) = (c.init(), c.init()) else {
                    continue;
                };
                for row in 0..column.len() {
                    let v = ScalarValue::try_from_array(column, row).unwrap();
                    c.update(&mut by_value, &v).unwrap();
                    c.update_at(&mut by_column, column, row).unwrap();
                }
                prop_assert_eq!(by_column, by_value, "{:?} of {}", c.func, column.data_type());
            }
        }
    }

    #[test]
    fn merging_sessions_equals_aggregating_all(a in proptest::collection::vec(proptest::option::of(-1000i64..1000), 0..10), b in proptest::collection::vec(proptest::option::of(-1000i64..1000), 0..10)) {
        for c in all_funcs() {
            let mut merged = run(&c, &a);
            c.merge(&mut merged, run(&c, &b)).unwrap();
            let all: Vec<Option<i64>> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(c.result(&merged).unwrap(), c.result(&run(&c, &all)).unwrap(), "{:?}", c.func);
        }
    }
}

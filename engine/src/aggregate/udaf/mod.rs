//! ksqlDB's aggregate functions: how each one starts, takes a value, gives one back (for
//! aggregations over tables, whose rows change), merges (for session windows) and answers.
//!
//! Semantics are ksqlDB's, including where they differ from SQL's: `SUM` of no values is 0 and
//! keeps its argument's type, `COUNT(x)` skips nulls, `LATEST_BY_OFFSET` skips nulls unless told
//! otherwise, `COLLECT_LIST` keeps nulls and stops at a limit.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;

use super::stats::{Comoments, Moments, ValueCounts};
use crate::state_codec::{decode, encode};

mod values;

use values::{add, as_f64, number, pair, zero};

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    CountStar,
    CountDistinct,
    Sum,
    SumList,
    Avg,
    Min,
    Max,
    CollectList,
    CollectSet,
    EarliestByOffset,
    LatestByOffset,
    TopK,
    TopKDistinct,
    Histogram,
    StddevSample,
    Correlation,
    Attr,
}

/// Every aggregate function by its ksqlDB name, with how it is called and what it computes
/// (for SHOW FUNCTIONS and DESCRIBE FUNCTION).
pub const AGGREGATES: &[(&str, &str, &str)] = &[
    ("ATTR", "ATTR(col)", "The value of col when every row has the same one (null included), else null."),
    ("AVG", "AVG(col)", "The average of the non-null values."),
    ("COLLECT_LIST", "COLLECT_LIST(col)", "An array of the values, nulls included, up to ksql.functions.collect_list.limit (default 1000)."),
    ("CORRELATION", "CORRELATION(x, y)", "The Pearson correlation coefficient of the pairs where neither is null."),
    ("COLLECT_SET", "COLLECT_SET(col)", "An array of the distinct values, up to ksql.functions.collect_set.limit (default 1000)."),
    ("COUNT", "COUNT(*) | COUNT(col)", "The number of rows, or of rows where col is not null."),
    ("COUNT_DISTINCT", "COUNT_DISTINCT(col)", "The number of distinct non-null values."),
    ("EARLIEST_BY_OFFSET", "EARLIEST_BY_OFFSET(col [, n] [, ignoreNulls])", "The value of the earliest record (by offset), or an array of the n earliest; nulls skipped unless ignoreNulls is false."),
    ("HISTOGRAM", "HISTOGRAM(col)", "A map from each distinct string value to how many times it occurred."),
    ("LATEST_BY_OFFSET", "LATEST_BY_OFFSET(col [, n] [, ignoreNulls])", "The value of the latest record (by offset), or an array of the n latest; nulls skipped unless ignoreNulls is false."),
    ("MAX", "MAX(col)", "The largest non-null value."),
    ("MIN", "MIN(col)", "The smallest non-null value."),
    ("STDDEV_SAMPLE", "STDDEV_SAMPLE(col) | STDDEV_SAMP(col)", "The sample standard deviation of the non-null values (0 for fewer than two)."),
    ("SUM", "SUM(col)", "The sum of the non-null values, of the argument's type (0 if there are none)."),
    ("SUM_LIST", "SUM_LIST(array)", "The sum of the elements of every array."),
    ("TOPK", "TOPK(col, k) | TOPK(sortCol, otherCols..., k)", "The k largest values, largest first (as structs when other columns come along)."),
    ("TOPKDISTINCT", "TOPKDISTINCT(col, k)", "The k largest distinct values, largest first."),
];

impl AggFunc {
    /// The function of this ksqlDB name, if it is an aggregate.
    pub fn by_name(name: &str) -> Option<AggFunc> {
        Some(match name.to_ascii_uppercase().as_str() {
            "COUNT" => AggFunc::Count,
            "COUNT_DISTINCT" => AggFunc::CountDistinct,
            "SUM" => AggFunc::Sum,
            "SUM_LIST" => AggFunc::SumList,
            "AVG" => AggFunc::Avg,
            "MIN" => AggFunc::Min,
            "MAX" => AggFunc::Max,
            "COLLECT_LIST" => AggFunc::CollectList,
            "COLLECT_SET" => AggFunc::CollectSet,
            "EARLIEST_BY_OFFSET" => AggFunc::EarliestByOffset,
            "LATEST_BY_OFFSET" => AggFunc::LatestByOffset,
            "TOPK" => AggFunc::TopK,
            "TOPKDISTINCT" => AggFunc::TopKDistinct,
            "HISTOGRAM" => AggFunc::Histogram,
            "STDDEV_SAMPLE" | "STDDEV_SAMP" => AggFunc::StddevSample,
            "CORRELATION" => AggFunc::Correlation,
            "ATTR" => AggFunc::Attr,
            _ => return None,
        })
    }

    /// Whether an aggregation over a table can use it: it must be able to give a value back.
    pub fn supports_undo(self) -> bool {
        matches!(
            self,
            AggFunc::Count
                | AggFunc::CountStar
                | AggFunc::Sum
                | AggFunc::Avg
                | AggFunc::CollectList
                | AggFunc::CollectSet
                | AggFunc::Histogram
                | AggFunc::StddevSample
                | AggFunc::Correlation
                | AggFunc::Attr
        )
    }
}

/// One aggregate of a query: the function, the input column it reads and its constant
/// parameters (such as TOPK's k), with the types resolved at planning.
#[derive(Clone, Debug)]
pub struct AggCall {
    pub func: AggFunc,
    /// Index of the argument column in the aggregate's input (unused by `COUNT(*)`).
    pub arg: usize,
    pub arg_type: DataType,
    /// How many values the function keeps: TOPK's k, LATEST_BY_OFFSET's n, COLLECT_LIST's
    /// limit.
    pub n: Option<usize>,
    /// LATEST/EARLIEST_BY_OFFSET: skip nulls.
    pub ignore_nulls: bool,
    /// LATEST/EARLIEST_BY_OFFSET with an `n`: the result is an array.
    pub returns_array: bool,
}

/// The running value of one aggregate for one group.
#[derive(Clone, Debug, PartialEq)]
pub enum Acc {
    Count(i64),
    Sum(ScalarValue),
    Avg { sum: ScalarValue, count: i64 },
    Extreme(ScalarValue),
    Values(Vec<ScalarValue>),
    Histogram(Vec<(String, i64)>),
    Moments(Moments),
    Comoments(Comoments),
    Counts(ValueCounts),
}

fn list_item(t: &DataType) -> DataType {
    match t {
        DataType::List(f) => f.data_type().clone(),
        other => other.clone(),
    }
}

fn list_of(t: &DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", t.clone(), true)))
}

fn cmp(a: &ScalarValue, b: &ScalarValue) -> Ordering {
    a.partial_cmp(b).unwrap_or(Ordering::Equal)
}

/// What TOPK orders by: the value, or for `TOPK(sort, other..., k)` the struct's first field
/// (`sort_col`); rows with equal sort values keep their arrival order.
fn sort_key(v: &ScalarValue) -> ScalarValue {
    match v {
        ScalarValue::Struct(s) if s.num_columns() > 0 => {
            ScalarValue::try_from_array(s.column(0), 0).unwrap_or(ScalarValue::Null)
        }
        other => other.clone(),
    }
}

impl AggCall {
    /// The type of the aggregate's result.
    pub fn output_type(&self) -> DataType {
        match self.func {
            AggFunc::Count | AggFunc::CountStar | AggFunc::CountDistinct => DataType::Int64,
            AggFunc::Sum | AggFunc::Min | AggFunc::Max => self.arg_type.clone(),
            AggFunc::SumList => list_item(&self.arg_type),
            AggFunc::Avg => match &self.arg_type {
                DataType::Decimal128(p, s) => DataType::Decimal128(*p, *s),
                _ => DataType::Float64,
            },
            AggFunc::CollectList | AggFunc::CollectSet | AggFunc::TopK | AggFunc::TopKDistinct => {
                list_of(&self.arg_type)
            }
            AggFunc::EarliestByOffset | AggFunc::LatestByOffset if self.returns_array => {
                list_of(&self.arg_type)
            }
            AggFunc::EarliestByOffset | AggFunc::LatestByOffset | AggFunc::Attr => {
                self.arg_type.clone()
            }
            AggFunc::StddevSample | AggFunc::Correlation => DataType::Float64,
            AggFunc::Histogram => DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(
                        vec![
                            Field::new("key", DataType::Utf8, false),
                            Field::new("value", DataType::Int64, true),
                        ]
                        .into(),
                    ),
                    false,
                )),
                false,
            ),
        }
    }

    /// The value of a group that has seen nothing.
    pub fn init(&self) -> Result<Acc, String> {
        Ok(match self.func {
            AggFunc::Count | AggFunc::CountStar => Acc::Count(0),
            AggFunc::Sum => Acc::Sum(zero(&self.arg_type)?),
            AggFunc::SumList => Acc::Sum(zero(&list_item(&self.arg_type))?),
            AggFunc::Avg => Acc::Avg {
                sum: zero(&self.arg_type)?,
                count: 0,
            },
            AggFunc::Min | AggFunc::Max => {
                Acc::Extreme(ScalarValue::try_from(&self.arg_type).map_err(|e| e.to_string())?)
            }
            AggFunc::Histogram => Acc::Histogram(Vec::new()),
            AggFunc::StddevSample => {
                number(&self.arg_type)?;
                Acc::Moments(Moments::default())
            }
            AggFunc::Correlation => {
                match &self.arg_type {
                    DataType::Struct(f) if f.len() == 2 => {
                        number(f[0].data_type())?;
                        number(f[1].data_type())?;
                    }
                    other => {
                        return Err(format!(
                            "CORRELATION needs two numbers, not {}",
                            crate::schema::sql_type_name(other)
                        ))
                    }
                }
                Acc::Comoments(Comoments::default())
            }
            AggFunc::Attr => Acc::Counts(ValueCounts::default()),
            _ => Acc::Values(Vec::new()),
        })
    }

    /// Adds `v` (the argument's value in one row).
    pub fn update(&self, acc: &mut Acc, v: &ScalarValue) -> Result<(), String> {
        match (self.func, acc) {
            (AggFunc::CountStar, Acc::Count(c)) => *c += 1,
            (AggFunc::Count, Acc::Count(c)) => *c += i64::from(!v.is_null()),
            (AggFunc::Sum, Acc::Sum(s)) if !v.is_null() => *s = add(s, v, false)?,
            (AggFunc::SumList, Acc::Sum(s)) => {
                if let ScalarValue::List(l) = v {
                    if !l.is_null(0) {
                        let items = l.value(0);
                        for i in 0..items.len() {
                            let x = ScalarValue::try_from_array(&items, i)
                                .map_err(|e| e.to_string())?;
                            if !x.is_null() {
                                *s = add(s, &x, false)?;
                            }
                        }
                    }
                }
            }
            (AggFunc::Avg, Acc::Avg { sum, count }) if !v.is_null() => {
                *sum = add(sum, v, false)?;
                *count += 1;
            }
            (AggFunc::Min, Acc::Extreme(m))
                if !v.is_null() && (m.is_null() || cmp(v, m) == Ordering::Less) =>
            {
                *m = v.clone()
            }
            (AggFunc::Max, Acc::Extreme(m))
                if !v.is_null() && (m.is_null() || cmp(v, m) == Ordering::Greater) =>
            {
                *m = v.clone()
            }
            (AggFunc::CollectList, Acc::Values(vs)) if vs.len() < self.n.unwrap_or(usize::MAX) => {
                vs.push(v.clone())
            }
            (AggFunc::CollectSet, Acc::Values(vs))
                if !vs.contains(v) && vs.len() < self.n.unwrap_or(usize::MAX) =>
            {
                vs.push(v.clone())
            }
            (AggFunc::CountDistinct, Acc::Values(vs)) if !v.is_null() && !vs.contains(v) => {
                vs.push(v.clone())
            }
            (AggFunc::EarliestByOffset, Acc::Values(vs))
                if !(self.ignore_nulls && v.is_null()) && vs.len() < self.n.unwrap_or(1) =>
            {
                vs.push(v.clone())
            }
            (AggFunc::LatestByOffset, Acc::Values(vs)) if !(self.ignore_nulls && v.is_null()) => {
                vs.push(v.clone());
                let n = self.n.unwrap_or(1);
                if vs.len() > n {
                    vs.drain(..vs.len() - n);
                }
            }
            (AggFunc::TopK | AggFunc::TopKDistinct, Acc::Values(vs)) if !sort_key(v).is_null() => {
                if self.func == AggFunc::TopKDistinct && vs.contains(v) {
                    return Ok(());
                }
                let key = sort_key(v);
                let at = vs.partition_point(|x| cmp(&sort_key(x), &key) != Ordering::Less);
                vs.insert(at, v.clone());
                vs.truncate(self.n.unwrap_or(1));
            }
            (AggFunc::StddevSample, Acc::Moments(m)) => {
                if let Some(x) = as_f64(v)? {
                    m.add(x)
                }
            }
            (AggFunc::Correlation, Acc::Comoments(c)) => {
                if let Some((x, y)) = pair(v)? {
                    c.add(x, y, 1.0)
                }
            }
            (AggFunc::Attr, Acc::Counts(c)) => c.add(v, 1),
            (AggFunc::Histogram, Acc::Histogram(h)) if !v.is_null() => {
                let key = match v {
                    ScalarValue::Utf8(Some(s)) => s.clone(),
                    other => other.to_string(),
                };
                match h.iter().position(|(k, _)| *k == key) {
                    Some(i) => h[i].1 += 1,
                    None if h.len() < 1000 => h.push((key, 1)),
                    None => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Adds row `row` of the argument column `arg`: [`AggCall::update`] without a
    /// `ScalarValue` for the common cases (counts, and sums of the argument's own type), which
    /// are an aggregation's hot path.
    pub fn update_at(&self, acc: &mut Acc, arg: &ArrayRef, row: usize) -> Result<(), String> {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::{Float64Type, Int32Type, Int64Type};
        match (self.func, &mut *acc) {
            (AggFunc::CountStar, Acc::Count(c)) => *c += 1,
            (AggFunc::Count, Acc::Count(c)) => *c += i64::from(arg.is_valid(row)),
            (AggFunc::Sum, Acc::Sum(_)) if arg.is_null(row) => {}
            (AggFunc::Sum, Acc::Sum(ScalarValue::Int64(Some(s))))
                if arg.data_type() == &DataType::Int64 =>
            {
                *s = s.wrapping_add(arg.as_primitive::<Int64Type>().value(row))
            }
            (AggFunc::Sum, Acc::Sum(ScalarValue::Int32(Some(s))))
                if arg.data_type() == &DataType::Int32 =>
            {
                *s = s.wrapping_add(arg.as_primitive::<Int32Type>().value(row))
            }
            (AggFunc::Sum, Acc::Sum(ScalarValue::Float64(Some(s))))
                if arg.data_type() == &DataType::Float64 =>
            {
                *s += arg.as_primitive::<Float64Type>().value(row)
            }
            _ => {
                let v = ScalarValue::try_from_array(arg, row).map_err(|e| e.to_string())?;
                self.update(acc, &v)?
            }
        }
        Ok(())
    }

    /// Takes back a value added earlier (a table row that changed or was deleted).
    pub fn undo(&self, acc: &mut Acc, v: &ScalarValue) -> Result<(), String> {
        match (self.func, acc) {
            (AggFunc::CountStar, Acc::Count(c)) => *c -= 1,
            (AggFunc::Count, Acc::Count(c)) => *c -= i64::from(!v.is_null()),
            (AggFunc::Sum, Acc::Sum(s)) if !v.is_null() => *s = add(s, v, true)?,
            (AggFunc::Avg, Acc::Avg { sum, count }) if !v.is_null() => {
                *sum = add(sum, v, true)?;
                *count -= 1;
            }
            (AggFunc::CollectList, Acc::Values(vs)) => {
                if let Some(i) = vs.iter().rposition(|x| x == v) {
                    vs.remove(i);
                }
            }
            (AggFunc::CollectSet, Acc::Values(vs)) => vs.retain(|x| x != v),
            (AggFunc::StddevSample, Acc::Moments(m)) => {
                if let Some(x) = as_f64(v)? {
                    m.remove(x)
                }
            }
            (AggFunc::Correlation, Acc::Comoments(c)) => {
                if let Some((x, y)) = pair(v)? {
                    c.add(x, y, -1.0)
                }
            }
            (AggFunc::Attr, Acc::Counts(c)) => c.add(v, -1),
            (AggFunc::Histogram, Acc::Histogram(h)) if !v.is_null() => {
                let key = match v {
                    ScalarValue::Utf8(Some(s)) => s.clone(),
                    other => other.to_string(),
                };
                if let Some(i) = h.iter().position(|(k, _)| *k == key) {
                    h[i].1 -= 1;
                    if h[i].1 <= 0 {
                        h.remove(i);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Merges `later` (a session after `acc`'s in time) into `acc`.
    pub fn merge(&self, acc: &mut Acc, later: Acc) -> Result<(), String> {
        match (acc, later) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum(a), Acc::Sum(b)) => *a = add(a, &b, false)?,
            (Acc::Avg { sum, count }, Acc::Avg { sum: s2, count: c2 }) => {
                *sum = add(sum, &s2, false)?;
                *count += c2;
            }
            (acc @ Acc::Extreme(_), Acc::Extreme(b)) => self.update(acc, &b)?,
            (Acc::Moments(a), Acc::Moments(b)) => a.merge(b),
            (Acc::Comoments(a), Acc::Comoments(b)) => a.merge(b),
            (Acc::Counts(a), Acc::Counts(b)) => a.merge(b),
            (Acc::Histogram(a), Acc::Histogram(b)) => {
                for (k, c) in b {
                    match a.iter_mut().find(|(x, _)| *x == k) {
                        Some((_, n)) => *n += c,
                        None => a.push((k, c)),
                    }
                }
            }
            (acc @ Acc::Values(_), Acc::Values(b)) => {
                if self.func == AggFunc::LatestByOffset {
                    // Keep the latest n over both: `later` holds the newer values.
                    if let Acc::Values(a) = acc {
                        a.extend(b);
                        let n = self.n.unwrap_or(1);
                        if a.len() > n {
                            a.drain(..a.len() - n);
                        }
                    }
                } else {
                    for v in b {
                        self.update(acc, &v)?;
                    }
                }
            }
            _ => return Err("mismatched aggregate states".into()),
        }
        Ok(())
    }

    /// The aggregate's current result.
    pub fn result(&self, acc: &Acc) -> Result<ScalarValue, String> {
        Ok(match acc {
            Acc::Count(c) => ScalarValue::Int64(Some(*c)),
            Acc::Sum(s) => s.clone(),
            Acc::Extreme(m) => m.clone(),
            Acc::Avg { sum, count } => match sum {
                _ if *count == 0 => {
                    ScalarValue::try_from(&self.output_type()).map_err(|e| e.to_string())?
                }
                ScalarValue::Decimal128(Some(s), p, sc) => {
                    ScalarValue::Decimal128(Some(s / i128::from(*count)), *p, *sc)
                }
                other => {
                    let f = other
                        .cast_to(&DataType::Float64)
                        .map_err(|e| e.to_string())?;
                    match f {
                        ScalarValue::Float64(Some(x)) => {
                            ScalarValue::Float64(Some(x / *count as f64))
                        }
                        _ => ScalarValue::Float64(None),
                    }
                }
            },
            Acc::Values(vs) => match self.func {
                AggFunc::CountDistinct => ScalarValue::Int64(Some(vs.len() as i64)),
                AggFunc::EarliestByOffset | AggFunc::LatestByOffset if !self.returns_array => vs
                    .first()
                    .cloned()
                    .map_or_else(|| ScalarValue::try_from(&self.arg_type), Ok)
                    .map_err(|e| e.to_string())?,
                _ => ScalarValue::List(ScalarValue::new_list_nullable(vs, &self.arg_type)),
            },
            Acc::Moments(m) => ScalarValue::Float64(Some(m.stddev_sample())),
            Acc::Comoments(c) => ScalarValue::Float64(Some(c.correlation())),
            Acc::Counts(c) => match c.single() {
                Some(v) => v.clone(),
                None => ScalarValue::try_from(&self.arg_type).map_err(|e| e.to_string())?,
            },
            Acc::Histogram(h) => {
                let keys: Vec<ScalarValue> = h
                    .iter()
                    .map(|(k, _)| ScalarValue::Utf8(Some(k.clone())))
                    .collect();
                let values: Vec<ScalarValue> = h
                    .iter()
                    .map(|(_, c)| ScalarValue::Int64(Some(*c)))
                    .collect();
                let DataType::Map(entries, _) = self.output_type() else {
                    unreachable!("a histogram is a map")
                };
                let DataType::Struct(kv) = entries.data_type().clone() else {
                    unreachable!("of entries")
                };
                ScalarValue::Map(Arc::new(crate::value::map_array(
                    entries, &kv, keys, values,
                )?))
            }
        })
    }

    /// Appends the state to `out`, for the state store.
    pub fn encode(&self, acc: &Acc, out: &mut Vec<u8>) -> Result<(), String> {
        match acc {
            Acc::Count(c) => out.extend_from_slice(&c.to_be_bytes()),
            Acc::Sum(s) | Acc::Extreme(s) => encode(s, out)?,
            Acc::Avg { sum, count } => {
                encode(sum, out)?;
                out.extend_from_slice(&count.to_be_bytes());
            }
            Acc::Values(vs) => {
                out.extend_from_slice(&(vs.len() as u32).to_be_bytes());
                for v in vs {
                    encode(v, out)?;
                }
            }
            Acc::Moments(m) => m.encode(out),
            Acc::Comoments(c) => c.encode(out),
            Acc::Counts(c) => c.encode(out)?,
            Acc::Histogram(h) => {
                out.extend_from_slice(&(h.len() as u32).to_be_bytes());
                for (k, c) in h {
                    encode(&ScalarValue::Utf8(Some(k.clone())), out)?;
                    out.extend_from_slice(&c.to_be_bytes());
                }
            }
        }
        Ok(())
    }

    /// Reads a state written by [`AggCall::encode`] from the front of `input`.
    pub fn decode(&self, input: &mut &[u8]) -> Result<Acc, String> {
        let i64_at = |input: &mut &[u8]| -> Result<i64, String> {
            let (head, rest) = input.split_at_checked(8).ok_or("truncated state")?;
            *input = rest;
            Ok(i64::from_be_bytes(head.try_into().expect("8 bytes")))
        };
        let u32_at = |input: &mut &[u8]| -> Result<usize, String> {
            let (head, rest) = input.split_at_checked(4).ok_or("truncated state")?;
            *input = rest;
            Ok(u32::from_be_bytes(head.try_into().expect("4 bytes")) as usize)
        };
        Ok(match self.init()? {
            Acc::Count(_) => Acc::Count(i64_at(input)?),
            Acc::Sum(z) => Acc::Sum(decode(&z.data_type(), input)?),
            Acc::Extreme(_) => Acc::Extreme(decode(&self.arg_type, input)?),
            Acc::Avg { sum, .. } => Acc::Avg {
                sum: decode(&sum.data_type(), input)?,
                count: i64_at(input)?,
            },
            Acc::Values(_) => {
                let n = u32_at(input)?;
                Acc::Values(
                    (0..n)
                        .map(|_| decode(&self.arg_type, input))
                        .collect::<Result<_, _>>()?,
                )
            }
            Acc::Moments(_) => Acc::Moments(Moments::decode(input)?),
            Acc::Comoments(_) => Acc::Comoments(Comoments::decode(input)?),
            Acc::Counts(_) => Acc::Counts(ValueCounts::decode(&self.arg_type, input)?),
            Acc::Histogram(_) => {
                let n = u32_at(input)?;
                let mut h = Vec::with_capacity(n);
                for _ in 0..n {
                    let ScalarValue::Utf8(Some(k)) = decode(&DataType::Utf8, input)? else {
                        return Err("a histogram key is null".into());
                    };
                    h.push((k, i64_at(input)?));
                }
                Acc::Histogram(h)
            }
        })
    }
}

#[cfg(test)]
mod tests;

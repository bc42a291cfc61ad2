//! The statistical aggregates' running states: STDDEV_SAMPLE's moments, CORRELATION's sums
//! and ATTR's value counts. Each can take a value back (aggregations over tables) and merge
//! (session windows), as ksqlDB's table aggregates do.

use datafusion::common::ScalarValue;

use crate::state_codec::{decode, encode};

/// Count, sum and sum of squared deviations of the values so far, updated by Youngs and
/// Cramer's recurrence (as ksqlDB's STDDEV_SAMPLE): numerically stable where the textbook
/// `sum of squares - square of sum` is not.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    count: i64,
    sum: f64,
    m2: f64,
}

impl Moments {
    pub fn add(&mut self, x: f64) {
        self.count += 1;
        if self.count > 1 {
            let delta = x * self.count as f64 - (self.sum + x);
            self.m2 += delta * delta / (self.count as f64 * (self.count - 1) as f64);
        }
        self.sum += x;
    }

    pub fn remove(&mut self, x: f64) {
        self.count -= 1;
        if self.count > 0 {
            // The recurrence run backwards: the delta as `add` computed it for `x`.
            let delta = x * (self.count + 1) as f64 - self.sum;
            self.m2 -= delta * delta / (self.count as f64 * (self.count + 1) as f64);
        } else {
            self.m2 = 0.0;
        }
        self.sum -= x;
    }

    pub fn merge(&mut self, other: Moments) {
        if self.count > 0 && other.count > 0 {
            let d = self.sum / self.count as f64 - other.sum / other.count as f64;
            let n = (self.count + other.count) as f64;
            self.m2 += other.m2 + self.count as f64 * other.count as f64 * d * d / n;
        } else {
            self.m2 += other.m2;
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    /// The sample standard deviation; 0 for fewer than two values, as ksqlDB answers.
    pub fn stddev_sample(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        (self.m2 / (self.count - 1) as f64).sqrt()
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.sum.to_be_bytes());
        out.extend_from_slice(&self.m2.to_be_bytes());
    }

    pub fn decode(input: &mut &[u8]) -> Result<Moments, String> {
        let [count, sum, m2] = words(input)?;
        Ok(Moments {
            count: i64::from_be_bytes(count),
            sum: f64::from_be_bytes(sum),
            m2: f64::from_be_bytes(m2),
        })
    }
}

/// The sums the Pearson correlation of pairs is computed from in one pass (ksqlDB's
/// CORRELATION).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Comoments {
    count: i64,
    x: f64,
    y: f64,
    xx: f64,
    yy: f64,
    xy: f64,
}

impl Comoments {
    /// Adds (`sign` 1) or takes back (`sign` -1) the pair `(x, y)`.
    pub fn add(&mut self, x: f64, y: f64, sign: f64) {
        self.count += sign as i64;
        self.x += sign * x;
        self.y += sign * y;
        self.xx += sign * x * x;
        self.yy += sign * y * y;
        self.xy += sign * x * y;
    }

    pub fn merge(&mut self, o: Comoments) {
        self.count += o.count;
        self.x += o.x;
        self.y += o.y;
        self.xx += o.xx;
        self.yy += o.yy;
        self.xy += o.xy;
    }

    /// The correlation coefficient: NaN without two distinct values on each side, as ksqlDB's
    /// division by zero gives.
    pub fn correlation(&self) -> f64 {
        let n = self.count as f64;
        let numerator = n * self.xy - self.x * self.y;
        let dx = n * self.xx - self.x * self.x;
        let dy = n * self.yy - self.y * self.y;
        numerator / (dx * dy).sqrt()
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.count.to_be_bytes());
        for f in [self.x, self.y, self.xx, self.yy, self.xy] {
            out.extend_from_slice(&f.to_be_bytes());
        }
    }

    pub fn decode(input: &mut &[u8]) -> Result<Comoments, String> {
        let [count, x, y, xx, yy, xy] = words(input)?;
        Ok(Comoments {
            count: i64::from_be_bytes(count),
            x: f64::from_be_bytes(x),
            y: f64::from_be_bytes(y),
            xx: f64::from_be_bytes(xx),
            yy: f64::from_be_bytes(yy),
            xy: f64::from_be_bytes(xy),
        })
    }
}

/// ATTR's state: how many times each value (null too) was seen. The result is the value when
/// exactly one has a positive count, else null. A list, not a map: ATTR expects one value, so
/// it rarely holds more.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValueCounts(Vec<(ScalarValue, i64)>);

impl ValueCounts {
    /// Counts `v` `n` more times (fewer for a negative `n`, never below zero).
    pub fn add(&mut self, v: &ScalarValue, n: i64) {
        match self.0.iter_mut().find(|(x, _)| x == v) {
            Some((_, count)) => *count = (*count + n).max(0),
            None if n > 0 => self.0.push((v.clone(), n)),
            None => {}
        }
    }

    pub fn merge(&mut self, other: ValueCounts) {
        for (v, n) in other.0 {
            self.add(&v, n);
        }
    }

    /// The single value seen, if exactly one was (`None`: ask for a null of the type).
    pub fn single(&self) -> Option<&ScalarValue> {
        let mut seen = self.0.iter().filter(|(_, n)| *n > 0);
        match (seen.next(), seen.next()) {
            (Some((v, _)), None) => Some(v),
            _ => None,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (v, n) in &self.0 {
            encode(v, out)?;
            out.extend_from_slice(&n.to_be_bytes());
        }
        Ok(())
    }

    pub fn decode(
        t: &datafusion::arrow::datatypes::DataType,
        input: &mut &[u8],
    ) -> Result<ValueCounts, String> {
        let [n] = take::<4, 1>(input)?;
        let mut counts = Vec::new();
        for _ in 0..u32::from_be_bytes(n) {
            let v = decode(t, input)?;
            let [n] = words(input)?;
            counts.push((v, i64::from_be_bytes(n)));
        }
        Ok(ValueCounts(counts))
    }
}

/// The next `K` eight-byte words of `input`.
fn words<const K: usize>(input: &mut &[u8]) -> Result<[[u8; 8]; K], String> {
    take::<8, K>(input)
}

fn take<const N: usize, const K: usize>(input: &mut &[u8]) -> Result<[[u8; N]; K], String> {
    let mut out = [[0u8; N]; K];
    for word in &mut out {
        let (head, rest) = input.split_at_checked(N).ok_or("truncated state")?;
        word.copy_from_slice(head);
        *input = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn moments(xs: &[f64]) -> Moments {
        let mut m = Moments::default();
        xs.iter().for_each(|x| m.add(*x));
        m
    }

    #[test]
    fn sample_standard_deviation_and_correlation() {
        let m = moments(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((m.stddev_sample() - 2.138089935299395).abs() < 1e-12);
        assert_eq!(moments(&[3.0]).stddev_sample(), 0.0);
        let mut c = Comoments::default();
        for (x, y) in [(1.0, 2.0), (2.0, 4.0), (3.0, 6.5)] {
            c.add(x, y, 1.0);
        }
        assert!(c.correlation() > 0.99);
        let mut flat = Comoments::default();
        flat.add(1.0, 1.0, 1.0);
        assert!(flat.correlation().is_nan());
    }

    #[test]
    fn attr_is_the_single_value_seen() {
        let mut a = ValueCounts::default();
        let one = ScalarValue::Int32(Some(1));
        a.add(&one, 1);
        a.add(&one, 1);
        assert_eq!(a.single(), Some(&one));
        a.add(&ScalarValue::Int32(Some(2)), 1);
        assert_eq!(a.single(), None);
        a.add(&ScalarValue::Int32(Some(2)), -1);
        assert_eq!(a.single(), Some(&one));
    }

    proptest! {
        /// Taking values back, or merging two runs, ends where adding only the others would.
        #[test]
        fn moments_remove_and_merge_as_if_never_added(
            xs in proptest::collection::vec(-1e3f64..1e3, 0..12),
            ys in proptest::collection::vec(-1e3f64..1e3, 0..12),
        ) {
            let mut m = moments(&xs);
            ys.iter().for_each(|y| m.add(*y));
            ys.iter().for_each(|y| m.remove(*y));
            let want = moments(&xs);
            prop_assert_eq!(m.count, want.count);
            prop_assert!((m.stddev_sample() - want.stddev_sample()).abs() < 1e-6);
            let mut merged = moments(&xs);
            merged.merge(moments(&ys));
            let all: Vec<f64> = xs.iter().chain(&ys).copied().collect();
            prop_assert!((merged.stddev_sample() - moments(&all).stddev_sample()).abs() < 1e-6);
        }

        #[test]
        fn states_round_trip(xs in proptest::collection::vec(-1e3f64..1e3, 0..12)) {
            let m = moments(&xs);
            let mut c = Comoments::default();
            xs.iter().for_each(|x| c.add(*x, x * 2.0, 1.0));
            let mut v = ValueCounts::default();
            xs.iter().for_each(|x| v.add(&ScalarValue::Float64(Some(x.round())), 1));
            let mut bytes = Vec::new();
            m.encode(&mut bytes);
            c.encode(&mut bytes);
            v.encode(&mut bytes).unwrap();
            let mut input = bytes.as_slice();
            prop_assert_eq!(Moments::decode(&mut input).unwrap(), m);
            prop_assert_eq!(Comoments::decode(&mut input).unwrap(), c);
            prop_assert_eq!(ValueCounts::decode(&datafusion::arrow::datatypes::DataType::Float64, &mut input).unwrap(), v);
            prop_assert!(input.is_empty());
        }
    }
}

//! Date and time functions: reading and writing timestamps, dates and times in Java patterns
//! (in a time zone where one is given, UTC otherwise), converting between zones, and adding
//! or subtracting intervals.
//!
//! ksqlDB has two generations of these: the BIGINT and INT ones (STRINGTOTIMESTAMP,
//! TIMESTAMPTOSTRING, STRINGTODATE, DATETOSTRING), on epoch milliseconds and days, and the
//! typed ones (PARSE_TIMESTAMP, FORMAT_DATE, ...) on TIMESTAMP, DATE and TIME; both are here.
//! Text that does not fit its pattern gives null.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{ScalarUDF, Signature, TypeSignature, Volatility};
use eddy_engine::{TimestampFormat, Zone};

use super::{exact, int64s, strings, udf, udf_checked, wrong_arguments, PerText};

const DAY_MS: i64 = 86_400_000;

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

fn time() -> DataType {
    DataType::Time32(TimeUnit::Millisecond)
}

/// `first, format` or `first, format, zone`.
fn with_optional_zone(first: DataType) -> Signature {
    let s = DataType::Utf8;
    Signature::one_of(
        vec![
            TypeSignature::Exact(vec![first.clone(), s.clone()]),
            TypeSignature::Exact(vec![first, s.clone(), s]),
        ],
        Volatility::Immutable,
    )
}

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch exists")
}

fn day_number(d: NaiveDate) -> i64 {
    (d - epoch()).num_days()
}

fn date_of(days: i64) -> Option<NaiveDate> {
    epoch().checked_add_signed(chrono::Duration::try_days(days)?)
}

fn time_of(ms: i64) -> Option<NaiveTime> {
    let ms = u32::try_from(ms.rem_euclid(DAY_MS)).ok()?;
    NaiveTime::from_num_seconds_from_midnight_opt(ms / 1000, ms % 1000 * 1_000_000)
}

fn millis_of_day(t: NaiveTime) -> i64 {
    i64::from(t.num_seconds_from_midnight()) * 1000 + i64::from(t.nanosecond() / 1_000_000)
}

/// Epoch numbers (milliseconds or days) as a column of `to`.
fn column(values: Vec<Option<i64>>, to: &DataType) -> Result<ArrayRef> {
    let longs: ArrayRef = Arc::new(Int64Array::from(values));
    Ok(match to {
        DataType::Int64 => longs,
        DataType::Date32 | DataType::Time32(_) | DataType::Int32 => {
            cast(&cast(&longs, &DataType::Int32)?, to)?
        }
        other => cast(&longs, other)?,
    })
}

/// For each row, `f` of the row with its pattern (`args[1]`) and zone (`args[2]`, UTC when
/// absent); null where either is null or does not parse.
fn per_row<T>(
    args: &[ArrayRef],
    rows: usize,
    mut f: impl FnMut(usize, &TimestampFormat, &Zone) -> Option<T>,
) -> Result<Vec<Option<T>>> {
    let patterns = strings(&args[1])?;
    let zones = args.get(2).map(strings).transpose()?;
    let mut formats = PerText::new(|p| TimestampFormat::new(p).ok());
    let mut zone_of = PerText::new(|z| Zone::parse(z).ok());
    Ok((0..rows)
        .map(|row| {
            let zone = match &zones {
                Some(z) => *zone_of.get(z.is_valid(row).then(|| z.value(row))?)?,
                None => Zone::UTC,
            };
            let format = formats.get(patterns.is_valid(row).then(|| patterns.value(row))?)?;
            f(row, format, &zone)
        })
        .collect())
}

/// Reads `args[0]` (text) with the pattern `args[1]`, in the zone `args[2]` if given.
fn read(
    args: &[ArrayRef],
    rows: usize,
    to: &DataType,
    f: impl Fn(&TimestampFormat, &str, &Zone) -> Option<i64>,
) -> Result<ArrayRef> {
    let texts = strings(&args[0])?;
    let out = per_row(args, rows, |row, format, zone| {
        f(format, texts.is_valid(row).then(|| texts.value(row))?, zone)
    })?;
    column(out, to)
}

/// Writes `args[0]` (epoch milliseconds or days) with the pattern `args[1]`, in the zone
/// `args[2]` if given.
fn write(
    args: &[ArrayRef],
    rows: usize,
    f: impl Fn(&TimestampFormat, i64, &Zone) -> Option<String>,
) -> Result<ArrayRef> {
    let values = int64s(&args[0])?;
    let out = per_row(args, rows, |row, format, zone| {
        f(
            format,
            values.is_valid(row).then(|| values.value(row))?,
            zone,
        )
    })?;
    Ok(Arc::new(StringArray::from(out)))
}

/// Nanoseconds in one of Java's `TimeUnit`s, as ksqlDB names them.
fn unit_nanos(unit: &str) -> Option<i128> {
    Some(match unit.to_ascii_uppercase().trim_end_matches('S') {
        "NANOSECOND" => 1,
        "MICROSECOND" => 1_000,
        "MILLISECOND" => 1_000_000,
        "SECOND" => 1_000_000_000,
        "MINUTE" => 60_000_000_000,
        "HOUR" => 3_600_000_000_000,
        "DAY" => 86_400_000_000_000,
        _ => return None,
    })
}

/// Whether `word` names a time unit, as the first argument of TIMEADD and the like.
pub(crate) fn is_time_unit(word: &str) -> bool {
    unit_nanos(word).is_some()
}

/// `add(unit, n, value)`: value moved by n units, `sign` times, as `step` applies it to the
/// value's own number (milliseconds or days) and the interval in nanoseconds.
fn shift(
    name: &'static str,
    of: DataType,
    sign: i128,
    step: fn(i64, i128) -> Option<i64>,
) -> ScalarUDF {
    let to = of.clone();
    let target = of.clone();
    let coerce = move |t: &[DataType]| match t {
        [unit, count, value]
            if matches!(
                unit,
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            ) && (count.is_integer() || count.is_null())
                && (*value == target || value.is_null()) =>
        {
            Ok(vec![DataType::Utf8, DataType::Int64, target.clone()])
        }
        _ => wrong_arguments(name, t),
    };
    udf_checked(name, of, coerce, move |args, rows| {
        let (units, counts, values) = (strings(&args[0])?, int64s(&args[1])?, int64s(&args[2])?);
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if units.is_null(row) || counts.is_null(row) || values.is_null(row) {
                out.push(None);
                continue;
            }
            let Some(nanos) = unit_nanos(units.value(row)) else {
                return exec_err!("{name}: unknown time unit '{}'", units.value(row));
            };
            out.push(step(
                values.value(row),
                sign * i128::from(counts.value(row)) * nanos,
            ));
        }
        column(out, &to)
    })
}

pub(super) fn functions() -> Vec<ScalarUDF> {
    let s = DataType::Utf8;
    let now = || chrono::Utc::now().timestamp_millis();
    vec![
        udf(
            "stringtotimestamp",
            with_optional_zone(s.clone()),
            DataType::Int64,
            |a, n| {
                read(a, n, &DataType::Int64, |f, t, z| {
                    f.parse_millis_in(t, z).ok()
                })
            },
        ),
        udf(
            "parse_timestamp",
            with_optional_zone(s.clone()),
            ts(),
            |a, n| read(a, n, &ts(), |f, t, z| f.parse_millis_in(t, z).ok()),
        ),
        udf(
            "stringtodate",
            exact(vec![s.clone(), s.clone()]),
            DataType::Int32,
            |a, n| {
                read(a, n, &DataType::Int32, |f, t, _| {
                    f.parse_date(t).ok().map(day_number)
                })
            },
        ),
        udf(
            "parse_date",
            exact(vec![s.clone(), s.clone()]),
            DataType::Date32,
            |a, n| {
                read(a, n, &DataType::Date32, |f, t, _| {
                    f.parse_date(t).ok().map(day_number)
                })
            },
        ),
        udf(
            "parse_time",
            exact(vec![s.clone(), s.clone()]),
            time(),
            |a, n| {
                read(a, n, &time(), |f, t, _| {
                    f.parse_time(t).ok().map(millis_of_day)
                })
            },
        ),
        udf(
            "timestamptostring",
            with_optional_zone(DataType::Int64),
            s.clone(),
            |a, n| write(a, n, |f, ms, z| f.format_millis(ms, z).ok()),
        ),
        udf(
            "format_timestamp",
            with_optional_zone(ts()),
            s.clone(),
            |a, n| write(a, n, |f, ms, z| f.format_millis(ms, z).ok()),
        ),
        udf(
            "datetostring",
            exact(vec![DataType::Int32, s.clone()]),
            s.clone(),
            |a, n| write(a, n, |f, days, _| Some(f.format_date(date_of(days)?))),
        ),
        udf(
            "format_date",
            exact(vec![DataType::Date32, s.clone()]),
            s.clone(),
            |a, n| write(a, n, |f, days, _| Some(f.format_date(date_of(days)?))),
        ),
        udf(
            "format_time",
            exact(vec![time(), s.clone()]),
            s.clone(),
            |a, n| write(a, n, |f, ms, _| Some(f.format_time(time_of(ms)?))),
        ),
        // CONVERT_TZ(ts, from, to): the wall-clock time ts shows in `from`, as it shows in `to`.
        udf(
            "convert_tz",
            exact(vec![ts(), s.clone(), s]),
            ts(),
            |a, n| {
                let (values, from, to) = (int64s(&a[0])?, strings(&a[1])?, strings(&a[2])?);
                let mut zone_of = PerText::new(|z| Zone::parse(z).ok());
                let mut out = Vec::with_capacity(n);
                for row in 0..n {
                    if values.is_null(row) || from.is_null(row) || to.is_null(row) {
                        out.push(None);
                        continue;
                    }
                    let ms = values.value(row);
                    let Some(f) = zone_of.get(from.value(row)).copied() else {
                        return exec_err!("CONVERT_TZ: unknown time zone '{}'", from.value(row));
                    };
                    let Some(t) = zone_of.get(to.value(row)).copied() else {
                        return exec_err!("CONVERT_TZ: unknown time zone '{}'", to.value(row));
                    };
                    out.push(Some(ms - f.offset_millis_at(ms) + t.offset_millis_at(ms)));
                }
                column(out, &ts())
            },
        ),
        // FROM_UNIXTIME(ms): the timestamp of epoch milliseconds (DataFusion's takes seconds).
        udf(
            "from_unixtime",
            exact(vec![DataType::Int64]),
            ts(),
            |a, _| Ok(cast(&a[0], &ts())?),
        ),
        udf(
            "from_days",
            exact(vec![DataType::Int32]),
            DataType::Date32,
            |a, _| Ok(cast(&a[0], &DataType::Date32)?),
        ),
        // UNIX_TIMESTAMP([ts]) and UNIX_DATE([date]): now, or the value's epoch number.
        udf(
            "unix_timestamp",
            Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::Exact(vec![ts()])],
                Volatility::Volatile,
            ),
            DataType::Int64,
            move |a, n| match a.first() {
                Some(v) => Ok(cast(v, &DataType::Int64)?),
                None => column(vec![Some(now()); n], &DataType::Int64),
            },
        ),
        udf(
            "unix_date",
            Signature::one_of(
                vec![
                    TypeSignature::Nullary,
                    TypeSignature::Exact(vec![DataType::Date32]),
                ],
                Volatility::Volatile,
            ),
            DataType::Int32,
            move |a, n| match a.first() {
                Some(v) => Ok(cast(v, &DataType::Int32)?),
                None => column(vec![Some(now().div_euclid(DAY_MS)); n], &DataType::Int32),
            },
        ),
        shift("timestampadd", ts(), 1, move_millis),
        shift("timestampsub", ts(), -1, move_millis),
        shift("timeadd", time(), 1, move_time),
        shift("timesub", time(), -1, move_time),
        shift("dateadd", DataType::Date32, 1, move_days),
        shift("datesub", DataType::Date32, -1, move_days),
    ]
}

fn move_millis(ms: i64, nanos: i128) -> Option<i64> {
    ms.checked_add(i64::try_from(nanos / 1_000_000).ok()?)
}

/// A time of day wraps around midnight.
fn move_time(ms: i64, nanos: i128) -> Option<i64> {
    let delta = i64::try_from((nanos / 1_000_000) % i128::from(DAY_MS)).ok()?;
    Some((ms + delta).rem_euclid(DAY_MS))
}

/// A date moves by whole days (a shorter interval truncated, as Java's `TimeUnit.toDays`).
fn move_days(days: i64, nanos: i128) -> Option<i64> {
    days.checked_add(i64::try_from(nanos / 86_400_000_000_000).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_move_values_by_their_units() {
        assert_eq!(move_time(86_399_995, 10_000_000), Some(5));
        assert_eq!(move_time(5, -10_000_000), Some(86_399_995));
        assert_eq!(move_days(5, -10 * 86_400_000_000_000), Some(-5));
        assert_eq!(move_days(5, 3_600_000_000_000), Some(5));
        assert_eq!(move_millis(20, -10_000_000), Some(10));
        assert!(is_time_unit("milliseconds") && is_time_unit("DAYS") && !is_time_unit("DATE"));
    }
}

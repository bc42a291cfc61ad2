//! Timestamps, dates and times written as text, in Java's `DateTimeFormatter` patterns
//! (ksqlDB's `TIMESTAMP_FORMAT` and its date and time functions), and time zones.
//!
//! A pattern is translated once: into a `chrono` format for reading, and into pieces for
//! writing (chrono has no one-digit fraction, no `Z` for a zero offset, no zone id). Reading is
//! lenient as ksqlDB's is: month and day names in any case, fields the pattern lacks take their
//! least value (`MMM-yyyy` reads as the first of the month), and text without an offset is read
//! in the zone given, UTC by default, unless it names its own zone or offset. Supported
//! letters: `y u M d D H h m s S a E X x Z z V` and quoted literals.

use std::fmt::{Display, Write as _};
use std::str::FromStr;

use chrono::format::{Parsed, StrftimeItems};
use chrono::{
    DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike,
};

/// A time zone as ksqlDB's functions accept it: an IANA name (`Europe/London`, `UTC`) or a
/// fixed offset (`+0200`, `-05:00`, `Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    Named(chrono_tz::Tz),
    Fixed(FixedOffset),
}

impl Zone {
    pub const UTC: Zone = Zone::Named(chrono_tz::Tz::UTC);

    pub fn parse(text: &str) -> Result<Zone, String> {
        let t = text.trim();
        if let Ok(tz) = chrono_tz::Tz::from_str(t) {
            return Ok(Zone::Named(tz));
        }
        // Abbreviations Java reads as zone names (its `ZoneId.SHORT_IDS`, and the daylight
        // names that formatting writes).
        let abbreviated = match t.to_ascii_uppercase().as_str() {
            "PST" | "PDT" | "PT" => Some(chrono_tz::America::Los_Angeles),
            "EDT" | "ET" => Some(chrono_tz::America::New_York),
            "CST" | "CDT" | "CT" => Some(chrono_tz::America::Chicago),
            "MDT" => Some(chrono_tz::America::Denver),
            "BST" => Some(chrono_tz::Europe::London),
            "CEST" | "ECT" => Some(chrono_tz::Europe::Paris),
            "IST" => Some(chrono_tz::Asia::Kolkata),
            "JST" => Some(chrono_tz::Asia::Tokyo),
            "AEST" | "AEDT" | "AET" => Some(chrono_tz::Australia::Sydney),
            _ => None,
        };
        if let Some(tz) = abbreviated {
            return Ok(Zone::Named(tz));
        }
        let offset = t
            .strip_prefix("GMT")
            .or_else(|| t.strip_prefix("UTC"))
            .unwrap_or(t);
        if offset == "Z" {
            return Ok(Zone::Fixed(FixedOffset::east_opt(0).expect("zero offset")));
        }
        let bad = || format!("unknown time zone '{text}'");
        let (sign, rest) = match offset.as_bytes().first() {
            Some(b'+') => (1, &offset[1..]),
            Some(b'-') => (-1, &offset[1..]),
            _ => return Err(bad()),
        };
        let digits = rest.replace(':', "");
        if !digits.chars().all(|c| c.is_ascii_digit()) || !matches!(digits.len(), 1 | 2 | 4) {
            return Err(bad());
        }
        let (h, m) = if digits.len() == 4 {
            (&digits[..2], &digits[2..])
        } else {
            (&digits[..], "0")
        };
        let secs =
            h.parse::<i32>().map_err(|_| bad())? * 3600 + m.parse::<i32>().map_err(|_| bad())? * 60;
        FixedOffset::east_opt(sign * secs)
            .map(Zone::Fixed)
            .ok_or_else(bad)
    }

    /// The zone's offset from UTC at the instant `ms`, in milliseconds.
    pub fn offset_millis_at(&self, ms: i64) -> i64 {
        let utc = DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .naive_utc();
        let secs = match self {
            Zone::Named(tz) => tz.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
            Zone::Fixed(o) => o.local_minus_utc(),
        };
        i64::from(secs) * 1000
    }

    /// The instant of the wall-clock time `local` in this zone (the earlier one in a
    /// daylight-saving overlap, the time after the gap in a gap).
    fn instant_of(&self, local: &NaiveDateTime) -> Option<i64> {
        fn earliest<T: TimeZone>(tz: &T, local: &NaiveDateTime) -> Option<i64> {
            tz.from_local_datetime(local)
                .earliest()
                .or_else(|| {
                    tz.from_local_datetime(&(*local + chrono::Duration::hours(1)))
                        .earliest()
                })
                .map(|d| d.timestamp_millis())
        }
        match self {
            Zone::Named(tz) => earliest(tz, local),
            Zone::Fixed(o) => earliest(o, local),
        }
    }
}

/// One part of a pattern, for writing.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// A chrono format specification (or literal text escaped for chrono).
    Chrono(String),
    /// `n` digits of the second's fraction (Java's `S` repeated).
    Fraction(usize),
    /// An offset: `Z` for zero when `z_for_zero` (Java's `X`), with a colon when `colon`,
    /// without whole minutes when `short` (Java's `X` and `x` alone).
    Offset {
        colon: bool,
        z_for_zero: bool,
        short: bool,
    },
    /// The zone's id (`VV`).
    ZoneId,
}

/// A parsed Java date-time pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimestampFormat {
    java: String,
    chrono: String,
    pieces: Vec<Piece>,
    has_offset: bool,
    has_zone_name: bool,
}

impl TimestampFormat {
    /// Translates a Java pattern such as `yyyy-MM-dd'T'HH:mm:ss.SSSX`.
    pub fn new(java: &str) -> Result<TimestampFormat, String> {
        let mut chrono_fmt = String::new();
        let mut pieces = Vec::new();
        let (mut has_offset, mut has_zone_name) = (false, false);
        let chars: Vec<char> = java.chars().collect();
        let mut i = 0;
        let literal = |pieces: &mut Vec<Piece>, chrono_fmt: &mut String, c: char| {
            let escaped = if c == '%' {
                "%%".to_string()
            } else {
                c.to_string()
            };
            chrono_fmt.push_str(&escaped);
            pieces.push(Piece::Chrono(escaped));
        };
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                // 'literal' text; '' is a quote.
                let mut j = i + 1;
                if chars.get(j) == Some(&'\'') {
                    literal(&mut pieces, &mut chrono_fmt, '\'');
                    i += 2;
                    continue;
                }
                while j < chars.len() && chars[j] != '\'' {
                    literal(&mut pieces, &mut chrono_fmt, chars[j]);
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            if !c.is_ascii_alphabetic() {
                if c == '.' && chars.get(i + 1) == Some(&'S') {
                    // A dot and fraction digits: read any number of digits.
                    let mut j = i + 1;
                    while chars.get(j) == Some(&'S') {
                        j += 1;
                    }
                    chrono_fmt.push_str("%.f");
                    pieces.push(Piece::Chrono(".".into()));
                    pieces.push(Piece::Fraction(j - i - 1));
                    i = j;
                    continue;
                }
                literal(&mut pieces, &mut chrono_fmt, c);
                i += 1;
                continue;
            }
            let mut n = 1;
            while chars.get(i + n) == Some(&c) {
                n += 1;
            }
            let spec = match (c, n) {
                ('y' | 'u', 2) => "%y",
                ('y' | 'u', _) => "%Y",
                ('M', 1) => "%-m",
                ('M', 2) => "%m",
                ('M', 3) => "%b",
                ('M', _) => "%B",
                ('d', 1) => "%-d",
                ('d', _) => "%d",
                ('D', _) => "%j",
                ('H', 1) => "%-H",
                ('H', _) => "%H",
                ('h', 1) => "%-I",
                ('h', _) => "%I",
                ('m', 1) => "%-M",
                ('m', _) => "%M",
                ('s', 1) => "%-S",
                ('s', _) => "%S",
                ('S', _) => "",
                ('a', _) => "%p",
                ('E', 1..=3) => "%a",
                ('E', _) => "%A",
                ('X' | 'x', 1 | 2) | ('Z', 1..=3) => "%z",
                ('X' | 'x', _) | ('Z', _) => "%:z",
                ('z', _) => "%Z",
                ('V', 2) => "",
                _ => {
                    return Err(format!(
                        "unsupported pattern letter '{c}' in date-time format '{java}'"
                    ))
                }
            };
            match c {
                'S' => {
                    chrono_fmt.push_str(match n {
                        3 => "%3f",
                        6 => "%6f",
                        9 => "%9f",
                        _ => "%f",
                    });
                    pieces.push(Piece::Fraction(n));
                }
                'X' | 'x' | 'Z' => {
                    has_offset = true;
                    chrono_fmt.push_str(spec);
                    pieces.push(Piece::Offset {
                        colon: spec == "%:z",
                        z_for_zero: c == 'X',
                        short: c != 'Z' && n == 1,
                    });
                }
                'z' | 'V' => {
                    has_zone_name = true;
                    chrono_fmt.push_str("%Z");
                    pieces.push(if c == 'V' {
                        Piece::ZoneId
                    } else {
                        Piece::Chrono(spec.into())
                    });
                }
                _ => {
                    chrono_fmt.push_str(spec);
                    pieces.push(Piece::Chrono(spec.into()));
                }
            }
            i += n;
        }
        Ok(TimestampFormat {
            java: java.to_string(),
            chrono: chrono_fmt,
            pieces,
            has_offset,
            has_zone_name,
        })
    }

    /// Milliseconds since the epoch of `text`, read in UTC unless it carries an offset.
    pub fn parse_millis(&self, text: &str) -> Result<i64, String> {
        self.parse_millis_in(text, &Zone::UTC)
    }

    /// Milliseconds since the epoch of `text`, read in `zone` unless it carries an offset.
    pub fn parse_millis_in(&self, text: &str, zone: &Zone) -> Result<i64, String> {
        let (p, named) = self.parse_fields(text)?;
        let local = self.local(&p, text)?;
        match p.offset() {
            Some(off) => Ok(local.and_utc().timestamp_millis() - i64::from(off) * 1000),
            None => named
                .as_ref()
                .unwrap_or(zone)
                .instant_of(&local)
                .ok_or_else(|| self.cannot(text, "no such time in the zone")),
        }
    }

    /// The date `text` names.
    pub fn parse_date(&self, text: &str) -> Result<NaiveDate, String> {
        let (p, _) = self.parse_fields(text)?;
        Ok(self.local(&p, text)?.date())
    }

    /// The time of day `text` names.
    pub fn parse_time(&self, text: &str) -> Result<NaiveTime, String> {
        let (p, _) = self.parse_fields(text)?;
        Ok(self.local(&p, text)?.time())
    }

    /// Writes the instant `ms` as wall-clock time in `zone`.
    pub fn format_millis(&self, ms: i64, zone: &Zone) -> Result<String, String> {
        let utc = DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| format!("timestamp {ms} is out of range"))?;
        Ok(match zone {
            Zone::Named(tz) => self.render(&utc.with_timezone(tz), Some(tz.name())),
            Zone::Fixed(o) => self.render(&utc.with_timezone(o), None),
        })
    }

    pub fn format_date(&self, date: NaiveDate) -> String {
        self.render(&date.and_time(NaiveTime::MIN).and_utc(), Some("UTC"))
    }

    pub fn format_time(&self, time: NaiveTime) -> String {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch exists");
        self.render(&epoch.and_time(time).and_utc(), Some("UTC"))
    }

    fn render<T: TimeZone>(&self, at: &DateTime<T>, zone_id: Option<&str>) -> String
    where
        T::Offset: Display,
    {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Chrono(spec) => {
                    let _ = write!(out, "{}", at.format(spec));
                }
                Piece::Fraction(n) => {
                    let nanos = format!("{:09}", at.nanosecond() % 1_000_000_000);
                    out.push_str(&format!("{nanos:0<n$}")[..*n]);
                }
                Piece::Offset {
                    colon,
                    z_for_zero,
                    short,
                } => {
                    let secs = at.offset().fix().local_minus_utc();
                    if secs == 0 && *z_for_zero {
                        out.push('Z');
                    } else {
                        let (sign, secs) = if secs < 0 { ('-', -secs) } else { ('+', secs) };
                        let (h, m) = (secs / 3600, secs / 60 % 60);
                        let sep = if *colon { ":" } else { "" };
                        let _ = write!(out, "{sign}{h:02}");
                        if !(*short && m == 0) {
                            let _ = write!(out, "{sep}{m:02}");
                        }
                    }
                }
                Piece::ZoneId => match zone_id {
                    Some(id) => out.push_str(id),
                    None => {
                        let _ = write!(out, "{}", at.offset());
                    }
                },
            }
        }
        out
    }

    fn cannot(&self, text: &str, why: impl Display) -> String {
        format!("cannot parse '{text}' with format '{}': {why}", self.java)
    }

    /// The fields of `text`, and the zone it names (`z`, `VV`) if the pattern has one.
    fn parse_fields(&self, text: &str) -> Result<(Parsed, Option<Zone>), String> {
        // Java's X reads Z (either case) for UTC; chrono's offsets do not.
        let text = match text.strip_suffix(['Z', 'z']) {
            Some(rest) if self.has_offset => format!(
                "{rest}{}",
                if self.chrono.contains("%:z") {
                    "+00:00"
                } else {
                    "+0000"
                }
            ),
            _ => text.to_string(),
        };
        let mut p = Parsed::new();
        let bad = |e| self.cannot(&text, e);
        // chrono skips a zone name; read the pattern up to it, the name, then the rest.
        let Some((before, after)) = self.chrono.split_once("%Z").filter(|_| self.has_zone_name)
        else {
            chrono::format::parse(&mut p, &text, StrftimeItems::new(&self.chrono)).map_err(bad)?;
            return Ok((p, None));
        };
        let rest = chrono::format::parse_and_remainder(&mut p, &text, StrftimeItems::new(before))
            .map_err(bad)?;
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let zone = Zone::parse(&rest[..end]).map_err(|e| self.cannot(&text, e))?;
        chrono::format::parse(&mut p, &rest[end..], StrftimeItems::new(after)).map_err(bad)?;
        Ok((p, Some(zone)))
    }

    /// The wall-clock time `p` names, fields it lacks at their least value.
    fn local(&self, p: &Parsed, text: &str) -> Result<NaiveDateTime, String> {
        let mut p = p.clone();
        let bad = |e| self.cannot(text, e);
        if p.year().is_none() && p.year_mod_100().is_none() {
            p.set_year(1970).map_err(bad)?;
        }
        if p.ordinal().is_none() {
            if p.month().is_none() {
                p.set_month(1).map_err(bad)?;
            }
            if p.day().is_none() {
                p.set_day(1).map_err(bad)?;
            }
        }
        if p.hour_div_12().is_none() {
            match p.hour_mod_12() {
                None => p.set_hour(0).map_err(bad)?,
                Some(_) => p.set_ampm(false).map_err(bad)?,
            }
        }
        if p.minute().is_none() {
            p.set_minute(0).map_err(bad)?;
        }
        if p.second().is_none() {
            p.set_second(0).map_err(bad)?;
        }
        if p.nanosecond().is_none() {
            p.set_nanosecond(0).map_err(bad)?;
        }
        p.to_naive_datetime_with_offset(0).map_err(bad)
    }
}

impl Display for TimestampFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.java)
    }
}

/// Reads a possibly partial ISO-8601 timestamp, as ksqlDB compares strings with ROWTIME:
/// `2018`, `2018-01`, ..., `2018-01-01T10:00:00.001`, optionally followed by `Z` or an offset
/// (`+0445`, `+04:45`). Missing parts are their minimum; no offset means UTC.
pub fn parse_partial_iso(text: &str) -> Option<i64> {
    let text = text.trim();
    let (body, offset_secs) = split_offset(text)?;
    let mut fields = [1970i64, 1, 1, 0, 0, 0, 0];
    let digits: Vec<&str> = body.split(['-', 'T', ':', '.']).collect();
    if digits.is_empty()
        || digits.len() > 7
        || digits
            .iter()
            .any(|d| d.is_empty() || !d.chars().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    for (i, d) in digits.iter().enumerate() {
        fields[i] = if i == 6 {
            format!("{d:0<3}")[..3].parse().ok()?
        } else {
            d.parse().ok()?
        };
    }
    let date = NaiveDate::from_ymd_opt(fields[0] as i32, fields[1] as u32, fields[2] as u32)?;
    let time = date.and_hms_milli_opt(
        fields[3] as u32,
        fields[4] as u32,
        fields[5] as u32,
        fields[6] as u32,
    )?;
    Some(time.and_utc().timestamp_millis() - offset_secs * 1000)
}

/// Splits a trailing `Z` or `+HH[:]MM` / `-HH[:]MM` offset (after the time part) from `text`.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(body) = text.strip_suffix('Z') {
        return Some((body, 0));
    }
    if let Some(t) = text.find('T') {
        if let Some(i) = text[t..].rfind(['+', '-']).map(|i| i + t) {
            let zone = text[i + 1..].replace(':', "");
            if zone.len() != 4 || !zone.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let secs = zone[..2].parse::<i64>().ok()? * 3600 + zone[2..].parse::<i64>().ok()? * 60;
            return Some((&text[..i], if &text[i..=i] == "-" { -secs } else { secs }));
        }
    }
    Some((text, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_partial_iso_timestamps() {
        assert_eq!(parse_partial_iso("1970"), Some(0));
        assert_eq!(parse_partial_iso("1970-01-01T00:00:00.001"), Some(1));
        assert_eq!(parse_partial_iso("1970-01-01T00:00:01"), Some(1000));
        assert_eq!(parse_partial_iso("1970-01-01T04:45:00+0445"), Some(0));
        assert_eq!(parse_partial_iso("1970-01-01T00:00:00.5Z"), Some(500));
        assert_eq!(parse_partial_iso("yesterday"), None);
    }

    #[test]
    fn reads_java_patterns() {
        let f = TimestampFormat::new("yyyy-MM-dd'T'HH:mm:ss.SSS").unwrap();
        assert_eq!(f.parse_millis("1970-01-01T00:00:01.250").unwrap(), 1250);
        let z = TimestampFormat::new("yyyy-MM-dd'T'HH:mm:ssX").unwrap();
        assert_eq!(z.parse_millis("1970-01-01T01:00:00+0100").unwrap(), 0);
        assert_eq!(z.parse_millis("1970-01-01T00:00:10Z").unwrap(), 10_000);
        let one = TimestampFormat::new("yyyy-MM-dd HH:mm:ss.S").unwrap();
        assert_eq!(one.parse_millis("1970-01-01 00:00:00.5").unwrap(), 500);
        let d = TimestampFormat::new("yyyyMMdd").unwrap();
        assert_eq!(d.parse_millis("19700102").unwrap(), 86_400_000);
        let named = TimestampFormat::new("yyyy-MM-dd HH:mm zzz").unwrap();
        assert_eq!(
            named.parse_millis("1970-01-01 00:00 PST").unwrap(),
            8 * 3_600_000
        );
        assert!(TimestampFormat::new("yyyy q").is_err());
        assert!(f.parse_millis("not a date").is_err());
    }

    #[test]
    fn reads_leniently() {
        let m = TimestampFormat::new("MMM-yyyy").unwrap();
        assert_eq!(
            m.parse_date("JAN-2022").unwrap(),
            NaiveDate::from_ymd_opt(2022, 1, 1).unwrap()
        );
        let t = TimestampFormat::new("hh:mm:ss a").unwrap();
        assert_eq!(
            t.parse_time("01:00:00 Pm").unwrap(),
            NaiveTime::from_hms_opt(13, 0, 0).unwrap()
        );
        let z = TimestampFormat::new("yyyy-MM-dd'T'HH:mm:ssX").unwrap();
        assert_eq!(z.parse_millis("1970-01-01T00:00:01z").unwrap(), 1000);
        let la = Zone::parse("America/Los_Angeles").unwrap();
        let plain = TimestampFormat::new("yyyy-MM-dd HH:mm").unwrap();
        assert_eq!(
            plain.parse_millis_in("1970-01-01 00:00", &la).unwrap(),
            8 * 3_600_000
        );
    }

    #[test]
    fn writes_java_patterns() {
        let f = TimestampFormat::new("yyyy-MM-dd HH:mm:ss zzz").unwrap();
        let la = Zone::parse("America/Los_Angeles").unwrap();
        assert_eq!(
            f.format_millis(1526075913000, &la).unwrap(),
            "2018-05-11 14:58:33 PDT"
        );
        let x = TimestampFormat::new("HH:mm:ss.SX").unwrap();
        assert_eq!(x.format_millis(1250, &Zone::UTC).unwrap(), "00:00:01.2Z");
        let plus2 = Zone::parse("+0200").unwrap();
        assert_eq!(x.format_millis(0, &plus2).unwrap(), "02:00:00.0+02");
        let d = TimestampFormat::new("d/M/yy 'at' h a").unwrap();
        assert_eq!(
            d.format_millis(13 * 3_600_000, &Zone::UTC).unwrap(),
            "1/1/70 at 1 PM"
        );
        assert_eq!(Zone::parse("+0200").unwrap().offset_millis_at(0), 7_200_000);
        assert!(Zone::parse("Mars/Olympus").is_err());
    }
}

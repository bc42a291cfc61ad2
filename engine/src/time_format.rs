//! Timestamps written as text, in Java's `DateTimeFormatter` patterns (ksqlDB's
//! `TIMESTAMP_FORMAT`, and later its date and time functions).
//!
//! A pattern is translated once into a `chrono` format. Text without a zone is read as UTC.
//! Supported letters: `y u M d H h m s S a E X x Z` and quoted literals; zone names (`z`, `VV`)
//! are refused when the pattern is set, not when a record arrives.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// A parsed `TIMESTAMP_FORMAT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimestampFormat {
    java: String,
    chrono: String,
    has_zone: bool,
    has_time: bool,
}

impl TimestampFormat {
    /// Translates a Java pattern such as `yyyy-MM-dd'T'HH:mm:ss.SSSX`.
    pub fn new(java: &str) -> Result<TimestampFormat, String> {
        let mut out = String::new();
        let (mut has_zone, mut has_time) = (false, false);
        let chars: Vec<char> = java.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                // 'literal' text; '' is a quote.
                let mut j = i + 1;
                if chars.get(j) == Some(&'\'') {
                    out.push('\'');
                    i += 2;
                    continue;
                }
                while j < chars.len() && chars[j] != '\'' {
                    push_literal(&mut out, chars[j]);
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            if !c.is_ascii_alphabetic() {
                if c == '.' && chars.get(i + 1) == Some(&'S') {
                    // A dot and fraction digits: any number of digits, read as a fraction.
                    let mut j = i + 1;
                    while chars.get(j) == Some(&'S') {
                        j += 1;
                    }
                    out.push_str("%.f");
                    has_time = true;
                    i = j;
                    continue;
                }
                push_literal(&mut out, c);
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
                ('M', 1 | 2) => "%m",
                ('M', 3) => "%b",
                ('M', _) => "%B",
                ('d', _) => "%d",
                ('D', _) => "%j",
                ('H', _) => "%H",
                ('h', _) => "%I",
                ('m', _) => "%M",
                ('s', _) => "%S",
                ('S', 3) => "%3f",
                ('S', 6) => "%6f",
                ('S', 9) => "%9f",
                ('S', _) => "%f",
                ('a', _) => "%p",
                ('E', 1..=3) => "%a",
                ('E', _) => "%A",
                ('X' | 'x', 1 | 2) | ('Z', 1..=3) => "%z",
                ('X' | 'x', _) | ('Z', _) => "%:z",
                _ => {
                    return Err(format!(
                        "unsupported pattern letter '{c}' in timestamp format '{java}'"
                    ))
                }
            };
            has_zone |= matches!(c, 'X' | 'x' | 'Z');
            has_time |= matches!(c, 'H' | 'h' | 'm' | 's' | 'S');
            out.push_str(spec);
            i += n;
        }
        Ok(TimestampFormat {
            java: java.to_string(),
            chrono: out,
            has_zone,
            has_time,
        })
    }

    /// Milliseconds since the epoch of `text`.
    pub fn parse_millis(&self, text: &str) -> Result<i64, String> {
        let bad = |e: chrono::ParseError| {
            format!(
                "cannot parse '{text}' with timestamp format '{}': {e}",
                self.java
            )
        };
        if self.has_zone {
            // Java's X accepts Z for UTC; chrono's offsets do not.
            let text = match text.strip_suffix('Z') {
                Some(rest) => format!(
                    "{rest}{}",
                    if self.chrono.contains("%:z") {
                        "+00:00"
                    } else {
                        "+0000"
                    }
                ),
                None => text.to_string(),
            };
            return DateTime::parse_from_str(&text, &self.chrono)
                .map(|d| d.timestamp_millis())
                .map_err(bad);
        }
        if self.has_time {
            return NaiveDateTime::parse_from_str(text, &self.chrono)
                .map(|d| d.and_utc().timestamp_millis())
                .map_err(bad);
        }
        NaiveDate::parse_from_str(text, &self.chrono)
            .map(|d| {
                d.and_hms_opt(0, 0, 0)
                    .expect("midnight exists")
                    .and_utc()
                    .timestamp_millis()
            })
            .map_err(bad)
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

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
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
        assert!(TimestampFormat::new("yyyy z").is_err());
        assert!(f.parse_millis("not a date").is_err());
    }
}

//! String functions: ksqlDB's SUBSTRING, ELT and FIELD, regular expressions, SPLIT_TO_MAP, CHR,
//! and the byte encodings of ENCODE, TO_BYTES and FROM_BYTES.

use std::sync::Arc;

use base64::Engine as _;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use regex::Regex;

use super::{
    exact, int64s, map_strings, string_list_type, string_lists, string_map_type, string_maps,
    strings, udf, PerText,
};

pub(super) fn functions() -> Vec<ScalarUDF> {
    let s = DataType::Utf8;
    let regex_sig = Signature::one_of(
        vec![
            TypeSignature::Exact(vec![s.clone(), s.clone()]),
            TypeSignature::Exact(vec![s.clone(), s.clone(), DataType::Int64]),
        ],
        Volatility::Immutable,
    );
    vec![
        ScalarUDF::from(Substring::default()),
        // ELT(n, a, b, ...): the n-th of the strings after n, counting from 1.
        udf(
            "elt",
            Signature::variadic_any(Volatility::Immutable),
            DataType::Utf8,
            |args, rows| {
                let Some((n, rest)) = args.split_first() else {
                    return exec_err!("ELT needs a position and strings");
                };
                let n = int64s(n)?;
                let rest = rest.iter().map(strings).collect::<Result<Vec<_>>>()?;
                let out: StringArray = (0..rows)
                    .map(|row| {
                        let i = usize::try_from(n.is_valid(row).then(|| n.value(row))?).ok()?;
                        let col = rest.get(i.checked_sub(1)?)?;
                        col.is_valid(row).then(|| col.value(row).to_string())
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        ),
        // FIELD(s, a, b, ...): the position of s among the strings after it, from 1; 0 when it
        // is not there or null.
        udf(
            "field",
            Signature::variadic_any(Volatility::Immutable),
            DataType::Int32,
            |args, rows| {
                let cols = args.iter().map(strings).collect::<Result<Vec<_>>>()?;
                let out: Int32Array = (0..rows)
                    .map(|row| {
                        let Some((s, rest)) = cols.split_first() else {
                            return Some(0);
                        };
                        if s.is_null(row) {
                            return Some(0);
                        }
                        let at = rest
                            .iter()
                            .position(|c| c.is_valid(row) && c.value(row) == s.value(row));
                        Some(at.map_or(0, |i| i as i32 + 1))
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        ),
        // REGEXP_EXTRACT(pattern, s [, group]): the first match (or its group), null for none.
        udf(
            "regexp_extract",
            regex_sig.clone(),
            DataType::Utf8,
            |args, rows| {
                let found = regex_matches(args, rows, false)?;
                let out: StringArray = found
                    .into_iter()
                    .map(|m| m.and_then(|all| all.into_iter().next().flatten()))
                    .collect();
                Ok(Arc::new(out))
            },
        ),
        // REGEXP_EXTRACT_ALL(pattern, s [, group]): every match (or its group).
        udf(
            "regexp_extract_all",
            regex_sig,
            string_list_type(),
            |args, rows| Ok(string_lists(regex_matches(args, rows, true)?.into_iter())),
        ),
        // SPLIT_TO_MAP(s, entry_delimiter, kv_delimiter): `k1=v1/k2=v2` as a map; entries
        // without the key-value delimiter are left out; an empty delimiter gives null.
        udf(
            "split_to_map",
            exact(vec![s.clone(), s.clone(), s.clone()]),
            string_map_type(),
            |args, rows| {
                let cols = args.iter().map(strings).collect::<Result<Vec<_>>>()?;
                Ok(string_maps((0..rows).map(|row| {
                    let [text, entry, kv] =
                        [0, 1, 2].map(|i| cols[i].is_valid(row).then(|| cols[i].value(row)));
                    let (text, entry, kv) = (text?, entry?, kv?);
                    if entry.is_empty() || kv.is_empty() {
                        return None;
                    }
                    let mut out: Vec<(String, Option<String>)> = Vec::new();
                    for e in text.split(entry).filter(|e| !e.is_empty()) {
                        let mut parts = e.split(kv);
                        if let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                            out.retain(|(old, _)| old != k);
                            out.push((k.to_string(), Some(v.to_string())));
                        }
                    }
                    Some(out)
                })))
            },
        ),
        // CHR(code): the character of a decimal code point, or of a `\uXXXX` escape (two for
        // a surrogate pair); null when it names none.
        udf(
            "chr",
            Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Int64]),
                    TypeSignature::Exact(vec![DataType::Utf8]),
                ],
                Volatility::Immutable,
            ),
            DataType::Utf8,
            |args, rows| {
                if args[0].data_type().is_integer() {
                    let codes = int64s(&args[0])?;
                    let out: StringArray = (0..rows)
                        .map(|row| {
                            let code =
                                u32::try_from(codes.is_valid(row).then(|| codes.value(row))?);
                            char::from_u32(code.ok()?).map(String::from)
                        })
                        .collect();
                    return Ok(Arc::new(out));
                }
                map_strings(args, rows, |v| unicode_escape(v[0]?))
            },
        ),
        // ENCODE(s, from, to): text in one encoding (hex, utf8, ascii, base64) in another.
        udf(
            "encode",
            exact(vec![s.clone(), s.clone(), s.clone()]),
            DataType::Utf8,
            |args, rows| {
                map_strings(args, rows, |v| {
                    let bytes = decode_text(v[0]?, v[1]?)?;
                    encode_bytes(&bytes, v[2]?)
                })
            },
        ),
        // TRIM(s): without leading and trailing whitespace and control characters, as Java's
        // String.trim.
        udf(
            "ksql_trim",
            exact(vec![s.clone()]),
            DataType::Utf8,
            |args, rows| {
                map_strings(args, rows, |v| {
                    Some(v[0]?.trim_matches(|c: char| c <= ' ').to_string())
                })
            },
        ),
        pad("lpad", true),
        pad("rpad", false),
        // TO_BYTES(s, encoding) and FROM_BYTES(bytes, encoding).
        udf(
            "to_bytes",
            exact(vec![s.clone(), s.clone()]),
            DataType::Binary,
            |args, rows| {
                let (text, enc) = (strings(&args[0])?, strings(&args[1])?);
                let out: BinaryArray = (0..rows)
                    .map(|row| {
                        if text.is_null(row) || enc.is_null(row) {
                            return None;
                        }
                        decode_text(text.value(row), enc.value(row))
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        ),
        udf(
            "from_bytes",
            exact(vec![DataType::Binary, s]),
            DataType::Utf8,
            |args, rows| {
                let (bytes, enc) = (args[0].as_binary::<i32>(), strings(&args[1])?);
                let out: StringArray = (0..rows)
                    .map(|row| {
                        if bytes.is_null(row) || enc.is_null(row) {
                            return None;
                        }
                        encode_bytes(bytes.value(row), enc.value(row))
                    })
                    .collect();
                Ok(Arc::new(out))
            },
        ),
    ]
}

/// LPAD and RPAD(input, length, padding) on strings (in characters) or bytes: the input cut
/// or padded to `length` with repetitions of `padding` before (LPAD) or after it; null for a
/// negative length or an empty padding.
fn pad(name: &'static str, left: bool) -> ScalarUDF {
    let coerce = move |t: &[DataType]| {
        if t.len() != 3 {
            return super::wrong_arguments(name, t);
        }
        let text = match (&t[0], &t[2]) {
            (DataType::Binary | DataType::LargeBinary | DataType::BinaryView, _) => {
                DataType::Binary
            }
            (_, DataType::Binary) => DataType::Binary,
            _ => DataType::Utf8,
        };
        if t[1].is_integer() || t[1].is_null() {
            Ok(vec![text.clone(), DataType::Int64, text])
        } else {
            super::wrong_arguments(name, t)
        }
    };
    let result = |t: &[DataType]| match t[0] {
        DataType::Binary => DataType::Binary,
        _ => DataType::Utf8,
    };
    super::udf_checked_with(name, result, coerce, move |args, rows| {
        fn padded<T: Clone>(input: &[T], len: i64, padding: &[T], left: bool) -> Option<Vec<T>> {
            let len = usize::try_from(len).ok()?;
            if padding.is_empty() {
                return None;
            }
            if len <= input.len() {
                return Some(input[..len].to_vec());
            }
            let fill: Vec<T> = padding
                .iter()
                .cycle()
                .take(len - input.len())
                .cloned()
                .collect();
            Some(if left {
                [fill, input.to_vec()].concat()
            } else {
                [input.to_vec(), fill].concat()
            })
        }
        let lens = int64s(&args[1])?;
        if let Some(bytes) = args[0].as_binary_opt::<i32>() {
            let padding = args[2].as_binary::<i32>();
            let out: BinaryArray = (0..rows)
                .map(|row| {
                    if bytes.is_null(row) || lens.is_null(row) || padding.is_null(row) {
                        return None;
                    }
                    padded(bytes.value(row), lens.value(row), padding.value(row), left)
                })
                .collect();
            return Ok(Arc::new(out));
        }
        let (text, padding) = (strings(&args[0])?, strings(&args[2])?);
        let out: StringArray = (0..rows)
            .map(|row| {
                if text.is_null(row) || lens.is_null(row) || padding.is_null(row) {
                    return None;
                }
                let chars: Vec<char> = text.value(row).chars().collect();
                let fill: Vec<char> = padding.value(row).chars().collect();
                padded(&chars, lens.value(row), &fill, left)
                    .map(|c| c.into_iter().collect::<String>())
            })
            .collect();
        Ok(Arc::new(out))
    })
}

/// For each row, the matches of `args[0]` (a pattern) in `args[1]`, each its group `args[2]`
/// (or the whole match): only the first unless `all`. Null where an argument is null.
fn regex_matches(
    args: &[ArrayRef],
    rows: usize,
    all: bool,
) -> Result<Vec<Option<Vec<Option<String>>>>> {
    let (patterns, texts) = (strings(&args[0])?, strings(&args[1])?);
    let groups = args.get(2).map(int64s).transpose()?;
    let mut compiled = PerText::new(|p| Regex::new(p).ok());
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        if patterns.is_null(row)
            || texts.is_null(row)
            || groups.as_ref().is_some_and(|g| g.is_null(row))
        {
            out.push(None);
            continue;
        }
        let Some(re) = compiled.get(patterns.value(row)) else {
            return exec_err!("invalid regular expression '{}'", patterns.value(row));
        };
        let group = groups.as_ref().map_or(0, |g| g.value(row)) as usize;
        let mut found = Vec::new();
        for caps in re.captures_iter(texts.value(row)) {
            found.push(caps.get(group).map(|m| m.as_str().to_string()));
            if !all {
                break;
            }
        }
        out.push(if all || !found.is_empty() {
            Some(found)
        } else {
            None
        });
    }
    Ok(out)
}

/// `\u004b`, or a surrogate pair `\ud820\udeb8`, as the character it escapes.
fn unicode_escape(s: &str) -> Option<String> {
    let units = s
        .split("\\u")
        .skip(1)
        .map(|h| {
            (h.len() == 4)
                .then(|| u16::from_str_radix(h, 16).ok())
                .flatten()
        })
        .collect::<Option<Vec<u16>>>()?;
    if units.is_empty() || !s.starts_with("\\u") {
        return None;
    }
    let decoded = String::from_utf16(&units).ok()?;
    (decoded.chars().count() == 1).then_some(decoded)
}

/// The bytes `text` denotes in `encoding`: hex digits (optionally `0x...` or `X'...'`), UTF-8
/// or ASCII text (other characters become `?`), or base64.
fn decode_text(text: &str, encoding: &str) -> Option<Vec<u8>> {
    match encoding.to_ascii_lowercase().as_str() {
        "hex" => {
            if let Some(digits) = text.strip_prefix("0x") {
                // `0x` may drop a leading zero.
                let padded = if digits.len() % 2 == 1 {
                    format!("0{digits}")
                } else {
                    digits.to_string()
                };
                return hex::decode(padded).ok();
            }
            let digits = text
                .strip_prefix(['X', 'x'])
                .map(|q| q.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')))
                .unwrap_or(Some(text))?;
            hex::decode(digits).ok()
        }
        "utf8" => Some(text.as_bytes().to_vec()),
        "ascii" => Some(
            text.chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
        ),
        "base64" => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        _ => None,
    }
}

/// `bytes` written in `encoding` (hex, utf8, ascii, base64); bytes that are not valid text
/// become U+FFFD.
fn encode_bytes(bytes: &[u8], encoding: &str) -> Option<String> {
    match encoding.to_ascii_lowercase().as_str() {
        "hex" => Some(hex::encode(bytes)),
        "utf8" => Some(String::from_utf8_lossy(bytes).into_owned()),
        "ascii" => Some(
            bytes
                .iter()
                .map(|&b| if b.is_ascii() { b as char } else { '\u{fffd}' })
                .collect(),
        ),
        "base64" => Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        _ => None,
    }
}

/// `SUBSTRING(s, pos [, len])` with ksqlDB's rules: `pos` counts from 1, a negative `pos`
/// counts from the end, 0 is the same as 1, and a range past either end is cut to the string.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Substring {
    signature: Signature,
}

impl Default for Substring {
    fn default() -> Self {
        let (s, b, i) = (DataType::Utf8, DataType::Binary, DataType::Int32);
        Substring {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![s.clone(), i.clone()]),
                    TypeSignature::Exact(vec![s, i.clone(), i.clone()]),
                    TypeSignature::Exact(vec![b.clone(), i.clone()]),
                    TypeSignature::Exact(vec![b, i.clone(), i]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

/// The char range ksqlDB's SUBSTRING takes from a string of `n` chars.
fn substring_range(n: i64, pos: i64, len: Option<i64>) -> (usize, usize) {
    let start = if pos < 0 {
        (n + pos).max(0)
    } else {
        (pos - 1).clamp(0, n)
    };
    let end = match len {
        Some(len) => (start + len).min(n).max(start),
        None => n,
    };
    (start as usize, end as usize)
}

impl ScalarUDFImpl for Substring {
    fn name(&self) -> &str {
        "ksql_substring"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        if let Some(bytes) = arrays[0].as_binary_opt::<i32>() {
            let pos = arrays[1].as_primitive::<datafusion::arrow::datatypes::Int32Type>();
            let len = arrays
                .get(2)
                .map(|a| a.as_primitive::<datafusion::arrow::datatypes::Int32Type>());
            let mut out = datafusion::arrow::array::BinaryBuilder::new();
            for row in 0..bytes.len() {
                if bytes.is_null(row) || pos.is_null(row) || len.is_some_and(|l| l.is_null(row)) {
                    out.append_null();
                    continue;
                }
                let b = bytes.value(row);
                let len = len.map(|l| i64::from(l.value(row)));
                let (start, end) = substring_range(b.len() as i64, i64::from(pos.value(row)), len);
                out.append_value(&b[start..end]);
            }
            return Ok(ColumnarValue::Array(Arc::new(out.finish())));
        }
        let strings = arrays[0].as_string::<i32>();
        let pos = arrays[1].as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let len = arrays
            .get(2)
            .map(|a| a.as_primitive::<datafusion::arrow::datatypes::Int32Type>());
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for row in 0..strings.len() {
            let len_value = match len {
                Some(l) if l.is_null(row) => {
                    out.append_null();
                    continue;
                }
                Some(l) => Some(i64::from(l.value(row))),
                None => None,
            };
            if strings.is_null(row) || pos.is_null(row) {
                out.append_null();
                continue;
            }
            let s = strings.value(row);
            let n = s.chars().count() as i64;
            let (start, end) = substring_range(n, i64::from(pos.value(row)), len_value);
            out.append_value(s.chars().skip(start).take(end - start).collect::<String>());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod substring_tests {
    use super::substring_range;

    #[test]
    fn ksql_positions() {
        // "hello": 1-based, 0 as 1, negative from the end, cut to the string.
        assert_eq!(substring_range(5, 1, Some(2)), (0, 2));
        assert_eq!(substring_range(5, 0, Some(2)), (0, 2));
        assert_eq!(substring_range(5, -3, None), (2, 5));
        assert_eq!(substring_range(5, -9, Some(2)), (0, 2));
        assert_eq!(substring_range(5, 4, Some(10)), (3, 5));
        assert_eq!(substring_range(5, 9, Some(2)), (5, 5));
        assert_eq!(substring_range(5, 2, Some(-1)), (1, 1));
    }
}

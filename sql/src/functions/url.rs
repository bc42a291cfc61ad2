//! URL functions: the parts of a URL as Java's `java.net.URI` splits it (RFC 3986), and the
//! form encoding of query parameters (`URLEncoder`: a space is `+`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::ScalarUDF;

use super::{exact, map_strings, strings, udf};

/// A URL's parts, borrowed from its text.
#[derive(Debug, Default, PartialEq)]
struct Parts<'a> {
    scheme: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

/// Splits a URL by RFC 3986's grammar:
/// `[scheme:][//[userinfo@]host[:port]]path[?query][#fragment]`.
fn split(url: &str) -> Parts<'_> {
    let mut p = Parts::default();
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url, None),
    };
    p.fragment = fragment;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    p.query = query;
    let mut rest = rest;
    if let Some(i) = rest.find(':') {
        let scheme = &rest[..i];
        let valid = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if valid && !scheme.contains('/') {
            p.scheme = Some(scheme);
            rest = &rest[i + 1..];
        }
    }
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find('/').unwrap_or(after.len());
        let authority = &after[..end];
        rest = &after[end..];
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        match host_port.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => {
                p.host = Some(h);
                p.port = Some(port);
            }
            _ => p.host = Some(host_port),
        }
    }
    p.path = rest;
    p
}

/// A query parameter's value as written in the query (still encoded).
fn parameter<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            _ => None,
        })
}

pub(super) fn functions() -> Vec<ScalarUDF> {
    let s = || exact(vec![DataType::Utf8]);
    let some = |v: &str| Some(v.to_string());
    vec![
        udf(
            "url_extract_protocol",
            s(),
            DataType::Utf8,
            move |args, rows| map_strings(args, rows, |v| split(v[0]?).scheme.and_then(some)),
        ),
        udf(
            "url_extract_host",
            s(),
            DataType::Utf8,
            move |args, rows| map_strings(args, rows, |v| split(v[0]?).host.and_then(some)),
        ),
        udf(
            "url_extract_path",
            s(),
            DataType::Utf8,
            move |args, rows| map_strings(args, rows, |v| some(split(v[0]?).path)),
        ),
        udf(
            "url_extract_query",
            s(),
            DataType::Utf8,
            move |args, rows| map_strings(args, rows, |v| split(v[0]?).query.and_then(some)),
        ),
        udf(
            "url_extract_fragment",
            s(),
            DataType::Utf8,
            move |args, rows| map_strings(args, rows, |v| split(v[0]?).fragment.and_then(some)),
        ),
        udf("url_extract_port", s(), DataType::Int32, |args, rows| {
            let urls = strings(&args[0])?;
            let out: Int32Array = (0..rows)
                .map(|row| {
                    let url = urls.is_valid(row).then(|| urls.value(row))?;
                    split(url).port?.parse().ok()
                })
                .collect();
            Ok(Arc::new(out))
        }),
        udf(
            "url_extract_parameter",
            exact(vec![DataType::Utf8, DataType::Utf8]),
            DataType::Utf8,
            move |args, rows| {
                map_strings(args, rows, |v| {
                    parameter(split(v[0]?).query?, v[1]?).and_then(some)
                })
            },
        ),
        udf("url_encode_param", s(), DataType::Utf8, |args, rows| {
            map_strings(args, rows, |v| {
                Some(form_urlencoded::byte_serialize(v[0]?.as_bytes()).collect())
            })
        }),
        udf("url_decode_param", s(), DataType::Utf8, |args, rows| {
            map_strings(args, rows, |v| {
                let spaced = v[0]?.replace('+', " ");
                percent_encoding::percent_decode_str(&spaced)
                    .decode_utf8()
                    .ok()
                    .map(|s| s.into_owned())
            })
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_as_java_uri_does() {
        let p = split("http://test@confluent.io:8080/nested/path?query&jobs#frag");
        assert_eq!(p.scheme, Some("http"));
        assert_eq!(p.host, Some("confluent.io"));
        assert_eq!(p.port, Some("8080"));
        assert_eq!(p.path, "/nested/path");
        assert_eq!(p.query, Some("query&jobs"));
        assert_eq!(p.fragment, Some("frag"));
        let bare = split("http://www.test.com?query#fragment");
        assert_eq!((bare.path, bare.query), ("", Some("query")));
        let relative = split("www.confluent.io");
        assert_eq!((relative.scheme, relative.host), (None, None));
        assert_eq!(parameter("one=a&two=b&three", "two"), Some("b"));
        assert_eq!(parameter("one=a&three", "three"), None);
    }
}

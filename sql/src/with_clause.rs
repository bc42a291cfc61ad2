//! What the WITH clause of a CREATE statement says: formats, delimiters, single-value
//! wrapping, the event-time column, and the codecs that follow from them.

use eddy_engine::format::Nullable;
use eddy_engine::{Codec, Format, TimestampFormat};

use crate::ast::{Properties, PropertyValue};
use crate::catalog::{Column, SourceDef};
use crate::error::{invalid, Result, SqlError};
use crate::types::SqlType;

fn delimiter(props: &Properties, property: &str) -> Result<Option<char>> {
    let Some(d) = props.text(property) else {
        return Ok(None);
    };
    Ok(Some(match d.to_ascii_uppercase().as_str() {
        "TAB" => '\t',
        "SPACE" => ' ',
        _ if d.chars().count() == 1 => d.chars().next().expect("one char"),
        _ => {
            return invalid(format!(
                "Invalid delimiter '{d}': use a single character, TAB or SPACE"
            ))
        }
    }))
}

/// The session's `ksql.persistence.default.format.key` and `...value`.
pub(crate) type FormatDefaults<'a> = (Option<&'a str>, Option<&'a str>);

/// Key and value formats from `FORMAT`, `KEY_FORMAT`, `VALUE_FORMAT`, inheriting from `parent`.
pub(crate) fn formats(
    props: &Properties,
    parent: Option<&SourceDef>,
    defaults: FormatDefaults<'_>,
) -> Result<(Format, Format)> {
    let both = props.text("FORMAT");
    if both.is_some() && (props.get("KEY_FORMAT").is_some() || props.get("VALUE_FORMAT").is_some())
    {
        return invalid("Cannot supply both 'FORMAT' and 'KEY_FORMAT' or 'VALUE_FORMAT' properties, as 'FORMAT' sets both key and value formats.");
    }
    let parse = |name: &str, delim: Option<char>| -> Result<Format> {
        let upper = name.to_ascii_uppercase();
        match Format::parse(name, delim) {
            Some(f) => Ok(f),
            None => invalid(format!("Unknown format: {upper}")),
        }
    };
    // `*_PROTOBUF_NULLABLE_REPRESENTATION`: how a protobuf format writes NULL.
    let nullable = |side: &str| -> Result<Option<Nullable>> {
        match props.text(&format!("{side}_PROTOBUF_NULLABLE_REPRESENTATION")) {
            None => Ok(None),
            Some(t) => Nullable::parse(&t).map(Some).ok_or_else(|| {
                SqlError::Invalid(format!(
                    "Invalid {side}_PROTOBUF_NULLABLE_REPRESENTATION '{t}': use OPTIONAL or WRAPPER"
                ))
            }),
        }
    };
    let (key_nullable, value_nullable) = (nullable("KEY")?, nullable("VALUE")?);
    let with_nullable = |f: Format, n: Option<Nullable>| match (f, n) {
        (Format::Protobuf { .. }, Some(nullable)) => Format::Protobuf { nullable },
        (Format::ProtobufNoSr { .. }, Some(nullable)) => Format::ProtobufNoSr { nullable },
        (f, _) => f,
    };
    let value_delim = delimiter(props, "VALUE_DELIMITER")?;
    let key_delim = delimiter(props, "KEY_DELIMITER")?;
    let key_name = props.text("KEY_FORMAT").or_else(|| both.clone());
    let value_name = props.text("VALUE_FORMAT").or(both);
    // Named here, else inherited from the query's source (with this statement's delimiter),
    // else the session's default.
    let resolve = |name: Option<String>,
                   inherited: Option<&Format>,
                   default: Option<&str>,
                   delim: Option<char>|
     -> Result<Option<Format>> {
        Ok(Some(match (name, inherited, default) {
            (Some(n), _, _) => parse(&n, delim)?,
            (None, Some(Format::Delimited { .. }), _) if delim.is_some() => Format::Delimited {
                delimiter: delim.expect("checked"),
            },
            (None, Some(f), _) => f.clone(),
            (None, None, Some(d)) => parse(d, delim)?,
            (None, None, None) => return Ok(None),
        }))
    };
    // A keyless source has no key format to pass on: a query that gives it a key (a join, a
    // PARTITION BY) takes the default.
    let key = resolve(
        key_name,
        parent
            .map(|p| &p.key_format)
            .filter(|f| **f != Format::None),
        defaults.0,
        key_delim,
    )?
    .unwrap_or(Format::Kafka);
    let Some(value) = resolve(
        value_name,
        parent.map(|p| &p.value_format),
        defaults.1,
        value_delim,
    )?
    else {
        return invalid("Missing required property \"VALUE_FORMAT\" which has no default value.");
    };
    Ok((
        with_nullable(key, key_nullable),
        with_nullable(value, value_nullable),
    ))
}

fn contains_map(t: &SqlType) -> bool {
    match t {
        SqlType::Map(_, _) => true,
        SqlType::Array(inner) => contains_map(inner),
        SqlType::Struct(fields) => fields.iter().any(|(_, t)| contains_map(t)),
        _ => false,
    }
}

/// JSON writes a map as an object, whose field names are strings; ksqlDB's Avro and Protobuf
/// schemas for maps have string keys too.
pub(crate) fn check_map_keys(format: &Format, columns: &[Column]) -> Result<()> {
    fn bad_key(t: &SqlType) -> bool {
        match t {
            SqlType::Map(k, v) => **k != SqlType::String || bad_key(v),
            SqlType::Array(t) => bad_key(t),
            SqlType::Struct(fields) => fields.iter().any(|(_, t)| bad_key(t)),
            _ => false,
        }
    }
    if !columns.iter().any(|c| bad_key(&c.ty)) {
        return Ok(());
    }
    match format {
        Format::Json | Format::JsonSr => invalid("JSON only supports MAP types with STRING keys"),
        Format::Avro => invalid("Avro only supports MAPs with STRING keys"),
        Format::Protobuf { .. } | Format::ProtobufNoSr { .. } => {
            invalid("PROTOBUF format only supports MAP types with STRING keys")
        }
        _ => Ok(()),
    }
}

/// Checks `WRAP_SINGLE_VALUE` against the value format and columns, as ksqlDB does.
pub(crate) fn check_wrapping(
    props: &Properties,
    format: &Format,
    value_columns: usize,
) -> Result<()> {
    let Some(v) = props.get("WRAP_SINGLE_VALUE") else {
        return Ok(());
    };
    if value_columns > 1 {
        return invalid("'WRAP_SINGLE_VALUE' is only valid for single-field value schemas");
    }
    let wrap = wrap_single(props, true)?;
    match format {
        Format::Json => Ok(()),
        Format::Protobuf { .. } if !wrap => invalid(format!(
            "Format '{}' does not support 'WRAP_SINGLE_VALUE' set to '{}'.",
            format.name(),
            v.as_text()
        )),
        Format::Delimited { .. } | Format::Kafka | Format::None if wrap => invalid(format!(
            "Format '{}' does not support 'WRAP_SINGLE_VALUE' set to '{}'.",
            format.name(),
            v.as_text()
        )),
        _ => Ok(()),
    }
}

/// Whether a single value column is written wrapped in an object: `WRAP_SINGLE_VALUE`, else
/// `default` (the session's `ksql.persistence.wrap.single.values`, true unless set).
pub(crate) fn wrap_single(props: &Properties, default: bool) -> Result<bool> {
    match props.get("WRAP_SINGLE_VALUE") {
        None => Ok(default),
        Some(PropertyValue::Boolean(b)) => Ok(*b),
        Some(v) => match v.as_text().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => invalid(format!(
                "Invalid WRAP_SINGLE_VALUE '{other}': use true or false"
            )),
        },
    }
}

/// The `TIMESTAMP` column and its `TIMESTAMP_FORMAT`, checked against the columns.
pub(crate) fn timestamp_column(
    props: &Properties,
    columns: &[Column],
) -> Result<(Option<String>, Option<String>)> {
    let format = props.text("TIMESTAMP_FORMAT");
    let Some(name) = props.text("TIMESTAMP") else {
        if format.is_some() {
            return invalid("TIMESTAMP_FORMAT requires a TIMESTAMP column");
        }
        return Ok((None, None));
    };
    let name = name.to_ascii_uppercase();
    if let Some(f) = &format {
        TimestampFormat::new(f).map_err(SqlError::Invalid)?;
    }
    match columns.iter().find(|c| c.name == name) {
        Some(c) if matches!(c.ty, SqlType::Bigint | SqlType::Timestamp) && format.is_none() => Ok((Some(name), None)),
        Some(c) if c.ty == SqlType::String && format.is_some() => Ok((Some(name), format)),
        Some(c) => invalid(format!(
            "Timestamp column, `{name}`, should be LONG(INT64), TIMESTAMP, or a String with a timestamp_format specified, but was {}",
            c.ty
        )),
        None => invalid(format!("The TIMESTAMP column set in the WITH clause does not exist in the schema: '{name}'")),
    }
}

/// The key and value codecs of a source.
pub fn codecs(def: &SourceDef) -> Result<(Codec, Codec)> {
    for c in &def.key_columns {
        if contains_map(&c.ty) {
            return invalid(format!(
                "Map keys, including types that contain maps, are not supported as they may lead to unexpected behavior due to inconsistent serialization. Key column name: `{}`. Column type: {}.",
                c.name, c.ty
            ));
        }
    }
    let fields = |cols: &[Column]| cols.iter().map(Column::field).collect::<Vec<_>>();
    let key = Codec::new(def.key_format.clone(), fields(&def.key_columns), false)
        .map_err(|e| SqlError::Invalid(format!("key format {}: {e}", def.key_format.name())))?;
    let value = Codec::new(
        def.value_format.clone(),
        fields(&def.value_columns),
        def.wrap_single_value,
    )
    .map_err(|e| SqlError::Invalid(format!("value format {}: {e}", def.value_format.name())))?;
    Ok((
        key.with_schema_id(def.key_schema_id),
        value.with_schema_id(def.value_schema_id),
    ))
}

/// `WINDOW_TYPE` and `WINDOW_SIZE`: a source over the topic of a windowed table.
pub(crate) fn source_window(props: &Properties) -> Result<Option<crate::catalog::WindowInfo>> {
    use crate::catalog::{WindowInfo, WindowType};
    let Some(kind) = props.text("WINDOW_TYPE") else {
        if props.get("WINDOW_SIZE").is_some() {
            return invalid("WINDOW_SIZE should only be set when WINDOW_TYPE is set.");
        }
        return Ok(None);
    };
    let kind = match kind.to_ascii_uppercase().as_str() {
        "TUMBLING" => WindowType::Tumbling,
        "HOPPING" => WindowType::Hopping,
        "SESSION" => WindowType::Session,
        other => {
            return invalid(format!(
                "Invalid WINDOW_TYPE: {other}. Valid values are SESSION, HOPPING and TUMBLING."
            ))
        }
    };
    let size_ms = match (kind, props.text("WINDOW_SIZE")) {
        (WindowType::Session, None) => None,
        (WindowType::Session, Some(_)) => {
            return invalid("'WINDOW_SIZE' should not be set for SESSION windows.")
        }
        (_, None) => {
            return invalid(format!(
                "{} windows require 'WINDOW_SIZE' to be provided in the WITH clause. For example: 'WINDOW_SIZE'='10 SECONDS'",
                kind.name()
            ))
        }
        (_, Some(text)) => Some(duration_ms(&text).map_err(|e| {
            SqlError::Invalid(format!("Configuration WINDOW_SIZE is invalid: {e}"))
        })?),
    };
    Ok(Some(WindowInfo { kind, size_ms }))
}

/// A duration such as `30 seconds` or `1 HOUR`, in ms.
fn duration_ms(text: &str) -> std::result::Result<u64, String> {
    let invalid = |why: String| format!("Invalid duration: '{text}'. {why}");
    let mut parts = text.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid(
            "Expected a number and a time unit, for example '10 SECONDS'".into(),
        ));
    };
    let n: u64 = n
        .parse()
        .map_err(|_| invalid(format!("Not a number: '{n}'")))?;
    let unit = unit.to_ascii_uppercase();
    let Some(ms) = crate::parser::select::time_unit_ms(&unit) else {
        return Err(invalid(format!("Unknown time unit: '{unit}'")));
    };
    Ok(n * ms)
}

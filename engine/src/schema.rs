//! The columns of a stream's records as the engine sees them.
//!
//! Every batch a source produces has the pseudo-columns first, then the key columns, then the
//! value columns:
//!
//! ```text
//! ROWTIME (BIGINT, event time ms) | ROWPARTITION (INT) | ROWOFFSET (BIGINT) | keys... | values...
//!   | header columns... | __NULL_VALUE | __HEADERS
//! ```
//!
//! Header columns (`HEADERS`, or `HEADER('name')`) are filled from the record's headers, not its
//! value. `__HEADERS` carries all of them so that the output record gets its input's headers.
//!
//! A windowed source (a windowed table, or a stream over one's topic) also has `WINDOWSTART` and
//! `WINDOWEND`, read from the window bounds its keys carry (see [`crate::WindowedKey`]).
//!
//! `__NULL_VALUE` is true for a record whose value was null (a tombstone): its value columns
//! are all null, and a query that passes the row on writes a null value too, as ksqlDB does.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

pub const ROWTIME: &str = "ROWTIME";
pub const ROWPARTITION: &str = "ROWPARTITION";
pub const ROWOFFSET: &str = "ROWOFFSET";
/// A windowed source's window bounds, in ms (the end exclusive for time windows, inclusive for
/// sessions).
pub const WINDOWSTART: &str = "WINDOWSTART";
pub const WINDOWEND: &str = "WINDOWEND";

/// Hidden column: the record's value was null.
pub const NULL_VALUE: &str = "__NULL_VALUE";

/// Hidden column: the record's headers, carried to the output record.
pub const HEADERS: &str = "__HEADERS";

/// Number of pseudo-columns at the start of every source batch.
pub const PSEUDO_COLUMNS: usize = 3;

/// The type of a list of headers, ksqlDB's `ARRAY<STRUCT<KEY STRING, VALUE BYTES>>`.
pub fn headers_type() -> DataType {
    let entry = DataType::Struct(Fields::from(vec![
        Field::new("KEY", DataType::Utf8, true),
        Field::new("VALUE", DataType::Binary, true),
    ]));
    DataType::List(Arc::new(Field::new("item", entry, true)))
}

/// A `__HEADERS` column of `rows` empty lists: rows no single record made (a join's).
pub fn no_headers(rows: usize) -> datafusion::arrow::array::ArrayRef {
    let DataType::List(entry) = headers_type() else {
        unreachable!("headers are a list")
    };
    Arc::new(datafusion::arrow::array::ListArray::new(
        entry.clone(),
        datafusion::arrow::buffer::OffsetBuffer::new_zeroed(rows),
        datafusion::arrow::array::new_empty_array(entry.data_type()),
        None,
    ))
}

/// A column of type `ty` from scalars built row by row (none: an empty column).
pub(crate) fn scalar_column(
    values: impl IntoIterator<Item = datafusion::common::ScalarValue>,
    ty: &DataType,
) -> crate::error::Result<datafusion::arrow::array::ArrayRef> {
    let mut values = values.into_iter().peekable();
    if values.peek().is_none() {
        return Ok(datafusion::arrow::array::new_empty_array(ty));
    }
    let array = datafusion::common::ScalarValue::iter_to_array(values)?;
    Ok(if array.data_type() == ty {
        array
    } else {
        datafusion::arrow::compute::cast(&array, ty)?
    })
}

/// The schema of a source's batches: pseudo-columns, `keys`, `values`, header columns, for a
/// windowed source `WINDOWSTART` and `WINDOWEND`, then the hidden `__NULL_VALUE` and
/// `__HEADERS`.
pub fn source_schema(
    keys: &[Field],
    values: &[Field],
    headers: &[Field],
    windowed: bool,
) -> SchemaRef {
    let mut fields = vec![
        Field::new(ROWTIME, DataType::Int64, false),
        Field::new(ROWPARTITION, DataType::Int32, false),
        Field::new(ROWOFFSET, DataType::Int64, false),
    ];
    fields.extend(keys.iter().cloned());
    fields.extend(values.iter().cloned());
    fields.extend(headers.iter().cloned());
    if windowed {
        fields.push(Field::new(WINDOWSTART, DataType::Int64, false));
        fields.push(Field::new(WINDOWEND, DataType::Int64, false));
    }
    fields.push(Field::new(NULL_VALUE, DataType::Boolean, false));
    fields.push(Field::new(HEADERS, headers_type(), false));
    Arc::new(Schema::new(fields))
}

/// ksqlDB's name for an Arrow type, for messages.
pub fn sql_type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Utf8 => "STRING".into(),
        DataType::Binary => "BYTES".into(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => "TIMESTAMP".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Time32(_) => "TIME".into(),
        DataType::List(f) => format!("ARRAY<{}>", sql_type_name(f.data_type())),
        DataType::Map(e, _) => match e.data_type() {
            DataType::Struct(kv) => format!(
                "MAP<{}, {}>",
                sql_type_name(kv[0].data_type()),
                sql_type_name(kv[1].data_type())
            ),
            _ => "MAP".into(),
        },
        DataType::Struct(fs) => format!(
            "STRUCT<{}>",
            fs.iter()
                .map(|f| format!("{} {}", f.name(), sql_type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

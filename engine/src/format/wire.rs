//! What the binary formats share: varints (plain and zig-zag), Confluent's schema-registry
//! frame, a reader over a byte slice that names what ran short, and the walks through Arrow
//! scalars that both encoders make (list items, struct fields, map entries).

use datafusion::arrow::array::Array;
use datafusion::common::ScalarValue;

/// Confluent's frame: the magic byte 0 and the schema id, 4 bytes big-endian, before the body.
pub(crate) const FRAME_LEN: usize = 5;

pub(crate) fn write_frame(out: &mut Vec<u8>, schema_id: u32) {
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// The schema id and the body of a framed record.
pub(crate) fn read_frame(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [0, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [] => Err("empty bytes where a schema registry frame was expected".into()),
        [m, ..] if *m != 0 => Err(format!(
            "unknown magic byte {m}: the record was not written with a schema registry frame"
        )),
        _ => Err(format!(
            "{} bytes are too short for a schema registry frame (5 bytes)",
            bytes.len()
        )),
    }
}

pub(crate) fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over a record's bytes; each read says what it expected when the bytes end.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!(
                "truncated: {what} needs {n} bytes, {} left",
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn varint(&mut self, what: &str) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let [b, ..] = self.bytes else {
                return Err(format!("truncated: {what} ends inside a varint"));
            };
            self.bytes = &self.bytes[1..];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{what}: a varint longer than 10 bytes"))
    }
}

/// The items of a list scalar.
pub(crate) fn list_items(v: &ScalarValue) -> Result<Vec<ScalarValue>, String> {
    let ScalarValue::List(arr) = v else {
        return Err(format!("expected a list, found {}", v.data_type()));
    };
    let items = arr.value(0);
    (0..items.len())
        .map(|i| ScalarValue::try_from_array(&items, i).map_err(|e| e.to_string()))
        .collect()
}

/// The field values of a struct scalar, in field order.
pub(crate) fn struct_values(v: &ScalarValue) -> Result<Vec<ScalarValue>, String> {
    let ScalarValue::Struct(arr) = v else {
        return Err(format!("expected a struct, found {}", v.data_type()));
    };
    (0..arr.num_columns())
        .map(|i| ScalarValue::try_from_array(arr.column(i), 0).map_err(|e| e.to_string()))
        .collect()
}

/// The (key, value) entries of a map scalar.
pub(crate) fn map_entries(v: &ScalarValue) -> Result<Vec<(ScalarValue, ScalarValue)>, String> {
    let ScalarValue::Map(arr) = v else {
        return Err(format!("expected a map, found {}", v.data_type()));
    };
    let entries = arr.value(0);
    (0..entries.len())
        .map(|i| {
            let k = ScalarValue::try_from_array(entries.column(0), i).map_err(|e| e.to_string())?;
            let v = ScalarValue::try_from_array(entries.column(1), i).map_err(|e| e.to_string())?;
            Ok((k, v))
        })
        .collect()
}

/// A decimal's unscaled value as the shortest big-endian two's complement bytes (Avro's
/// `decimal` and Confluent's protobuf `Decimal.value`, as Java's `BigInteger.toByteArray`).
pub(crate) fn decimal_bytes(unscaled: i128) -> Vec<u8> {
    let all = unscaled.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (all[start], all[start + 1]);
        let redundant = (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    all[start..].to_vec()
}

pub(crate) fn decimal_from_bytes(b: &[u8]) -> Result<i128, String> {
    if b.len() > 16 {
        return Err(format!(
            "a decimal of {} bytes does not fit 128 bits",
            b.len()
        ));
    }
    if b.is_empty() {
        return Ok(0);
    }
    let fill = if b[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut all = [fill; 16];
    all[16 - b.len()..].copy_from_slice(b);
    Ok(i128::from_be_bytes(all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<i64>()) {
            let mut out = Vec::new();
            write_varint(&mut out, zigzag(v));
            let mut r = Reader::new(&out);
            prop_assert_eq!(unzigzag(r.varint("v").unwrap()), v);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn decimals_round_trip(v in any::<i128>()) {
            prop_assert_eq!(decimal_from_bytes(&decimal_bytes(v)).unwrap(), v);
        }
    }

    #[test]
    fn decimal_bytes_are_javas() {
        assert_eq!(decimal_bytes(0), vec![0]);
        assert_eq!(decimal_bytes(127), vec![0x7f]);
        assert_eq!(decimal_bytes(128), vec![0, 0x80]);
        assert_eq!(decimal_bytes(-1), vec![0xff]);
        assert_eq!(decimal_bytes(-129), vec![0xff, 0x7f]);
    }

    #[test]
    fn frames_are_checked() {
        let mut out = Vec::new();
        write_frame(&mut out, 7);
        out.push(42);
        assert_eq!(read_frame(&out).unwrap(), (7, &[42u8][..]));
        assert!(read_frame(b"{}").unwrap_err().contains("magic byte"));
        assert!(read_frame(&[0, 0]).unwrap_err().contains("too short"));
    }
}

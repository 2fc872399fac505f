//! DUMP payloads: one value serialized as RESTORE reads it (Redis's `createDumpPayload` and
//! `verifyDumpPayload`).
//!
//! ```text
//! +-----------+-----------------------+--------------------+---------------------------+
//! | type byte | value, as in an RDB   | RDB version, u16 LE | CRC-64 (Jones), u64 LE,  |
//! |           | file (no key, expiry) | (10 for Redis 7.0)  | of every byte before it  |
//! +-----------+-----------------------+--------------------+---------------------------+
//! ```
//! The value is read by the same validating decoder as an RDB file, so a payload from
//! redis-server 7.0 in any encoding it writes (listpacks, intsets, quicklists...) restores, and
//! a hostile one is an error, never a panic or an allocation its bytes do not back.

use forkless_storage::Value;

use super::collection::read_value;
use super::crc::Checksum;
use super::encode::{EncodeOptions, write_object};
use super::error::LoadError;
use super::load::Input;
use super::{RDB_VERSION, RdbType};

/// The bytes after the value: the RDB version (2) and the CRC-64 (8).
const FOOTER_LEN: usize = 10;

/// The name errors give the payload in place of a file name.
const SOURCE_NAME: &str = "DUMP payload";

/// Why a DUMP payload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    /// Shorter than its footer, from a newer RDB version, or its CRC-64 does not match (Redis's
    /// "DUMP payload version or checksum are wrong").
    #[error("DUMP payload version or checksum are wrong")]
    VersionOrChecksum,
    /// The value does not decode (Redis's "Bad data format").
    #[error("bad data format: {0}")]
    BadData(#[source] LoadError),
    /// The type byte names no type forkless can store.
    #[error("bad data format: unknown value type {0}")]
    UnknownType(u8),
    /// A collection with no elements, which no key may hold.
    #[error("bad data format: empty collection")]
    Empty,
}

/// Serializes `value` as DUMP does: type byte, value, RDB version, CRC-64.
pub fn dump_payload(value: &Value, opts: &EncodeOptions) -> Vec<u8> {
    let mut out = Vec::new();
    write_object(&mut out, value, opts);
    // Two bytes, as the payload format fixes them.
    let version = u16::try_from(RDB_VERSION).unwrap_or(u16::MAX);
    out.extend_from_slice(&version.to_le_bytes());
    let mut crc = Checksum::new();
    crc.update(&out);
    out.extend_from_slice(&crc.finish().to_le_bytes());
    out
}

/// Returns true if and only if `payload` has a footer Redis 7.0 accepts: an RDB version it
/// reads and a matching CRC-64 (Redis's `verifyDumpPayload`).
pub fn verify_payload(payload: &[u8]) -> bool {
    let Some(body_len) = payload.len().checked_sub(FOOTER_LEN) else {
        return false;
    };
    let (Some(version), Some(crc)) = (
        payload.get(body_len..body_len + 2),
        payload.get(body_len + 2..),
    ) else {
        return false;
    };
    let version = u16::from_le_bytes([
        version.first().copied().unwrap_or(0),
        version.get(1).copied().unwrap_or(0),
    ]);
    if u32::from(version) > RDB_VERSION {
        return false;
    }
    let mut expected = Checksum::new();
    expected.update(payload.get(..body_len + 2).unwrap_or_default());
    crc == expected.finish().to_le_bytes()
}

/// Reads the value of a DUMP payload (RESTORE), after checking its footer.
///
/// As in Redis, the value is read from the start of the payload and may not use all of it: what
/// follows it is not checked, beyond the footer's checksum.
///
/// # Errors
/// [`DumpError::VersionOrChecksum`] for a bad footer; the other variants for a value that does
/// not decode, an unknown type (streams and module values included), or an empty collection.
pub fn restore_payload(payload: &[u8]) -> Result<Value, DumpError> {
    if !verify_payload(payload) {
        return Err(DumpError::VersionOrChecksum);
    }
    let mut input = Input::with_buffer_size(payload, SOURCE_NAME, None, payload.len());
    let type_code = input
        .read_u8(0, "a value type")
        .map_err(DumpError::BadData)?;
    let rdb_type = RdbType::from_code(type_code).ok_or(DumpError::UnknownType(type_code))?;
    let mut scratch = Vec::new();
    read_value(&mut input, rdb_type, 0, &mut scratch)
        .map_err(DumpError::BadData)?
        .ok_or(DumpError::Empty)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use forkless_storage::types::zset::ZSet;

    use super::*;

    /// `DUMP` of `SET foo bar` on redis-server 7.0.15.
    const REDIS_DUMP_BAR: &[u8] = b"\x00\x03bar\x0a\x00\xe6\xbe\x49\x60\xee\x66\xfd\x17";

    #[test]
    fn matches_redis_for_a_short_string() {
        let value = Value::string(b"bar");
        assert_eq!(
            dump_payload(&value, &EncodeOptions::default()),
            REDIS_DUMP_BAR
        );
        assert!(
            matches!(restore_payload(REDIS_DUMP_BAR), Ok(Value::String(s)) if &s[..] == b"bar")
        );
    }

    #[test]
    fn round_trips_every_type() {
        let mut zset = ZSet::new();
        zset.insert(b"a", 1.5);
        zset.insert(b"b", -2.0);
        let values = [
            Value::string(&[b'x'; 1000][..]),
            Value::string(b"12345"),
            Value::ZSet(Arc::new(zset)),
        ];
        for value in values {
            for compress_strings in [false, true] {
                let payload = dump_payload(&value, &EncodeOptions { compress_strings });
                let restored = restore_payload(&payload).unwrap();
                assert_eq!(
                    dump_payload(&restored, &EncodeOptions::default()),
                    dump_payload(&value, &EncodeOptions::default())
                );
            }
        }
    }

    #[test]
    fn bad_payloads_are_refused() {
        assert!(matches!(
            restore_payload(b""),
            Err(DumpError::VersionOrChecksum)
        ));
        assert!(matches!(
            restore_payload(b"..."),
            Err(DumpError::VersionOrChecksum)
        ));
        let mut flipped = REDIS_DUMP_BAR.to_vec();
        flipped[2] ^= 1;
        assert!(matches!(
            restore_payload(&flipped),
            Err(DumpError::VersionOrChecksum)
        ));
        // A newer RDB version than 7.0's, even with a matching checksum.
        let mut newer = b"\x00\x03bar\x0b\x00".to_vec();
        let mut crc = Checksum::new();
        crc.update(&newer);
        newer.extend_from_slice(&crc.finish().to_le_bytes());
        assert!(matches!(
            restore_payload(&newer),
            Err(DumpError::VersionOrChecksum)
        ));
        // A string claiming 2^64 - 9 bytes, with a valid footer: refused, nothing allocated.
        let mut huge = b"\x00\x81\xff\xff\xff\xff\xff\xff\xff\xf7\x0a\x00".to_vec();
        let mut crc = Checksum::new();
        crc.update(&huge);
        huge.extend_from_slice(&crc.finish().to_le_bytes());
        assert!(matches!(restore_payload(&huge), Err(DumpError::BadData(_))));
        // A stream (type 15) is not a type forkless stores.
        let mut stream = b"\x0f\x00\x0a\x00".to_vec();
        let mut crc = Checksum::new();
        crc.update(&stream);
        stream.extend_from_slice(&crc.finish().to_le_bytes());
        assert!(restore_payload(&stream).is_err());
    }
}

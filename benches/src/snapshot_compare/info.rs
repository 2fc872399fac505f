//! INFO replies and the few facts read from a finished dump file.
//!
//! Every field is optional: forkless before fork mode lands has no `latest_fork_usec`, Redis has
//! no `snapshot_*` fields, and the report says `n/a` for what a server does not tell.

use std::collections::BTreeMap;

/// The `name:value` lines of an INFO reply.
#[derive(Debug, Default, Clone)]
pub struct Info {
    fields: BTreeMap<String, String>,
}

impl Info {
    /// Parses INFO text: `# Section` headers and blank lines are skipped, the value is everything
    /// after the first `:`.
    pub fn parse(text: &str) -> Info {
        let fields = text
            .lines()
            .map(str::trim_end)
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Info { fields }
    }

    /// The raw value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// `name` as an unsigned integer; `None` when absent, negative or not a number.
    pub fn u64(&self, name: &str) -> Option<u64> {
        self.get(name)?.parse().ok()
    }

    /// Returns true if and only if `rdb_bgsave_in_progress` is present and not 0.
    pub fn bgsave_in_progress(&self) -> bool {
        self.u64("rdb_bgsave_in_progress").is_some_and(|n| n != 0)
    }
}

/// The number of keys a dump says it holds: the sum of its RESIZEDB db-size hints.
///
/// Redis and forkless both write RESIZEDB (opcode 0xFB) after each SELECTDB with the number of
/// keys in that database at the point in time of the snapshot. This walks only the header
/// (auxiliary fields, SELECTDB, RESIZEDB) of each database and stops at the first entry, so it
/// reads a few hundred bytes; a file with several databases is not supported (`None`).
pub fn rdb_resizedb_keys(bytes: &[u8]) -> Option<u64> {
    const AUX: u8 = 0xFA;
    const RESIZEDB: u8 = 0xFB;
    const SELECTDB: u8 = 0xFE;
    const EOF: u8 = 0xFF;
    let mut pos = 9; // "REDIS0010"
    if !bytes.starts_with(b"REDIS") {
        return None;
    }
    loop {
        let opcode = *bytes.get(pos)?;
        pos += 1;
        match opcode {
            AUX => {
                pos = skip_string(bytes, pos)?;
                pos = skip_string(bytes, pos)?;
            }
            SELECTDB => {
                let (_, next) = read_length(bytes, pos)?;
                pos = next;
            }
            RESIZEDB => {
                let (keys, _) = read_length(bytes, pos)?;
                return Some(keys);
            }
            EOF => return Some(0),
            _ => return None,
        }
    }
}

/// An RDB length: returns (value, position after it). Special encodings (0b11 prefix) are
/// returned as `u64::MAX`, flagged for [`skip_string`].
fn read_length(bytes: &[u8], pos: usize) -> Option<(u64, usize)> {
    let first = *bytes.get(pos)?;
    match first >> 6 {
        0 => Some((u64::from(first & 0x3F), pos + 1)),
        1 => {
            let second = *bytes.get(pos + 1)?;
            Some(((u64::from(first & 0x3F) << 8) | u64::from(second), pos + 2))
        }
        2 => match first {
            0x80 => {
                let raw: [u8; 4] = bytes.get(pos + 1..pos + 5)?.try_into().ok()?;
                Some((u64::from(u32::from_be_bytes(raw)), pos + 5))
            }
            0x81 => {
                let raw: [u8; 8] = bytes.get(pos + 1..pos + 9)?.try_into().ok()?;
                Some((u64::from_be_bytes(raw), pos + 9))
            }
            _ => None,
        },
        _ => Some((u64::MAX, pos)),
    }
}

/// Skips an RDB string (plain or integer-encoded; LZF-compressed aux fields are skipped too).
fn skip_string(bytes: &[u8], pos: usize) -> Option<usize> {
    let (len, next) = read_length(bytes, pos)?;
    if len != u64::MAX {
        return next.checked_add(usize::try_from(len).ok()?);
    }
    match *bytes.get(pos)? & 0x3F {
        0 => Some(pos + 2),
        1 => Some(pos + 3),
        2 => Some(pos + 5),
        3 => {
            let (compressed, after) = read_length(bytes, pos + 1)?;
            let (_, after) = read_length(bytes, after)?;
            after.checked_add(usize::try_from(compressed).ok()?)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_and_tolerates_missing_fields() {
        let info = Info::parse(
            "# Persistence\r\nrdb_bgsave_in_progress:1\r\nrdb_last_bgsave_status:ok\r\n\r\n\
             # Stats\r\nlatest_fork_usec:1234\r\nweird:a:b\r\nneg:-1\r\n",
        );
        assert!(info.bgsave_in_progress());
        assert_eq!(info.get("rdb_last_bgsave_status"), Some("ok"));
        assert_eq!(info.u64("latest_fork_usec"), Some(1234));
        assert_eq!(info.get("weird"), Some("a:b"));
        assert_eq!(info.u64("neg"), None);
        assert_eq!(info.u64("rdb_last_cow_size"), None);
        assert!(!Info::parse("").bgsave_in_progress());
    }

    #[test]
    fn reads_the_resizedb_hint() {
        let mut file = b"REDIS0010".to_vec();
        // aux "redis-ver" "7.0.15"
        file.extend_from_slice(b"\xFA\x09redis-ver\x067.0.15");
        // aux "ctime" as a 32-bit integer string, "aof-base" as an 8-bit integer string
        file.extend_from_slice(b"\xFA\x05ctime\xC2\x01\x02\x03\x04");
        file.extend_from_slice(b"\xFA\x08aof-base\xC0\x00");
        // SELECTDB 0, RESIZEDB 70000 keys (14-bit length 0x4000 | ...) is too big: 32-bit form
        file.extend_from_slice(b"\xFE\x00\xFB\x80\x00\x01\x11\x70\x00");
        file.extend_from_slice(b"\x00\x03key\x01v");
        assert_eq!(rdb_resizedb_keys(&file), Some(70_000));

        let mut small = b"REDIS0010\xFE\x00\xFB\x41\x00\x00".to_vec();
        small.push(0xFF);
        assert_eq!(rdb_resizedb_keys(&small), Some(256));
        assert_eq!(rdb_resizedb_keys(b"REDIS0010\xFF"), Some(0));
        assert_eq!(rdb_resizedb_keys(b"NOTREDIS"), None);
        assert_eq!(rdb_resizedb_keys(b"REDIS0010\xFA\x09redis"), None);
    }
}

//! The RDB file format: the bytes a snapshot is made of, written by Redis 7.0 as "REDIS0010".
//!
//! # Layout
//! ```text
//! encode.rs  keyspace entries ─► RDB bytes   write_header, write_db_header, write_entry, write_eof
//! crc.rs     RDB bytes ─► CRC-64/Jones       Checksum (the 8-byte footer)
//! lzf.rs     string ⇄ LZF                    the compression Redis applies to strings > 20 bytes
//! load.rs    RDB bytes (or zstd) ─► entries  load, LoadedEntry, LoadSummary
//! collection.rs  collection values ─► Value  every list/set/zset/hash encoding Redis 7.0 loads
//! stream.rs  streams ⇄ RDB bytes              Redis 7.0's RDB_TYPE_STREAM_LISTPACKS_2 (and _1)
//! listpack.rs, ziplist.rs, intset.rs         checked decoders of the compact blobs
//! error.rs   what a refused file reports     LoadError
//! ```
//! A file is: the magic `REDIS0010`, AUX fields, then per non-empty database a SELECTDB and a
//! RESIZEDB followed by its entries, the EOF opcode and the CRC-64 of everything before it
//! (little-endian). `docs/file-format.md` draws every byte.
//!
//! # Invariants
//! - The on-disk type and opcode numbers below are fixed forever (they are Redis's, from
//!   `rdb.h`); [`RdbType`](crate::format::RdbType) is deliberately a separate enum from
//!   `forkless_storage::Value`.
//! - The loader never trusts a length beyond the bytes that actually arrive: strings are read
//!   incrementally and an LZF length must be reachable from its compressed size.
//! - No `unsafe` here: this code parses untrusted files.
//!
//! # Not here
//! Module values, pre-2.6 zipmaps and functions: the loader refuses them with a typed error
//! rather than skipping them, because skipping would be a silent partial load. Streams are in
//! `stream.rs` (both directions).
//! Collections load in every encoding Redis 7.0 loads (`collection.rs`, over the blob decoders
//! `listpack.rs`, `ziplist.rs`, `intset.rs`); the writer uses the plain collection codes.

mod collection;
mod crc;
mod dump;
mod encode;
mod error;
mod intset;
mod listpack;
mod load;
mod lzf;
mod stream;
mod ziplist;

pub use crc::Checksum;
pub use dump::{DumpError, dump_payload, restore_payload, verify_payload};
pub use encode::{
    EncodeOptions, ReplAux, write_db_header, write_entry, write_eof, write_function, write_header,
    write_string_entry_head,
};
pub use error::LoadError;
pub use load::{LoadSummary, LoadedEntry, load, load_with_functions};

/// The RDB version this crate writes: Redis 7.0 writes "REDIS0010".
///
/// Bump it only together with Redis (a version Redis 7.0 cannot read would break migration back
/// to Redis); see "Versioning" in `docs/file-format.md`.
pub const RDB_VERSION: u32 = 10;

/// The oldest RDB version the loader reads (Redis reads the same range, 1 to [`RDB_VERSION`]).
pub const MIN_RDB_VERSION: u32 = 1;

/// The Redis version forkless is compatible with, written as the `redis-ver` AUX field.
pub const REDIS_VERSION_COMPAT: &str = "7.0.15";

/// forkless's own version, written as the `forkless-ver` AUX field (Redis ignores AUX fields it
/// does not know).
pub const FORKLESS_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The 5 bytes every RDB file starts with, before the 4 ASCII digits of the version.
pub const RDB_MAGIC: &[u8; 5] = b"REDIS";

/// The 4 bytes a zstd frame starts with (RFC 8878 §3.1.1, `0xFD2FB528` little-endian).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Opcodes: the byte before an entry or a piece of metadata, from Redis's `rdb.h`. A byte that is
/// not an opcode is a value type ([`RdbType`]) that starts a key.
pub mod opcode {
    /// A Redis Functions library (Redis 7.0 GA): one string, the library's source code.
    pub const FUNCTION2: u8 = 245;
    /// The pre-GA functions format of Redis 7.0 release candidates, which 7.0 GA refuses too.
    pub const FUNCTION_PRE_GA: u8 = 246;
    /// Module auxiliary data, written by modules with aux save callbacks.
    pub const MODULE_AUX: u8 = 247;
    /// LRU idle time of the next key, a length (written with an LRU maxmemory policy).
    pub const IDLE: u8 = 248;
    /// LFU counter of the next key, one byte (written with an LFU maxmemory policy).
    pub const FREQ: u8 = 249;
    /// An AUX field: two strings, name and value.
    pub const AUX: u8 = 250;
    /// Hash-table size hints for the current database: two lengths, keys and keys with expiry.
    pub const RESIZEDB: u8 = 251;
    /// Expiry of the next key: 8 bytes, little-endian signed milliseconds since the Unix epoch.
    pub const EXPIRETIME_MS: u8 = 252;
    /// Expiry of the next key in old files: 4 bytes, little-endian signed seconds.
    pub const EXPIRETIME: u8 = 253;
    /// Selects the database of the entries that follow: one length.
    pub const SELECTDB: u8 = 254;
    /// End of the data; the 8-byte CRC-64 follows when the version is 5 or later.
    pub const EOF: u8 = 255;
}

/// Length and string encodings, the top two bits of a length's first byte (`rdb.h`).
pub(crate) mod encoding {
    /// `00xxxxxx`: a 6-bit length in the same byte.
    pub(crate) const LEN_6BIT: u8 = 0;
    /// `01xxxxxx xxxxxxxx`: a 14-bit big-endian length.
    pub(crate) const LEN_14BIT: u8 = 1;
    /// `11xxxxxx`: not a length but a special string encoding in the low 6 bits.
    pub(crate) const ENCVAL: u8 = 3;
    /// `10000000` + 4 bytes: a 32-bit big-endian length.
    pub(crate) const LEN_32BIT: u8 = 0x80;
    /// `10000001` + 8 bytes: a 64-bit big-endian length.
    pub(crate) const LEN_64BIT: u8 = 0x81;
    /// String encoded as a signed 8-bit integer.
    pub(crate) const ENC_INT8: u8 = 0;
    /// String encoded as a signed 16-bit little-endian integer.
    pub(crate) const ENC_INT16: u8 = 1;
    /// String encoded as a signed 32-bit little-endian integer.
    pub(crate) const ENC_INT32: u8 = 2;
    /// LZF-compressed string: compressed length, original length, compressed bytes.
    pub(crate) const ENC_LZF: u8 = 3;
}

/// On-disk value types with their fixed codes from Redis 7.0's `rdb.h`.
///
/// This is deliberately not `forkless_storage::Value`: a type's code is part of the file format
/// and must never change, and one in-memory type maps to several on-disk encodings (a Redis 7.0
/// list is always [`RdbType::ListQuicklist2`], a small hash [`RdbType::HashListpack`]). Codes 6
/// to 8 are module values (8 was never used).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RdbType {
    /// A string, in one of the string encodings (raw, integer, LZF).
    String = 0,
    /// A list as a plain sequence of strings (Redis < 3.2).
    List = 1,
    /// A set as a sequence of strings (hash-table encoding).
    Set = 2,
    /// A sorted set with scores as decimal strings (Redis < 3.0).
    Zset = 3,
    /// A hash as a sequence of field/value strings (hash-table encoding).
    Hash = 4,
    /// A sorted set with binary double scores.
    Zset2 = 5,
    /// A module value in the pre-GA module format, which Redis refuses too.
    ModulePreGa = 6,
    /// A module value.
    Module2 = 7,
    /// A small hash as a zipmap (Redis < 2.6).
    HashZipmap = 9,
    /// A small list as a ziplist (Redis < 3.2).
    ListZiplist = 10,
    /// A set of integers as an intset.
    SetIntset = 11,
    /// A small sorted set as a ziplist (Redis < 7.0).
    ZsetZiplist = 12,
    /// A small hash as a ziplist (Redis < 7.0).
    HashZiplist = 13,
    /// A list as a quicklist of ziplists (Redis 3.2 to 6.2).
    ListQuicklist = 14,
    /// A stream (Redis 5.0 to 6.2 layout).
    StreamListpacks = 15,
    /// A small hash as a listpack (Redis 7.0).
    HashListpack = 16,
    /// A small sorted set as a listpack (Redis 7.0).
    ZsetListpack = 17,
    /// A list as a quicklist of listpacks (Redis 7.0).
    ListQuicklist2 = 18,
    /// A stream (Redis 7.0 layout).
    StreamListpacks2 = 19,
}

impl RdbType {
    /// Every type Redis 7.0 defines, in code order.
    pub const ALL: [RdbType; 19] = [
        RdbType::String,
        RdbType::List,
        RdbType::Set,
        RdbType::Zset,
        RdbType::Hash,
        RdbType::Zset2,
        RdbType::ModulePreGa,
        RdbType::Module2,
        RdbType::HashZipmap,
        RdbType::ListZiplist,
        RdbType::SetIntset,
        RdbType::ZsetZiplist,
        RdbType::HashZiplist,
        RdbType::ListQuicklist,
        RdbType::StreamListpacks,
        RdbType::HashListpack,
        RdbType::ZsetListpack,
        RdbType::ListQuicklist2,
        RdbType::StreamListpacks2,
    ];

    /// The byte that tags this type in a file.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The type with this code, or `None` if the byte is not a Redis 7.0 value type (it may be
    /// an opcode, see [`opcode`]).
    pub const fn from_code(code: u8) -> Option<RdbType> {
        Some(match code {
            0 => RdbType::String,
            1 => RdbType::List,
            2 => RdbType::Set,
            3 => RdbType::Zset,
            4 => RdbType::Hash,
            5 => RdbType::Zset2,
            6 => RdbType::ModulePreGa,
            7 => RdbType::Module2,
            9 => RdbType::HashZipmap,
            10 => RdbType::ListZiplist,
            11 => RdbType::SetIntset,
            12 => RdbType::ZsetZiplist,
            13 => RdbType::HashZiplist,
            14 => RdbType::ListQuicklist,
            15 => RdbType::StreamListpacks,
            16 => RdbType::HashListpack,
            17 => RdbType::ZsetListpack,
            18 => RdbType::ListQuicklist2,
            19 => RdbType::StreamListpacks2,
            _ => return None,
        })
    }

    /// A human name for error messages: the data type, then its encoding.
    pub const fn name(self) -> &'static str {
        match self {
            RdbType::String => "string",
            RdbType::List => "list as linked list",
            RdbType::Set => "set as hash table",
            RdbType::Zset => "sorted set v1",
            RdbType::Hash => "hash as hash table",
            RdbType::Zset2 => "sorted set as skiplist",
            RdbType::ModulePreGa => "module value, pre-GA format",
            RdbType::Module2 => "module value",
            RdbType::HashZipmap => "hash zipmap",
            RdbType::ListZiplist => "list ziplist",
            RdbType::SetIntset => "set intset",
            RdbType::ZsetZiplist => "sorted set ziplist",
            RdbType::HashZiplist => "hash ziplist",
            RdbType::ListQuicklist => "list quicklist",
            RdbType::StreamListpacks => "stream listpacks",
            RdbType::HashListpack => "hash listpack",
            RdbType::ZsetListpack => "sorted set listpack",
            RdbType::ListQuicklist2 => "list quicklist 2",
            RdbType::StreamListpacks2 => "stream listpacks 2",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_round_trip_and_match_rdb_h() {
        for rdb_type in RdbType::ALL {
            assert_eq!(RdbType::from_code(rdb_type.code()), Some(rdb_type));
        }
        // Spot checks against Redis 7.0's rdb.h.
        assert_eq!(RdbType::Zset2.code(), 5);
        assert_eq!(RdbType::SetIntset.code(), 11);
        assert_eq!(RdbType::ListQuicklist2.code(), 18);
        assert_eq!(RdbType::StreamListpacks2.code(), 19);
        assert_eq!(RdbType::from_code(8), None);
        assert_eq!(RdbType::from_code(20), None);
        for code in opcode::FUNCTION2..=opcode::EOF {
            assert_eq!(
                RdbType::from_code(code),
                None,
                "opcode {code} is not a type"
            );
        }
    }
}

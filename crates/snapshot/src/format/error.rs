//! Why an RDB file was refused.

use std::io;

use super::RDB_VERSION;

/// Why [`load`](super::load) refused a file.
///
/// Every variant names the file and the byte offset of the item that failed (not of the byte
/// where reading stopped), so that `Display` reads like
/// `dump.rdb: offset 1234: bad CRC64 checksum (expected 0x…, got 0x…)`. In a zstd-compressed
/// file, offsets count bytes of the decompressed RDB stream and the file is named
/// `<name> (zstd-decompressed)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Reading the file failed.
    #[error("{file}: offset {offset}: I/O error: {source}")]
    Io {
        /// The file being loaded.
        file: String,
        /// Offset of the item being read.
        offset: u64,
        /// The OS error.
        source: io::Error,
    },
    /// The file starts like zstd but its frames do not decompress.
    #[error("{file}: offset {offset}: zstd decompression failed: {source}")]
    Decompress {
        /// The file being loaded.
        file: String,
        /// Offset in the decompressed stream of the item being read.
        offset: u64,
        /// The decoder's error.
        source: io::Error,
    },
    /// The file ends in the middle of an item: it is truncated.
    #[error("{file}: offset {offset}: unexpected end of file while reading {what}")]
    UnexpectedEof {
        /// The file being loaded.
        file: String,
        /// Offset of the item that is cut off.
        offset: u64,
        /// The item, e.g. "a string length".
        what: &'static str,
    },
    /// The file does not start with `REDIS` and four digits (nor with a zstd frame).
    #[error("{file}: offset {offset}: not an RDB file (bad magic)")]
    BadMagic {
        /// The file being loaded.
        file: String,
        /// Always 0.
        offset: u64,
    },
    /// The version digits name a version this build cannot read.
    #[error(
        "{file}: offset {offset}: unsupported RDB version {version} (versions 1 to {max} can be \
         loaded)",
        max = RDB_VERSION
    )]
    UnsupportedVersion {
        /// The file being loaded.
        file: String,
        /// Offset of the version digits.
        offset: u64,
        /// The version the file declares.
        version: u32,
    },
    /// The CRC-64 footer does not match the bytes before it.
    #[error(
        "{file}: offset {offset}: bad CRC64 checksum (expected {expected:#018x}, got {got:#018x})"
    )]
    ChecksumMismatch {
        /// The file being loaded.
        file: String,
        /// Offset of the footer.
        offset: u64,
        /// The checksum computed over the bytes read (Redis calls it "expected" too).
        expected: u64,
        /// The checksum stored in the footer.
        got: u64,
    },
    /// A byte where a value type or opcode belongs is neither.
    #[error("{file}: offset {offset}: unknown value type {type_code}")]
    UnknownType {
        /// The file being loaded.
        file: String,
        /// Offset of the type byte.
        offset: u64,
        /// The byte.
        type_code: u8,
    },
    /// A Redis value type that forkless cannot store yet (streams, module values, zipmaps).
    #[error("{file}: offset {offset}: value type {type_code} ({name}) is not supported yet")]
    UnsupportedType {
        /// The file being loaded.
        file: String,
        /// Offset of the type byte.
        offset: u64,
        /// The type's code.
        type_code: u8,
        /// The type's name, see [`RdbType::name`](super::RdbType::name).
        name: &'static str,
    },
    /// Module auxiliary data: the file was written by a Redis with modules loaded.
    #[error(
        "{file}: offset {offset}: module auxiliary data (opcode 247) is not supported: the file \
         was written by a Redis with modules loaded"
    )]
    ModuleAux {
        /// The file being loaded.
        file: String,
        /// Offset of the opcode.
        offset: u64,
    },
    /// Redis Functions libraries, which forkless cannot run.
    #[error("{file}: offset {offset}: Redis Functions (opcode {opcode}) are not supported")]
    Functions {
        /// The file being loaded.
        file: String,
        /// Offset of the opcode.
        offset: u64,
        /// 245 (FUNCTION2) or 246 (the pre-GA format).
        opcode: u8,
    },
    /// Bytes follow the end of the RDB stream.
    #[error("{file}: offset {offset}: unexpected data after the end of the RDB stream")]
    TrailingData {
        /// The file being loaded.
        file: String,
        /// Offset of the first extra byte.
        offset: u64,
    },
    /// The bytes break the format in some other way.
    #[error("{file}: offset {offset}: corrupt RDB file: {reason}")]
    Corrupted {
        /// The file being loaded.
        file: String,
        /// Offset of the item that is wrong.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The caller's `on_entry` refused an entry (see [`LoadError::rejected`]).
    #[error("{file}: offset {offset}: entry refused: {reason}")]
    Rejected {
        /// The file being loaded.
        file: String,
        /// Offset of the entry (its first opcode).
        offset: u64,
        /// Why the caller refused it.
        reason: String,
    },
}

impl LoadError {
    /// An error for `on_entry` to return when it cannot accept an entry (database out of range,
    /// duplicate key, out of memory...). The loader fills in the file and the entry's offset.
    pub fn rejected(reason: impl Into<String>) -> LoadError {
        LoadError::Rejected {
            file: String::new(),
            offset: 0,
            reason: reason.into(),
        }
    }

    /// The file named in the error.
    pub fn file(&self) -> &str {
        match self {
            LoadError::Io { file, .. }
            | LoadError::Decompress { file, .. }
            | LoadError::UnexpectedEof { file, .. }
            | LoadError::BadMagic { file, .. }
            | LoadError::UnsupportedVersion { file, .. }
            | LoadError::ChecksumMismatch { file, .. }
            | LoadError::UnknownType { file, .. }
            | LoadError::UnsupportedType { file, .. }
            | LoadError::ModuleAux { file, .. }
            | LoadError::Functions { file, .. }
            | LoadError::TrailingData { file, .. }
            | LoadError::Corrupted { file, .. }
            | LoadError::Rejected { file, .. } => file,
        }
    }

    /// The byte offset named in the error.
    pub fn offset(&self) -> u64 {
        match self {
            LoadError::Io { offset, .. }
            | LoadError::Decompress { offset, .. }
            | LoadError::UnexpectedEof { offset, .. }
            | LoadError::BadMagic { offset, .. }
            | LoadError::UnsupportedVersion { offset, .. }
            | LoadError::ChecksumMismatch { offset, .. }
            | LoadError::UnknownType { offset, .. }
            | LoadError::UnsupportedType { offset, .. }
            | LoadError::ModuleAux { offset, .. }
            | LoadError::Functions { offset, .. }
            | LoadError::TrailingData { offset, .. }
            | LoadError::Corrupted { offset, .. }
            | LoadError::Rejected { offset, .. } => *offset,
        }
    }

    /// Fills in where a [`LoadError::rejected`] from `on_entry` happened.
    pub(crate) fn located(self, at_file: &str, at_offset: u64) -> LoadError {
        match self {
            LoadError::Rejected { file, reason, .. } if file.is_empty() => LoadError::Rejected {
                file: at_file.to_owned(),
                offset: at_offset,
                reason,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_offset_and_problem() {
        let err = LoadError::ChecksumMismatch {
            file: "dump.rdb".into(),
            offset: 1234,
            expected: 0xe9c6_d914_c4b8_d9ca,
            got: 1,
        };
        assert_eq!(
            err.to_string(),
            "dump.rdb: offset 1234: bad CRC64 checksum (expected 0xe9c6d914c4b8d9ca, got \
             0x0000000000000001)"
        );
        let err = LoadError::UnsupportedVersion {
            file: "dump.rdb".into(),
            offset: 5,
            version: 11,
        };
        assert_eq!(
            err.to_string(),
            "dump.rdb: offset 5: unsupported RDB version 11 (versions 1 to 10 can be loaded)"
        );
        let err = LoadError::rejected("database 16 is out of range").located("a.rdb", 99);
        assert_eq!(
            err.to_string(),
            "a.rdb: offset 99: entry refused: database 16 is out of range"
        );
        assert_eq!((err.file(), err.offset()), ("a.rdb", 99));
        // An error that already has a location keeps it.
        let err = err.located("b.rdb", 7);
        assert_eq!((err.file(), err.offset()), ("a.rdb", 99));
    }
}

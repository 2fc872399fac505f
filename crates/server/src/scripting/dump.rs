//! FUNCTION DUMP / RESTORE payloads, in Redis 7.0's format: for each library the RDB opcode
//! `FUNCTION2` (245) and its code as an RDB string, then the RDB version (2 bytes, little
//! endian) and the CRC-64 of everything before it (8 bytes, little endian).

use std::collections::BTreeMap;

use bytes::Bytes;
use forkless_snapshot::format::{Checksum, RDB_VERSION, opcode};

use super::functions::{Functions, Library};

/// What FUNCTION RESTORE does with libraries already loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Fail if a library of the same name exists.
    Append,
    /// Replace libraries of the same name.
    Replace,
    /// Drop every library first.
    Flush,
}

/// Appends an RDB length.
pub(crate) fn write_len(out: &mut Vec<u8>, len: usize) {
    let len = len as u64;
    if len < 64 {
        out.push(len as u8);
    } else if len < 16_384 {
        out.push(0x40 | (len >> 8) as u8);
        out.push((len & 0xFF) as u8);
    } else if len <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// The payload of FUNCTION DUMP.
pub(crate) fn dump(functions: &Functions) -> Vec<u8> {
    let mut out = Vec::new();
    for library in functions.libraries.values() {
        out.push(opcode::FUNCTION2);
        write_len(&mut out, library.code.len());
        out.extend_from_slice(&library.code);
    }
    let version = u16::try_from(RDB_VERSION).unwrap_or(u16::MAX);
    out.extend_from_slice(&version.to_le_bytes());
    let mut crc = Checksum::new();
    crc.update(&out);
    out.extend_from_slice(&crc.finish().to_le_bytes());
    out
}

/// A reader of RDB strings over a byte slice.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    /// An RDB length, or an encoding marker (`Err(kind)`) for special strings.
    fn len(&mut self) -> Option<Result<u64, u8>> {
        let first = self.byte()?;
        Some(match first >> 6 {
            0 => Ok(u64::from(first & 0x3F)),
            1 => Ok((u64::from(first & 0x3F) << 8) | u64::from(self.byte()?)),
            2 if first == 0x80 => {
                let b = self.take(4)?;
                Ok(u64::from(u32::from_be_bytes(b.try_into().ok()?)))
            }
            2 if first == 0x81 => {
                let b = self.take(8)?;
                Ok(u64::from_be_bytes(b.try_into().ok()?))
            }
            3 => Err(first & 0x3F),
            _ => return None,
        })
    }

    /// An RDB string: raw, an integer, or LZF-compressed.
    pub(crate) fn string(&mut self) -> Option<Vec<u8>> {
        match self.len()? {
            Ok(len) => Some(self.take(usize::try_from(len).ok()?)?.to_vec()),
            Err(0) => Some((self.byte()? as i8).to_string().into_bytes()),
            Err(1) => {
                let b = self.take(2)?;
                Some(
                    i16::from_le_bytes(b.try_into().ok()?)
                        .to_string()
                        .into_bytes(),
                )
            }
            Err(2) => {
                let b = self.take(4)?;
                Some(
                    i32::from_le_bytes(b.try_into().ok()?)
                        .to_string()
                        .into_bytes(),
                )
            }
            Err(3) => {
                let compressed_len = usize::try_from(self.len()?.ok()?).ok()?;
                let len = usize::try_from(self.len()?.ok()?).ok()?;
                let data = self.take(compressed_len)?;
                lzf_decompress(data, len)
            }
            Err(_) => None,
        }
    }
}

/// LZF decompression into exactly `len` bytes; None for corrupt input.
fn lzf_decompress(input: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(len.min(input.len().saturating_mul(64)));
    let mut pos = 0;
    while pos < input.len() {
        let ctrl = usize::from(*input.get(pos)?);
        pos += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            out.extend_from_slice(input.get(pos..pos + run)?);
            pos += run;
        } else {
            let mut run = ctrl >> 5;
            if run == 7 {
                run += usize::from(*input.get(pos)?);
                pos += 1;
            }
            let back = ((ctrl & 0x1F) << 8) + usize::from(*input.get(pos)?) + 1;
            pos += 1;
            let start = out.len().checked_sub(back)?;
            for i in 0..run + 2 {
                let b = *out.get(start + i)?;
                out.push(b);
            }
        }
        if out.len() > len {
            return None;
        }
    }
    (out.len() == len).then_some(out)
}

/// Checks the footer: Err when the version is newer than ours or the checksum is wrong.
fn verify(payload: &[u8]) -> Result<&[u8], ()> {
    let body_len = payload.len().checked_sub(10).ok_or(())?;
    let (body, footer) = payload.split_at(body_len);
    let version = u16::from_le_bytes([*footer.first().ok_or(())?, *footer.get(1).ok_or(())?]);
    if u32::from(version) > RDB_VERSION {
        return Err(());
    }
    let stored = u64::from_le_bytes(footer.get(2..10).ok_or(())?.try_into().map_err(|_| ())?);
    let mut crc = Checksum::new();
    crc.update(payload.get(..payload.len() - 8).ok_or(())?);
    if stored != 0 && crc.finish() != stored {
        return Err(());
    }
    Ok(body)
}

/// Reads a payload's library codes.
pub(crate) fn library_codes(payload: &[u8]) -> Result<Vec<Bytes>, String> {
    let body = verify(payload).map_err(|()| "ERR DUMP payload version or checksum are wrong")?;
    let mut reader = Reader::new(body);
    let mut codes = Vec::new();
    while reader.remaining() > 0 {
        let Some(kind) = reader.byte() else {
            return Err("ERR can not read data type".into());
        };
        if kind != opcode::FUNCTION2 {
            return Err("ERR given type is not a function".into());
        }
        let Some(code) = reader.string() else {
            return Err("ERR failed loading the given functions payload".into());
        };
        codes.push(Bytes::from(code));
    }
    Ok(codes)
}

/// FUNCTION RESTORE: loads every library of `payload` as `policy` says. All or nothing.
pub(crate) fn restore(
    functions: &mut Functions,
    payload: &[u8],
    policy: Policy,
) -> Result<(), String> {
    let codes = library_codes(payload)?;
    let mut restored: Vec<Library> = Vec::new();
    for code in &codes {
        let library = functions.create(code)?;
        if restored.iter().any(|other| other.name == library.name) {
            return Err(format!("ERR Library {} already exists", library.name));
        }
        restored.push(library);
    }
    let mut merged: BTreeMap<String, Library> = match policy {
        Policy::Flush => BTreeMap::new(),
        Policy::Append | Policy::Replace => std::mem::take(&mut functions.libraries),
    };
    let previous_names: Vec<String> = merged.keys().cloned().collect();
    let mut replaced = Vec::new();
    for library in restored {
        if merged.contains_key(&library.name) {
            if policy == Policy::Append {
                functions.libraries = merged;
                return Err(format!("ERR Library {} already exists", library.name));
            }
            if let Some(old) = merged.remove(&library.name) {
                replaced.push(old);
            }
        }
        for function in library.functions.values() {
            let clash = merged.values().any(|other| {
                other
                    .functions
                    .values()
                    .any(|f| f.name.eq_ignore_ascii_case(&function.name))
            });
            if clash {
                let name = function.name.clone();
                for old in replaced {
                    merged.insert(old.name.clone(), old);
                }
                if policy != Policy::Flush {
                    functions.libraries = merged;
                }
                return Err(format!("ERR Function {name} already exists"));
            }
        }
        merged.insert(library.name.clone(), library);
    }
    let _ = previous_names;
    functions.libraries = merged;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 63, 64, 16_383, 16_384, 70_000] {
            let mut out = Vec::new();
            write_len(&mut out, len);
            out.extend(std::iter::repeat_n(b'x', len));
            let mut reader = Reader::new(&out);
            assert_eq!(reader.string().unwrap().len(), len);
        }
    }

    #[test]
    fn lzf_literal_and_back_reference() {
        // "abcabcabc": literal "abc", then a back reference of 6 bytes at distance 3.
        let compressed = [2, b'a', b'b', b'c', (4 << 5), 2];
        assert_eq!(lzf_decompress(&compressed, 9).unwrap(), b"abcabcabc");
        assert!(lzf_decompress(&compressed, 8).is_none());
    }

    #[test]
    fn corrupt_payloads_are_refused() {
        assert!(library_codes(b"short").is_err());
        let mut payload = vec![opcode::FUNCTION2, 1, b'x'];
        payload.extend_from_slice(&10u16.to_le_bytes());
        payload.extend_from_slice(&1u64.to_le_bytes());
        assert_eq!(
            library_codes(&payload).unwrap_err(),
            "ERR DUMP payload version or checksum are wrong"
        );
    }
}

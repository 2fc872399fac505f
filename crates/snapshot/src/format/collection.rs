//! RDB values of every collection encoding Redis 7.0 loads → `forkless_storage::Value`.
//!
//! ```text
//! List (1)            len, len × string
//! Set (2)             len, len × string                       duplicates refused
//! Zset (3)            len, len × (string, score as text)     duplicates and NaN refused
//! Hash (4)            len, len × (string field, string value) duplicates refused
//! Zset2 (5)           len, len × (string, score [8 LE f64])   duplicates and NaN refused
//! ListZiplist (10)    string: a ziplist of elements           (ziplist.rs)
//! SetIntset (11)      string: an intset                       (intset.rs)
//! ZsetZiplist (12)    string: a ziplist of member, score, …
//! HashZiplist (13)    string: a ziplist of field, value, …
//! ListQuicklist (14)  len(nodes), nodes × string: a ziplist
//! HashListpack (16)   string: a listpack of field, value, …   (listpack.rs)
//! ZsetListpack (17)   string: a listpack of member, score, …
//! ListQuicklist2 (18) len(nodes), nodes × (len(container), string):
//!                       container 1 (PLAIN): the string is one element
//!                       container 2 (PACKED): the string is a listpack of elements
//! ```
//! Every string above may be integer-encoded or LZF-compressed like any RDB string. A blob is
//! read whole (its bytes are in the file, so its size is bounded by what arrived) and checked
//! completely by its decoder before or while its elements are taken; element counts from the
//! file never size an allocation, and each element read consumes file bytes, so a lying count
//! fails at the end of the file.
//!
//! Empty collections: Redis 7.0 skips a key whose collection is empty (`RDB_LOAD_ERR_EMPTY_KEY`,
//! logged as "skipping empty key") rather than refusing the file, because older Redis versions
//! could write them; so does [`read_value`], returning `None`. Empty listpack or ziplist nodes of
//! a quicklist are skipped as Redis skips them. An empty intset is corrupt, as in Redis.

use std::io::Read;

use bytes::Bytes;
use forkless_storage::Value;
use forkless_storage::types::{hash::Hash, list::List, set::Set, zset::ZSet};

use super::RdbType;
use super::error::LoadError;
use super::intset;
use super::listpack::{Element, Listpack};
use super::load::{Input, decimal};
use super::ziplist::Ziplist;
use std::sync::Arc;

/// Quicklist node containers (`quicklist.h`): one element, or a listpack of elements.
const CONTAINER_PLAIN: u64 = 1;
const CONTAINER_PACKED: u64 = 2;

/// Reads the value of a key of type `rdb_type`, starting at offset `at`. Returns `None` for an
/// empty collection, which the caller skips and counts as Redis does.
pub(super) fn read_value<R: Read>(
    input: &mut Input<'_, R>,
    rdb_type: RdbType,
    type_at: u64,
    scratch: &mut Vec<u8>,
) -> Result<Option<Value>, LoadError> {
    let at = input.offset();
    let value = match rdb_type {
        RdbType::String => {
            // Strings keep the offset of their entry, as they always have.
            let bytes = input.read_string(type_at, "a string value", scratch)?;
            return Ok(Some(Value::String(bytes.into())));
        }
        RdbType::List => {
            let len = input.read_len(at, "a list length")?;
            let mut list = List::new();
            for _ in 0..len {
                list.push_back(Bytes::from(input.read_string(
                    at,
                    "a list element",
                    scratch,
                )?));
            }
            (!list.is_empty()).then(|| Value::List(Arc::new(list)))
        }
        RdbType::Set => {
            let len = input.read_len(at, "a set length")?;
            let mut set = Set::new();
            for _ in 0..len {
                let member = Bytes::from(input.read_string(at, "a set member", scratch)?);
                insert_member(input, at, &mut set, member)?;
            }
            (!set.is_empty()).then(|| Value::Set(Arc::new(set)))
        }
        RdbType::Zset | RdbType::Zset2 => {
            let len = input.read_len(at, "a sorted set length")?;
            let mut zset = ZSet::new();
            for _ in 0..len {
                let member = Bytes::from(input.read_string(at, "a sorted set member", scratch)?);
                let score = if rdb_type == RdbType::Zset2 {
                    f64::from_le_bytes(input.read_array(at, "a sorted set score")?)
                } else {
                    read_text_score(input, at)?
                };
                insert_scored(input, at, &mut zset, member, score)?;
            }
            (!zset.is_empty()).then(|| Value::ZSet(Arc::new(zset)))
        }
        RdbType::Hash => {
            let len = input.read_len(at, "a hash length")?;
            let mut hash = Hash::new();
            for _ in 0..len {
                let field = Bytes::from(input.read_string(at, "a hash field", scratch)?);
                let value = Bytes::from(input.read_string(at, "a hash value", scratch)?);
                insert_field(input, at, &mut hash, field, value)?;
            }
            (!hash.is_empty()).then(|| Value::Hash(Arc::new(hash)))
        }
        RdbType::SetIntset => {
            let blob = input.read_string(at, "an intset", scratch)?;
            let members = intset::parse(&blob).map_err(|reason| input.corrupted(at, reason))?;
            let mut set = Set::new();
            for member in members {
                // Strictly ascending, checked by `parse`: no duplicates.
                set.insert(Bytes::from(decimal(member)));
            }
            Some(Value::Set(Arc::new(set)))
        }
        RdbType::ListZiplist => {
            let blob = input.read_string(at, "a list ziplist", scratch)?;
            let mut list = List::new();
            let elements = Ziplist::new(&blob).map_err(|reason| input.corrupted(at, reason))?;
            push_elements(input, at, &mut list, elements)?;
            (!list.is_empty()).then(|| Value::List(Arc::new(list)))
        }
        RdbType::ListQuicklist | RdbType::ListQuicklist2 => {
            read_quicklist(input, rdb_type, at, scratch)?
        }
        RdbType::HashZiplist | RdbType::HashListpack => {
            let blob = input.read_string(at, "a hash listpack or ziplist", scratch)?;
            let mut hash = Hash::new();
            for_each_pair(input, at, rdb_type, &blob, "hash", |input, field, value| {
                insert_field(input, at, &mut hash, to_bytes(field), to_bytes(value))
            })?;
            (!hash.is_empty()).then(|| Value::Hash(Arc::new(hash)))
        }
        RdbType::ZsetZiplist | RdbType::ZsetListpack => {
            let blob = input.read_string(at, "a sorted set listpack or ziplist", scratch)?;
            let mut zset = ZSet::new();
            for_each_pair(
                input,
                at,
                rdb_type,
                &blob,
                "sorted set",
                |input, member, score| {
                    let score = element_score(score).ok_or_else(|| {
                        input.corrupted(at, format!("sorted set score {score:?} is not a number"))
                    })?;
                    insert_scored(input, at, &mut zset, to_bytes(member), score)
                },
            )?;
            (!zset.is_empty()).then(|| Value::ZSet(Arc::new(zset)))
        }
        RdbType::StreamListpacks | RdbType::StreamListpacks2 => {
            Some(super::stream::read_stream(input, rdb_type, at, scratch)?)
        }
        RdbType::ModulePreGa | RdbType::Module2 | RdbType::HashZipmap => {
            return Err(LoadError::UnsupportedType {
                file: input.file().to_owned(),
                offset: type_at,
                type_code: rdb_type.code(),
                name: rdb_type.name(),
            });
        }
    };
    Ok(value)
}

/// A quicklist: a node count, then per node (version 2: a container kind and) a blob.
fn read_quicklist<R: Read>(
    input: &mut Input<'_, R>,
    rdb_type: RdbType,
    at: u64,
    scratch: &mut Vec<u8>,
) -> Result<Option<Value>, LoadError> {
    let n_nodes = input.read_len(at, "a quicklist node count")?;
    let mut list = List::new();
    for node in 0..n_nodes {
        let container = if rdb_type == RdbType::ListQuicklist2 {
            input.read_len(at, "a quicklist node container")?
        } else {
            CONTAINER_PACKED
        };
        let blob = input.read_string(at, "a quicklist node", scratch)?;
        let in_node = |reason: String| format!("quicklist node {node}: {reason}");
        match container {
            CONTAINER_PLAIN => list.push_back(Bytes::from(blob)),
            CONTAINER_PACKED if rdb_type == RdbType::ListQuicklist2 => {
                let elements =
                    Listpack::new(&blob).map_err(|reason| input.corrupted(at, in_node(reason)))?;
                push_elements(input, at, &mut list, elements.map(|e| e.map_err(in_node)))?;
            }
            CONTAINER_PACKED => {
                let elements =
                    Ziplist::new(&blob).map_err(|reason| input.corrupted(at, in_node(reason)))?;
                push_elements(input, at, &mut list, elements.map(|e| e.map_err(in_node)))?;
            }
            other => {
                return Err(input.corrupted(
                    at,
                    format!("quicklist node {node} has unknown container {other}"),
                ));
            }
        }
    }
    Ok((!list.is_empty()).then(|| Value::List(Arc::new(list))))
}

fn push_elements<'a, R: Read>(
    input: &Input<'_, R>,
    at: u64,
    list: &mut List,
    elements: impl Iterator<Item = Result<Element<'a>, String>>,
) -> Result<(), LoadError> {
    for element in elements {
        let element = element.map_err(|reason| input.corrupted(at, reason))?;
        list.push_back(to_bytes(element));
    }
    Ok(())
}

/// Walks a listpack (codes 16, 17) or ziplist (12, 13) of pairs, refusing an odd count.
fn for_each_pair<'a, R: Read>(
    input: &mut Input<'_, R>,
    at: u64,
    rdb_type: RdbType,
    blob: &'a [u8],
    what: &str,
    mut each: impl FnMut(&mut Input<'_, R>, Element<'a>, Element<'a>) -> Result<(), LoadError>,
) -> Result<(), LoadError> {
    let mut elements: Box<dyn Iterator<Item = Result<Element<'a>, String>>> =
        if matches!(rdb_type, RdbType::HashListpack | RdbType::ZsetListpack) {
            Box::new(Listpack::new(blob).map_err(|reason| input.corrupted(at, reason))?)
        } else {
            Box::new(Ziplist::new(blob).map_err(|reason| input.corrupted(at, reason))?)
        };
    while let Some(first) = elements.next() {
        let first = first.map_err(|reason| input.corrupted(at, reason))?;
        let Some(second) = elements.next() else {
            return Err(input.corrupted(at, format!("{what} has an odd number of elements")));
        };
        let second = second.map_err(|reason| input.corrupted(at, reason))?;
        each(input, first, second)?;
    }
    Ok(())
}

/// An element as the string Redis sees: integers in decimal.
fn to_bytes(element: Element<'_>) -> Bytes {
    match element {
        Element::Str(bytes) => Bytes::copy_from_slice(bytes),
        Element::Int(value) => Bytes::from(decimal(value)),
    }
}

/// The score of a listpack/ziplist sorted set: an integer, or a decimal string as Redis's
/// `zzlStrtod` reads it.
fn element_score(element: Element<'_>) -> Option<f64> {
    match element {
        Element::Int(value) => Some(value as f64),
        Element::Str(text) => parse_score(text),
    }
}

/// A score written as text (`%.17g`, `inf`, `-inf`); `None` if it is not a number.
fn parse_score(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// `rdbLoadDoubleValue`: a length byte (253 NaN, 254 +inf, 255 -inf), then that many bytes of
/// decimal text.
fn read_text_score<R: Read>(input: &mut Input<'_, R>, at: u64) -> Result<f64, LoadError> {
    let len = input.read_u8(at, "a sorted set score")?;
    Ok(match len {
        253 => f64::NAN,
        254 => f64::INFINITY,
        255 => f64::NEG_INFINITY,
        len => {
            let mut text = Vec::new();
            input.read_into(&mut text, u64::from(len), at, "a sorted set score")?;
            parse_score(&text).ok_or_else(|| {
                input.corrupted(
                    at,
                    format!(
                        "sorted set score \"{}\" is not a number",
                        text.escape_ascii()
                    ),
                )
            })?
        }
    })
}

/// The first 64 bytes of a member, kept on the stack so that an error can name a member that
/// was moved into its collection (no allocation per element on the good path).
struct Shown {
    prefix: [u8; 64],
    len: usize,
    truncated: bool,
}

impl Shown {
    fn new(bytes: &[u8]) -> Shown {
        let mut prefix = [0u8; 64];
        let len = bytes.len().min(prefix.len());
        prefix[..len].copy_from_slice(&bytes[..len]);
        Shown {
            prefix,
            len,
            truncated: len < bytes.len(),
        }
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ellipsis = if self.truncated { "..." } else { "" };
        write!(
            f,
            "\"{}\"{ellipsis}",
            self.prefix[..self.len].escape_ascii()
        )
    }
}

fn insert_member<R: Read>(
    input: &Input<'_, R>,
    at: u64,
    set: &mut Set,
    member: Bytes,
) -> Result<(), LoadError> {
    let shown = Shown::new(&member);
    if set.insert(member) {
        Ok(())
    } else {
        Err(input.corrupted(at, format!("duplicate set member {shown}")))
    }
}

fn insert_field<R: Read>(
    input: &Input<'_, R>,
    at: u64,
    hash: &mut Hash,
    field: Bytes,
    value: Bytes,
) -> Result<(), LoadError> {
    let shown = Shown::new(&field);
    if hash.insert(field, value) {
        Ok(())
    } else {
        Err(input.corrupted(at, format!("duplicate hash field {shown}")))
    }
}

fn insert_scored<R: Read>(
    input: &Input<'_, R>,
    at: u64,
    zset: &mut ZSet,
    member: Bytes,
    score: f64,
) -> Result<(), LoadError> {
    let shown = Shown::new(&member);
    if score.is_nan() {
        return Err(input.corrupted(at, format!("sorted set member {shown} has a NaN score")));
    }
    if zset.insert(member, score) {
        Ok(())
    } else {
        Err(input.corrupted(at, format!("duplicate sorted set member {shown}")))
    }
}

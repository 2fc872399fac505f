//! Streams in `RDB_TYPE_STREAM_LISTPACKS_2`, the layout Redis 7.0 writes (`rdbSaveObject`'s
//! stream branch): the entries as listpacks keyed by their master id, the stream's counters,
//! then the consumer groups with their PELs and consumers.
//!
//! Each node is written as Redis builds one (`streamAppendItem`): a master entry holding the
//! first entry's fields, then per entry its flags, the id as differences from the master id,
//! the fields (or only the values when they are the master's, `SAMEFIELDS`) and the lp-count
//! that lets a reader walk backwards. Deleted entries are not kept, so none is written.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use forkless_storage::Value;
use forkless_storage::types::stream::{Consumer, Fields, Group, Pending, Stream, StreamId};
use forkless_storage::value::parse_canonical_i64;

use super::RdbType;
use super::encode::{write_len, write_raw_string};
use super::error::LoadError;
use super::listpack::{self, Element};
use super::load::{Input, decimal};

/// `STREAM_ITEM_FLAG_SAMEFIELDS`.
pub(crate) const FLAG_SAMEFIELDS: i64 = 1 << 1;

/// `STREAM_ITEM_FLAG_DELETED`.
pub(crate) const FLAG_DELETED: i64 = 1;

/// An id as the 16 big-endian bytes Redis keys its radix trees with.
pub(crate) fn id_bytes(id: StreamId) -> [u8; 16] {
    let mut out = [0u8; 16];
    let (ms, seq) = out.split_at_mut(8);
    ms.copy_from_slice(&id.ms.to_be_bytes());
    seq.copy_from_slice(&id.seq.to_be_bytes());
    out
}

/// A listpack element as `lpAppend` stores a string: an integer when it is a canonical one.
fn element(bytes: &[u8]) -> Element<'_> {
    match parse_canonical_i64(bytes) {
        Some(n) if bytes.len() <= 20 => Element::Int(n),
        _ => Element::Str(bytes),
    }
}

/// A difference of id parts as Redis stores it: the unsigned difference read as signed.
fn diff(a: u64, b: u64) -> Element<'static> {
    Element::Int(a.wrapping_sub(b) as i64)
}

/// Appends one node's listpack (the entries of `entries`, at least one) and returns its master
/// id.
fn write_node<'a>(
    out: &mut Vec<u8>,
    mut entries: impl Iterator<Item = (StreamId, Fields<'a>)>,
) -> Option<StreamId> {
    let (master_id, master_fields) = entries.next()?;
    let master: Vec<&[u8]> = master_fields.clone().step_by(2).collect();
    let rest: Vec<(StreamId, Fields<'a>)> = entries.collect();
    let mut elements: Vec<Element<'_>> = Vec::new();
    elements.push(Element::Int(1 + rest.len() as i64));
    elements.push(Element::Int(0));
    elements.push(Element::Int(master.len() as i64));
    elements.extend(master.iter().map(|field| element(field)));
    elements.push(Element::Int(0));
    let all = std::iter::once((master_id, master_fields)).chain(rest);
    for (id, fields) in all {
        let strings: Vec<&[u8]> = fields.collect();
        let n_fields = strings.len() / 2;
        let same = n_fields == master.len()
            && strings
                .iter()
                .step_by(2)
                .zip(&master)
                .all(|(field, master)| field == master);
        elements.push(Element::Int(if same { FLAG_SAMEFIELDS } else { 0 }));
        elements.push(diff(id.ms, master_id.ms));
        elements.push(diff(id.seq, master_id.seq));
        if same {
            elements.extend(
                strings
                    .iter()
                    .skip(1)
                    .step_by(2)
                    .map(|value| element(value)),
            );
        } else {
            elements.push(Element::Int(n_fields as i64));
            elements.extend(strings.iter().map(|s| element(s)));
        }
        let lp_count = n_fields + 3 + if same { 0 } else { n_fields + 1 };
        elements.push(Element::Int(lp_count as i64));
    }
    write_raw_string(out, &id_bytes(master_id));
    write_raw_string(out, &listpack::build(&elements));
    Some(master_id)
}

/// Writes a stream's body (after its type byte) as Redis 7.0's `RDB_TYPE_STREAM_LISTPACKS_2`.
pub(crate) fn write_stream(out: &mut Vec<u8>, stream: &Stream) {
    let mut nodes = Vec::new();
    for node in stream.nodes() {
        write_node(&mut nodes, node);
    }
    write_len(out, stream.nodes().count() as u64);
    out.extend_from_slice(&nodes);
    write_len(out, stream.len() as u64);
    let last = stream.last_id();
    write_len(out, last.ms);
    write_len(out, last.seq);
    let first = stream.first_id();
    write_len(out, first.ms);
    write_len(out, first.seq);
    let max_deleted = stream.max_deleted_id();
    write_len(out, max_deleted.ms);
    write_len(out, max_deleted.seq);
    write_len(out, stream.entries_added());
    write_len(out, stream.groups().len() as u64);
    for (name, group) in stream.groups() {
        write_raw_string(out, name);
        write_len(out, group.last_id.ms);
        write_len(out, group.last_id.seq);
        // `SCG_INVALID_ENTRIES_READ` is -1, which `rdbSaveLen` writes as 2^64 - 1.
        write_len(out, group.entries_read.unwrap_or(u64::MAX));
        write_len(out, group.pending.len() as u64);
        for (id, pending) in &group.pending {
            out.extend_from_slice(&id_bytes(*id));
            out.extend_from_slice(&pending.delivery_time.to_le_bytes());
            write_len(out, pending.delivery_count);
        }
        write_len(out, group.consumers.len() as u64);
        for (name, consumer) in &group.consumers {
            write_raw_string(out, name);
            out.extend_from_slice(&consumer.seen_time.to_le_bytes());
            write_len(out, consumer.pending.len() as u64);
            for id in &consumer.pending {
                out.extend_from_slice(&id_bytes(*id));
            }
        }
    }
}

/// An id from the 16 big-endian bytes of a radix-tree key.
fn id_from_bytes(bytes: &[u8; 16]) -> StreamId {
    let (ms, seq) = bytes.split_at(8);
    let ms = u64::from_be_bytes(ms.try_into().unwrap_or_default());
    let seq = u64::from_be_bytes(seq.try_into().unwrap_or_default());
    StreamId::new(ms, seq)
}

/// A listpack element as an integer (`lpGetInteger`; a string holding one counts).
fn int_of(element: Element<'_>) -> Option<i64> {
    match element {
        Element::Int(n) => Some(n),
        Element::Str(s) => parse_canonical_i64(s),
    }
}

/// A listpack element as the bytes of a field or value.
fn bytes_of(element: Element<'_>) -> Vec<u8> {
    match element {
        Element::Int(n) => decimal(n),
        Element::Str(s) => s.to_vec(),
    }
}

/// Appends the live entries of one node's listpack, whose master id is `master`, to `stream`.
/// Refuses a malformed node and ids that do not increase (the stream's order is an invariant).
fn read_node(stream: &mut Stream, master: StreamId, blob: &[u8]) -> Result<(), String> {
    let elements: Vec<Element<'_>> = listpack::Listpack::new(blob)?.collect::<Result<_, _>>()?;
    let mut it = elements.into_iter();
    let next_int = |it: &mut std::vec::IntoIter<Element<'_>>, what: &str| {
        it.next()
            .and_then(int_of)
            .ok_or_else(|| format!("stream node: missing or bad {what}"))
    };
    let valid = next_int(&mut it, "entry count")?;
    let deleted = next_int(&mut it, "deleted count")?;
    let n_master = usize::try_from(next_int(&mut it, "master field count")?)
        .map_err(|_| "stream node: negative master field count".to_string())?;
    let mut master_fields = Vec::with_capacity(n_master.min(1024));
    for _ in 0..n_master {
        master_fields.push(bytes_of(
            it.next().ok_or("stream node: missing master field")?,
        ));
    }
    if next_int(&mut it, "master terminator")? != 0 {
        return Err("stream node: bad master entry terminator".into());
    }
    if valid == 0 && deleted == 0 {
        return Err("stream node: empty listpack".into());
    }
    let mut seen = 0i64;
    while let Some(flags) = it.next() {
        let flags = int_of(flags).ok_or("stream node: bad entry flags")?;
        let ms = next_int(&mut it, "id ms difference")?;
        let seq = next_int(&mut it, "id seq difference")?;
        let id = StreamId::new(
            master.ms.wrapping_add(ms as u64),
            master.seq.wrapping_add(seq as u64),
        );
        let mut strings: Vec<Vec<u8>> = Vec::new();
        if flags & FLAG_SAMEFIELDS != 0 {
            for field in &master_fields {
                strings.push(field.clone());
                strings.push(bytes_of(it.next().ok_or("stream node: missing value")?));
            }
        } else {
            let n = usize::try_from(next_int(&mut it, "field count")?)
                .map_err(|_| "stream node: negative field count".to_string())?;
            for _ in 0..n.saturating_mul(2) {
                strings.push(bytes_of(it.next().ok_or("stream node: missing field")?));
            }
        }
        next_int(&mut it, "lp-count")?;
        if flags & FLAG_DELETED != 0 {
            continue;
        }
        seen += 1;
        if !stream.is_empty() && id <= stream.last_id() {
            return Err(format!("stream node: id {id} does not increase"));
        }
        let refs: Vec<&[u8]> = strings.iter().map(Vec::as_slice).collect();
        stream.append(id, &refs);
    }
    if seen != valid {
        return Err(format!(
            "stream node: {seen} entries where the master entry counts {valid}"
        ));
    }
    Ok(())
}

/// Reads a stream (`RDB_TYPE_STREAM_LISTPACKS` or `_2`) after its type byte.
pub(crate) fn read_stream<R: Read>(
    input: &mut Input<'_, R>,
    rdb_type: RdbType,
    at: u64,
    scratch: &mut Vec<u8>,
) -> Result<Value, LoadError> {
    let mut stream = Stream::new();
    let n_nodes = input.read_len(at, "a stream node count")?;
    for _ in 0..n_nodes {
        let key = input.read_string(at, "a stream node key", scratch)?;
        let key: [u8; 16] = key
            .as_slice()
            .try_into()
            .map_err(|_| input.corrupted(at, "a stream node key is not 16 bytes"))?;
        let blob = input.read_string(at, "a stream node listpack", scratch)?;
        read_node(&mut stream, id_from_bytes(&key), &blob)
            .map_err(|reason| input.corrupted(at, reason))?;
    }
    let length = input.read_len(at, "a stream length")?;
    if length != stream.len() as u64 {
        return Err(input.corrupted(
            at,
            format!("stream length {length} but {} entries", stream.len()),
        ));
    }
    let last = StreamId::new(
        input.read_len(at, "a stream last id")?,
        input.read_len(at, "a stream last id")?,
    );
    if stream.last().is_some_and(|(greatest, _)| greatest > last) {
        return Err(input.corrupted(at, "stream last id below its greatest entry"));
    }
    stream.set_last_id(last);
    if rdb_type == RdbType::StreamListpacks2 {
        // The first id is derived from the entries; read and checked only for its bytes.
        input.read_len(at, "a stream first id")?;
        input.read_len(at, "a stream first id")?;
        let max_deleted = StreamId::new(
            input.read_len(at, "a stream max deleted id")?,
            input.read_len(at, "a stream max deleted id")?,
        );
        stream.set_max_deleted_id(max_deleted);
        stream.set_entries_added(input.read_len(at, "a stream entries-added count")?);
    } else {
        stream.set_entries_added(stream.len() as u64);
    }
    let n_groups = input.read_len(at, "a stream group count")?;
    for _ in 0..n_groups {
        let name = Bytes::from(input.read_string(at, "a stream group name", scratch)?);
        let last_id = StreamId::new(
            input.read_len(at, "a group last id")?,
            input.read_len(at, "a group last id")?,
        );
        let entries_read = if rdb_type == RdbType::StreamListpacks2 {
            let n = input.read_len(at, "a group entries-read count")?;
            // `SCG_INVALID_ENTRIES_READ` (-1) comes as 2^64 - 1.
            (n != u64::MAX).then_some(n)
        } else {
            stream.estimate_distance(last_id)
        };
        let mut group = Group::new(last_id, entries_read);
        let n_pending = input.read_len(at, "a group PEL size")?;
        for _ in 0..n_pending {
            let id = id_from_bytes(&input.read_array(at, "a PEL id")?);
            let delivery_time = u64::from_le_bytes(input.read_array(at, "a PEL delivery time")?);
            let delivery_count = input.read_len(at, "a PEL delivery count")?;
            let pending = Pending {
                delivery_time,
                delivery_count,
                consumer: Bytes::new(),
            };
            if group.pending.insert(id, pending).is_some() {
                return Err(input.corrupted(at, format!("duplicate PEL id {id}")));
            }
        }
        let n_consumers = input.read_len(at, "a group consumer count")?;
        for _ in 0..n_consumers {
            let name = Bytes::from(input.read_string(at, "a consumer name", scratch)?);
            let seen_time = u64::from_le_bytes(input.read_array(at, "a consumer seen time")?);
            let mut consumer = Consumer {
                seen_time,
                active_time: Some(seen_time),
                pending: BTreeSet::new(),
            };
            let n_owned = input.read_len(at, "a consumer PEL size")?;
            for _ in 0..n_owned {
                let id = id_from_bytes(&input.read_array(at, "a consumer PEL id")?);
                let Some(pending) = group.pending.get_mut(&id) else {
                    return Err(
                        input.corrupted(at, format!("consumer PEL id {id} not in its group's PEL"))
                    );
                };
                if !pending.consumer.is_empty() || !consumer.pending.insert(id) {
                    return Err(input.corrupted(at, format!("PEL id {id} owned twice")));
                }
                pending.consumer = name.clone();
            }
            if group.consumers.insert(name, consumer).is_some() {
                return Err(input.corrupted(at, "duplicate consumer name"));
            }
        }
        if group.pending.values().any(|p| p.consumer.is_empty()) {
            return Err(input.corrupted(at, "a PEL entry without a consumer"));
        }
        if stream.groups_mut().insert(name, group).is_some() {
            return Err(input.corrupted(at, "duplicate consumer group name"));
        }
    }
    Ok(Value::Stream(Arc::new(stream)))
}

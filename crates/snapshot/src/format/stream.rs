//! Streams in `RDB_TYPE_STREAM_LISTPACKS_2`, the layout Redis 7.0 writes (`rdbSaveObject`'s
//! stream branch): the entries as listpacks keyed by their master id, the stream's counters,
//! then the consumer groups with their PELs and consumers.
//!
//! Each node is written as Redis builds one (`streamAppendItem`): a master entry holding the
//! first entry's fields, then per entry its flags, the id as differences from the master id,
//! the fields (or only the values when they are the master's, `SAMEFIELDS`) and the lp-count
//! that lets a reader walk backwards. Deleted entries are not kept, so none is written.

use forkless_storage::types::stream::{Fields, Stream, StreamId};
use forkless_storage::value::parse_canonical_i64;

use super::encode::{write_len, write_raw_string};
use super::listpack::{self, Element};

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
    let _ = FLAG_DELETED;
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

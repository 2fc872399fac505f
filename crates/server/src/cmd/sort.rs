//! SORT and SORT_RO, following Redis 7.0's `sort.c`.
//!
//! The elements of a list, set or sorted set are sorted as numbers (each read with `strtod`,
//! ties broken by comparing the elements' bytes) or, with ALPHA, as byte strings; BY takes the
//! weight from other keys (`weight_*`, or a hash field with `weight_*->field`), and a BY pattern
//! without `*` skips sorting. GET replaces each element by other keys' values (`#` is the
//! element itself); STORE saves the result as a list instead of replying with it.
//!
//! Locking: SORT's keys are not known until it has read the elements, when BY or GET name
//! patterns. Such a SORT locks every shard of its database (as a MULTI/EXEC-like unit: no other
//! client sees half of it, and no snapshot cut falls inside it); without patterns it locks only
//! the sorted key and the STORE key, and SORT_RO only reads.
//!
//! Comparisons are on bytes, as Redis's under the C locale (`strcoll` is `strcmp` there), and
//! the sort is stable, as glibc's `qsort` (a merge sort) is in practice: elements that compare
//! equal under ALPHA keep their order in the source. One known difference: with BY, a LIMIT
//! that selects part of the result makes Redis use its partial quicksort (`pqsort`), which may
//! order elements of equal ALPHA weight differently; forkless keeps the stable order there too.
//! Numeric sorts and sorts without BY have no such ties (equal weights are ordered by element).

use crate::notify::{GENERIC, LIST, notify};
use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use forkless_storage::types::list::List;
use forkless_storage::{ReadGuard, Value, WriteGuard};

use super::meta::{Gate, KeySpec, flags};
use super::zset::parse::{strtod_prefix, strtod_value};
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "sort", arity: -2, flags: flags!(WRITE, DENYOOM, MOVABLEKEYS), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "set", "sortedset", "list", "slow", "dangerous"], summary: "Sort the elements in a list, set or sorted set", since: "1.0.0", group: "generic", handler: sort },
    Command { name: "sort_ro", arity: -2, flags: flags!(READONLY, MOVABLEKEYS), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "set", "sortedset", "list", "slow", "dangerous"], summary: "Sort the elements in a list, set or sorted set. Read-only variant of SORT.", since: "7.0.0", group: "generic", handler: sort_ro },
];

const NOT_DOUBLE: &str = "ERR One or more scores can't be converted into double";

/// An error reply's text.
type Reply<T> = Result<T, &'static str>;

/// SORT's options, parsed.
#[derive(Debug, Default)]
struct SortOptions<'a> {
    desc: bool,
    alpha: bool,
    limit_start: i64,
    /// -1 for no limit.
    limit_count: i64,
    by: Option<&'a [u8]>,
    /// True when BY names a constant (no `*`): the elements keep their order.
    dont_sort: bool,
    gets: Vec<&'a [u8]>,
    store: Option<&'a [u8]>,
}

/// Parses SORT's options as `sortCommandGeneric` does: later options override earlier ones,
/// STORE exists only for SORT, and the first bad option ends the parse with its error. BY
/// with a pattern and GET read keys no key pattern names: they need `full_key_access` (the
/// client's ACL user may read every key with this command).
fn parse_options(args: &[Bytes], read_only: bool, full_key_access: bool) -> Reply<SortOptions<'_>> {
    let mut opts = SortOptions {
        limit_count: -1,
        ..SortOptions::default()
    };
    let mut rest = args;
    while let Some((word, tail)) = rest.split_first() {
        rest = tail;
        if eq_ignore_case(word, "asc") {
            opts.desc = false;
        } else if eq_ignore_case(word, "desc") {
            opts.desc = true;
        } else if eq_ignore_case(word, "alpha") {
            opts.alpha = true;
        } else if eq_ignore_case(word, "limit")
            && let [start, count, tail @ ..] = rest
        {
            opts.limit_start = parse_i64(start).ok_or(reply::NOT_INTEGER)?;
            opts.limit_count = parse_i64(count).ok_or(reply::NOT_INTEGER)?;
            rest = tail;
        } else if let Some((arg, tail)) = rest.split_first() {
            if !read_only && eq_ignore_case(word, "store") {
                opts.store = Some(arg);
            } else if eq_ignore_case(word, "by") {
                opts.by = Some(arg);
                // As in Redis, a constant BY turns sorting off for good, even if a later BY
                // names a pattern.
                if !arg.contains(&b'*') {
                    opts.dont_sort = true;
                } else if !full_key_access {
                    return Err(
                        "ERR BY option of SORT denied due to insufficient ACL permissions.",
                    );
                }
            } else if eq_ignore_case(word, "get") {
                if !full_key_access {
                    return Err(
                        "ERR GET option of SORT denied due to insufficient ACL permissions.",
                    );
                }
                opts.gets.push(arg);
            } else {
                return Err(reply::SYNTAX);
            }
            rest = tail;
        } else {
            return Err(reply::SYNTAX);
        }
    }
    Ok(opts)
}

/// Returns true if and only if `pattern` makes SORT look up other keys (Redis's
/// `lookupKeyByPattern` returns early for `#` and for patterns without `*`).
fn looks_up_keys(pattern: &[u8]) -> bool {
    pattern != b"#" && pattern.contains(&b'*')
}

/// Where a pattern points for one element: a key, and maybe a hash field in it.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `#`: the element itself.
    Element,
    /// A pattern without `*`: nothing.
    Nothing,
    Key {
        key: Vec<u8>,
        field: Option<Vec<u8>>,
    },
}

/// Redis's `lookupKeyByPattern` before the lookup: the first `*` becomes the element, and a
/// `->` after it with something behind it names a hash field.
fn resolve(pattern: &[u8], element: &[u8]) -> Target {
    if pattern == b"#" {
        return Target::Element;
    }
    // The pattern is a C string in Redis: it ends at a NUL byte.
    let pattern = pattern.split(|byte| *byte == 0).next().unwrap_or_default();
    let Some(star) = pattern.iter().position(|byte| *byte == b'*') else {
        return Target::Nothing;
    };
    let (prefix, after_star) = (
        pattern.get(..star).unwrap_or_default(),
        pattern.get(star + 1..).unwrap_or_default(),
    );
    let arrow = after_star
        .windows(2)
        .position(|pair| pair == b"->")
        .filter(|pos| after_star.len() > pos + 2);
    let (postfix, field) = match arrow {
        Some(pos) => (
            after_star.get(..pos).unwrap_or_default(),
            Some(after_star.get(pos + 2..).unwrap_or_default().to_vec()),
        ),
        None => (after_star, None),
    };
    let mut key = Vec::with_capacity(prefix.len() + element.len() + postfix.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(element);
    key.extend_from_slice(postfix);
    Target::Key { key, field }
}

/// The keys SORT reads, behind whichever guard it holds.
enum Keys<'a> {
    /// SORT_RO, or SORT without patterns or STORE: the sorted key only.
    Read(ReadGuard<'a>),
    /// STORE, or any pattern: the sorted and STORE keys, or the whole database.
    Write(WriteGuard<'a>),
}

impl Keys<'_> {
    /// The value at `key` (an O(1) clone), counting a keyspace hit or miss as Redis's
    /// `lookupKeyRead` does.
    fn lookup(&mut self, ctx: &Ctx<'_>, key: &[u8]) -> Option<Value> {
        let value = match self {
            Keys::Read(guard) => guard.get(key).map(|entry| entry.value().clone()),
            Keys::Write(guard) => guard.get(key).map(|entry| entry.value().clone()),
        };
        ctx.hit_or_miss(value.is_some(), key);
        value
    }

    /// What `pattern` gives for `element`: a string key's value or a hash field, or None.
    fn by_pattern(&mut self, ctx: &Ctx<'_>, pattern: &[u8], element: &Bytes) -> Option<Bytes> {
        match resolve(pattern, element) {
            Target::Element => Some(element.clone()),
            Target::Nothing => None,
            Target::Key { key, field } => match (self.lookup(ctx, &key)?, field) {
                (Value::String(bytes), None) => Some(bytes.to_bytes()),
                (Value::Hash(hash), Some(field)) => hash
                    .get(&field)
                    .map(|value| Bytes::copy_from_slice(value.as_bytes())),
                _ => None,
            },
        }
    }
}

/// One element to sort, with what it sorts by.
#[derive(Debug)]
struct Item {
    element: Bytes,
    /// The numeric weight (0 when a BY key is missing).
    score: f64,
    /// The ALPHA weight from a BY pattern (None when missing).
    by_value: Option<Bytes>,
}

/// The weight `strtod` gives `text` as SORT uses it: the whole C string (up to a NUL byte) must
/// be read, the empty string is 0, NaN and out-of-range values are refused.
fn parse_weight(text: &[u8]) -> Option<f64> {
    let text = text.split(|byte| *byte == 0).next().unwrap_or_default();
    let len = strtod_prefix(text);
    if len != text.len() {
        return None;
    }
    if len == 0 {
        return Some(0.0);
    }
    let (value, out_of_range) = strtod_value(text)?;
    (!value.is_nan() && !out_of_range).then_some(value)
}

/// `start..=end` of SORT's LIMIT over `len` elements, clamped as Redis does (empty when
/// `start > end`).
fn limit_range(len: usize, limit_start: i64, limit_count: i64) -> (i64, i64) {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let mut start = limit_start.clamp(0, len);
    let count = limit_count.clamp(-1, len);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    (start, end.min(len - 1))
}

fn sort(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    sort_generic(ctx, argv, false);
}

fn sort_ro(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    sort_generic(ctx, argv, true);
}

/// What SORT answers: the elements (with None for a missing GET), or the STORE count.
enum Outcome {
    Elements(Vec<Option<Bytes>>),
    Stored(i64),
}

fn sort_generic(ctx: &mut Ctx<'_>, argv: &[Bytes], read_only: bool) {
    let [_, key, args @ ..] = argv else { return };
    let full_key_access = crate::acl::full_read_access(ctx.client, argv);
    let outcome =
        parse_options(args, read_only, full_key_access).and_then(|opts| sort_with(ctx, key, opts));
    match outcome {
        Ok(Outcome::Elements(elements)) => {
            ctx.out.array_len(elements.len());
            for element in elements {
                match element {
                    Some(bytes) => ctx.out.bulk(&bytes),
                    None => ctx.out.null(),
                }
            }
        }
        Ok(Outcome::Stored(n)) => ctx.out.int(n),
        Err(msg) => ctx.out.error(msg),
    }
}

/// SORT after option parsing.
fn sort_with(ctx: &Ctx<'_>, key: &[u8], mut opts: SortOptions<'_>) -> Reply<Outcome> {
    let uses_patterns = (opts.by.is_some_and(looks_up_keys) && !opts.dont_sort)
        || opts.gets.iter().any(|pattern| looks_up_keys(pattern));
    let db = ctx.db();
    let mut keys = if uses_patterns {
        Keys::Write(db.write_all(ctx.now_ms))
    } else if let Some(store) = opts.store {
        Keys::Write(db.write(&[key, store], ctx.now_ms))
    } else {
        Keys::Read(db.read(&[key], ctx.now_ms))
    };
    let source = keys.lookup(ctx, key);
    if matches!(source, Some(Value::String(_) | Value::Hash(_))) {
        return Err(reply::WRONGTYPE);
    }
    // A set has no order of its own: when its elements are stored, sort them so the result
    // does not depend on the set's layout; the same for a script, whose result must not
    // either (Redis's sortCommand).
    if opts.dont_sort
        && matches!(source, Some(Value::Set(_)))
        && (opts.store.is_some() || ctx.client.is_script())
    {
        opts.dont_sort = false;
        opts.alpha = true;
        opts.by = None;
    }
    let len = match &source {
        Some(Value::List(list)) => list.len(),
        Some(Value::Set(set)) => set.len(),
        Some(Value::ZSet(zset)) => zset.len(),
        _ => 0,
    };
    let (start, end) = limit_range(len, opts.limit_start, opts.limit_count);
    let elements = load(source.as_ref(), &opts, start, end);
    // For a list or sorted set left unsorted, `load` took only the range asked for.
    let (start, end) = if opts.dont_sort && !matches!(source, Some(Value::Set(_))) {
        (0, end - start)
    } else {
        (start, end)
    };
    let mut items: Vec<Item> = elements
        .into_iter()
        .map(|element| Item {
            element,
            score: 0.0,
            by_value: None,
        })
        .collect();
    if !opts.dont_sort {
        weigh(ctx, &mut keys, &opts, &mut items)?;
        sort_items(&mut items, &opts);
    }
    let selected = usize::try_from(start)
        .ok()
        .zip(usize::try_from(end).ok())
        .and_then(|(start, end)| items.get(start..=end))
        .unwrap_or_default();
    let mut output = Vec::with_capacity(selected.len() * opts.gets.len().max(1));
    for item in selected {
        if opts.gets.is_empty() {
            output.push(Some(item.element.clone()));
        }
        for pattern in &opts.gets {
            output.push(keys.by_pattern(ctx, pattern, &item.element));
        }
    }
    let Some(store) = opts.store else {
        return Ok(Outcome::Elements(output));
    };
    let Keys::Write(mut guard) = keys else {
        return Ok(Outcome::Elements(output));
    };
    let n_stored = i64::try_from(output.len()).unwrap_or(i64::MAX);
    if output.is_empty() {
        if guard.remove(store) {
            notify(ctx, GENERIC, "del", store);
        }
    } else {
        let mut list = List::new();
        for value in output {
            list.push_back(value.unwrap_or_default());
        }
        guard.set(store, Value::List(Arc::new(list)), None);
        notify(ctx, LIST, "sortstore", store);
    }
    drop(guard);
    // A client blocked in BLPOP (or similar) on the STORE key may now have elements.
    ctx.server.blocking.signal(ctx.client.db, store);
    Ok(Outcome::Stored(n_stored))
}

/// The elements of `source` in its own order. For a list or sorted set that will not be sorted,
/// only `start..=end` of it, in the direction DESC asks for.
fn load(source: Option<&Value>, opts: &SortOptions<'_>, start: i64, end: i64) -> Vec<Bytes> {
    let copy = |bytes: &[u8]| Bytes::copy_from_slice(bytes);
    let range = usize::try_from(start)
        .ok()
        .zip(usize::try_from(end).ok())
        .filter(|(first, last)| first <= last);
    match source {
        Some(Value::List(list)) if opts.dont_sort => {
            let Some((first, last)) = range else {
                return Vec::new();
            };
            let len = list.len();
            if opts.desc {
                let range = len.saturating_sub(last + 1)..len.saturating_sub(first);
                let mut elements: Vec<Bytes> =
                    list.slice(range).map(|element| copy(&element)).collect();
                elements.reverse();
                elements
            } else {
                list.slice(first..last + 1)
                    .map(|element| copy(&element))
                    .collect()
            }
        }
        Some(Value::ZSet(zset)) if opts.dont_sort => {
            let Some((first, last)) = range else {
                return Vec::new();
            };
            let rank = if opts.desc {
                zset.len().saturating_sub(first + 1)
            } else {
                first
            };
            zset.range(rank, last - first + 1, opts.desc)
                .map(|(member, _)| copy(&member))
                .collect()
        }
        Some(Value::List(list)) => list.iter().map(|element| copy(&element)).collect(),
        Some(Value::Set(set)) => set.iter().map(|member| copy(&member)).collect(),
        Some(Value::ZSet(zset)) => zset.iter().map(|(member, _)| copy(&member)).collect(),
        _ => Vec::new(),
    }
}

/// Fills in each item's weight: its own value, or what the BY pattern finds. Every weight is
/// looked up (and counted as a keyspace hit or miss) before a bad number is reported.
fn weigh(
    ctx: &Ctx<'_>,
    keys: &mut Keys<'_>,
    opts: &SortOptions<'_>,
    items: &mut [Item],
) -> Reply<()> {
    let mut bad_number = false;
    for item in items.iter_mut() {
        let weight = match opts.by {
            Some(pattern) => match keys.by_pattern(ctx, pattern, &item.element) {
                Some(value) => value,
                None => continue,
            },
            None => item.element.clone(),
        };
        if opts.alpha {
            if opts.by.is_some() {
                item.by_value = Some(weight);
            }
        } else {
            match parse_weight(&weight) {
                Some(score) => item.score = score,
                None => bad_number = true,
            }
        }
    }
    if bad_number { Err(NOT_DOUBLE) } else { Ok(()) }
}

/// Redis's `sortCompare`, with a stable sort.
fn sort_items(items: &mut [Item], opts: &SortOptions<'_>) {
    let compare = |a: &Item, b: &Item| -> Ordering {
        if !opts.alpha {
            a.score
                .partial_cmp(&b.score)
                .unwrap_or(Ordering::Equal)
                .then_with(|| a.element.cmp(&b.element))
        } else if opts.by.is_some() {
            // A missing weight sorts first.
            a.by_value.cmp(&b.by_value)
        } else {
            a.element.cmp(&b.element)
        }
    };
    if opts.desc {
        items.sort_by(|a, b| compare(b, a));
    } else {
        items.sort_by(compare);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key: &str, field: Option<&str>) -> Target {
        Target::Key {
            key: key.as_bytes().to_vec(),
            field: field.map(|field| field.as_bytes().to_vec()),
        }
    }

    #[test]
    fn patterns_resolve_like_lookup_key_by_pattern() {
        assert_eq!(resolve(b"#", b"x"), Target::Element);
        assert_eq!(resolve(b"w_", b"x"), Target::Nothing);
        assert_eq!(resolve(b"w_*", b"x"), key("w_x", None));
        assert_eq!(resolve(b"w_*_*", b"x"), key("w_x_*", None));
        assert_eq!(resolve(b"h_*->f", b"x"), key("h_x", Some("f")));
        assert_eq!(resolve(b"h_*->", b"x"), key("h_x->", None));
        assert_eq!(resolve(b"h->_*", b"x"), key("h->_x", None));
        assert_eq!(resolve(b"h_*a->b->c", b"x"), key("h_xa", Some("b->c")));
        assert_eq!(resolve(b"w_*\0tail", b"x"), key("w_x", None));
    }

    #[test]
    fn weights_read_like_strtod() {
        assert_eq!(parse_weight(b"1.5"), Some(1.5));
        assert_eq!(parse_weight(b" 2"), Some(2.0));
        assert_eq!(parse_weight(b""), Some(0.0));
        assert_eq!(parse_weight(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_weight(b"3\0junk"), Some(3.0));
        for bad in [&b"abc"[..], b"1 ", b"nan", b"1e400", b" ", b"1x"] {
            assert_eq!(parse_weight(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn limits_clamp_like_redis() {
        assert_eq!(limit_range(10, 0, -1), (0, 9));
        assert_eq!(limit_range(10, 2, 3), (2, 4));
        assert_eq!(limit_range(10, -5, 3), (0, 2));
        assert_eq!(limit_range(10, 8, 100), (8, 9));
        assert_eq!(limit_range(10, 10, 1), (9, 8));
        assert_eq!(limit_range(10, 0, 0), (0, -1));
        assert_eq!(limit_range(0, 0, -1), (-1, -2));
        assert_eq!(limit_range(0, 5, 5), (-1, -2));
        assert_eq!(limit_range(3, i64::MAX, i64::MAX), (2, 1));
        assert_eq!(limit_range(3, i64::MIN, i64::MIN), (0, 2));
    }
}

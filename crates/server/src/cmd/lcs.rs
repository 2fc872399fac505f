//! LCS: the longest common subsequence of two strings, following Redis 7.0's `lcsCommand`
//! (t_string.c): the same dynamic-programming table, the same walk back through it (so when
//! several subsequences are longest, the same one is returned, with the same match ranges), and
//! the same limit: a table bigger than `proto-max-bulk-len` bytes is refused before anything is
//! allocated, and a failed allocation is an error reply, not an abort.
//!
//! The strings are read under a read guard and the table is built after it is released: the
//! values are O(1) copies, so no shard stays locked while a large LCS runs.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::meta::{Gate, KeySpec, flags};
use super::string::string_bytes;
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "lcs", arity: -3, flags: flags!(READONLY), keys: KeySpec::new(1, 2, 1), gate: Gate::Shared, categories: &["read", "string", "slow"], summary: "Find longest common substring", since: "7.0.0", group: "string", handler: lcs },
];

const NOT_STRINGS: &str = "ERR The specified keys must contain string values";
const LEN_AND_IDX: &str = "ERR If you want both the length and indexes, please just use IDX.";
const TOO_LONG: &str = "ERR String too long for LCS";
const TABLE_TOO_BIG: &str =
    "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len";
const ALLOC_FAILED: &str = "ERR Insufficient memory, failed allocating transient memory for LCS";

/// LCS's options.
#[derive(Debug, Default, Clone, Copy)]
struct LcsOptions {
    idx: bool,
    len: bool,
    with_match_len: bool,
    min_match_len: u64,
}

fn parse_options(args: &[Bytes]) -> Result<LcsOptions, &'static str> {
    let mut opts = LcsOptions::default();
    let mut rest = args;
    while let Some((word, tail)) = rest.split_first() {
        rest = tail;
        if eq_ignore_case(word, "idx") {
            opts.idx = true;
        } else if eq_ignore_case(word, "len") {
            opts.len = true;
        } else if eq_ignore_case(word, "withmatchlen") {
            opts.with_match_len = true;
        } else if eq_ignore_case(word, "minmatchlen")
            && let Some((value, tail)) = rest.split_first()
        {
            let value = parse_i64(value).ok_or(reply::NOT_INTEGER)?;
            opts.min_match_len = u64::try_from(value).unwrap_or(0);
            rest = tail;
        } else {
            return Err(reply::SYNTAX);
        }
    }
    if opts.len && opts.idx {
        return Err(LEN_AND_IDX);
    }
    Ok(opts)
}

/// One run of matching bytes: `a[a_start..=a_end]` equals `b[b_start..=b_end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Match {
    a_start: usize,
    a_end: usize,
    b_start: usize,
    b_end: usize,
}

impl Match {
    fn len(&self) -> usize {
        self.a_end - self.a_start + 1
    }
}

/// What LCS computed.
#[derive(Debug, PartialEq, Eq)]
struct Lcs {
    len: usize,
    /// The subsequence itself.
    text: Vec<u8>,
    /// The runs, from the end of the strings backwards, as Redis emits them.
    matches: Vec<Match>,
}

/// The table `lcs[i][j]` (the LCS length of `a[..i]` and `b[..j]`), row by row.
struct Table {
    cells: Vec<u32>,
    width: usize,
}

impl Table {
    /// Builds the table, or refuses as Redis does: more than `max_bytes` of table, or an
    /// allocation that fails.
    fn build(a: &[u8], b: &[u8], max_bytes: u64) -> Result<Table, &'static str> {
        let limit = usize::try_from(u32::MAX - 1).unwrap_or(usize::MAX);
        if a.len() >= limit || b.len() >= limit {
            return Err(TOO_LONG);
        }
        let width = b.len() + 1;
        let n_cells = (a.len() as u64 + 1) * (width as u64);
        let n_bytes = n_cells.checked_mul(4).ok_or(ALLOC_FAILED)?;
        if n_bytes > max_bytes {
            return Err(TABLE_TOO_BIG);
        }
        let n_cells = usize::try_from(n_cells).map_err(|_| ALLOC_FAILED)?;
        let mut cells: Vec<u32> = Vec::new();
        cells.try_reserve_exact(n_cells).map_err(|_| ALLOC_FAILED)?;
        cells.resize(width, 0);
        let mut previous_start = 0;
        for &a_byte in a {
            let row_start = cells.len();
            cells.push(0);
            for (j, &b_byte) in b.iter().enumerate() {
                let up_left = cells.get(previous_start + j).copied().unwrap_or(0);
                let up = cells.get(previous_start + j + 1).copied().unwrap_or(0);
                let left = cells.get(row_start + j).copied().unwrap_or(0);
                let cell = if a_byte == b_byte {
                    up_left + 1
                } else {
                    up.max(left)
                };
                cells.push(cell);
            }
            previous_start = row_start;
        }
        Ok(Table { cells, width })
    }

    fn get(&self, i: usize, j: usize) -> u32 {
        self.cells.get(i * self.width + j).copied().unwrap_or(0)
    }
}

/// The walk back of Redis's `lcsCommand` from the bottom-right corner of the table.
fn lcs_of(a: &[u8], b: &[u8], table: &Table, min_match_len: u64) -> Lcs {
    let len = table.get(a.len(), b.len()) as usize;
    let mut text = vec![0u8; len];
    let mut matches = Vec::new();
    let mut current: Option<Match> = None;
    let mut idx = len;
    let (mut i, mut j) = (a.len(), b.len());
    while i > 0 && j > 0 {
        let mut emit = false;
        let (a_byte, b_byte) = (a.get(i - 1), b.get(j - 1));
        if a_byte == b_byte {
            if let (Some(slot), Some(byte)) = (text.get_mut(idx.wrapping_sub(1)), a_byte) {
                *slot = *byte;
            }
            match &mut current {
                None => {
                    current = Some(Match {
                        a_start: i - 1,
                        a_end: i - 1,
                        b_start: j - 1,
                        b_end: j - 1,
                    });
                }
                Some(run) if run.a_start == i && run.b_start == j => {
                    run.a_start -= 1;
                    run.b_start -= 1;
                }
                Some(_) => emit = true,
            }
            if current.is_some_and(|run| run.a_start == 0 || run.b_start == 0) {
                emit = true;
            }
            idx = idx.saturating_sub(1);
            i -= 1;
            j -= 1;
        } else {
            if table.get(i - 1, j) > table.get(i, j - 1) {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = current.is_some();
        }
        // The run ends here whether or not it is long enough to report.
        if emit
            && let Some(run) = current.take()
            && (min_match_len == 0 || run.len() as u64 >= min_match_len)
        {
            matches.push(run);
        }
    }
    Lcs { len, text, matches }
}

fn lcs(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key_a, key_b, args @ ..] = argv else {
        return;
    };
    let values = {
        let guard = ctx.db().read(&[key_a, key_b], ctx.now_ms);
        [key_a, key_b].map(|key| {
            guard
                .get(key)
                .map(|entry| string_bytes(entry.value()).cloned())
        })
    };
    for (value, key) in values.iter().zip([key_a, key_b]) {
        ctx.hit_or_miss(value.is_some(), key);
    }
    let [Some(a), Some(b)] = values.map(|value| match value {
        None => Some(Default::default()),
        Some(bytes) => bytes,
    }) else {
        return ctx.out.error(NOT_STRINGS);
    };
    let opts = match parse_options(args) {
        Ok(opts) => opts,
        Err(msg) => return ctx.out.error(msg),
    };
    let max_bytes = ctx
        .server
        .tunables
        .proto_max_bulk_len
        .load(Ordering::Relaxed);
    let table = match Table::build(&a, &b, max_bytes) {
        Ok(table) => table,
        Err(msg) => return ctx.out.error(msg),
    };
    if opts.len {
        let len = table.get(a.len(), b.len());
        return ctx.out.int(i64::from(len));
    }
    let result = lcs_of(&a, &b, &table, opts.min_match_len);
    drop(table);
    if !opts.idx {
        return ctx.out.bulk(&result.text);
    }
    let out = &mut *ctx.out;
    out.map_len(2);
    out.bulk(b"matches");
    out.array_len(result.matches.len());
    for run in &result.matches {
        out.array_len(if opts.with_match_len { 3 } else { 2 });
        for (start, end) in [(run.a_start, run.a_end), (run.b_start, run.b_end)] {
            out.array_len(2);
            out.int(i64::try_from(start).unwrap_or(i64::MAX));
            out.int(i64::try_from(end).unwrap_or(i64::MAX));
        }
        if opts.with_match_len {
            out.int(i64::try_from(run.len()).unwrap_or(i64::MAX));
        }
    }
    out.bulk(b"len");
    out.int(i64::try_from(result.len).unwrap_or(i64::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &str, b: &str) -> Lcs {
        let table = Table::build(a.as_bytes(), b.as_bytes(), u64::MAX).unwrap();
        lcs_of(a.as_bytes(), b.as_bytes(), &table, 0)
    }

    #[test]
    fn finds_redis_documentation_example() {
        let result = run("ohmytext", "mynewtext");
        assert_eq!(result.text, b"mytext");
        assert_eq!(result.len, 6);
        assert_eq!(
            result.matches,
            [
                Match {
                    a_start: 4,
                    a_end: 7,
                    b_start: 5,
                    b_end: 8
                },
                Match {
                    a_start: 2,
                    a_end: 3,
                    b_start: 0,
                    b_end: 1
                },
            ]
        );
    }

    #[test]
    fn empty_and_disjoint_strings_have_an_empty_lcs() {
        assert_eq!(run("", "abc").text, b"");
        assert_eq!(run("abc", "").len, 0);
        let disjoint = run("abc", "xyz");
        assert_eq!((disjoint.len, disjoint.matches.len()), (0, 0));
    }

    #[test]
    fn table_size_is_checked_before_allocating() {
        // 1001 x 1001 cells of 4 bytes.
        let a = vec![b'a'; 1000];
        assert!(Table::build(&a, &a, 4_008_004).is_ok());
        assert_eq!(Table::build(&a, &a, 4_008_003).err(), Some(TABLE_TOO_BIG));
    }
}

//! INFO's `# Errorstats`: error replies counted by their code, the first word of the reply
//! (`errorstat_ERR:count=3`, `errorstat_WRONGTYPE:count=1`), as Redis 7.0's
//! `incrementErrorCount` keeps them, together with `total_error_replies`.
//!
//! Only error replies reach this module, so the command path pays nothing for it: dispatch
//! looks at the first byte of a reply it already wrote, and counts only a `-`.
//!
//! The codes come partly from client input (a script's `redis.error_reply("ANY ...")`), so the
//! table is bounded: at most [`MAX_ERROR_KINDS`] distinct codes, as Redis 7.2 bounds it (7.0
//! has no bound). Past it, a new code is not added, the warning is logged once and the marker
//! `errorstat_ERRORSTATS_DISABLED:count=1` appears; the codes already there keep counting.
//! CONFIG RESETSTAT empties the table and lifts the stop.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::server::lock;

/// The most distinct error codes INFO errorstats keeps (Redis 7.2's `ERROR_STATS_NUMBER`).
pub(crate) const MAX_ERROR_KINDS: usize = 128;

/// How far into an error reply Redis looks for the space that ends its code.
const CODE_SEARCH_LEN: usize = 32;

/// The per-code counts. A std Mutex: taken only when a command replied an error, and for
/// INFO errorstats and CONFIG RESETSTAT, each time for a map lookup or a copy of the table.
#[derive(Debug, Default)]
pub(crate) struct ErrorStats {
    kinds: Mutex<Kinds>,
}

#[derive(Debug, Default)]
struct Kinds {
    counts: BTreeMap<Box<[u8]>, u64>,
    /// True once a code was turned away because the table was full.
    disabled: bool,
}

impl ErrorStats {
    /// Counts one error reply: `total` (the server's `total_error_replies`) and the reply's
    /// code. `reply` is the reply's wire text from its leading `-` (or the text without it,
    /// which counts as `ERR`, as in Redis).
    pub(crate) fn count(&self, total: &AtomicU64, reply: &[u8]) {
        total.fetch_add(1, Ordering::Relaxed);
        let code = error_code(reply);
        let mut kinds = lock(&self.kinds);
        if let Some(count) = kinds.counts.get_mut(code) {
            *count += 1;
            return;
        }
        if kinds.counts.len() >= MAX_ERROR_KINDS {
            if !kinds.disabled {
                kinds.disabled = true;
                let codes: Vec<String> = kinds
                    .counts
                    .keys()
                    .map(|code| String::from_utf8_lossy(code).into_owned())
                    .collect();
                tracing::warn!(
                    "Errorstats stopped adding new errors because the number of errors reached \
                     the limit, may be misuse of lua error_reply, please check INFO ERRORSTATS, \
                     and reset the stats using CONFIG RESETSTAT"
                );
                tracing::warn!("Current errors code list: {}", codes.join(", "));
            }
            return;
        }
        kinds.counts.insert(code.into(), 1);
    }

    /// Empties the table (CONFIG RESETSTAT).
    pub(crate) fn reset(&self) {
        let mut kinds = lock(&self.kinds);
        kinds.counts.clear();
        kinds.disabled = false;
    }

    /// The `# Errorstats` section's lines, codes in byte order as Redis's radix tree lists
    /// them.
    pub(crate) fn render(&self, text: &mut String) {
        let kinds = lock(&self.kinds);
        for (code, count) in &kinds.counts {
            text.push_str("errorstat_");
            text.push_str(&safe_info_string(code));
            text.push_str(":count=");
            text.push_str(itoa::Buffer::new().format(*count));
            text.push_str("\r\n");
        }
        if kinds.disabled {
            text.push_str("errorstat_ERRORSTATS_DISABLED:count=1\r\n");
        }
    }
}

/// The code of an error reply, as Redis's `afterErrorReply` finds it: the bytes after the
/// leading `-` up to the first space within the first 32 bytes; `ERR` when the text has no
/// `-` or no space there.
pub(crate) fn error_code(reply: &[u8]) -> &[u8] {
    let Some(rest) = reply.strip_prefix(b"-") else {
        return b"ERR";
    };
    let head = reply.get(..CODE_SEARCH_LEN).unwrap_or(reply);
    match head.iter().position(|&byte| byte == b' ') {
        Some(space) => rest.get(..space.saturating_sub(1)).unwrap_or(b"ERR"),
        None => b"ERR",
    }
}

/// A code as INFO may print it: `#`, `:`, CR and LF become `_` (Redis's `getSafeInfoString`).
fn safe_info_string(code: &[u8]) -> String {
    String::from_utf8_lossy(code)
        .chars()
        .map(|c| {
            if matches!(c, '#' | ':' | '\r' | '\n') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_first_word() {
        assert_eq!(error_code(b"-ERR syntax error\r\n"), b"ERR");
        assert_eq!(error_code(b"-WRONGTYPE Operation"), b"WRONGTYPE");
        assert_eq!(error_code(b"-NOGROUP No such key"), b"NOGROUP");
        // No space at all, or none within 32 bytes: ERR.
        assert_eq!(error_code(b"-ERR"), b"ERR");
        assert_eq!(
            error_code(b"-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA x"),
            b"ERR"
        );
        // Without the dash, the text is Redis's `addReplyError` form: ERR.
        assert_eq!(error_code(b"Protocol error"), b"ERR");
    }

    #[test]
    fn the_table_is_bounded_and_resets() {
        let stats = ErrorStats::default();
        let total = AtomicU64::new(0);
        for idx in 0..(MAX_ERROR_KINDS + 10) {
            stats.count(&total, format!("-CODE{idx} message").as_bytes());
        }
        stats.count(&total, b"-CODE0 again");
        assert_eq!(total.load(Ordering::Relaxed), MAX_ERROR_KINDS as u64 + 11);
        let mut text = String::new();
        stats.render(&mut text);
        assert_eq!(text.lines().count(), MAX_ERROR_KINDS + 1);
        assert!(text.contains("errorstat_CODE0:count=2\r\n"));
        assert!(text.contains("errorstat_ERRORSTATS_DISABLED:count=1\r\n"));
        assert!(!text.contains(&format!("CODE{}:", MAX_ERROR_KINDS + 1)));
        stats.reset();
        let mut text = String::new();
        stats.render(&mut text);
        assert!(text.is_empty());
        stats.count(&total, b"-NEW x");
        stats.render(&mut text);
        assert_eq!(text, "errorstat_NEW:count=1\r\n");
    }
}

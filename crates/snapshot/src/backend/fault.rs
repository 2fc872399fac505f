//! Fault injection for tests: make a snapshot fail at a chosen write, at fsync or at rename.
//!
//! Two ways in, both test-only:
//! - Inside the real writers, through [`Overrides::faults`](super::Overrides) or the
//!   `FORKLESS_FAULT_INJECT` environment variable that [`open`](super::open) reads (e.g.
//!   `write_after=1048576,errno=28` makes the first write that reaches past 1 MiB fail with
//!   ENOSPC). The writers then run their real error paths: asynchronous completions failing
//!   while other writes are in flight, the fd closed after a failed fsync, the temp file
//!   removed. End-to-end tests use the variable to make a real server's BGSAVE fail.
//! - Around any [`Sink`], with [`open_faulty`]. The wrapper fails writes itself and simulates
//!   fsync and rename failures by aborting the inner sink, so it tests callers, not writers.
//!
//! Neither is meant for production: an injected fault looks exactly like a real one.

use std::io;
use std::path::PathBuf;

use super::{BackendError, Sink};

/// Which failures to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPlan {
    /// The first write that would put any byte past this file offset fails (`Some(0)`: every
    /// write). Bytes before the limit may or may not reach the file.
    pub fail_write_after_bytes: Option<u64>,
    /// True if and only if the fsync of the temp file fails.
    pub fail_fsync: bool,
    /// True if and only if the rename over the final name fails.
    pub fail_rename: bool,
    /// The errno the injected failures carry; 0 means EIO.
    pub errno: i32,
    /// Fork mode: `fork()` fails with this errno instead of forking (`fork_errno=12`).
    pub fork_errno: Option<i32>,
    /// Epoch saves: every serializer thread panics when it starts (`serializer_panic`), to test
    /// that a bug in a serializer fails the save instead of hanging it.
    pub serializer_panic: bool,
    /// Epoch saves: the traversal threads wait this long before their first shard
    /// (`traversal_hold_ms=<ms>`), to test that the sweeper alone keeps up with overwrites.
    pub traversal_hold_ms: Option<u64>,
}

impl Default for FaultPlan {
    /// Injects nothing; failures that are switched on carry EIO.
    fn default() -> Self {
        FaultPlan {
            fail_write_after_bytes: None,
            fail_fsync: false,
            fail_rename: false,
            errno: libc::EIO,
            fork_errno: None,
            serializer_panic: false,
            traversal_hold_ms: None,
        }
    }
}

impl FaultPlan {
    /// Parses the `FORKLESS_FAULT_INJECT` syntax: comma-separated items among
    /// `write_after=<bytes>`, `fsync`, `rename`, `errno=<number or name>` (names: ENOSPC, EIO,
    /// EDQUOT, EROFS, EFBIG, ENOMEM, EAGAIN), `serializer_panic`, `traversal_hold_ms=<ms>` and,
    /// for fork mode,
    /// `fork_errno=<number or name>`,
    /// e.g. `write_after=1048576,errno=ENOSPC`, `fsync,errno=5` or `fork_errno=ENOMEM`.
    pub fn parse(spec: &str) -> Result<FaultPlan, BackendError> {
        let invalid = |reason| BackendError::FaultSpec {
            spec: spec.to_owned(),
            reason,
        };
        let mut plan = FaultPlan::default();
        for item in spec
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (key, value) = match item.split_once('=') {
                Some((key, value)) => (key.trim(), Some(value.trim())),
                None => (item, None),
            };
            match (key, value) {
                ("write_after", Some(bytes)) => {
                    let bytes = bytes
                        .parse()
                        .map_err(|_| invalid("write_after is not a byte count"))?;
                    plan.fail_write_after_bytes = Some(bytes);
                }
                ("fsync", None | Some("1")) => plan.fail_fsync = true,
                ("fsync", Some("0")) => plan.fail_fsync = false,
                ("rename", None | Some("1")) => plan.fail_rename = true,
                ("rename", Some("0")) => plan.fail_rename = false,
                ("errno", Some(errno)) => {
                    plan.errno = parse_errno(errno).ok_or_else(|| invalid("unknown errno"))?;
                }
                ("serializer_panic", None) => plan.serializer_panic = true,
                ("traversal_hold_ms", Some(ms)) => {
                    let ms = ms
                        .parse()
                        .map_err(|_| invalid("traversal_hold_ms is not a number"))?;
                    plan.traversal_hold_ms = Some(ms);
                }
                ("fork_errno", Some(errno)) => {
                    plan.fork_errno =
                        Some(parse_errno(errno).ok_or_else(|| invalid("unknown fork_errno"))?);
                }
                _ => {
                    return Err(invalid(
                        "expected write_after=<bytes>, fsync, rename, errno=<errno>, \
                         serializer_panic, traversal_hold_ms=<ms> or fork_errno=<errno>",
                    ));
                }
            }
        }
        Ok(plan)
    }
}

fn parse_errno(errno: &str) -> Option<i32> {
    let named = match errno {
        "ENOSPC" => libc::ENOSPC,
        "EIO" => libc::EIO,
        "EDQUOT" => libc::EDQUOT,
        "EROFS" => libc::EROFS,
        "EFBIG" => libc::EFBIG,
        "ENOMEM" => libc::ENOMEM,
        "EAGAIN" => libc::EAGAIN,
        number => return number.parse().ok().filter(|errno| *errno > 0),
    };
    Some(named)
}

/// The faults a writer consults at each step; empty in production.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    plan: Option<FaultPlan>,
}

impl Faults {
    pub(crate) fn new(plan: Option<FaultPlan>) -> Self {
        Faults { plan }
    }

    fn error(plan: &FaultPlan) -> io::Error {
        io::Error::from_raw_os_error(if plan.errno == 0 {
            libc::EIO
        } else {
            plan.errno
        })
    }

    /// The injected error for a write of `len` data bytes at `offset`, if it must fail.
    pub(crate) fn write_error(&self, offset: u64, len: u64) -> Option<io::Error> {
        let plan = self.plan.as_ref()?;
        let limit = plan.fail_write_after_bytes?;
        (offset.saturating_add(len) > limit).then(|| Self::error(plan))
    }

    /// The injected error for the temp file's fsync, if it must fail.
    pub(crate) fn fsync_error(&self) -> Option<io::Error> {
        self.plan
            .as_ref()
            .filter(|plan| plan.fail_fsync)
            .map(Self::error)
    }

    /// The injected error for the rename, if it must fail.
    pub(crate) fn rename_error(&self) -> Option<io::Error> {
        self.plan
            .as_ref()
            .filter(|plan| plan.fail_rename)
            .map(Self::error)
    }
}

/// Wraps `inner` so that it fails as `plan` says. Writes are passed through up to the limit,
/// then fail with [`BackendError::Write`]; a planned fsync or rename failure aborts `inner` in
/// `finish` (temp file removed, previous file intact) and returns [`BackendError::Fsync`] or
/// [`BackendError::Rename`], whose paths read `(fault injected)` because the wrapper does not
/// know them.
pub fn open_faulty(plan: FaultPlan, inner: Box<dyn Sink>) -> Box<dyn Sink> {
    Box::new(FaultySink {
        plan,
        inner,
        accepted: 0,
        poisoned: None,
    })
}

struct FaultySink {
    plan: FaultPlan,
    inner: Box<dyn Sink>,
    accepted: u64,
    poisoned: Option<&'static str>,
}

impl FaultySink {
    fn injected_path() -> PathBuf {
        PathBuf::from("(fault injected)")
    }
}

impl Sink for FaultySink {
    fn write(&mut self, chunk: &[u8]) -> Result<(), BackendError> {
        if let Some(op) = self.poisoned {
            return Err(BackendError::Poisoned { op });
        }
        let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        let limit = self.plan.fail_write_after_bytes.unwrap_or(u64::MAX);
        if self.accepted.saturating_add(len) <= limit {
            self.inner
                .write(chunk)
                .inspect_err(|err| self.poisoned = Some(err.err_op()))?;
            self.accepted += len;
            return Ok(());
        }
        let keep = limit.saturating_sub(self.accepted);
        let head = chunk
            .get(..usize::try_from(keep).unwrap_or(usize::MAX))
            .unwrap_or(chunk);
        if !head.is_empty() {
            self.inner
                .write(head)
                .inspect_err(|err| self.poisoned = Some(err.err_op()))?;
        }
        self.poisoned = Some("write");
        Err(BackendError::Write {
            offset: self.accepted + keep,
            source: Faults::error(&self.plan),
        })
    }

    fn bytes_written(&self) -> u64 {
        self.accepted
    }

    fn finish(self: Box<Self>) -> Result<u64, BackendError> {
        let error = if let Some(op) = self.poisoned {
            BackendError::Poisoned { op }
        } else if self.plan.fail_fsync {
            BackendError::Fsync {
                path: Self::injected_path(),
                source: Faults::error(&self.plan),
            }
        } else if self.plan.fail_rename {
            BackendError::Rename {
                from: Self::injected_path(),
                to: Self::injected_path(),
                source: Faults::error(&self.plan),
            }
        } else {
            return self.inner.finish();
        };
        self.inner.abort();
        Err(error)
    }

    fn abort(self: Box<Self>) {
        self.inner.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_the_documented_items() {
        let plan = FaultPlan::parse("write_after=1048576,errno=28").unwrap();
        assert_eq!(
            plan,
            FaultPlan {
                fail_write_after_bytes: Some(1_048_576),
                errno: libc::ENOSPC,
                ..FaultPlan::default()
            }
        );
        let plan = FaultPlan::parse(" fsync , rename=1, errno=ENOSPC ").unwrap();
        assert!(plan.fail_fsync && plan.fail_rename);
        assert_eq!(plan.fail_write_after_bytes, None);
        assert_eq!(plan.errno, libc::ENOSPC);
        assert_eq!(FaultPlan::parse("").unwrap(), FaultPlan::default());
        let plan = FaultPlan::parse("fork_errno=12").unwrap();
        assert_eq!(plan.fork_errno, Some(libc::ENOMEM));
        assert_eq!(plan.fail_write_after_bytes, None);
        assert!(!plan.fail_fsync && !plan.fail_rename);
        assert_eq!(
            FaultPlan::parse("fork_errno=EAGAIN").unwrap().fork_errno,
            Some(libc::EAGAIN)
        );
        let plan = FaultPlan::parse("serializer_panic,traversal_hold_ms=250").unwrap();
        assert!(plan.serializer_panic);
        assert_eq!(plan.traversal_hold_ms, Some(250));
    }

    #[test]
    fn parse_rejects_nonsense() {
        for spec in [
            "write_after",
            "write_after=-1",
            "errno=ENOPE",
            "errno=0",
            "fsync=2",
            "chaos",
            "fork_errno",
            "fork_errno=0",
            "traversal_hold_ms",
            "traversal_hold_ms=soon",
        ] {
            let result = FaultPlan::parse(spec);
            assert!(
                matches!(result, Err(BackendError::FaultSpec { .. })),
                "{spec}: {result:?}"
            );
        }
    }

    #[test]
    fn write_error_fires_when_a_write_reaches_past_the_limit() {
        let plan = FaultPlan {
            fail_write_after_bytes: Some(100),
            ..FaultPlan::default()
        };
        let faults = Faults::new(Some(plan));
        assert!(faults.write_error(0, 100).is_none());
        assert!(faults.write_error(99, 1).is_none());
        assert_eq!(
            faults.write_error(99, 2).and_then(|err| err.raw_os_error()),
            Some(libc::EIO)
        );
        assert!(faults.write_error(100, 1).is_some());
        assert!(faults.fsync_error().is_none() && faults.rename_error().is_none());
        assert!(Faults::default().write_error(u64::MAX - 1, 1).is_none());
    }
}

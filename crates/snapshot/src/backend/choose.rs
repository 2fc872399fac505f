//! Choosing a writer: io_uring when the kernel and the sandbox allow it, else the blocking
//! writer, with the reason for the log and INFO.

use std::fs;
use std::io;

use super::{BackendError, WriterKind};

pub(super) const IO_URING_DISABLED_SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

pub(super) fn read_io_uring_disabled_sysctl() -> Option<String> {
    fs::read_to_string(IO_URING_DISABLED_SYSCTL).ok()
}

/// The outcome of [`choose_writer`].
#[derive(Debug)]
pub(crate) enum Choice<R> {
    /// Use io_uring with this ring.
    IoUring(R),
    /// Use the blocking writer; `fallback_reason` is set when io_uring was wanted (`Auto`) but
    /// is unavailable.
    Blocking { fallback_reason: Option<String> },
}

/// Decides which writer to use. Pure apart from calling `setup`, which it calls at most once
/// and only when io_uring is allowed: `disable_io_uring` is [`Overrides::disable_io_uring`],
/// `sysctl` the content of `/proc/sys/kernel/io_uring_disabled` (absent on older kernels).
///
/// `kernel.io_uring_disabled=2` disables io_uring for everyone, so setup is not even tried;
/// with `1` only privileged processes may use it, so setup is tried and an EPERM names the
/// sysctl.
pub(crate) fn choose_writer<R>(
    kind: WriterKind,
    disable_io_uring: bool,
    sysctl: Option<&str>,
    setup: impl FnOnce() -> io::Result<R>,
) -> Result<Choice<R>, BackendError> {
    if kind == WriterKind::Blocking {
        return Ok(Choice::Blocking {
            fallback_reason: None,
        });
    }
    let sysctl = sysctl.map(str::trim);
    let (result, blocked_by) = if disable_io_uring {
        (
            Err(io::Error::from_raw_os_error(libc::EPERM)),
            Some("FORKLESS_DISABLE_IO_URING=1"),
        )
    } else if sysctl == Some("2") {
        (
            Err(io::Error::from_raw_os_error(libc::EPERM)),
            Some("kernel.io_uring_disabled=2"),
        )
    } else {
        let result = setup();
        let restricted = sysctl == Some("1")
            && result.as_ref().err().and_then(io::Error::raw_os_error) == Some(libc::EPERM);
        (result, restricted.then_some("kernel.io_uring_disabled=1"))
    };
    let source = match result {
        Ok(ring) => return Ok(Choice::IoUring(ring)),
        Err(source) => source,
    };
    let unavailable = matches!(
        source.raw_os_error(),
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::EINVAL | libc::ENOMEM)
    );
    let error = BackendError::IoUringSetup { source, blocked_by };
    if kind == WriterKind::Auto && unavailable {
        Ok(Choice::Blocking {
            fallback_reason: Some(error.to_string()),
        })
    } else {
        Err(error)
    }
}

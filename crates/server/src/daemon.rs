//! `daemonize` and `pidfile`, as Redis 7.0's `main()` handles them: with `daemonize yes` (and
//! no `supervised` mode that asks otherwise) the server detaches once at startup, before any
//! thread exists; it writes its pid to `pidfile` when it detached or one is configured
//! (Redis's default `/var/run/redis.pid` when detached without one), and removes the file when
//! it exits.
//!
//! This fork happens once, before the runtime starts, and the parent exits at once: it is not
//! a snapshot fork, and `snapshot-mode epoch` still never forks.

use std::path::PathBuf;

use crate::config::Config;

/// Redis's `CONFIG_DEFAULT_PID_FILE`.
const DEFAULT_PID_FILE: &str = "/var/run/redis.pid";

/// Returns true if and only if the configuration asks the server to detach: `daemonize yes`
/// unless `supervised` is `upstart` or `systemd` (Redis's `redisIsSupervised`; `auto` detects
/// either from the environment).
pub(crate) fn wants_background(config: &Config) -> bool {
    if !config.daemonize {
        return false;
    }
    let supervised = config.stored_text("supervised");
    let supervised = match supervised.as_slice() {
        b"auto" => {
            if std::env::var_os("UPSTART_JOB").is_some() {
                &b"upstart"[..]
            } else if std::env::var_os("NOTIFY_SOCKET").is_some() {
                &b"systemd"[..]
            } else {
                &b"no"[..]
            }
        }
        other => other,
    };
    !matches!(supervised, b"upstart" | b"systemd")
}

/// The pid file to write, if any.
pub(crate) fn pid_file(config: &Config, background: bool) -> Option<PathBuf> {
    let configured = config.stored_text("pidfile");
    if !configured.is_empty() {
        return Some(PathBuf::from(
            String::from_utf8_lossy(&configured).into_owned(),
        ));
    }
    background.then(|| PathBuf::from(DEFAULT_PID_FILE))
}

/// Writes the current pid to `path`; as in Redis, a failure is only logged.
pub(crate) fn write_pid_file(path: &PathBuf) {
    if let Err(err) = std::fs::write(path, format!("{}\n", std::process::id())) {
        tracing::warn!("Failed to write PID file {}: {err}", path.display());
    }
}

/// Removes the pid file at exit.
pub(crate) fn remove_pid_file(path: &PathBuf) {
    let _ = std::fs::remove_file(path);
}

/// Detaches as Redis's `daemonize()`: fork (the parent exits 0), start a new session, and
/// point standard input, output and error at `/dev/null`. Must run before any thread starts.
pub(crate) fn detach() -> std::io::Result<()> {
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    sys::fork_and_exit_parent()?;
    rustix::process::setsid()?;
    sys::redirect_stdio(&devnull)
}

#[allow(unsafe_code)]
mod sys {
    use std::os::fd::AsRawFd as _;

    /// Forks; the parent exits with status 0 and only the child returns.
    pub(super) fn fork_and_exit_parent() -> std::io::Result<()> {
        // SAFETY: called from `cli_main` before the tokio runtime, the logger or any other
        // thread exists, so the child is an exact single-threaded copy with no lock held.
        match unsafe { libc::fork() } {
            -1 => Err(std::io::Error::last_os_error()),
            0 => Ok(()),
            // The parent: leave without running destructors or atexit handlers, as Redis's
            // `exit(0)` of a process that has set nothing up yet.
            _ => std::process::exit(0),
        }
    }

    /// Points descriptors 0, 1 and 2 at `devnull`.
    pub(super) fn redirect_stdio(devnull: &std::fs::File) -> std::io::Result<()> {
        for target in 0..3 {
            // SAFETY: `dup2` takes two descriptor numbers and touches no memory; `devnull`
            // is open for the whole call, and replacing 0..=2 is what detaching means.
            if unsafe { libc::dup2(devnull.as_raw_fd(), target) } == -1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

//! Starting and stopping one server under test. [`Server`] kills the server, its fork child and
//! anything else in its cgroup when dropped, on success and error paths alike.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::cgroup::Cgroup;
use super::memory;
use super::resp::{Conn, Reply};

/// How long a server may take to answer PING after it was started.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Which server and snapshot strategy a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// forkless `--snapshot-mode epoch`.
    Epoch,
    /// forkless `--snapshot-mode fork`.
    Fork,
    /// Debian's redis-server (fork-based BGSAVE).
    Redis,
}

impl Mode {
    /// The name used in tables, CSVs and file names.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Epoch => "epoch",
            Mode::Fork => "fork",
            Mode::Redis => "redis",
        }
    }
}

/// The command line that starts `mode` on `port` with files in `data_dir`: persistence off
/// (`save ""`, and `appendonly no` for Redis), no RDB compression (the values are random bytes,
/// so compression would only cost CPU), loopback only.
pub fn server_command(
    mode: Mode,
    forkless_bin: &Path,
    redis_bin: &Path,
    port: u16,
    data_dir: &Path,
) -> Command {
    let mut command = match mode {
        Mode::Epoch | Mode::Fork => {
            let mut command = Command::new(forkless_bin);
            command.args(["--snapshot-mode", mode.name()]);
            command
        }
        Mode::Redis => {
            let mut command = Command::new(redis_bin);
            command.args(["--appendonly", "no", "--daemonize", "no"]);
            command
        }
    };
    command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--rdbcompression", "no", "--dir"])
        .arg(data_dir);
    command
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// A running server; killed (with its children) when dropped.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its `dir`: holds `dump.rdb`; removed when dropped.
    pub data_dir: PathBuf,
    /// Its own memory cgroup, when one could be made. Dropped (removed) after the processes
    /// are killed: field order matters.
    pub cgroup: Option<Cgroup>,
}

impl Server {
    /// Starts `command` (from [`server_command`], listening on `port`), with output going to
    /// `log_path`, moves it into `cgroup` if given, and waits for PING.
    pub fn start(
        mut command: Command,
        port: u16,
        data_dir: PathBuf,
        log_path: &Path,
        cgroup: Option<Cgroup>,
    ) -> anyhow::Result<Server> {
        let log = File::create(log_path)
            .with_context(|| format!("create server log {}", log_path.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {:?}", command.get_program()))?;
        let mut server = Server {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            data_dir,
            cgroup,
        };
        if let Some(cgroup) = &server.cgroup {
            // The server has allocated next to nothing yet; later pages, and every process it
            // forks, are charged to the group.
            cgroup
                .add_process(server.child.id())
                .with_context(|| format!("move server into {}", cgroup.path().display()))?;
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "server exited at startup ({status}); log: {}\n{}",
                    log_path.display(),
                    log_tail(log_path)
                );
            }
            if let Ok(mut conn) = Conn::connect(server.addr, Duration::from_secs(1))
                && matches!(conn.call(&[b"PING"]), Ok(Reply::Simple(ref pong)) if pong == "PONG")
            {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                bail!(
                    "server did not answer PING within {STARTUP_TIMEOUT:?}; log: {}",
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(description)` if and only if the server process has exited.
    pub fn exited(&mut self) -> Option<String> {
        use std::os::unix::process::ExitStatusExt;
        match self.child.try_wait() {
            Ok(Some(status)) => Some(match status.signal() {
                Some(signal) => format!("killed by signal {signal}"),
                None => format!("exited with {status}"),
            }),
            Ok(None) => None,
            Err(e) => Some(format!("wait failed: {e}")),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Children first (a Redis fork child outlives its parent otherwise), then the server.
        let mut others = memory::child_pids(self.child.id());
        if let Some(cgroup) = &self.cgroup {
            others.extend(cgroup.files().processes());
        }
        others.retain(|&pid| pid != self.child.id());
        others.sort_unstable();
        others.dedup();
        for pid in others {
            // Not our child, so std cannot signal it; `kill` is in every base system.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Err(e) = fs::remove_dir_all(&self.data_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "snapshot-compare: could not remove {}: {e}",
                self.data_dir.display()
            );
        }
    }
}

/// The last lines of a log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_command_lines() {
        let forkless = Path::new("/bin/forkless-server");
        let redis = Path::new("redis-server");
        let dir = Path::new("/tmp/d");
        let args = |mode| {
            let command = server_command(mode, forkless, redis, 7000, dir);
            let mut all = vec![command.get_program().to_string_lossy().into_owned()];
            all.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
            all.join(" ")
        };
        assert_eq!(
            args(Mode::Fork),
            "/bin/forkless-server --snapshot-mode fork --port 7000 --bind 127.0.0.1 --save  \
             --rdbcompression no --dir /tmp/d"
        );
        assert!(args(Mode::Epoch).contains("--snapshot-mode epoch"));
        assert!(args(Mode::Redis).starts_with("redis-server --appendonly no --daemonize no"));
    }

    #[test]
    fn finds_a_free_port() {
        assert_ne!(free_port().unwrap(), 0);
    }
}

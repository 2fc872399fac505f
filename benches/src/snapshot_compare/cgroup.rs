//! Memory cgroups for one server each: anonymous memory counted once across a process and its
//! fork child, an optional hard limit, and the OOM-kill counter.
//!
//! The cgroup is created *inside the cgroup this tool runs in*, so whatever limits and
//! accounting the machine applies to the tool still cover the server. cgroup v1 (this machine:
//! `/sys/fs/cgroup/memory/<group>`) and v2 (`/sys/fs/cgroup/<group>`) are both handled; v2 can
//! refuse (its "no internal processes" rule forbids enabling the memory controller for children
//! of a group that holds processes), and the caller then measures through procfs instead.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which cgroup hierarchy holds the memory controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Per-controller hierarchies; memory at `<root>/memory`.
    V1,
    /// The unified hierarchy at `<root>`.
    V2,
}

/// Where the memory controller of the calling process lives: (version, its directory).
///
/// `proc_self_cgroup` is the text of `/proc/self/cgroup`; `root` is normally `/sys/fs/cgroup`.
/// A v1 `memory` line wins over the v2 `0::` line (on hybrid machines the unified hierarchy
/// holds no memory controller). `v2_has_memory` says whether `<root>/cgroup.controllers` lists
/// `memory`.
pub fn memory_cgroup_dir(
    proc_self_cgroup: &str,
    root: &Path,
    v2_has_memory: bool,
) -> Option<(Version, PathBuf)> {
    let mut v2 = None;
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            return Some((Version::V1, root.join("memory").join(relative)));
        }
        if id == "0" && controllers.is_empty() && v2_has_memory {
            v2 = Some((Version::V2, root.join(relative)));
        }
    }
    v2
}

/// The `name value` lines of `memory.stat`, `memory.events` or `memory.oom_control`.
pub fn stat_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        if key == name {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

/// The files of a memory cgroup, for reading; cheap to clone into a sampler.
#[derive(Debug, Clone)]
pub struct CgroupFiles {
    version: Version,
    path: PathBuf,
}

/// One memory cgroup that this tool created; removed (after its processes are gone) on drop.
#[derive(Debug)]
pub struct Cgroup {
    files: CgroupFiles,
}

impl Cgroup {
    /// Creates `<own memory cgroup>/<name>`.
    pub fn create(name: &str) -> io::Result<Cgroup> {
        let root = Path::new("/sys/fs/cgroup");
        let self_cgroup = fs::read_to_string("/proc/self/cgroup")?;
        let v2_has_memory = fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
        let (version, parent) = memory_cgroup_dir(&self_cgroup, root, v2_has_memory)
            .ok_or_else(|| io::Error::other("no memory cgroup controller found"))?;
        if version == Version::V2 {
            // Children get a memory controller only when the parent delegates it.
            fs::write(parent.join("cgroup.subtree_control"), "+memory").map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("enable memory controller in {}: {e}", parent.display()),
                )
            })?;
        }
        let path = parent.join(name);
        fs::create_dir(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("mkdir {}: {e}", path.display())))?;
        Ok(Cgroup {
            files: CgroupFiles { version, path },
        })
    }

    /// The files, for reading.
    pub fn files(&self) -> &CgroupFiles {
        &self.files
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.files.path
    }

    /// Moves process `pid` (and so every process it forks later) into this cgroup.
    pub fn add_process(&self, pid: u32) -> io::Result<()> {
        fs::write(self.files.path.join("cgroup.procs"), pid.to_string())
    }

    /// Sets a hard limit of `bytes` with swap disabled for the cgroup.
    pub fn set_limit(&self, bytes: u64) -> io::Result<()> {
        let value = bytes.to_string();
        let dir = &self.files.path;
        match self.files.version {
            Version::V1 => {
                // memsw (memory + swap) must stay >= the memory limit: change the two in the
                // order that keeps that true. Both equal means no swap.
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                let _ = fs::write(dir.join("memory.swappiness"), "0");
                if memsw.exists() {
                    let current_memsw = fs::read_to_string(&memsw)?;
                    if current_memsw.trim().parse::<u64>().is_ok_and(|m| m < bytes) {
                        fs::write(&memsw, &value)?;
                        fs::write(dir.join("memory.limit_in_bytes"), &value)?;
                    } else {
                        fs::write(dir.join("memory.limit_in_bytes"), &value)?;
                        fs::write(&memsw, &value)?;
                    }
                } else {
                    fs::write(dir.join("memory.limit_in_bytes"), &value)?;
                }
            }
            Version::V2 => {
                fs::write(dir.join("memory.max"), &value)?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    fs::write(swap, "0")?;
                }
            }
        }
        Ok(())
    }
}

impl CgroupFiles {
    /// The hierarchy version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The processes in this cgroup.
    pub fn processes(&self) -> Vec<u32> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .map(|text| {
                text.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Anonymous memory charged to the cgroup, each page once however many processes map it:
    /// v1 `memory.stat` `total_rss`, v2 `memory.stat` `anon`.
    pub fn anon_bytes(&self) -> io::Result<u64> {
        let stat = fs::read_to_string(self.path.join("memory.stat"))?;
        let field = match self.version {
            Version::V1 => "total_rss",
            Version::V2 => "anon",
        };
        stat_field(&stat, field)
            .ok_or_else(|| io::Error::other(format!("memory.stat has no {field}")))
    }

    /// Everything charged to the cgroup (what a limit is compared with): v1
    /// `memory.usage_in_bytes`, v2 `memory.current`.
    pub fn usage_bytes(&self) -> io::Result<u64> {
        let file = match self.version {
            Version::V1 => "memory.usage_in_bytes",
            Version::V2 => "memory.current",
        };
        let text = fs::read_to_string(self.path.join(file))?;
        text.trim()
            .parse()
            .map_err(|_| io::Error::other(format!("{file}: not a number: {text:?}")))
    }

    /// How many processes the kernel's OOM killer killed in this cgroup (v1
    /// `memory.oom_control` `oom_kill`, v2 `memory.events` `oom_kill`); `None` when the kernel
    /// does not say.
    pub fn oom_kills(&self) -> Option<u64> {
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        stat_field(&fs::read_to_string(self.path.join(file)).ok()?, "oom_kill")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // rmdir fails with EBUSY until the last (killed) process has been reaped; give it a
        // moment rather than leave an empty group behind.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match fs::remove_dir(&self.files.path) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(e) if Instant::now() >= deadline => {
                    eprintln!(
                        "snapshot-compare: could not remove {}: {e}",
                        self.files.path.display()
                    );
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v1_memory_cgroup() {
        let text = "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
        assert_eq!(
            memory_cgroup_dir(text, Path::new("/sys/fs/cgroup"), false),
            Some((
                Version::V1,
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
            ))
        );
        let combined = "4:cpu,memory:/\n";
        assert_eq!(
            memory_cgroup_dir(combined, Path::new("/r"), true),
            Some((Version::V1, PathBuf::from("/r/memory/")))
        );
    }

    #[test]
    fn finds_the_v2_cgroup_only_with_a_memory_controller() {
        let text = "0::/user.slice/session-1.scope\n";
        assert_eq!(
            memory_cgroup_dir(text, Path::new("/sys/fs/cgroup"), true),
            Some((
                Version::V2,
                PathBuf::from("/sys/fs/cgroup/user.slice/session-1.scope")
            ))
        );
        assert_eq!(
            memory_cgroup_dir(text, Path::new("/sys/fs/cgroup"), false),
            None
        );
        assert_eq!(memory_cgroup_dir("garbage", Path::new("/x"), true), None);
    }

    #[test]
    fn reads_stat_fields() {
        let v1 = "cache 100\nrss 200\ntotal_cache 300\ntotal_rss 4096\n";
        assert_eq!(stat_field(v1, "total_rss"), Some(4096));
        assert_eq!(stat_field(v1, "rss"), Some(200));
        assert_eq!(stat_field(v1, "anon"), None);
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(stat_field(oom, "oom_kill"), Some(2));
    }
}

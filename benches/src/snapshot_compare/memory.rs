//! Anonymous memory of a server and its fork child, counted once.
//!
//! Two sources, in order of preference:
//! - **cgroup**: the server runs in its own memory cgroup ([`super::cgroup`]); the kernel
//!   charges every anonymous page once to that group however many processes map it, so a
//!   fork child's shared copy-on-write pages are not counted twice (v1 `total_rss`, v2 `anon`).
//! - **procfs**: the sum of `Pss_Anon` from `/proc/<pid>/smaps_rollup` over the server and
//!   its child processes. PSS divides each shared page among the processes that map it, so
//!   the sum over parent and fork child counts each page once (summing RssAnon would count
//!   every shared page twice). Reading smaps_rollup walks the page tables: slower per sample.

use std::fs;
use std::io;

use super::cgroup::{CgroupFiles, Version};

/// Where a memory sample comes from.
#[derive(Debug, Clone)]
pub enum MemorySource {
    /// The server's own memory cgroup.
    Cgroup(CgroupFiles),
    /// `Pss_Anon` summed over this process and its children.
    Procfs(u32),
}

impl MemorySource {
    /// A name for the report.
    pub fn describe(&self) -> &'static str {
        match self {
            MemorySource::Cgroup(cgroup) => match cgroup.version() {
                Version::V1 => "cgroup v1 memory.stat total_rss",
                Version::V2 => "cgroup v2 memory.stat anon",
            },
            MemorySource::Procfs(_) => "sum of Pss_Anon (smaps_rollup) over server and children",
        }
    }

    /// Anonymous bytes now.
    pub fn sample(&self) -> io::Result<u64> {
        match self {
            MemorySource::Cgroup(cgroup) => cgroup.anon_bytes(),
            MemorySource::Procfs(pid) => {
                let own = pss_anon(*pid)?;
                // A child can exit between listing and reading: count it as 0.
                let children: u64 = child_pids(*pid)
                    .into_iter()
                    .map(|child| pss_anon(child).unwrap_or(0))
                    .sum();
                Ok(own + children)
            }
        }
    }
}

/// `Pss_Anon` of one process in bytes.
pub fn pss_anon(pid: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    kib_field(&text, "Pss_Anon:")
        .ok_or_else(|| io::Error::other("smaps_rollup has no Pss_Anon (kernel older than 5.7?)"))
}

/// The value of a `Name:   123 kB` line, in bytes.
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kib * 1024)
    })
}

/// The children of every thread of `pid` (a fork child is the child of the forking thread).
pub fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(task.path().join("children")) {
            children.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    children.sort_unstable();
    children.dedup();
    children
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields() {
        let rollup = "00400000-7fff [rollup]\nRss:     2048 kB\nPss:     1024 kB\n\
                      Pss_Anon:     512 kB\nPss_File:  0 kB\n";
        assert_eq!(kib_field(rollup, "Pss_Anon:"), Some(512 * 1024));
        assert_eq!(kib_field(rollup, "Pss:"), Some(1024 * 1024));
        assert_eq!(kib_field(rollup, "Private_Dirty:"), None);
    }

    #[test]
    fn samples_this_process() {
        let own = MemorySource::Procfs(std::process::id()).sample();
        // Pss_Anon exists since Linux 5.7; older kernels report an error, never 0.
        if let Ok(bytes) = own {
            assert!(bytes > 0);
        }
        assert!(child_pids(u32::MAX).is_empty());
    }
}

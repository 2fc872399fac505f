//! The point-in-time guarantee, end to end: writers keep writing sequence-numbered values and
//! MSET groups while BGSAVE runs; the dump must hold, for every writer, exactly the state after
//! some prefix of its writes, and that prefix must lie between the last write acknowledged
//! before BGSAVE was sent and the last write sent before BGSAVE's reply arrived. No MSET group
//! may be torn. Run for both writer backends and for both snapshot modes: epoch, and fork mode
//! (the child's own writer, with and without io_uring available to the parent).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use forkless_snapshot::format;
use forkless_storage::Value;
use forkless_tests::{TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");
const WRITERS: usize = 3;
/// Keys per writer; a writer's write number `s` goes to key `s % KEYS_PER_WRITER`.
const KEYS_PER_WRITER: u64 = 50;
/// Every GROUP_EVERY-th write is an MSET of three keys instead.
const GROUP_EVERY: u64 = 3;

#[derive(Default)]
struct WriterState {
    /// The highest write number whose reply has been read.
    acked: AtomicU64,
    /// The highest write number sent (its reply may not have arrived).
    sent: AtomicU64,
}

fn info_field(conn: &mut redis::Connection, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO").arg("persistence").query(conn).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")).map(str::to_string))
}

/// The dump's key → value for every key.
fn load_dump(path: &std::path::Path) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut keys = HashMap::new();
    let file = File::open(path).expect("dump exists");
    format::load(BufReader::new(file), "dump.rdb", 0, |entry| {
        let Value::String(bytes) = entry.value else {
            panic!("only strings are written here")
        };
        keys.insert(entry.key.to_vec(), bytes.to_vec());
        Ok(())
    })
    .expect("dump loads");
    keys
}

/// The value of writer `w`'s keys after its writes 1..=t.
fn expected_after(w: usize, t: u64) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut state = HashMap::new();
    for s in 1..=t {
        if s % GROUP_EVERY == 0 {
            for part in ["a", "b", "c"] {
                state.insert(
                    format!("g{w}:{part}").into_bytes(),
                    s.to_string().into_bytes(),
                );
            }
        } else {
            state.insert(
                format!("w{w}:k{}", s % KEYS_PER_WRITER).into_bytes(),
                s.to_string().into_bytes(),
            );
        }
    }
    state
}

fn run_consistency(extra_args: &[&str]) {
    run_consistency_with_env(extra_args, &[]);
}

fn run_consistency_with_env(extra_args: &[&str], envs: &[(&str, &str)]) {
    let server = TestServer::start_with_env(BIN, &[&["--save", ""], extra_args].concat(), envs);
    let states: Arc<Vec<WriterState>> =
        Arc::new((0..WRITERS).map(|_| WriterState::default()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let (states, stop) = (Arc::clone(&states), Arc::clone(&stop));
        let mut conn = server.client();
        handles.push(std::thread::spawn(move || {
            let state = &states[w];
            let mut s = 0u64;
            // Bounded: at most 200k writes per writer, whatever happens.
            while !stop.load(Ordering::Relaxed) && s < 200_000 {
                s += 1;
                state.sent.store(s, Ordering::SeqCst);
                let value = s.to_string();
                if s % GROUP_EVERY == 0 {
                    let pairs: Vec<(String, &str)> = ["a", "b", "c"]
                        .iter()
                        .map(|p| (format!("g{w}:{p}"), value.as_str()))
                        .collect();
                    let () = redis::cmd("MSET")
                        .arg(&pairs)
                        .query(&mut conn)
                        .expect("MSET");
                } else {
                    let key = format!("w{w}:k{}", s % KEYS_PER_WRITER);
                    let () = redis::cmd("SET")
                        .arg(key)
                        .arg(&value)
                        .query(&mut conn)
                        .expect("SET");
                }
                state.acked.store(s, Ordering::SeqCst);
            }
        }));
    }
    let mut admin = server.client();
    // Let every writer get going (past a few groups) before the save.
    assert!(wait_until(Duration::from_secs(20), || states
        .iter()
        .all(|st| st.acked.load(Ordering::SeqCst) > 200)));
    let acked_before: Vec<u64> = states
        .iter()
        .map(|st| st.acked.load(Ordering::SeqCst))
        .collect();
    let reply: String = redis::cmd("BGSAVE").query(&mut admin).expect("BGSAVE");
    let sent_before_reply: Vec<u64> = states
        .iter()
        .map(|st| st.sent.load(Ordering::SeqCst))
        .collect();
    assert_eq!(reply, "Background saving started");
    assert!(
        wait_until(Duration::from_secs(60), || info_field(
            &mut admin,
            "rdb_bgsave_in_progress"
        )
        .as_deref()
            == Some("0")),
        "BGSAVE did not finish"
    );
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.join().expect("writer");
    }
    assert_eq!(
        info_field(&mut admin, "rdb_last_bgsave_status").as_deref(),
        Some("ok")
    );
    assert_eq!(
        info_field(&mut admin, "snapshot_retained_bytes").as_deref(),
        Some("0")
    );
    let fork_mode = extra_args
        .windows(2)
        .any(|w| w == ["--snapshot-mode", "fork"]);
    assert_eq!(
        info_field(&mut admin, "rdb_last_bgsave_type").as_deref(),
        Some(if fork_mode { "fork" } else { "epoch" })
    );

    let dump = load_dump(&server.dir.join("dump.rdb"));
    for w in 0..WRITERS {
        let mine: HashMap<Vec<u8>, Vec<u8>> = dump
            .iter()
            .filter(|(key, _)| {
                key.starts_with(format!("w{w}:").as_bytes())
                    || key.starts_with(format!("g{w}:").as_bytes())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let group: Vec<Option<&Vec<u8>>> = ["a", "b", "c"]
            .iter()
            .map(|p| mine.get(format!("g{w}:{p}").as_bytes()))
            .collect();
        assert!(
            group.windows(2).all(|pair| pair[0] == pair[1]),
            "writer {w}: MSET group torn: {group:?}"
        );
        let cut = (acked_before[w]..=sent_before_reply[w]).find(|&t| expected_after(w, t) == mine);
        assert!(
            cut.is_some(),
            "writer {w}: the dump matches no prefix of its writes between {} (acked before BGSAVE) and {} (sent before the reply)",
            acked_before[w],
            sent_before_reply[w]
        );
    }
}

#[test]
fn bgsave_is_one_point_in_time_with_the_default_writer() {
    run_consistency(&[]);
}

#[test]
fn bgsave_is_one_point_in_time_with_the_blocking_writer() {
    run_consistency(&["--snapshot-writer", "blocking"]);
}

#[test]
fn bgsave_is_one_point_in_time_with_zstd_and_lzf() {
    run_consistency(&["--snapshot-compression", "zstd", "--rdbcompression", "yes"]);
}

#[test]
fn fork_bgsave_is_one_point_in_time() {
    run_consistency(&["--snapshot-mode", "fork"]);
}

#[test]
fn fork_bgsave_is_one_point_in_time_without_io_uring() {
    run_consistency_with_env(
        &["--snapshot-mode", "fork"],
        &[("FORKLESS_DISABLE_IO_URING", "1")],
    );
}

#[test]
fn fork_bgsave_is_one_point_in_time_with_zstd_and_lzf() {
    run_consistency(&[
        "--snapshot-mode",
        "fork",
        "--snapshot-compression",
        "zstd",
        "--rdbcompression",
        "yes",
    ]);
}

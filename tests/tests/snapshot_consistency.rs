//! The point-in-time guarantee, end to end: writers keep writing sequence-numbered values and
//! MSET groups while BGSAVE runs; the dump must hold, for every writer, exactly the state after
//! some prefix of its writes, and that prefix must lie between the last write acknowledged
//! before BGSAVE was sent and the last write sent before BGSAVE's reply arrived. No MSET group
//! may be torn. Run for both writer backends and for both snapshot modes: epoch, and fork mode
//! (the child's own writer, with and without io_uring available to the parent). A second
//! workload writes every type (lists, hashes, sets emptied and deleted, sorted sets, strings,
//! DEL, and a MULTI/EXEC across a string, a hash and a sorted set), with the same check.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// A value as the comparison sees it.
#[derive(Debug, Clone, PartialEq)]
enum Data {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    /// member → score
    ZSet(BTreeMap<Vec<u8>, u64>),
    /// id → field-value strings
    Stream(Vec<(String, Vec<Vec<u8>>)>),
}

impl Data {
    fn from_value(value: &Value) -> Data {
        match value {
            Value::String(bytes) => Data::String(bytes.to_vec()),
            Value::List(list) => Data::List(list.iter().map(|item| item.to_vec()).collect()),
            Value::Set(set) => Data::Set(set.iter().map(|member| member.to_vec()).collect()),
            Value::Hash(hash) => Data::Hash(
                hash.iter()
                    .map(|(field, value)| (field.to_vec(), value.to_vec()))
                    .collect(),
            ),
            Value::ZSet(zset) => Data::ZSet(
                zset.iter()
                    .map(|(member, score)| (member.to_vec(), score as u64))
                    .collect(),
            ),
            Value::Stream(stream) => Data::Stream(
                stream
                    .iter()
                    .map(|(id, fields)| (id.to_string(), fields.map(<[u8]>::to_vec).collect()))
                    .collect(),
            ),
        }
    }
}

type State = HashMap<Vec<u8>, Data>;

/// The dump's key → value for every key.
fn load_dump(path: &std::path::Path) -> State {
    let mut keys = HashMap::new();
    let file = File::open(path).expect("dump exists");
    format::load(BufReader::new(file), "dump.rdb", 0, |entry| {
        keys.insert(entry.key.to_vec(), Data::from_value(&entry.value));
        Ok(())
    })
    .expect("dump loads");
    keys
}

/// What the writers write. Write number `s` of writer `w` is one command (or one MULTI/EXEC),
/// and [`Workload::apply`] is its effect, so the state after any prefix of a writer's writes
/// can be computed.
#[derive(Debug, Clone, Copy)]
enum Workload {
    /// SETs of sequence numbers, and every GROUP_EVERY-th write an MSET of three keys.
    Strings,
    /// Every type: RPUSH, HSET, SADD, SREM (down to empty, which deletes the set), ZADD, SET,
    /// DEL, and a MULTI/EXEC that writes a string, a hash and a sorted set together.
    EveryType,
}

impl Workload {
    /// The keys of writer `w` all start with this.
    fn prefix(self, w: usize) -> String {
        match self {
            Workload::Strings => format!("w{w}:"),
            Workload::EveryType => format!("t{w}:"),
        }
    }

    fn send(self, conn: &mut redis::Connection, w: usize, s: u64) {
        let p = self.prefix(w);
        let value = s.to_string();
        match self {
            Workload::Strings if s % GROUP_EVERY == 0 => {
                let pairs: Vec<(String, &str)> = ["a", "b", "c"]
                    .iter()
                    .map(|part| (format!("{p}g:{part}"), value.as_str()))
                    .collect();
                let () = redis::cmd("MSET").arg(&pairs).query(conn).expect("MSET");
            }
            Workload::Strings => {
                let key = format!("{p}k{}", s % KEYS_PER_WRITER);
                let () = redis::cmd("SET")
                    .arg(key)
                    .arg(&value)
                    .query(conn)
                    .expect("SET");
            }
            Workload::EveryType => {
                if s % 7 == 0 {
                    let () = redis::pipe()
                        .atomic()
                        .cmd("SET")
                        .arg(format!("{p}g:str"))
                        .arg(&value)
                        .ignore()
                        .cmd("HSET")
                        .arg(format!("{p}g:hash"))
                        .arg("f")
                        .arg(&value)
                        .ignore()
                        .cmd("ZADD")
                        .arg(format!("{p}g:zset"))
                        .arg(s)
                        .arg("m")
                        .ignore()
                        .query(conn)
                        .expect("MULTI/EXEC");
                    return;
                }
                let args: Vec<String> = match s % 7 {
                    1 => vec!["RPUSH".into(), format!("{p}list"), value],
                    2 => vec![
                        "HSET".into(),
                        format!("{p}hash"),
                        format!("f{}", s % 13),
                        value,
                    ],
                    3 => vec!["SADD".into(), format!("{p}set"), (s % 29).to_string()],
                    4 => vec![
                        "ZADD".into(),
                        format!("{p}zset"),
                        value,
                        format!("m{}", s % 17),
                    ],
                    5 => vec!["SREM".into(), format!("{p}set"), ((s / 7) % 29).to_string()],
                    _ if (s / 7) % 5 == 0 => vec!["DEL".into(), format!("{p}list")],
                    _ => vec!["SET".into(), format!("{p}str:{}", s % 10), value],
                };
                let _: redis::Value = redis::cmd(&args[0])
                    .arg(&args[1..])
                    .query(conn)
                    .expect("write");
            }
        }
    }

    /// The effect of write `s` of writer `w` on `state`.
    fn apply(self, w: usize, s: u64, state: &mut State) {
        let p = self.prefix(w);
        let key = |name: String| format!("{p}{name}").into_bytes();
        let value = s.to_string().into_bytes();
        match self {
            Workload::Strings if s % GROUP_EVERY == 0 => {
                for part in ["a", "b", "c"] {
                    state.insert(key(format!("g:{part}")), Data::String(value.clone()));
                }
            }
            Workload::Strings => {
                state.insert(
                    key(format!("k{}", s % KEYS_PER_WRITER)),
                    Data::String(value),
                );
            }
            Workload::EveryType => match s % 7 {
                0 => {
                    state.insert(key("g:str".into()), Data::String(value.clone()));
                    hash_of(state, key("g:hash".into())).insert(b"f".to_vec(), value);
                    zset_of(state, key("g:zset".into())).insert(b"m".to_vec(), s);
                }
                1 => {
                    list_of(state, key("list".into())).push(value);
                }
                2 => {
                    hash_of(state, key("hash".into()))
                        .insert(format!("f{}", s % 13).into_bytes(), value);
                }
                3 => {
                    set_of(state, key("set".into())).insert((s % 29).to_string().into_bytes());
                }
                4 => {
                    zset_of(state, key("zset".into()))
                        .insert(format!("m{}", s % 17).into_bytes(), s);
                }
                5 => {
                    let set_key = key("set".into());
                    if let Some(Data::Set(members)) = state.get_mut(&set_key) {
                        members.remove(((s / 7) % 29).to_string().as_bytes());
                        if members.is_empty() {
                            state.remove(&set_key);
                        }
                    }
                }
                _ if (s / 7) % 5 == 0 => {
                    state.remove(&key("list".into()));
                }
                _ => {
                    state.insert(key(format!("str:{}", s % 10)), Data::String(value));
                }
            },
        }
    }

    /// The state of writer `w`'s keys after its writes 1..=t.
    fn expected_after(self, w: usize, t: u64) -> State {
        let mut state = State::new();
        for s in 1..=t {
            self.apply(w, s, &mut state);
        }
        state
    }
}

fn hash_of(state: &mut State, key: Vec<u8>) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
    let entry = state.entry(key).or_insert(Data::Hash(BTreeMap::new()));
    let Data::Hash(fields) = entry else {
        unreachable!()
    };
    fields
}

fn list_of(state: &mut State, key: Vec<u8>) -> &mut Vec<Vec<u8>> {
    let entry = state.entry(key).or_insert(Data::List(Vec::new()));
    let Data::List(items) = entry else {
        unreachable!()
    };
    items
}

fn set_of(state: &mut State, key: Vec<u8>) -> &mut BTreeSet<Vec<u8>> {
    let entry = state.entry(key).or_insert(Data::Set(BTreeSet::new()));
    let Data::Set(members) = entry else {
        unreachable!()
    };
    members
}

fn zset_of(state: &mut State, key: Vec<u8>) -> &mut BTreeMap<Vec<u8>, u64> {
    let entry = state.entry(key).or_insert(Data::ZSet(BTreeMap::new()));
    let Data::ZSet(members) = entry else {
        unreachable!()
    };
    members
}

fn run_consistency(extra_args: &[&str]) {
    run_consistency_with_env(Workload::Strings, extra_args, &[]);
}

fn run_consistency_with_env(workload: Workload, extra_args: &[&str], envs: &[(&str, &str)]) {
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
                workload.send(&mut conn, w, s);
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
        let prefix = workload.prefix(w);
        let mine: State = dump
            .iter()
            .filter(|(key, _)| key.starts_with(prefix.as_bytes()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // A torn MSET or MULTI/EXEC group matches no prefix of the writes either; this names it.
        if let Workload::Strings = workload {
            let group: Vec<Option<&Data>> = ["a", "b", "c"]
                .iter()
                .map(|part| mine.get(format!("{prefix}g:{part}").as_bytes()))
                .collect();
            assert!(
                group.windows(2).all(|pair| pair[0] == pair[1]),
                "writer {w}: MSET group torn: {group:?}"
            );
        }
        let cut = (acked_before[w]..=sent_before_reply[w])
            .find(|&t| workload.expected_after(w, t) == mine);
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
        Workload::Strings,
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

#[test]
fn bgsave_is_one_point_in_time_for_every_type() {
    run_consistency_with_env(Workload::EveryType, &[], &[]);
}

#[test]
fn bgsave_is_one_point_in_time_for_every_type_without_io_uring() {
    run_consistency_with_env(
        Workload::EveryType,
        &[],
        &[("FORKLESS_DISABLE_IO_URING", "1")],
    );
}

#[test]
fn fork_bgsave_is_one_point_in_time_for_every_type() {
    run_consistency_with_env(Workload::EveryType, &["--snapshot-mode", "fork"], &[]);
}

//! The effect stream against the keyspace it describes: concurrent writers on a few keys, running
//! deterministic and nondeterministic writes (relative expiries, INCRBYFLOAT, SPOP, blocking
//! pops, transactions, lazily and actively expired keys, two databases), while snapshot cuts are
//! taken. Replaying, through the same command table, exactly the effects numbered below a cut
//! must give the dataset at that cut, and replaying them all the live dataset.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use forkless_protocol::{Out, RespVersion};
use forkless_storage::effect::Seq;
use forkless_storage::{N_SHARDS, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Effect, EffectConsumer, Renderer};
use crate::cmd::{self, Client};
use crate::config::Config;
use crate::server::{ClientHandle, Server};

const N_DBS: usize = 2;
const N_WRITERS: usize = 4;
const OPS_PER_WRITER: usize = 1500;
/// A writer waits for a new cut this often, so cuts fall all through the run.
const OPS_PER_CUT: usize = 250;

fn new_server() -> Arc<Server> {
    let config = Config {
        databases: N_DBS,
        ..Config::default()
    };
    Server::new(config)
}

fn client(server: &Server, replay: bool) -> Client {
    let id = server.clients.next_id();
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (push, pushes) = tokio::sync::mpsc::unbounded_channel();
    let handle = Arc::new(ClientHandle {
        id,
        addr: addr.into(),
        local_addr: addr.into(),
        created: Instant::now(),
        last_interaction_ms: Default::default(),
        name: Default::default(),
        db: Default::default(),
        resp: Default::default(),
        last_command: Default::default(),
        killed: Default::default(),
        kill: Default::default(),
        fd: -1,
        info: Default::default(),
        push,
        awaiting_seq: Default::default(),
        user: std::sync::Mutex::new(bytes::Bytes::from_static(b"default")),
    });
    Client {
        id,
        db: 0,
        authenticated: true,
        close_after_reply: false,
        handle,
        subs: crate::pubsub::ClientSubscriptions::new(),
        multi: None,
        multi_failed: false,
        watched: cmd::transaction::Watched::default(),
        in_exec: false,
        blocked: None,
        block_retry: false,
        replay,
        conn: cmd::client::ConnState::new(pushes),
        acl: crate::acl::ClientAcl::superuser(),
        acl_caller: None,
    }
}

/// Runs one command as a connection would, returning its reply bytes. A blocking command that
/// found nothing is abandoned as a client that disconnects would be: it changed nothing.
fn run(server: &Server, client: &mut Client, words: &[&str]) -> Vec<u8> {
    let argv: Vec<Bytes> = words
        .iter()
        .map(|word| Bytes::copy_from_slice(word.as_bytes()))
        .collect();
    run_argv(server, client, &argv)
}

fn run_argv(server: &Server, client: &mut Client, argv: &[Bytes]) -> Vec<u8> {
    let mut out = Out::new(RespVersion::Resp2);
    cmd::execute(server, client, &mut out, argv);
    client.blocked = None;
    out.buf.to_vec()
}

/// A value in a form that compares by content, whatever its encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Canon {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    /// Member to the bits of its score.
    ZSet(BTreeMap<Vec<u8>, u64>),
    /// The stream as a whole: entries, counters and groups.
    Stream(forkless_storage::types::stream::Stream),
}

fn canon(value: &Value) -> Canon {
    match value {
        Value::String(bytes) => Canon::String(bytes.to_vec()),
        Value::List(list) => Canon::List(list.iter().map(|item| item.to_vec()).collect()),
        Value::Hash(hash) => Canon::Hash(
            hash.iter()
                .map(|(field, value)| (field.to_vec(), value.to_vec()))
                .collect(),
        ),
        Value::Set(set) => Canon::Set(set.iter().map(|member| member.to_vec()).collect()),
        Value::ZSet(zset) => Canon::ZSet(
            zset.iter()
                .map(|(member, score)| (member.to_vec(), score.to_bits()))
                .collect(),
        ),
        Value::Stream(stream) => Canon::Stream((**stream).clone()),
    }
}

/// (database, key) to (value, absolute expiry), expired-but-present keys included.
type Dataset = BTreeMap<(usize, Vec<u8>), (Canon, Option<u64>)>;

/// Takes a snapshot cut and reads every shard's image: the dataset at the cut and where the cut
/// splits the effect stream. Holds the gate as BGSAVE does, so no transaction is split.
fn cut(server: &Server) -> (Seq, Dataset) {
    let _gate = server.keyspace.gate().shared();
    let cut = server
        .keyspace
        .begin_snapshot(0)
        .expect("no other snapshot runs");
    let mut dataset = Dataset::new();
    for db in 0..N_DBS {
        for shard in 0..N_SHARDS {
            let image = server.keyspace.take_shard_image(&cut, db, shard);
            for (key, entry) in image.entries() {
                dataset.insert(
                    (db, key.to_vec()),
                    (canon(entry.value()), entry.expire_at_ms()),
                );
            }
        }
    }
    let seq = cut.seq();
    server.keyspace.end_snapshot(cut);
    (seq, dataset)
}

/// A consumer that keeps every effect, checking they arrive in dense number order.
#[derive(Default)]
struct Recorder {
    effects: Mutex<Vec<Effect>>,
}

impl EffectConsumer for Recorder {
    fn consume(&self, effect: &Effect) {
        let mut effects = self.effects.lock().unwrap();
        let expected = effects.last().map_or(Seq::FIRST, |last| last.seq.next());
        assert_eq!(effect.seq, expected, "effects out of order or not dense");
        assert!(!effect.ops.is_empty(), "an effect with no command");
        effects.push(effect.clone());
    }
}

/// One random write (or a transaction of several) on a few keys.
fn random_command(rng: &mut StdRng) -> Vec<Vec<String>> {
    let pick =
        |rng: &mut StdRng, prefix: &str, n: usize| format!("{prefix}{}", rng.random_range(0..n));
    let s = pick(rng, "s", 3);
    let l = pick(rng, "l", 2);
    let l2 = pick(rng, "l", 2);
    let t = pick(rng, "t", 2);
    let z = pick(rng, "z", 2);
    let h = pick(rng, "h", 2);
    let n = rng.random_range(1..40).to_string();
    let p = pick(rng, "p", 2);
    let g = pick(rng, "g", 2);
    let words: Vec<String> = match rng.random_range(0..42) {
        0 => vec!["SET".into(), s, n],
        1 => vec!["SET".into(), s, n.clone(), "PX".into(), n],
        2 => vec!["SET".into(), s, n, "EX".into(), "100".into()],
        3 => vec!["SETEX".into(), s, "100".into(), n],
        4 => vec!["PSETEX".into(), s, n.clone(), n],
        5 => vec!["GETEX".into(), s, "PX".into(), n],
        6 => vec!["GETEX".into(), s, "PERSIST".into()],
        7 => vec!["EXPIRE".into(), s, "100".into()],
        8 => vec!["PEXPIRE".into(), s, n],
        9 => vec!["PEXPIRE".into(), s, "-1".into()],
        10 => vec![
            "INCRBYFLOAT".into(),
            format!("f{}", rng.random_range(0..2)),
            "0.1".into(),
        ],
        11 => vec!["INCR".into(), format!("i{}", rng.random_range(0..2))],
        12 => vec!["APPEND".into(), s, n],
        13 => vec!["DEL".into(), s],
        14 => vec!["RENAME".into(), s, pick(rng, "s", 3)],
        15 => vec!["SADD".into(), t, n.clone(), format!("m{n}")],
        16 => vec!["SPOP".into(), t],
        17 => vec!["SPOP".into(), t, "2".into()],
        18 => vec!["SMOVE".into(), t, pick(rng, "t", 2), n],
        19 => vec!["RPUSH".into(), l, n.clone(), format!("x{n}")],
        20 => vec!["BLPOP".into(), l, l2, "0.01".into()],
        21 => vec!["BRPOP".into(), l, "0.01".into()],
        22 => vec![
            "BLMOVE".into(),
            l,
            l2,
            "LEFT".into(),
            "RIGHT".into(),
            "0.01".into(),
        ],
        23 => vec!["BRPOPLPUSH".into(), l, l2, "0.01".into()],
        24 => vec![
            "BLMPOP".into(),
            "0.01".into(),
            "2".into(),
            l,
            l2,
            "RIGHT".into(),
            "COUNT".into(),
            "2".into(),
        ],
        25 => vec!["ZADD".into(), z, n.clone(), format!("m{n}")],
        26 => vec!["BZPOPMIN".into(), z, "0.01".into()],
        27 => vec!["BZMPOP".into(), "0.01".into(), "1".into(), z, "MAX".into()],
        28 => vec!["HSET".into(), h, format!("f{n}"), n],
        29 => vec!["HINCRBYFLOAT".into(), h, "fl".into(), "1.5".into()],
        30 => vec!["MOVE".into(), s, "1".into()],
        31 => vec![
            "COPY".into(),
            s,
            pick(rng, "s", 3),
            "DB".into(),
            "1".into(),
            "REPLACE".into(),
        ],
        32 if rng.random_range(0..20) == 0 => vec!["FLUSHDB".into()],
        33 => vec![
            "SETBIT".into(),
            format!("b{}", rng.random_range(0..2)),
            n,
            "1".into(),
        ],
        34 => vec![
            "SORT".into(),
            l,
            "STORE".into(),
            format!("sorted{}", rng.random_range(0..2)),
        ],
        35 if rng.random_range(0..10) == 0 => vec!["SWAPDB".into(), "0".into(), "1".into()],
        36 => vec!["PFADD".into(), p, n.clone(), format!("e{n}")],
        // PFCOUNT writes the cached cardinality into the HLL: a change from a read command.
        37 => vec!["PFCOUNT".into(), p],
        38 => vec!["PFMERGE".into(), p, pick(rng, "p", 2)],
        39 => vec![
            "GEOADD".into(),
            g,
            format!("{}.5", rng.random_range(-170..170)),
            format!("{}.25", rng.random_range(-80..80)),
            format!("m{n}"),
        ],
        40 => vec![
            "GEORADIUS".into(),
            g,
            "0".into(),
            "0".into(),
            "20000".into(),
            "km".into(),
            "COUNT".into(),
            "3".into(),
            "STOREDIST".into(),
            pick(rng, "g", 2),
        ],
        _ => {
            // A transaction mixing databases and nondeterministic commands.
            let mut queued = vec![vec!["MULTI".to_string()]];
            for _ in 0..rng.random_range(1..4) {
                queued.extend(
                    random_command(rng)
                        .into_iter()
                        .filter(|c| c[0] != "MULTI" && c[0] != "EXEC"),
                );
            }
            if rng.random_bool(0.5) {
                let db = rng.random_range(0..N_DBS).to_string();
                queued.insert(1, vec!["SELECT".into(), db]);
            }
            queued.push(vec!["EXEC".into()]);
            return queued;
        }
    };
    vec![words]
}

fn writer(server: &Server, seed: u64, cuts_taken: &AtomicUsize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client = client(server, false);
    let mut last_cuts = cuts_taken.load(Ordering::Acquire);
    for op in 0..OPS_PER_WRITER {
        if rng.random_range(0..10) == 0 {
            let db = rng.random_range(0..N_DBS).to_string();
            run(server, &mut client, &["SELECT", &db]);
        }
        for words in random_command(&mut rng) {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            run(server, &mut client, &words);
        }
        if op % OPS_PER_CUT == OPS_PER_CUT - 1 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while cuts_taken.load(Ordering::Acquire) == last_cuts {
                assert!(Instant::now() < deadline, "no cut was taken");
                std::thread::yield_now();
            }
            last_cuts = cuts_taken.load(Ordering::Acquire);
        }
    }
}

/// Replays `effects` (in number order) into `replica`, comparing it with each cut when the
/// replay reaches the cut's number.
fn replay_and_compare(effects: &[Effect], cuts: &[(Seq, Dataset)], replica: &Server) {
    let mut client = client(replica, true);
    let mut renderer = Renderer::default();
    let mut cuts = cuts.iter().peekable();
    let mut compared = 0;
    for effect in effects {
        while let Some((seq, dataset)) = cuts.next_if(|(seq, _)| *seq <= effect.seq) {
            assert_datasets_equal(&cut(replica).1, dataset, *seq);
            compared += 1;
        }
        let mut commands = Vec::new();
        renderer.render(effect, &mut commands);
        for argv in &commands {
            let reply = run_argv(replica, &mut client, argv);
            assert_ne!(
                reply.first(),
                Some(&b'-'),
                "replaying {argv:?} of {effect:?} failed: {}",
                String::from_utf8_lossy(&reply)
            );
        }
    }
    for (seq, dataset) in cuts {
        assert_datasets_equal(&cut(replica).1, dataset, *seq);
        compared += 1;
    }
    assert!(compared >= 2, "only {compared} cuts compared");
}

fn assert_datasets_equal(replayed: &Dataset, expected: &Dataset, seq: Seq) {
    if replayed == expected {
        return;
    }
    let keys: BTreeSet<_> = replayed.keys().chain(expected.keys()).collect();
    let differences: Vec<String> = keys
        .into_iter()
        .filter(|key| replayed.get(*key) != expected.get(*key))
        .take(5)
        .map(|key| {
            format!(
                "{key:?}: replayed {:?}, cut {:?}",
                replayed.get(key),
                expected.get(key)
            )
        })
        .collect();
    panic!("replaying the effects below {seq:?} differs from the cut: {differences:#?}");
}

/// Counts the effects' commands by name.
fn command_names(effects: &[Effect]) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for op in effects.iter().flat_map(|effect| &effect.ops) {
        let name = String::from_utf8_lossy(&op.argv[0]).to_ascii_uppercase();
        *names.entry(name).or_insert(0) += 1;
    }
    names
}

#[test]
fn replaying_the_effects_below_each_cut_gives_the_dataset_at_the_cut() {
    let server = new_server();
    let recorder = Arc::new(Recorder::default());
    let consumer: Arc<dyn EffectConsumer> = Arc::clone(&recorder) as Arc<dyn EffectConsumer>;
    let id = server.effects.attach(&server.keyspace, consumer);
    // Two keys certain to expire: one a command finds expired (lazy expiry), one only the active
    // cycle can remove (no writer names it). The random writes below expire others both ways.
    let mut setup = client(&server, false);
    run(&server, &mut setup, &["SET", "lazy", "v", "PX", "1"]);
    run(&server, &mut setup, &["SET", "active", "v", "PX", "1"]);
    let expired_at = crate::server::unix_ms() + 2;
    while crate::server::unix_ms() <= expired_at {
        std::thread::yield_now();
    }
    run(&server, &mut setup, &["APPEND", "lazy", "new"]);
    let stop = AtomicBool::new(false);
    let cuts_taken = AtomicUsize::new(0);
    let actively_expired = AtomicUsize::new(0);
    let cuts = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..N_WRITERS)
            .map(|seed| {
                let (server, cuts_taken) = (&server, &cuts_taken);
                scope.spawn(move || writer(server, seed as u64, cuts_taken))
            })
            .collect();
        scope.spawn(|| {
            loop {
                let now = crate::server::unix_ms();
                let cycle = super::active_expire_cycle(
                    &server,
                    now,
                    Instant::now() + Duration::from_millis(1),
                    None,
                );
                actively_expired.fetch_add(cycle.removed, Ordering::Relaxed);
                if stop.load(Ordering::Acquire) {
                    break;
                }
                std::thread::yield_now();
            }
        });
        scope.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                let taken = cut(&server);
                cuts.lock().unwrap().push(taken);
                cuts_taken.fetch_add(1, Ordering::Release);
            }
        });
        for writer in writers {
            writer.join().unwrap();
        }
        stop.store(true, Ordering::Release);
    });
    let (final_seq, live) = cut(&server);
    assert_eq!(
        server.effects.next(),
        final_seq,
        "every effect numbered was handed over"
    );
    assert!(server.effects.detach(&server.keyspace, id));
    let effects = std::mem::take(&mut *recorder.effects.lock().unwrap());
    let mut cuts = cuts.into_inner().unwrap();
    assert!(
        cuts.len() >= OPS_PER_WRITER / OPS_PER_CUT,
        "a writer waited for each"
    );
    cuts.push((final_seq, live));
    cuts.sort_by_key(|(seq, _)| *seq);

    // Every nondeterministic command was logged in its deterministic form.
    let names = command_names(&effects);
    for rewritten in [
        "SETEX",
        "PSETEX",
        "GETEX",
        "EXPIRE",
        "PEXPIRE",
        "INCRBYFLOAT",
        "HINCRBYFLOAT",
        "SPOP",
        "BLPOP",
        "BRPOP",
        "BLMOVE",
        "BRPOPLPUSH",
        "BLMPOP",
        "BZPOPMIN",
        "BZMPOP",
    ] {
        assert!(
            !names.contains_key(rewritten),
            "{rewritten} logged as is: {names:?}"
        );
    }
    for logged in [
        "PEXPIREAT",
        "PERSIST",
        "SREM",
        "LPOP",
        "RPOP",
        "LMOVE",
        "RPOPLPUSH",
        "LMPOP",
        "ZPOPMIN",
        "ZMPOP",
        "DEL",
        "HSET",
        "MOVE",
        "COPY",
    ] {
        assert!(names.contains_key(logged), "no {logged} among {names:?}");
    }
    for op in effects.iter().flat_map(|effect| &effect.ops) {
        if op.argv[0].eq_ignore_ascii_case(b"SET") {
            let options: Vec<_> = op.argv[3..]
                .iter()
                .map(|word| word.to_ascii_uppercase())
                .collect();
            assert!(
                !options.iter().any(|word| word == b"EX" || word == b"PX"),
                "a relative expiry logged: {op:?}"
            );
        }
    }
    assert!(
        effects
            .iter()
            .any(|effect| effect.transaction && effect.ops.len() > 1)
    );
    assert!(
        effects
            .iter()
            .any(|effect| effect.ops.iter().any(|op| op.db == 1))
    );
    // Keys expired both ways during the run: a command that found one expired logs its DEL
    // first, and the active cycle removed some (their DELs are what make the replay equal).
    assert!(effects.iter().any(|effect| !effect.transaction
        && effect.ops.len() > 1
        && effect.ops[0].argv[0] == "DEL"));
    assert!(actively_expired.load(Ordering::Relaxed) > 0);

    replay_and_compare(&effects, &cuts, &new_server());
}

fn effect(seq: u64, transaction: bool, ops: &[(usize, &[&[u8]])]) -> Effect {
    let mut number = Seq::FIRST;
    for _ in 1..seq {
        number = number.next();
    }
    Effect {
        seq: number,
        transaction,
        ops: ops
            .iter()
            .map(|(db, words)| super::Op {
                db: *db,
                argv: super::argv(words),
            })
            .collect(),
    }
}

/// Effects published out of number order reach consumers in order, each once; a detached
/// consumer gets nothing more.
#[test]
fn the_stream_hands_effects_over_in_number_order() {
    let server = new_server();
    let recorder = Arc::new(Recorder::default());
    let id = server.effects.attach(
        &server.keyspace,
        Arc::clone(&recorder) as Arc<dyn EffectConsumer>,
    );
    let del = |seq| effect(seq, false, &[(0, &[b"DEL", b"k"])]);
    server.effects.publish(del(3));
    server.effects.publish(del(2));
    assert!(
        recorder.effects.lock().unwrap().is_empty(),
        "1 has not arrived"
    );
    server.effects.publish(del(1));
    assert_eq!(recorder.effects.lock().unwrap().len(), 3);
    assert_eq!(server.effects.next().get(), 4);
    assert!(server.effects.detach(&server.keyspace, id));
    assert!(!server.effects.detach(&server.keyspace, id));
    server.effects.publish(del(4));
    assert_eq!(recorder.effects.lock().unwrap().len(), 3);
}

/// Every order in which five numbered effects can be published, each either owned
/// (`publish`) or as one borrowed command (`publish_command`, the command path's common case):
/// the consumer gets all five once, in number order, with the command each was published with.
/// Publication is one critical section under the stream's lock, so the orders of the calls
/// are every interleaving of concurrent publishers.
#[test]
fn every_publication_order_and_form_hands_over_in_number_order() {
    const N: usize = 5;
    let server = new_server();
    let key = |seq: usize| Bytes::from(format!("k{seq}"));
    let argv_of = |seq: usize| {
        vec![
            Bytes::from_static(b"SET"),
            key(seq),
            Bytes::from_static(b"v"),
        ]
    };
    let mut orders = vec![Vec::new()];
    for _ in 0..N {
        orders = orders
            .into_iter()
            .flat_map(|order: Vec<usize>| {
                (1..=N)
                    .filter(|seq| !order.contains(seq))
                    .map(|seq| {
                        let mut longer = order.clone();
                        longer.push(seq);
                        longer
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    assert_eq!(orders.len(), 120);
    let mut cases = 0;
    for order in &orders {
        for forms in 0..(1u32 << N) {
            let stream = super::EffectStream::default();
            let recorder = Arc::new(Recorder::default());
            let id = stream.attach(
                &server.keyspace,
                Arc::clone(&recorder) as Arc<dyn EffectConsumer>,
            );
            for &seq in order {
                let number = effect(seq as u64, false, &[]).seq;
                let db = seq % 2;
                if forms & (1 << (seq - 1)) != 0 {
                    stream.publish_command(number, db, &argv_of(seq));
                } else {
                    stream.publish(Effect::command(number, db, &argv_of(seq)));
                }
            }
            let effects = recorder.effects.lock().unwrap();
            assert_eq!(effects.len(), N, "order {order:?}, forms {forms:b}");
            for (at, effect) in effects.iter().enumerate() {
                assert_eq!(effect.ops.len(), 1);
                assert_eq!(effect.ops[0].db, (at + 1) % 2);
                assert_eq!(effect.ops[0].argv, argv_of(at + 1));
            }
            assert_eq!(stream.next().get(), N as u64 + 1);
            drop(effects);
            assert!(stream.detach(&server.keyspace, id));
            cases += 1;
        }
    }
    assert_eq!(cases, 120 * 32);
}

/// The rendered stream selects a database only when it changes and wraps a transaction of
/// several commands in MULTI ... EXEC.
#[test]
fn rendering_selects_databases_and_wraps_transactions() {
    let mut renderer = Renderer::default();
    let mut out = Vec::new();
    renderer.render(
        &effect(
            1,
            false,
            &[(0, &[b"DEL", b"a"]), (0, &[b"SET", b"a", b"1"])],
        ),
        &mut out,
    );
    renderer.render(
        &effect(2, true, &[(0, &[b"INCR", b"n"]), (1, &[b"INCR", b"n"])]),
        &mut out,
    );
    renderer.render(&effect(3, true, &[(1, &[b"INCR", b"n"])]), &mut out);
    // A transaction in another database: the SELECT comes before MULTI, as Redis 7.0 sends
    // it (the stream once had MULTI first: Redis's "propagation with eviction in MULTI").
    renderer.render(
        &effect(4, true, &[(2, &[b"INCR", b"x"]), (2, &[b"INCR", b"x"])]),
        &mut out,
    );
    let rendered: Vec<String> = out
        .iter()
        .map(|argv| {
            let words: Vec<_> = argv
                .iter()
                .map(|word| String::from_utf8_lossy(word))
                .collect();
            words.join(" ")
        })
        .collect();
    assert_eq!(
        rendered,
        [
            "SELECT 0", "DEL a", "SET a 1", "MULTI", "INCR n", "SELECT 1", "INCR n", "EXEC",
            "INCR n", "SELECT 2", "MULTI", "INCR x", "INCR x", "EXEC",
        ]
    );
}

/// RESTORE with a relative TTL is logged with the absolute deadline and ABSTTL, and a RESTORE
/// whose deadline has passed as the DEL of what REPLACE removed, as Redis propagates them: a
/// replay later must not move the deadline.
#[test]
fn restore_is_logged_with_an_absolute_ttl() {
    let server = new_server();
    let recorder = Arc::new(Recorder::default());
    let id = server.effects.attach(
        &server.keyspace,
        Arc::clone(&recorder) as Arc<dyn EffectConsumer>,
    );
    let mut setup = client(&server, false);
    run(&server, &mut setup, &["SET", "src", "value"]);
    let dump = run(&server, &mut setup, &["DUMP", "src"]);
    // The reply is `$<len>\r\n<payload>\r\n`.
    let start = dump.iter().position(|&b| b == b'\n').expect("bulk header") + 1;
    let payload = Bytes::copy_from_slice(&dump[start..dump.len() - 2]);
    let before = crate::server::unix_ms();
    let argv = |words: &[&[u8]]| -> Vec<Bytes> {
        words.iter().map(|w| Bytes::copy_from_slice(w)).collect()
    };
    let mut restore = argv(&[b"RESTORE", b"dst", b"100000"]);
    restore.push(payload.clone());
    assert_eq!(run_argv(&server, &mut setup, &restore), b"+OK\r\n");
    let mut expired = argv(&[b"RESTORE", b"src", b"1", b"0"]);
    expired[3] = payload;
    expired.push(Bytes::from_static(b"REPLACE"));
    expired.push(Bytes::from_static(b"ABSTTL"));
    assert_eq!(run_argv(&server, &mut setup, &expired), b"+OK\r\n");
    let effects = recorder.effects.lock().unwrap();
    let ops: Vec<&Vec<Bytes>> = effects
        .iter()
        .flat_map(|effect| &effect.ops)
        .map(|op| &op.argv)
        .collect();
    let logged = ops
        .iter()
        .find(|argv| argv[0].eq_ignore_ascii_case(b"RESTORE"))
        .expect("RESTORE logged");
    let deadline: u64 = std::str::from_utf8(&logged[2]).unwrap().parse().unwrap();
    assert!(deadline >= before + 100_000, "{deadline} is not absolute");
    assert!(logged.last().unwrap().eq_ignore_ascii_case(b"ABSTTL"));
    assert_eq!(
        *ops.last().unwrap(),
        &argv(&[b"DEL", b"src"]),
        "an expired RESTORE ... REPLACE logs the removal"
    );
    drop(effects);
    assert!(server.effects.detach(&server.keyspace, id));
}

/// Stream commands whose argv would not replay the same (generated ids, `~` trims, deliveries
/// and claims stamped with the clock) are logged as Redis propagates them; replaying the log on
/// an empty server gives the same entries, counters, groups and PELs.
#[test]
fn stream_effects_replay_to_the_same_stream() {
    let server = new_server();
    let recorder = Arc::new(Recorder::default());
    let id = server.effects.attach(
        &server.keyspace,
        Arc::clone(&recorder) as Arc<dyn EffectConsumer>,
    );
    let mut live = client(&server, false);
    for _ in 0..250 {
        run(&server, &mut live, &["XADD", "s", "*", "f", "v"]);
    }
    run(
        &server,
        &mut live,
        &["XADD", "s", "MAXLEN", "~", "120", "*", "f", "v"],
    );
    run(&server, &mut live, &["XTRIM", "s", "MINID", "~", "0"]);
    run(&server, &mut live, &["XGROUP", "CREATE", "s", "g", "0"]);
    run(
        &server,
        &mut live,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "alice",
            "COUNT",
            "3",
            "STREAMS",
            "s",
            ">",
        ],
    );
    run(
        &server,
        &mut live,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "bob",
            "NOACK",
            "COUNT",
            "2",
            "STREAMS",
            "s",
            ">",
        ],
    );
    run(
        &server,
        &mut live,
        &["XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "0"],
    );
    let pending = run(&server, &mut live, &["XPENDING", "s", "g", "-", "+", "1"]);
    let first = std::str::from_utf8(&pending)
        .unwrap()
        .split("\r\n")
        .nth(2)
        .unwrap()
        .to_string();
    run(
        &server,
        &mut live,
        &["XCLAIM", "s", "g", "carol", "0", &first],
    );
    run(
        &server,
        &mut live,
        &["XAUTOCLAIM", "s", "g", "dave", "0", "0", "COUNT", "1"],
    );
    let probes: [&[&str]; 3] = [
        &["XRANGE", "s", "-", "+"],
        &["XINFO", "GROUPS", "s"],
        &["XPENDING", "s", "g"],
    ];
    let expected: Vec<Vec<u8>> = probes.iter().map(|p| run(&server, &mut live, p)).collect();
    let effects = recorder.effects.lock().unwrap().clone();
    assert!(server.effects.detach(&server.keyspace, id));
    let names = command_names(&effects);
    assert!(!names.contains_key("XREADGROUP"), "{names:?}");
    assert!(names.contains_key("XCLAIM"), "{names:?}");
    let replica = new_server();
    let mut replay = client(&replica, true);
    for effect in &effects {
        for op in &effect.ops {
            let reply = run_argv(&replica, &mut replay, &op.argv);
            assert_ne!(
                reply.first(),
                Some(&b'-'),
                "{:?}: {}",
                op.argv,
                String::from_utf8_lossy(&reply)
            );
        }
    }
    let mut check = client(&replica, false);
    for (probe, want) in probes.iter().zip(&expected) {
        assert_eq!(
            String::from_utf8_lossy(&run(&replica, &mut check, probe)),
            String::from_utf8_lossy(want),
            "{probe:?}"
        );
    }
}

//! `maxmemory-clients` (Redis 7.0's client eviction, issue 17): when the clients' memory
//! (CLIENT LIST `tot-mem`, summed) reaches the limit, the largest clients are closed until it
//! is under, never one with CLIENT NO-EVICT on; the limit is absolute or a percentage of
//! `maxmemory`; INFO counts `evicted_clients`.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use forkless_tests::resp::cmd;
use forkless_tests::{RawConn, TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

const KIB: usize = 1024;

/// A connection that sent the start of a `SET k <len>` whose value never completes: `sent`
/// of its `len` bytes sit in the server's query buffer. The server may evict it before it has
/// sent them all (its buffer passes the limit part way through): the write then fails with a
/// reset or a broken pipe, which is the eviction the callers check for with [`closed`].
fn partial_set(server: &TestServer, len: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${len}\r\n").as_bytes())
        .unwrap();
    if let Err(err) = stream
        .write_all(&vec![b'x'; sent])
        .and_then(|()| stream.flush())
    {
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{err}"
        );
    }
    stream
}

/// Returns true if and only if the server closed `stream` (EOF or reset) within the timeout.
fn closed(stream: &mut TcpStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A connection that turned CLIENT NO-EVICT on.
fn no_evict_conn(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"*3\r\n$6\r\nCLIENT\r\n$8\r\nNO-EVICT\r\n$2\r\non\r\n")
        .unwrap();
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
    stream
}

/// INFO's `evicted_clients`, read on `admin` (a connection with CLIENT NO-EVICT on: while
/// a protected client keeps the total over the limit, every other client goes, as in Redis).
fn evicted_clients(admin: &mut RawConn) -> u64 {
    let info = String::from_utf8(admin.call(&[b"INFO", b"stats"])).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("evicted_clients:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The `tot-mem` CLIENT LIST shows for the client whose `qbuf` is at least `at_least`.
fn tot_mem_of_big(admin: &mut RawConn, at_least: u64) -> Option<u64> {
    let list = String::from_utf8(admin.call(&[b"CLIENT", b"LIST"])).unwrap();
    list.lines().find_map(|line| {
        let field = |name: &str| -> Option<u64> {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
                .parse()
                .ok()
        };
        (field("qbuf")? >= at_least).then(|| field("tot-mem"))?
    })
}

#[test]
fn the_largest_client_is_evicted_first_and_only_until_under_the_limit() {
    let server = TestServer::start(BIN, &["--save", ""]);
    let mut raw = server.raw();
    assert_eq!(cmd(&mut raw, "CLIENT NO-EVICT on"), "+OK\r\n");
    let mut big = partial_set(&server, 1024 * KIB, 600 * KIB);
    let mut small = partial_set(&server, 256 * KIB, 200 * KIB);
    // Both query buffers show in CLIENT LIST (qbuf and tot-mem) before the limit is set.
    assert!(wait_until(Duration::from_secs(10), || {
        tot_mem_of_big(&mut raw, 500 * 1024).is_some()
    }));
    let big_mem = tot_mem_of_big(&mut raw, 500 * 1024).unwrap();
    assert!(big_mem >= 600 * 1024, "tot-mem {big_mem}");
    assert_eq!(evicted_clients(&mut raw), 0);
    // Over the limit with both; under it once the big one is gone.
    assert_eq!(
        cmd(&mut raw, "CONFIG SET maxmemory-clients 500kb"),
        "+OK\r\n"
    );
    assert!(closed(&mut big, Duration::from_secs(10)), "big not evicted");
    assert!(
        !closed(&mut small, Duration::from_millis(500)),
        "small evicted"
    );
    assert_eq!(evicted_clients(&mut raw), 1);
    assert_eq!(cmd(&mut raw, "PING"), "+PONG\r\n");
    // CONFIG RESETSTAT zeroes the count; 0 turns client eviction off.
    assert_eq!(cmd(&mut raw, "CONFIG RESETSTAT"), "+OK\r\n");
    assert_eq!(evicted_clients(&mut raw), 0);
    assert_eq!(cmd(&mut raw, "CONFIG SET maxmemory-clients 0"), "+OK\r\n");
    let mut third = partial_set(&server, 1024 * KIB, 600 * KIB);
    assert!(!closed(&mut third, Duration::from_millis(500)));
    assert_eq!(evicted_clients(&mut raw), 0);
}

#[test]
fn a_percentage_of_maxmemory_and_no_evict() {
    let server = TestServer::start(
        BIN,
        &[
            "--save",
            "",
            "--maxmemory",
            "100mb",
            "--maxmemory-clients",
            "1%",
        ],
    );
    let mut raw = server.raw();
    assert_eq!(
        cmd(&mut raw, "CONFIG GET maxmemory-clients"),
        "*2\r\n$17\r\nmaxmemory-clients\r\n$2\r\n1%\r\n"
    );
    assert_eq!(cmd(&mut raw, "CLIENT NO-EVICT on"), "+OK\r\n");
    // A NO-EVICT client and a plain one, each over 1% of 100 MiB on its own: only the plain
    // one goes, though the protected one alone keeps the clients over the limit.
    let mut protected = no_evict_conn(&server);
    protected
        .write_all(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", 2048 * KIB).as_bytes())
        .unwrap();
    protected.write_all(&vec![b'v'; 1536 * KIB]).unwrap();
    let mut plain = partial_set(&server, 2048 * KIB, 1536 * KIB);
    assert!(closed(&mut plain, Duration::from_secs(10)));
    assert_eq!(evicted_clients(&mut raw), 1);
    assert!(!closed(&mut protected, Duration::from_millis(500)));
    assert_eq!(evicted_clients(&mut raw), 1);
    assert_eq!(cmd(&mut raw, "PING"), "+PONG\r\n");
}

#[test]
fn no_evict_protects_a_client_over_the_limit_until_it_turns_it_off() {
    let server = TestServer::start(BIN, &["--save", "", "--maxmemory-clients", "300kb"]);
    let mut raw = server.raw();
    assert_eq!(cmd(&mut raw, "CLIENT NO-EVICT on"), "+OK\r\n");
    // A client whose own query buffer is over the limit, with NO-EVICT on: kept.
    let mut stream = no_evict_conn(&server);
    stream
        .write_all(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", 4 * 1024 * 1024).as_bytes())
        .unwrap();
    stream.write_all(&vec![b'x'; 400 * KIB]).unwrap();
    assert!(!closed(&mut stream, Duration::from_millis(700)));
    assert_eq!(evicted_clients(&mut raw), 0);
    // A partial command cannot turn it off; a new connection that turns it off goes at once.
    let mut other = TcpStream::connect(server.addr).unwrap();
    other
        .write_all(b"*3\r\n$6\r\nCLIENT\r\n$8\r\nNO-EVICT\r\n$3\r\noff\r\n")
        .unwrap();
    // The server may close it before it has written everything.
    let _ = other.write_all(b"*2\r\n$4\r\nECHO\r\n$1048576\r\n");
    let _ = other.write_all(&vec![b'y'; 400 * KIB]);
    assert!(closed(&mut other, Duration::from_secs(10)));
    assert_eq!(evicted_clients(&mut raw), 1);
    assert!(!closed(&mut stream, Duration::from_millis(300)));
}

#[test]
fn arguments_of_an_unfinished_command_count_and_show_as_argv_mem() {
    let server = TestServer::start(BIN, &["--save", ""]);
    let mut raw = server.raw();
    assert_eq!(cmd(&mut raw, "CLIENT NO-EVICT on"), "+OK\r\n");
    // 249 of 250 arguments of 1000 bytes: parsed and held, none of it in the query buffer.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(b"*250\r\n").unwrap();
    for _ in 0..249 {
        stream.write_all(b"$1000\r\n").unwrap();
        stream.write_all(&[b'x'; 1000]).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    let argv_mem = || {
        let list = String::from_utf8(raw_list(&server)).unwrap();
        list.lines()
            .filter_map(|line| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix("argv-mem="))?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(10), || argv_mem() >= 249 * 1000),
        "argv-mem {}",
        argv_mem()
    );
    assert_eq!(
        cmd(&mut raw, "CONFIG SET maxmemory-clients 200kb"),
        "+OK\r\n"
    );
    assert!(closed(&mut stream, Duration::from_secs(10)));
    assert_eq!(evicted_clients(&mut raw), 1);
}

/// CLIENT LIST on a fresh connection.
fn raw_list(server: &TestServer) -> Vec<u8> {
    server.raw().call(&[b"CLIENT", b"LIST"])
}

/// A numeric field of CLIENT LIST for the client named `name`; None once it is gone.
fn field_of_named(admin: &mut RawConn, name: &str, field: &str) -> Option<u64> {
    let list = String::from_utf8(admin.call(&[b"CLIENT", b"LIST"])).unwrap();
    let line = list
        .lines()
        .find(|line| line.split(' ').any(|kv| kv == format!("name={name}")))?;
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(field)?.strip_prefix('='))?
        .parse()
        .ok()
}

/// A connection named `name` (CLIENT SETNAME answered).
fn named_conn(server: &TestServer, name: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(
            format!(
                "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n${}\r\n{name}\r\n",
                name.len()
            )
            .as_bytes(),
        )
        .unwrap();
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
    stream
}

/// `GET k`, eight times.
fn get_batch() -> Vec<u8> {
    b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".repeat(8)
}

/// Sends `GET k` on `stream` over and over without reading a reply, until writing fails (the
/// server closed the connection). Returns how many it sent.
fn send_gets_until_closed(mut stream: TcpStream) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let batch = get_batch();
        let mut sent = 0;
        while stream.write_all(&batch).is_ok() {
            sent += 8;
        }
        sent
    })
}

/// Value of `k` in the output buffer tests: each `GET k` reply is about 200 kB.
const VALUE_LEN: usize = 200_000;

/// A client that pipelines commands and never reads its replies: as in Redis, the server
/// goes on reading and running its commands while the replies pile up in its output buffer,
/// which counts in its memory, so `maxmemory-clients` evicts it (Redis's "client evicted due
/// to output buf"). Forkless used to stop reading such a client until it read, so its output
/// buffer never grew and it was never evicted. Other clients are served meanwhile.
#[test]
fn a_client_that_never_reads_is_evicted_over_maxmemory_clients() {
    let server = TestServer::start(BIN, &["--save", "", "--maxmemory-clients", "3mb"]);
    let mut admin = server.raw();
    assert_eq!(cmd(&mut admin, "CLIENT NO-EVICT on"), "+OK\r\n");
    assert_eq!(
        cmd(&mut admin, &format!("SETRANGE k {} v", VALUE_LEN - 1)),
        format!(":{VALUE_LEN}\r\n")
    );
    let stream = named_conn(&server, "reader");
    let writer = send_gets_until_closed(stream.try_clone().unwrap());
    let mut max_omem = 0;
    let gone = wait_until(Duration::from_secs(30), || {
        match field_of_named(&mut admin, "reader", "omem") {
            Some(omem) => {
                max_omem = max_omem.max(omem);
                false
            }
            None => true,
        }
    });
    assert!(gone, "the client that never reads was not evicted");
    // Whatever CLIENT LIST showed of its output buffer was under the limit.
    assert!(max_omem < 3 * 1024 * 1024, "omem {max_omem}");
    assert_eq!(evicted_clients(&mut admin), 1);
    let sent = writer.join().unwrap();
    assert!(sent > 0);
    assert_eq!(cmd(&mut admin, "PING"), "+PONG\r\n");
    assert_eq!(cmd(&mut admin, "STRLEN k"), format!(":{VALUE_LEN}\r\n"));
}

/// With neither `maxmemory-clients` nor an output buffer limit, a client that does not read
/// makes its output buffer grow past what the kernel's socket buffers hold (Redis's "client
/// total memory grows during maxmemory-clients disabled"); setting `maxmemory-clients` then
/// evicts it.
#[test]
fn the_output_buffer_grows_until_maxmemory_clients_is_set() {
    let server = TestServer::start(BIN, &["--save", ""]);
    let mut admin = server.raw();
    assert_eq!(cmd(&mut admin, "CLIENT NO-EVICT on"), "+OK\r\n");
    assert_eq!(
        cmd(&mut admin, &format!("SETRANGE k {} v", VALUE_LEN - 1)),
        format!(":{VALUE_LEN}\r\n")
    );
    let stream = named_conn(&server, "reader");
    let writer = send_gets_until_closed(stream.try_clone().unwrap());
    assert!(
        wait_until(Duration::from_secs(30), || {
            field_of_named(&mut admin, "reader", "tot-mem").unwrap_or(0) > 10 * 1024 * 1024
        }),
        "tot-mem {:?}",
        field_of_named(&mut admin, "reader", "tot-mem")
    );
    assert_eq!(evicted_clients(&mut admin), 0);
    assert_eq!(
        cmd(&mut admin, "CONFIG SET maxmemory-clients 1mb"),
        "+OK\r\n"
    );
    assert!(wait_until(Duration::from_secs(10), || {
        field_of_named(&mut admin, "reader", "tot-mem").is_none()
    }));
    assert_eq!(evicted_clients(&mut admin), 1);
    writer.join().unwrap();
    assert_eq!(cmd(&mut admin, "PING"), "+PONG\r\n");
}

/// `client-output-buffer-backpressure`: with that much pending for a client that does not
/// read, the server stops reading its commands (without closing it) until it has read its
/// replies; then every reply arrives, in order.
#[test]
fn backpressure_bounds_the_output_buffer_of_a_client_that_does_not_read() {
    let server = TestServer::start(
        BIN,
        &["--save", "", "--client-output-buffer-backpressure", "2mb"],
    );
    let mut admin = server.raw();
    assert_eq!(
        cmd(&mut admin, &format!("SETRANGE k {} v", VALUE_LEN - 1)),
        format!(":{VALUE_LEN}\r\n")
    );
    let mut stream = named_conn(&server, "reader");
    // 400 replies of 200 kB: 80 MB, more than the socket buffers and the bound together.
    const N_GETS: usize = 400;
    let mut writer_stream = stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let batch = get_batch();
        for _ in 0..N_GETS / 8 {
            writer_stream.write_all(&batch).unwrap();
        }
    });
    assert!(wait_until(Duration::from_secs(30), || {
        field_of_named(&mut admin, "reader", "omem").unwrap_or(0) >= 1024 * 1024
    }));
    // Once there, it stays within the bound plus one batch of replies it was running.
    for _ in 0..50 {
        let omem = field_of_named(&mut admin, "reader", "omem").unwrap();
        assert!(omem < 2 * 1024 * 1024 + 8 * VALUE_LEN as u64, "omem {omem}");
    }
    assert_eq!(cmd(&mut admin, "PING"), "+PONG\r\n");
    // Reading now gets every reply.
    let reply_len = format!("${VALUE_LEN}\r\n").len() + VALUE_LEN + 2;
    let mut remaining = N_GETS * reply_len;
    let mut buf = vec![0u8; 256 * 1024];
    let mut seen = Vec::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    while remaining > 0 {
        let n = stream.read(&mut buf[..remaining.min(256 * 1024)]).unwrap();
        assert!(n > 0, "closed with {remaining} bytes of replies unread");
        if seen.len() < reply_len {
            seen.extend_from_slice(&buf[..n.min(reply_len - seen.len())]);
        }
        remaining -= n;
    }
    assert!(seen.starts_with(format!("${VALUE_LEN}\r\n").as_bytes()));
    writer.join().unwrap();
    assert_eq!(evicted_clients(&mut admin), 0);
}

/// A big argument still arriving costs its size, not twice it: the query buffer grows to
/// exactly what the argument needs, as Redis's does for a big argument. (The buffer was grown
/// with `reserve`, which doubles its allocation, so `qbuf-free` equalled `qbuf` and ten such
/// clients at 30% of `maxmemory-clients` each got some of them evicted: Redis's "decrease
/// maxmemory-clients causes client eviction" found it.)
#[test]
fn a_big_argument_being_received_costs_its_size_once() {
    let server = TestServer::start(BIN, &["--save", ""]);
    let mut admin = server.raw();
    for len in [314_572, 1024 * KIB, 5_000_000] {
        // All of the argument but its final CRLF.
        let _stream = partial_set(&server, len, len);
        let len = len as u64;
        assert!(
            wait_until(Duration::from_secs(10), || {
                tot_mem_of_big(&mut admin, len).is_some()
            }),
            "qbuf never reached {len}"
        );
        let tot_mem = tot_mem_of_big(&mut admin, len).unwrap();
        assert!(
            tot_mem < len + len / 10 + 64 * KIB as u64,
            "tot-mem {tot_mem} for an argument of {len}"
        );
    }
}

/// CLIENT LIST describes what other clients had already sent when it ran, as Redis's one
/// thread reads every socket before it serves the next command: right after a client has
/// written half of a big argument, another connection's CLIENT LIST counts it (Redis's
/// "client evicted due to percentage of maxmemory" asks without waiting). Here each connection
/// reads on its own task; CLIENT LIST lets those with unread bytes take their turn first.
#[test]
fn client_list_counts_what_another_client_has_just_sent() {
    let server = TestServer::start(BIN, &["--save", ""]);
    let mut admin = server.raw();
    let len: usize = 210_000;
    for round in 0..20 {
        let mut stream = named_conn(&server, "big");
        stream
            .write_all(format!("*1\r\n${len}\r\n").as_bytes())
            .unwrap();
        stream.write_all(&vec![b'v'; len]).unwrap();
        let tot_mem = field_of_named(&mut admin, "big", "tot-mem").unwrap();
        assert!(tot_mem >= len as u64, "round {round}: tot-mem {tot_mem}");
        drop(stream);
        assert!(wait_until(Duration::from_secs(10), || {
            field_of_named(&mut admin, "big", "tot-mem").is_none()
        }));
    }
}

/// A command whose reply passes `client-output-buffer-limit`'s hard limit closes its client
/// before the next CLIENT LIST, however soon another connection sends it (Redis's "avoid
/// client eviction when client is freed by output buffer limit" asks right away).
#[test]
fn a_client_over_its_output_buffer_limit_is_gone_for_the_next_client_list() {
    let server = TestServer::start(
        BIN,
        &[
            "--save",
            "",
            "--client-output-buffer-limit",
            "normal 1mb 0 0",
        ],
    );
    let mut admin = server.raw();
    assert_eq!(cmd(&mut admin, "SETRANGE k 2000000 v"), ":2000001\r\n");
    for round in 0..20 {
        let name = format!("obuf{round}");
        let mut stream = named_conn(&server, &name);
        stream.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
        assert_eq!(
            field_of_named(&mut admin, &name, "tot-mem"),
            None,
            "round {round}: the client over its limit is still listed"
        );
        assert!(closed(&mut stream, Duration::from_secs(10)));
    }
}

/// A MONITOR client that does not read: its lines, written by other clients' commands, pile
/// up in the connection's queue while it waits for the client to read its output buffer.
/// They are bounded as its output buffer is: by `client-output-buffer-limit normal`'s hard
/// limit, or without one by `client-output-buffer-backpressure` (the connection cannot stop
/// other clients' commands as it stops reading its own): past it the client is closed.
#[test]
fn pushes_to_a_client_that_does_not_read_are_bounded() {
    for args in [
        ["--client-output-buffer-limit", "normal 1mb 0 0"],
        ["--client-output-buffer-backpressure", "1mb"],
    ] {
        let server = TestServer::start(BIN, &["--save", "", args[0], args[1]]);
        let mut admin = server.raw();
        let mut monitor = named_conn(&server, "mon");
        monitor.write_all(b"*1\r\n$7\r\nMONITOR\r\n").unwrap();
        let mut reply = [0u8; 5];
        monitor.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"+OK\r\n");
        let value = vec![b'v'; 100 * KIB];
        let mut writer = server.raw();
        let mut sets = 0;
        while field_of_named(&mut admin, "mon", "tot-mem").is_some() {
            assert!(sets < 2_000, "{args:?}: the monitor is still there");
            assert_eq!(writer.call(&[b"SET", b"k", &value]), b"+OK\r\n");
            sets += 1;
        }
        assert!(sets > 1, "{args:?}");
        assert_eq!(cmd(&mut admin, "PING"), "+PONG\r\n");
    }
}

/// A field of INFO, read on `admin`.
fn info_field(admin: &mut RawConn, section: &str, name: &str) -> u64 {
    let info = String::from_utf8(admin.call(&[b"INFO", section.as_bytes()])).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Regression (Redis's unit/maxmemory, "eviction due to output buffers of pubsub, client
/// eviction: true", failed so on a loaded machine): messages queued to subscribers count in
/// their memory as soon as they are queued, but client eviction ran only once a subscriber's
/// own connection accounted them (or on the cron), so the publisher's next command found the
/// server over `maxmemory` first and evicted keys. Key eviction now runs client eviction
/// first, as Redis's `processCommand` does. The server runs one worker thread, which a script
/// keeps busy while a batch of PUBLISHes arrives whole: the publisher's connection then runs
/// it without the subscribers' connections taking a turn in between.
#[test]
fn subscribers_over_maxmemory_clients_go_before_keys() {
    const BATCH: usize = 50;
    let server = TestServer::start(
        BIN,
        &[
            "--save",
            "",
            "--worker-threads",
            "1",
            "--maxmemory-policy",
            "allkeys-lru",
        ],
    );
    let mut admin = server.raw();
    assert_eq!(cmd(&mut admin, "CLIENT NO-EVICT on"), "+OK\r\n");
    for key in 0..20 {
        assert_eq!(
            cmd(&mut admin, &format!("SETRANGE {key} 100000 x")),
            ":100001\r\n"
        );
    }
    let subscribers: Vec<RawConn> = (0..5)
        .map(|_| {
            let mut subscriber = server.raw();
            subscriber.send_command(&[b"SUBSCRIBE", b"bla"]);
            subscriber.read_reply();
            subscriber
        })
        .collect();
    let message = vec![b'x'; 100 * KIB];
    let used = info_field(&mut admin, "memory", "used_memory");
    let clients = info_field(&mut admin, "memory", "mem_clients_normal");
    // The batch allocates 5 MB of messages (a message is one copy, shared by its subscribers)
    // and adds 25 MB to the subscribers' figures: past `maxmemory-clients` at its third
    // message, past `maxmemory` well before its end.
    let maxmemory = used + 3 * 1024 * KIB as u64;
    let maxmemory_clients = clients + 1024 * KIB as u64;
    assert_eq!(
        cmd(&mut admin, &format!("CONFIG SET maxmemory {maxmemory}")),
        "+OK\r\n"
    );
    assert_eq!(
        cmd(
            &mut admin,
            &format!("CONFIG SET maxmemory-clients {maxmemory_clients}")
        ),
        "+OK\r\n"
    );
    let mut stall = server.raw();
    stall.send_command(&[
        b"EVAL",
        b"local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] \
          repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > 500000 \
          return 1",
        b"0",
    ]);
    // Not a synchronisation: the script needs no signal to have started, only the bug does to
    // show (with it started, the whole batch waits for the one worker).
    std::thread::sleep(Duration::from_millis(100));
    let mut batch = Vec::new();
    for _ in 0..BATCH {
        batch.extend_from_slice(
            format!("*3\r\n$7\r\nPUBLISH\r\n$3\r\nbla\r\n${}\r\n", message.len()).as_bytes(),
        );
        batch.extend_from_slice(&message);
        batch.extend_from_slice(b"\r\n");
    }
    admin.send(&batch);
    for _ in 0..BATCH {
        let reply = admin.read_reply();
        assert!(
            reply.starts_with(b":"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }
    assert_eq!(stall.read_reply(), b":1\r\n");
    assert_eq!(info_field(&mut admin, "stats", "evicted_keys"), 0);
    assert_eq!(cmd(&mut admin, "DBSIZE"), ":20\r\n");
    assert!(evicted_clients(&mut admin) > 0);
    drop(subscribers);
}

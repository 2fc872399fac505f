//! Loading the AOF at startup: the manifest, the base (an RDB, or commands), then each incr
//! file's commands replayed through the command table by a replay client, as Redis 7.0's
//! `loadAppendOnlyFiles` does.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use forkless_protocol::{Out, RespVersion};

use crate::cmd::{self, Client};
use crate::server::{ClientHandle, Server};

/// How a file of commands ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Every byte was a complete command.
    Clean,
    /// The last command stops early: the valid part ends at this offset.
    Truncated(u64),
}

/// A file that is not a command stream: where and why.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Corrupt {
    pub(crate) offset: u64,
}

/// Splits `data` into commands (`*<n>\r\n` then `$<len>\r\n<bytes>\r\n` each, and `#...`
/// annotation lines, which are skipped), calling `command` with each and the offset just past
/// it. A last command cut short is `Truncated`; anything else malformed is `Corrupt`.
pub(crate) fn parse_commands(
    data: &[u8],
    mut command: impl FnMut(Vec<Bytes>, u64) -> Result<(), String>,
) -> Result<Result<Ending, Corrupt>, String> {
    let mut pos = 0usize;
    while pos < data.len() {
        let start = pos;
        let truncated = Ok(Ok(Ending::Truncated(start as u64)));
        let corrupt = Ok(Err(Corrupt {
            offset: start as u64,
        }));
        let Some(rest) = data.get(pos..) else { break };
        if rest.first() == Some(&b'#') {
            // An annotation (`#TS:...`), one line.
            match find_crlf(rest) {
                Some(end) => {
                    pos += end + 2;
                    continue;
                }
                None => return truncated,
            }
        }
        if rest.first() != Some(&b'*') {
            return corrupt;
        }
        let Some((count, used)) = read_number(rest, 1) else {
            return if find_crlf(rest).is_none() {
                truncated
            } else {
                corrupt
            };
        };
        pos += used;
        if count < 1 {
            return corrupt;
        }
        let mut argv = Vec::new();
        for _ in 0..count {
            let Some(rest) = data.get(pos..) else {
                return truncated;
            };
            if rest.is_empty() {
                return truncated;
            }
            if rest.first() != Some(&b'$') {
                return corrupt;
            }
            let Some((len, used)) = read_number(rest, 1) else {
                return if find_crlf(rest).is_none() {
                    truncated
                } else {
                    corrupt
                };
            };
            let Ok(len) = usize::try_from(len) else {
                return corrupt;
            };
            pos += used;
            let Some(arg) = data.get(pos..pos.saturating_add(len)) else {
                return truncated;
            };
            match data.get(pos + len..pos + len + 2) {
                Some(b"\r\n") => {}
                Some(_) => return corrupt,
                None => return truncated,
            }
            argv.push(Bytes::copy_from_slice(arg));
            pos += len + 2;
        }
        command(argv, pos as u64)?;
    }
    Ok(Ok(Ending::Clean))
}

/// How much [`parse_stream`] reads at a time: memory holds about this much of a file, not the
/// whole file, plus a command that does not fit in it.
const CHUNK: usize = 1 << 20;

/// Why [`parse_stream`] stopped before the end.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The command callback's error.
    Command(String),
    /// Reading the file failed.
    Read(std::io::Error),
}

/// [`parse_commands`] over a reader, [`CHUNK`] bytes at a time, with offsets counted from
/// the reader's first byte. A command cut by a chunk's end is parsed again once more bytes are
/// in (the parse of a cut command is `Truncated` at its start); one larger than a chunk
/// doubles the read until it fits, so a huge command costs a few re-parses, not one per chunk.
pub(crate) fn parse_stream(
    reader: impl std::io::Read,
    command: impl FnMut(Vec<Bytes>, u64) -> Result<(), String>,
) -> Result<Result<Ending, Corrupt>, Stop> {
    parse_chunks(reader, CHUNK, command)
}

/// [`parse_stream`] with the chunk size a parameter (the tests use tiny ones).
fn parse_chunks(
    mut reader: impl std::io::Read,
    chunk: usize,
    mut command: impl FnMut(Vec<Bytes>, u64) -> Result<(), String>,
) -> Result<Result<Ending, Corrupt>, Stop> {
    use std::io::Read as _;

    let chunk = chunk.max(1);
    let mut buf: Vec<u8> = Vec::new();
    // The stream offset of `buf`'s first byte.
    let mut base = 0u64;
    let mut want = chunk;
    loop {
        let want_bytes = u64::try_from(want).unwrap_or(u64::MAX);
        let read = reader
            .by_ref()
            .take(want_bytes)
            .read_to_end(&mut buf)
            .map_err(Stop::Read)?;
        let at_end = read < want;
        let outcome =
            parse_commands(&buf, |argv, end| command(argv, base + end)).map_err(Stop::Command)?;
        let parsed = match outcome {
            Err(Corrupt { offset }) => {
                return Ok(Err(Corrupt {
                    offset: base + offset,
                }));
            }
            Ok(Ending::Clean) if at_end => return Ok(Ok(Ending::Clean)),
            Ok(Ending::Truncated(at)) if at_end => {
                return Ok(Ok(Ending::Truncated(base + at)));
            }
            Ok(Ending::Clean) => buf.len(),
            Ok(Ending::Truncated(at)) => usize::try_from(at).unwrap_or(buf.len()),
        };
        // Nothing complete in a full buffer: one command longer than it; read as much again.
        want = if parsed == 0 {
            buf.len().max(chunk)
        } else {
            chunk
        };
        buf.drain(..parsed);
        base += parsed as u64;
    }
}

fn find_crlf(data: &[u8]) -> Option<usize> {
    data.windows(2).position(|pair| pair == b"\r\n")
}

/// Reads the decimal number after the type byte up to its CRLF: the number and the bytes used.
fn read_number(data: &[u8], skip: usize) -> Option<(i64, usize)> {
    let end = find_crlf(data)?;
    let digits = std::str::from_utf8(data.get(skip..end)?).ok()?;
    if digits.len() > 19 {
        return None;
    }
    Some((digits.parse().ok()?, end + 2))
}

/// A client that replays the AOF: authenticated, at time 0 (nothing expires on its own).
pub(crate) fn replay_client(server: &Server) -> Client {
    let addr: SocketAddr = ([0, 0, 0, 0], 0).into();
    replay_client_at(server, addr, addr)
}

/// A replay client with the addresses CLIENT LIST shows: a replica's master client, which
/// applies its primary's stream as the AOF's client applies the file.
pub(crate) fn replay_client_at(
    server: &Server,
    addr: SocketAddr,
    local_addr: SocketAddr,
) -> Client {
    let id = server.clients.next_id();
    // Nothing is pushed to the replay client (it runs no MONITOR or tracking).
    let (push, pushes) = tokio::sync::mpsc::unbounded_channel();
    let handle = Arc::new(ClientHandle {
        id,
        addr: addr.into(),
        local_addr: local_addr.into(),
        created: Instant::now(),
        last_interaction_ms: Default::default(),
        name: Default::default(),
        db: Default::default(),
        resp: 2.into(),
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
        replay: true,
        conn: cmd::client::ConnState::new(pushes),
        acl: crate::acl::ClientAcl::superuser(),
        acl_caller: None,
    }
}

/// What loading one command file found.
#[derive(Debug)]
pub(crate) struct Replayed {
    pub(crate) commands: u64,
    /// Where the valid part ends when the file's last command was cut short (or an
    /// unfinished MULTI reverted), else None.
    pub(crate) truncated_at: Option<u64>,
}

/// Replays the commands `reader` holds, read from `path` at offset `start` on, a chunk at a
/// time ([`parse_stream`]). Err is the fatal error, naming the file and the offset.
pub(crate) fn replay_file(
    server: &Server,
    client: &mut Client,
    path: &Path,
    reader: impl std::io::Read,
    start: u64,
) -> Result<Replayed, String> {
    let name = path.display();
    let mut commands = 0u64;
    let mut multi_start: Option<u64> = None;
    let mut offset = start;
    let outcome = parse_stream(reader, |argv, end| {
        let end = start + end;
        let start = offset;
        offset = end;
        // INFO's loading_loaded_bytes, as the replay goes.
        server
            .persistence
            .loading
            .loaded_bytes
            .fetch_add(end - start, std::sync::atomic::Ordering::Relaxed);
        let Some(first) = argv.first() else {
            return Ok(());
        };
        if cmd::lookup(first).is_none() {
            return Err(format!(
                "Unknown command '{}' reading the append only file {name} at offset {start}",
                String::from_utf8_lossy(first)
            ));
        }
        if first.eq_ignore_ascii_case(b"multi") {
            multi_start = Some(start);
        } else if first.eq_ignore_ascii_case(b"exec") {
            multi_start = None;
        }
        let mut out = Out::new(RespVersion::Resp2);
        cmd::execute(server, client, &mut out, &argv);
        client.blocked = None;
        commands += 1;
        Ok(())
    })
    .map_err(|stop| match stop {
        Stop::Command(err) => err,
        Stop::Read(err) => format!(
            "Unrecoverable error reading the append only file {name}: {}",
            forkless_snapshot::backend::fork::strerror(&err)
        ),
    })?;
    let outcome = outcome.map(|ending| match ending {
        Ending::Truncated(at) => Ending::Truncated(start + at),
        Ending::Clean => Ending::Clean,
    });
    let outcome = outcome.map_err(|Corrupt { offset }| Corrupt {
        offset: start + offset,
    });
    match outcome {
        Err(Corrupt { offset }) => Err(format!(
            "Bad file format reading the append only file {name}: make a backup of your AOF \
             file, then use ./redis-check-aof --fix <filename.manifest> (offset {offset})"
        )),
        Ok(Ending::Clean) => Ok(Replayed {
            commands,
            truncated_at: multi_start,
        }),
        Ok(Ending::Truncated(at)) => Ok(Replayed {
            commands,
            truncated_at: Some(multi_start.unwrap_or(at)),
        }),
    }
}

/// An AOF file of the manifest that cannot be read, in Redis's words
/// (`loadSingleAppendOnlyFile`).
fn open_failed(name: &str, err: &std::io::Error) -> anyhow::Error {
    let reason = forkless_snapshot::backend::fork::strerror(err);
    if err.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!("The append log file {name} doesn't exist: {reason}")
    } else {
        anyhow::anyhow!("Fatal error: can't open the append log file {name} for reading: {reason}")
    }
}

/// Redis 7.0's upgrade of a pre-7.0 AOF (aof.c `loadAppendOnlyFiles`, `aofUpgradePrepare`):
/// when `dir` holds a single `appendfilename` file and the AOF directory does not exist, or
/// its manifest lists nothing, or lists only that file as the base while the directory lacks
/// it (an upgrade interrupted before the move), the manifest is written with that file as
/// base 1 and the file is moved into the directory; the load then goes on as usual and opens
/// the first incr file. A manifest that does not parse is left to the load, which refuses it.
fn upgrade_old_style(dir: &Path, dirname: &str, names: &super::Names) -> anyhow::Result<()> {
    use super::manifest::{Entry, FileType, Manifest};

    let old = dir.join(&names.filename);
    if !std::fs::metadata(&old).is_ok_and(|metadata| metadata.is_file()) {
        return Ok(());
    }
    let mut manifest = Manifest::default();
    if names.dir.is_dir() {
        match std::fs::read(names.dir.join(names.manifest())) {
            Ok(text) => match Manifest::parse(&text) {
                Ok(parsed) => manifest = parsed,
                Err(_) => return Ok(()),
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return Ok(()),
        }
        let empty = manifest.base.is_none() && manifest.incrs.is_empty();
        let interrupted = manifest.incrs.is_empty()
            && manifest
                .base
                .as_ref()
                .is_some_and(|base| base.name == names.filename)
            && !names.dir.join(&names.filename).exists();
        if !empty && !interrupted {
            return Ok(());
        }
    }
    std::fs::create_dir_all(&names.dir).map_err(|err| {
        anyhow::anyhow!(
            "Can't open or create append-only dir {}: {}",
            names.dir.display(),
            forkless_snapshot::backend::fork::strerror(&err)
        )
    })?;
    manifest.base = Some(Entry {
        name: names.filename.clone(),
        seq: 1,
        kind: FileType::Base,
    });
    manifest
        .persist(&names.dir, &names.manifest())
        .map_err(|err| anyhow::anyhow!("Can't persist the AOF manifest: {err}"))?;
    std::fs::rename(&old, names.dir.join(&names.filename)).map_err(|err| {
        anyhow::anyhow!(
            "Error trying to move the old AOF file {} into dir {dirname}: {}",
            names.filename,
            forkless_snapshot::backend::fork::strerror(&err)
        )
    })?;
    tracing::info!(
        "Successfully migrated an old-style AOF file ({}) into the AOF directory ({dirname}).",
        names.filename,
    );
    Ok(())
}

/// Startup with `appendonly yes`: loads the AOF named by the manifest (instead of dump.rdb, as
/// Redis does) and opens its last incr file for append; without a manifest, writes a base from
/// the (empty) dataset and the first incr, as Redis's `aofOpenIfNeededOnServerStart`. Clears
/// the loading flag at the end.
pub(crate) fn load_at_startup(server: &Server) -> anyhow::Result<()> {
    load(server, true)
}

/// DEBUG LOADAOF with the AOF off: loads the files as [`load_at_startup`] does but opens none
/// for append (no incr file is added to a manifest without one), as Redis's
/// `loadAppendOnlyFiles`.
pub(crate) fn load_without_opening(server: &Server) -> anyhow::Result<()> {
    load(server, false)
}

fn load(server: &Server, open: bool) -> anyhow::Result<()> {
    let result = load_and_open(server, open);
    server
        .persistence
        .loading
        .active
        .store(false, std::sync::atomic::Ordering::Release);
    result
}

fn load_and_open(server: &Server, open: bool) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;

    use super::manifest::{Entry, FileType, Manifest};
    use super::writer::Writer;

    let config = server.config().clone();
    let names = super::Names::of(&config);
    let manifest_path = names.dir.join(names.manifest());
    // What a rewrite or a manifest update interrupted by a crash left behind.
    if let Ok(entries) = std::fs::read_dir(&names.dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("temp-") {
                let path = entry.path();
                if std::fs::remove_file(&path).is_ok() {
                    tracing::info!(
                        "Removed the temp file of an interrupted AOF rewrite: {}",
                        path.display()
                    );
                }
            }
        }
    }
    upgrade_old_style(&config.dir, config.appenddirname(), &names)?;
    let text = match std::fs::read(&manifest_path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if !open {
                return Ok(());
            }
            // Redis's first start with the AOF on: a base from the dataset, then the first incr.
            super::rewrite::first_base(server).map_err(|err| anyhow::anyhow!("{err}"))?;
            return Ok(());
        }
        Err(err) => {
            anyhow::bail!(
                "Fatal error: can't open the AOF manifest {}: {err}",
                manifest_path.display()
            );
        }
    };
    let mut manifest = Manifest::parse(&text)
        .map_err(|err| anyhow::anyhow!("Bad AOF manifest {}: {err}", manifest_path.display()))?;
    let started = Instant::now();
    let mut client = replay_client(server);
    let mut base_size = 0;
    if let Some(base) = &manifest.base {
        use std::io::BufRead as _;

        let path = names.dir.join(&base.name);
        let open_error = |err: std::io::Error| open_failed(&base.name, &err);
        let file = std::fs::File::open(&path).map_err(open_error)?;
        base_size = file.metadata().map_err(open_error)?.len();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let rdb = reader.fill_buf().map_err(open_error)?.starts_with(b"REDIS");
        // An RDB base streams through the RDB loader; what follows its checksum, if anything
        // (a pre-7.0 AOF with an RDB preamble, upgraded into the base), is commands, as in
        // Redis's `loadSingleAppendOnlyFile`. Commands stream through `replay_file`.
        let mut commands_from = None;
        if rdb {
            let rdb_end =
                crate::persistence::load_rdb_preamble(server, reader, &path.display().to_string())?;
            server
                .persistence
                .loading
                .loaded_bytes
                .fetch_add(rdb_end.min(base_size), Ordering::Relaxed);
            if rdb_end < base_size {
                use std::io::Seek as _;

                let mut file = std::fs::File::open(&path).map_err(open_error)?;
                file.seek(std::io::SeekFrom::Start(rdb_end))
                    .map_err(open_error)?;
                commands_from = Some((std::io::BufReader::new(file), rdb_end));
            }
        } else {
            commands_from = Some((reader, 0));
        }
        if let Some((reader, start)) = commands_from {
            let replayed = replay_file(server, &mut client, &path, reader, start)
                .map_err(|err| anyhow::anyhow!("{err}"))?;
            if replayed.truncated_at.is_some() {
                anyhow::bail!(
                    "Unexpected end of file reading the append only file {}. You can: 1) Make a \
                     backup of your AOF file, then use ./redis-check-aof --fix <filename.manifest>. \
                     2) Alternatively you can set the 'aof-load-truncated' configuration option \
                     to yes and restart the server.",
                    path.display()
                );
            }
        }
    }
    let mut incr_size = 0;
    let n_incrs = manifest.incrs.len();
    for (i, incr) in manifest.incrs.iter().enumerate() {
        let path = names.dir.join(&incr.name);
        let open_error = |err: std::io::Error| open_failed(&incr.name, &err);
        let file = std::fs::File::open(&path).map_err(open_error)?;
        let mut size = file.metadata().map_err(open_error)?.len();
        let replayed = replay_file(server, &mut client, &path, file, 0)
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        if let Some(valid) = replayed.truncated_at {
            let last = i + 1 == n_incrs;
            if !(last && config.aof_load_truncated()) {
                anyhow::bail!(
                    "Unexpected end of file reading the append only file {}. You can: 1) Make a \
                     backup of your AOF file, then use ./redis-check-aof --fix <filename.manifest>. \
                     2) Alternatively you can set the 'aof-load-truncated' configuration option \
                     to yes and restart the server.",
                    path.display()
                );
            }
            tracing::warn!(
                "!!! Warning: short read while loading the AOF file {}!!!",
                incr.name
            );
            tracing::warn!("!!! Truncating the AOF {} at offset {valid} !!!", incr.name);
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            file.set_len(valid)?;
            file.sync_all()?;
            tracing::warn!(
                "AOF {} loaded anyway because aof-load-truncated is enabled",
                incr.name
            );
            size = valid;
        }
        incr_size += size;
        tracing::info!(
            commands = replayed.commands,
            "DB loaded from incr file {}: {:.3} seconds",
            incr.name,
            started.elapsed().as_secs_f64()
        );
    }
    // A transaction the file left open is reverted by the truncation above; its queue goes.
    client.multi = None;
    tracing::info!(
        "DB loaded from append only file: {:.3} seconds",
        started.elapsed().as_secs_f64()
    );
    {
        let mut state = server.persistence.state();
        state.dirty_at_last_save = server.keyspace.dirty();
    }
    if !open {
        return Ok(());
    }
    // Append to the last incr file; a manifest without one gets a new one, numbered after
    // the incr files it lists (none: 1), as Redis's `getNewIncrAofName`, skipping a name a
    // history file still holds.
    if manifest.incrs.is_empty() {
        let mut seq = 1;
        while manifest
            .history
            .iter()
            .any(|entry| entry.name == names.incr(seq))
        {
            seq += 1;
        }
        manifest.incrs.push(Entry {
            name: names.incr(seq),
            seq,
            kind: FileType::Incr,
        });
        std::fs::File::create(names.dir.join(names.incr(seq)))?;
        manifest.persist(&names.dir, &names.manifest())?;
    }
    let Some(last) = manifest.incrs.last() else {
        anyhow::bail!("the AOF manifest lists no incr file");
    };
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(names.dir.join(&last.name))?;
    let writer = Arc::new(Writer::new(
        config.appendfsync,
        base_size,
        incr_size,
        server.aof.shared.clone(),
    ));
    writer
        .timestamps
        .store(config.aof_timestamp_enabled(), Ordering::Relaxed);
    server.aof.on.store(true, Ordering::Relaxed);
    // Effects numbered before the writer attaches are not its: they were replayed from these
    // files (DEBUG LOADAOF, with a replication backlog taking numbers) or came before the load.
    // Starting at the clock's next number (not 0) also tells a rewrite's cut that this writer
    // has every effect below it when none came since.
    writer.set_start(server.keyspace.next_seq().get());
    let consumer = server.effects.attach(
        &server.keyspace,
        Arc::clone(&writer) as Arc<dyn crate::effects::EffectConsumer>,
    );
    let thread = writer.spawn(file)?;
    let history = manifest.clone();
    {
        let mut state = server.aof.state();
        state.manifest = manifest;
        state.base_size_at_rewrite = base_size + incr_size;
        server.aof.writers_changed();
        state.current = Some(super::Active {
            writer,
            consumer,
            thread: Some(thread),
        });
    }
    super::rewrite::delete_history(server, &names, history);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(data: &[u8]) -> (Vec<Vec<Bytes>>, Result<Ending, Corrupt>) {
        let mut seen = Vec::new();
        let outcome = parse_commands(data, |argv, _| {
            seen.push(argv);
            Ok(())
        })
        .expect("no callback error");
        (seen, outcome)
    }

    #[test]
    fn commands_annotations_and_endings() {
        let data = b"#TS:1700000000\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
        let (seen, outcome) = parse(data);
        assert_eq!(seen.len(), 2);
        assert_eq!(outcome, Ok(Ending::Clean));
        for cut in 17..data.len() {
            let (_, outcome) = parse(data.get(..cut).expect("in range"));
            let Ok(Ending::Truncated(at)) = outcome else {
                if cut == 39 {
                    continue;
                }
                panic!("cut at {cut}: {outcome:?}");
            };
            assert!(at == 16 || at == 39, "cut at {cut} valid up to {at}");
        }
        let (_, outcome) = parse(b"*1\r\n$3\r\nPING\r\n");
        assert_eq!(outcome, Err(Corrupt { offset: 0 }));
        let (_, outcome) = parse(b"*1\r\n$4\r\nPING\r\nxyz");
        assert_eq!(outcome, Err(Corrupt { offset: 14 }));
    }

    /// Reading a chunk at a time finds the same commands, offsets and ending as parsing the
    /// whole file, for every chunk size and every place the file may be cut or corrupted.
    #[test]
    fn streaming_matches_the_whole_file_parse() {
        let big = "x".repeat(100);
        let mut text = String::from("#TS:1700000000\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n");
        text.push_str(&format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\n{big}\r\n"));
        text.push_str("*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n*1\r\n$4\r\nEXEC\r\n");
        let whole = text.into_bytes();
        let mut corrupted = whole.clone();
        if let Some(byte) = corrupted.get_mut(60) {
            *byte = b'?';
        }
        let mut inputs = vec![corrupted];
        for cut in 0..=whole.len() {
            inputs.push(whole.get(..cut).expect("in range").to_vec());
        }
        for data in &inputs {
            let mut expected = Vec::new();
            let expected_outcome = parse_commands(data, |argv, end| {
                expected.push((argv, end));
                Ok(())
            })
            .expect("no callback error");
            for chunk in [1, 2, 3, 7, 16, 64, 1000] {
                let mut seen = Vec::new();
                let outcome = parse_chunks(data.as_slice(), chunk, |argv, end| {
                    seen.push((argv, end));
                    Ok(())
                })
                .expect("no read or callback error");
                assert_eq!(
                    outcome,
                    expected_outcome,
                    "chunk {chunk}, {} bytes",
                    data.len()
                );
                assert_eq!(seen, expected, "chunk {chunk}, {} bytes", data.len());
            }
        }
    }

    /// A read error stops the stream with that error, after the commands of the chunks before it.
    #[test]
    fn a_read_error_stops_the_stream() {
        struct Failing<'a>(&'a [u8]);
        impl std::io::Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("disk gone"));
                }
                let n = buf.len().min(self.0.len());
                let (head, rest) = self.0.split_at(n);
                buf.get_mut(..n).expect("in range").copy_from_slice(head);
                self.0 = rest;
                Ok(n)
            }
        }
        let mut seen = 0;
        let outcome = parse_chunks(Failing(b"*1\r\n$4\r\nPING\r\n"), 14, |_, _| {
            seen += 1;
            Ok(())
        });
        assert!(matches!(outcome, Err(Stop::Read(_))), "{outcome:?}");
        assert_eq!(seen, 1);
    }
}

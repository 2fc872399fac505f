//! Generated data and the clients: a pipelined bulk loader and a full-speed random-overwrite
//! workload (what `redis-benchmark -t set -r <keys> -d <size> -P 16 -c 50` does) that records
//! every request's latency.
//!
//! Keys are `key:%012d` (16 bytes), values are drawn from a pool of 64 random byte strings of
//! the value size (incompressible, and every SET stores its own copy in the server).

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

use super::resp::{Reply, encode_command, read_reply};

/// Values in the pool that every SET picks from.
const VALUE_POOL: usize = 64;
/// Commands per write in the loader.
const LOAD_BATCH: usize = 1000;
/// How long a client waits for a reply before it gives up (a server that was OOM-killed
/// closes the socket at once; this covers a stalled one).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// A small fast PRNG (splitmix64): the workload needs speed and reproducibility, not quality.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

/// The key for index `idx`: `key:` and 12 digits, 16 bytes.
pub fn key(idx: u64) -> [u8; 16] {
    let mut out = *b"key:000000000000";
    let mut rest = idx;
    for digit in out[4..].iter_mut().rev() {
        *digit = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
    }
    out
}

/// The value pool: `VALUE_POOL` random values of `value_size` bytes.
pub fn value_pool(value_size: usize, seed: u64) -> Arc<Vec<Vec<u8>>> {
    let mut rng = Rng::new(seed);
    Arc::new(
        (0..VALUE_POOL)
            .map(|_| {
                (0..value_size)
                    .map(|_| rng.next_u64().to_le_bytes()[0])
                    .collect()
            })
            .collect(),
    )
}

fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    Ok(stream)
}

/// Loads keys `0..n_keys` over `connections` connections in parallel, each streaming pipelined
/// SETs from one thread while another reads the replies. Fails on any non-OK reply.
pub fn load(
    addr: SocketAddr,
    n_keys: u64,
    values: &Arc<Vec<Vec<u8>>>,
    connections: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let connections = u64::try_from(connections.max(1)).unwrap_or(1);
    let per_conn = n_keys.div_ceil(connections);
    let mut handles = Vec::new();
    for conn_idx in 0..connections {
        let range = (conn_idx * per_conn).min(n_keys)..((conn_idx + 1) * per_conn).min(n_keys);
        let stream = connect(addr)?;
        let reader_stream = stream.try_clone()?;
        let values = Arc::clone(values);
        let count = range.end - range.start;
        let writer = std::thread::spawn(move || -> anyhow::Result<()> {
            let mut out = BufWriter::with_capacity(1 << 20, stream);
            let mut buf = Vec::new();
            for chunk_start in range.clone().step_by(LOAD_BATCH) {
                buf.clear();
                for idx in chunk_start..(chunk_start + LOAD_BATCH as u64).min(range.end) {
                    let value = &values[usize::try_from(idx).unwrap_or(0) % VALUE_POOL];
                    encode_command(&mut buf, &[b"SET", &key(idx), value]);
                }
                out.write_all(&buf)?;
            }
            out.flush()?;
            Ok(())
        });
        let reader = std::thread::spawn(move || -> anyhow::Result<()> {
            let mut input = BufReader::with_capacity(1 << 16, reader_stream);
            for _ in 0..count {
                match read_reply(&mut input)? {
                    Reply::Simple(ok) if ok == "OK" => {}
                    other => bail!("SET while loading replied {other:?}"),
                }
            }
            Ok(())
        });
        handles.push(writer);
        handles.push(reader);
    }
    for handle in handles {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("loader thread panicked"))??;
    }
    Ok(started.elapsed())
}

/// What the overwrite clients share with the sampler.
struct Shared {
    stop: AtomicBool,
    /// Latencies (µs) of requests completed since the sampler last took them, one histogram
    /// per client thread. A std mutex held for one `record` per reply by its thread and for a
    /// swap by the sampler every ~15 ms: uncontended in practice.
    interval: Vec<Mutex<Histogram<u64>>>,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// The next never-written key index for inserts (starts at `n_keys`).
    next_new_key: AtomicU64,
}

/// The running overwrite workload.
pub struct Overwrite {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    n_keys: u64,
}

/// A histogram for latencies in µs from 1 µs to 10 min, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
        // The bounds above are valid constants; this branch is unreachable in practice.
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

/// Workload shape.
#[derive(Debug, Clone, Copy)]
pub struct OverwriteConfig {
    /// Keys `0..n_keys` are overwritten uniformly at random.
    pub n_keys: u64,
    /// Connections in all.
    pub clients: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Client threads the connections are spread over.
    pub threads: usize,
    /// Seed for key choice.
    pub seed: u64,
    /// Fraction (0..=1) of SETs that insert a new key (`n_keys`, `n_keys + 1`, ...) instead
    /// of overwriting one of `0..n_keys`.
    pub insert_fraction: f64,
}

impl Overwrite {
    /// Connects every client and starts sending.
    pub fn start(
        addr: SocketAddr,
        config: OverwriteConfig,
        values: &Arc<Vec<Vec<u8>>>,
    ) -> anyhow::Result<Overwrite> {
        let threads = config.threads.clamp(1, config.clients.max(1));
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            interval: (0..threads)
                .map(|_| Mutex::new(latency_histogram()))
                .collect(),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            next_new_key: AtomicU64::new(config.n_keys),
        });
        let mut handles = Vec::new();
        for thread_idx in 0..threads {
            let n_conns =
                config.clients / threads + usize::from(thread_idx < config.clients % threads);
            let conns = (0..n_conns.max(1))
                .map(|_| connect(addr))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let shared = Arc::clone(&shared);
            let values = Arc::clone(values);
            let seed = config.seed ^ (thread_idx as u64).wrapping_mul(0x1000_0000_01B3);
            handles.push(std::thread::spawn(move || {
                if let Err(e) = client_thread(&shared, thread_idx, conns, config, &values, seed)
                    && !shared.stop.load(Ordering::Relaxed)
                {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    let mut first = shared
                        .first_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    first.get_or_insert_with(|| format!("client thread {thread_idx}: {e:#}"));
                }
            }));
        }
        Ok(Overwrite {
            shared,
            threads: handles,
            n_keys: config.n_keys,
        })
    }

    /// Latencies recorded since the last call (all threads merged), and resets them.
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut merged = latency_histogram();
        for slot in &self.shared.interval {
            let mut histogram = slot.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = merged.add(&*histogram);
            histogram.reset();
        }
        merged
    }

    /// Keys inserted so far (beyond the loaded range).
    pub fn inserted(&self) -> u64 {
        self.shared
            .next_new_key
            .load(Ordering::Relaxed)
            .saturating_sub(self.n_keys)
    }

    /// Client errors so far (error replies, dropped connections) and the first one's text.
    pub fn errors(&self) -> (u64, Option<String>) {
        let first = self
            .shared
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (self.shared.errors.load(Ordering::Relaxed), first)
    }

    /// Stops the clients and waits for them.
    pub fn stop(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Overwrite {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// One client thread: every round it writes a batch of `pipeline` SETs on each of its
/// connections, then reads each connection's replies, recording for each request the time from
/// its batch being written to its reply being read.
fn client_thread(
    shared: &Shared,
    thread_idx: usize,
    conns: Vec<TcpStream>,
    config: OverwriteConfig,
    values: &[Vec<u8>],
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    // An insert when the next 64 random bits fall under this threshold.
    let insert_below = (config.insert_fraction.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
    let mut conns = conns
        .into_iter()
        .map(|stream| {
            Ok((
                stream.try_clone()?,
                BufReader::with_capacity(1 << 16, stream),
            ))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut sent_at = vec![Instant::now(); conns.len()];
    let mut batch = Vec::new();
    let mut latencies = Vec::with_capacity(config.pipeline);
    let slot = shared
        .interval
        .get(thread_idx)
        .context("no histogram for this thread")?;
    while !shared.stop.load(Ordering::Relaxed) {
        for ((writer, _), sent) in conns.iter_mut().zip(&mut sent_at) {
            batch.clear();
            for _ in 0..config.pipeline {
                let value = &values[usize::try_from(rng.below(VALUE_POOL as u64)).unwrap_or(0)];
                let idx = if insert_below > 0 && rng.next_u64() <= insert_below {
                    shared.next_new_key.fetch_add(1, Ordering::Relaxed)
                } else {
                    rng.below(config.n_keys)
                };
                encode_command(&mut batch, &[b"SET", &key(idx), value]);
            }
            *sent = Instant::now();
            writer.write_all(&batch)?;
        }
        for ((_, reader), sent) in conns.iter_mut().zip(&sent_at) {
            latencies.clear();
            for _ in 0..config.pipeline {
                let reply = read_reply(reader)?;
                if let Reply::Error(e) = reply {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    let mut first = shared
                        .first_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    first.get_or_insert(e);
                }
                latencies.push(sent.elapsed());
            }
            let mut histogram = slot.lock().unwrap_or_else(PoisonError::into_inner);
            for latency in &latencies {
                let micros = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                histogram.saturating_record(micros);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sixteen_bytes_zero_padded() {
        assert_eq!(&key(0), b"key:000000000000");
        assert_eq!(&key(42), b"key:000000000042");
        assert_eq!(&key(999_999_999_999), b"key:999999999999");
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
        assert_eq!(Rng::new(1).below(0), 0);
    }

    #[test]
    fn value_pool_has_values_of_the_size() {
        let pool = value_pool(100, 1);
        assert_eq!(pool.len(), VALUE_POOL);
        assert!(pool.iter().all(|v| v.len() == 100));
        assert_ne!(pool[0], pool[1]);
    }
}

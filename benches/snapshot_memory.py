#!/usr/bin/env python3
"""Extra memory, start pause, throughput and latency during BGSAVE: forkless vs redis-server.

For each server, on the same generated data (N keys `key:%012d` of V random bytes, loaded with
`redis-cli --pipe`): run a full-speed random-overwrite workload (`redis-benchmark -t set -r N
-d V -P 16 -c 50`) and a 1-request-per-ms latency probe, measure a baseline window, then BGSAVE
and sample memory every ~15 ms until the save ends.

Memory is anonymous memory. forkless: RssAnon growth of its one process. redis: RssAnon growth of
the parent plus Private_Clean+Private_Dirty of the fork child (smaps_rollup); the child's private
pages are exactly the copy-on-write copies (plus its own buffers), where summing both RSS figures
would count every shared page twice.

    python3 benches/snapshot_memory.py --dataset-mib 4096 --value-size 1000 --rounds 2

Needs redis-cli/redis-benchmark (redis-tools), redis-server for the redis column, and
target/release/forkless-server (`cargo build --release -p forkless-server`; FORKLESS_BIN
overrides). Prints one table per run plus medians, writes CSVs under --out.
"""
import argparse, csv, multiprocessing, os, random, shutil, socket, statistics, subprocess
import sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORKLESS_BIN = os.environ.get("FORKLESS_BIN", os.path.join(ROOT, "target/release/forkless-server"))
SAMPLE_SECS = 0.015
MiB = 1 << 20


# ---------------------------------------------------------------- plumbing
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    """Just enough RESP2 to send commands and read the reply."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        return self.read()

    def read(self):
        line = self.f.readline()[:-2]
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError(f"bad reply {line!r}")

    def info(self, section):
        text = self.call("INFO", section).decode()
        return dict(l.split(":", 1) for l in text.splitlines() if ":" in l and not l.startswith("#"))


def start_server(kind, workdir):
    port = free_port()
    common = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir,
              "--rdbcompression", "no"]
    if kind == "forkless":
        cmd = [FORKLESS_BIN, *common, "--snapshot-mode", "epoch", *os.environ.get("FORKLESS_ARGS", "").split()]
    else:
        cmd = ["redis-server", *common, "--appendonly", "no", "--daemonize", "no"]
    log = open(os.path.join(workdir, "server.log"), "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        try:
            if Conn(port).call("PING") == b"PONG":
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"{kind} did not start; see {workdir}/server.log")


# ---------------------------------------------------------------- data and load
def load_dataset(port, keys, value_size):
    """Exactly `keys` SETs of distinct keys, incompressible values, via redis-cli --pipe."""
    rng = random.Random(42)
    pool = [bytes(rng.getrandbits(8) for _ in range(value_size)) for _ in range(64)]
    head = b"*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$" + str(value_size).encode() + b"\r\n"
    t0 = time.monotonic()
    cli = subprocess.Popen(["redis-cli", "-p", str(port), "--pipe"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for start in range(0, keys, 1000):
        cli.stdin.write(b"".join(head % i + pool[i & 63] + b"\r\n"
                                 for i in range(start, min(start + 1000, keys))))
    cli.stdin.close()
    out = cli.stdout.read().decode()
    if cli.wait() != 0 or "errors: 0" not in out:
        sys.exit(f"load failed: {out}")
    return time.monotonic() - t0


# ---------------------------------------------------------------- memory
def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_anon(pid):
    return status_kib(pid, "RssAnon") * 1024


def children(pid):
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return kids


def private_bytes(pid):
    """Pages only this process maps: for a fork child, the copy-on-write copies."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1]) * 1024
    except OSError:  # the child exited between listing and reading
        pass
    return total


def memory_sample(pid):
    """(parent RssAnon, private bytes of its children)."""
    return rss_anon(pid), sum(private_bytes(c) for c in children(pid))


# ---------------------------------------------------------------- load generators
def start_workload(port, keys, value_size):
    return subprocess.Popen(["redis-benchmark", "-p", str(port), "-t", "set", "-r", str(keys),
                             "-d", str(value_size), "-P", "16", "-c", "50", "-n", "2000000000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def probe_main(port, keys, value_size, stop, out):
    """SET of a random existing key, one at a time, every ~1 ms; returns (time, seconds)."""
    conn, rng, value, lat = Conn(port), random.Random(7), b"p" * value_size, []
    tick = time.monotonic()
    while not stop.is_set():
        t0 = time.monotonic()
        conn.call("SET", b"key:%012d" % rng.randrange(keys), value)
        lat.append((t0, time.monotonic() - t0))
        tick = max(tick + 0.001, time.monotonic())
        time.sleep(max(0.0, tick - time.monotonic()))
    out.send(lat)


def percentiles(lat, lo, hi):
    xs = sorted(l for t, l in lat if lo <= t < hi)
    if not xs:
        return (float("nan"),) * 3 + (0,)
    pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))] * 1000
    return pick(0.50), pick(0.99), xs[-1] * 1000, len(xs)


# ---------------------------------------------------------------- one run
def sample_until(pid, conn, deadline, phase, t_ref, base, rows, kind, stop_when_saved=False):
    """Sample memory (and save progress) every SAMPLE_SECS; returns peak extra and end time."""
    peak, tick = 0, time.monotonic()
    while True:
        now = time.monotonic()
        rss, child = memory_sample(pid)
        p = conn.info("persistence")
        extra = rss - base + child
        peak = max(peak, extra)
        rows.append([kind, phase, f"{now - t_ref:.3f}", rss, child, extra,
                     p.get("snapshot_retained_bytes", p.get("current_cow_size", ""))])
        if stop_when_saved and p["rdb_bgsave_in_progress"] == "0":
            return peak, now, p
        if not stop_when_saved and now >= deadline:
            return peak, now, p
        tick = max(tick + SAMPLE_SECS, time.monotonic())
        time.sleep(max(0.0, tick - time.monotonic()))


def run_one(kind, args, keys, run_no, rows):
    workdir = tempfile.mkdtemp(prefix=f"snapmem-{kind}-")
    proc, port = start_server(kind, workdir)
    try:
        conn = Conn(port)
        load_secs = load_dataset(port, keys, args.value_size)
        assert int(conn.call("DBSIZE")) == keys
        print(f"  {kind}: loaded {keys} keys in {load_secs:.0f} s", file=sys.stderr)
        idle_rss = rss_anon(proc.pid)

        bench = start_workload(port, keys, args.value_size)
        stop, (recv, send) = multiprocessing.Event(), multiprocessing.Pipe(False)
        probe = multiprocessing.Process(target=probe_main,
                                        args=(port, keys, args.value_size, stop, send))
        probe.start()
        time.sleep(args.warmup_secs)  # clients connected, allocator at steady state

        # Baseline window: same workload, no snapshot.
        tag = f"{kind}#{run_no}"
        t_base = time.monotonic()
        cmds_base = int(conn.info("stats")["total_commands_processed"])
        base_rss0 = rss_anon(proc.pid)
        sample_until(proc.pid, conn, t_base + args.baseline_secs, "baseline", t_base,
                     base_rss0, rows, tag)
        cmds_bg = int(conn.info("stats")["total_commands_processed"])
        t_base_end = time.monotonic()
        base_samples = [r[3] for r in rows if r[0] == tag and r[1] == "baseline"]
        pre_rss = rss_anon(proc.pid)

        # The snapshot.
        t_bg = time.monotonic()
        reply = conn.call("BGSAVE")
        reply_ms = (time.monotonic() - t_bg) * 1000
        peak, t_done, pers = sample_until(proc.pid, conn, None, "snapshot", t_bg, pre_rss,
                                          rows, tag, stop_when_saved=True)
        stats = conn.info("stats")
        cmds_done = int(stats["total_commands_processed"])
        sample_until(proc.pid, conn, time.monotonic() + 1.0, "after", t_bg, pre_rss, rows, tag)
        post_rss = rss_anon(proc.pid)

        stop.set()
        lat = recv.recv()
        probe.join()
        bench.kill()
        bench.wait()
        if pers.get("rdb_last_bgsave_status") != "ok":
            sys.exit(f"{kind}: BGSAVE failed ({reply!r}); see {workdir}/server.log")
        wall = t_done - t_bg
        size = os.path.getsize(os.path.join(workdir, "dump.rdb"))
        base_rate = (cmds_bg - cmds_base) / (t_base_end - t_base)
        snap_rate = (cmds_done - cmds_bg) / wall
        return {
            "server": kind, "run": run_no, "keys": keys,
            "dataset_bytes": keys * (16 + args.value_size),
            "idle_rss": idle_rss, "pre_rss": pre_rss, "post_rss": post_rss,
            "baseline_drift": max(base_samples) - min(base_samples),
            "peak_extra": peak, "reply_ms": reply_ms,
            "fork_ms": int(stats.get("latest_fork_usec", 0)) / 1000 if kind == "redis" else None,
            "cow_size": int(pers["rdb_last_cow_size"]) if kind == "redis" else None,
            "retained_peak": int(pers["snapshot_peak_retained_bytes"])
            if "snapshot_peak_retained_bytes" in pers else None,
            "wall_s": wall, "file_bytes": size, "mb_s": size / MiB / wall,
            "base_ops": base_rate, "snap_ops": snap_rate, "ops_ratio": snap_rate / base_rate,
            "probe_base": percentiles(lat, t_base, t_bg),
            "probe_snap": percentiles(lat, t_bg, t_done),
            "load_s": load_secs,
        }
    finally:
        try:
            Conn(port).call("SHUTDOWN", "NOSAVE")
        except (OSError, RuntimeError):
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- report
def fmt_row(r):
    gib = lambda b: f"{b / (1 << 30):.2f} GiB"
    pause = f"{r['reply_ms']:.2f} ms"
    if r["fork_ms"] is not None:
        pause += f" (fork {r['fork_ms']:.1f} ms)"
    pb, ps = r["probe_base"], r["probe_snap"]
    return {
        "server": f"{r['server']} #{r['run']}",
        "dataset": gib(r["dataset_bytes"]),
        "RssAnon before": gib(r["pre_rss"]),
        "peak extra": f"{gib(r['peak_extra'])} ({100 * r['peak_extra'] / r['dataset_bytes']:.1f}%)",
        "BGSAVE reply": pause,
        "snapshot": f"{r['wall_s']:.1f} s, {r['mb_s']:.0f} MB/s",
        "ops/s during / baseline": f"{r['snap_ops'] / 1e3:.0f}k / {r['base_ops'] / 1e3:.0f}k "
                                   f"= {r['ops_ratio']:.2f}",
        "probe p50/p99/max ms baseline": f"{pb[0]:.2f} / {pb[1]:.2f} / {pb[2]:.1f}",
        "probe p50/p99/max ms during": f"{ps[0]:.2f} / {ps[1]:.2f} / {ps[2]:.1f}",
    }


def print_table(rows):
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(r[c] for c in cols) + " |")


def median_result(results):
    """Field-wise median of several runs of one server (tuples element-wise)."""
    out = dict(results[0], run="median")
    for k, v in results[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "run":
            out[k] = statistics.median(r[k] for r in results)
        elif isinstance(v, tuple):
            out[k] = tuple(statistics.median(r[k][i] for r in results) for i in range(len(v)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", default="forkless,redis")
    ap.add_argument("--dataset-mib", type=int, default=4096)
    ap.add_argument("--value-size", type=int, default=1000)
    ap.add_argument("--baseline-secs", type=float, default=5.0)
    ap.add_argument("--warmup-secs", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=1, help="alternate server order each round")
    ap.add_argument("--out", default=os.path.join(ROOT, "results"))
    args = ap.parse_args()

    servers = [s for s in args.servers.split(",") if s]
    if "redis" in servers and not shutil.which("redis-server"):
        print("redis-server not installed: skipping redis", file=sys.stderr)
        servers.remove("redis")
    if "forkless" in servers and not os.access(FORKLESS_BIN, os.X_OK):
        sys.exit(f"{FORKLESS_BIN} missing: cargo build --release -p forkless-server")
    keys = args.dataset_mib * MiB // args.value_size
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")

    rows, results = [], []
    for rnd in range(1, args.rounds + 1):
        order = servers if rnd % 2 else servers[::-1]
        for kind in order:
            print(f"round {rnd}: {kind}, {keys} keys x {args.value_size} B", file=sys.stderr)
            results.append(run_one(kind, args, keys, rnd, rows))
            print_table([fmt_row(results[-1])])

    samples = os.path.join(args.out, f"snapshot_memory-{stamp}-samples.csv")
    with open(samples, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["server", "phase", "t_s", "rss_anon", "child_private", "extra_bytes",
                    "retained_or_cow_bytes"])
        w.writerows(rows)
    summary = os.path.join(args.out, f"snapshot_memory-{stamp}-summary.csv")
    with open(summary, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(results[0]))
        w.writeheader()
        w.writerows(results)

    print(f"\n{args.dataset_mib} MiB dataset, {keys} keys x {args.value_size} B, "
          f"{args.rounds} round(s); samples: {samples}")
    table = [fmt_row(r) for r in results]
    if args.rounds > 1:
        table += [fmt_row(median_result([r for r in results if r["server"] == s]))
                  for s in servers]
    print_table(table)
    for r in results:
        extra = f"  {r['server']} #{r['run']}: load {r['load_s']:.0f} s, file " \
                f"{r['file_bytes'] / MiB:.0f} MiB, baseline RssAnon drift " \
                f"{r['baseline_drift'] / MiB:.0f} MiB, RssAnon 1 s after save " \
                f"{(r['post_rss'] - r['pre_rss']) / MiB:+.0f} MiB"
        if r["retained_peak"] is not None:
            extra += f", snapshot_peak_retained_bytes {r['retained_peak'] / MiB:.0f} MiB"
        if r["cow_size"] is not None:
            extra += f", rdb_last_cow_size {r['cow_size'] / MiB:.0f} MiB"
        print(extra)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Startup load speed: forkless vs Debian's redis-server loading the same RDB file.

    python3 benches/load_compare.py [--dataset-mib 1024] [--value-size 1000] [--rounds 3]

Builds one dump.rdb (N keys `key:%012d` of V incompressible bytes, written by redis-server's
SAVE so neither side loads its own output), then, in alternating turns, starts each server on
that file and reads the load time it logs ("DB loaded from disk: X seconds", the same line in
both). Prints every run, the medians and the forkless/redis ratio of load speed. Needs
redis-server and redis-cli, and target/release/forkless-server (FORKLESS_BIN overrides).
"""
import argparse, os, re, shutil, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORKLESS_BIN = os.environ.get("FORKLESS_BIN", os.path.join(ROOT, "target/release/forkless-server"))
LOADED = re.compile(rb"DB loaded from disk: ([0-9.]+) seconds")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True).stdout.strip()


def start(kind, workdir):
    port = free_port()
    common = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir,
              "--dbfilename", "dump.rdb"]
    cmd = [FORKLESS_BIN, *common] if kind == "forkless" else \
        ["redis-server", *common, "--appendonly", "no", "--daemonize", "no"]
    log_path = os.path.join(workdir, f"{kind}.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    return proc, port, log_path


def stop(proc):
    proc.kill()
    proc.wait()


def wait_ready(port, proc):
    while proc.poll() is None:
        if cli(port, "ping") == b"PONG":
            return
        time.sleep(0.02)
    raise RuntimeError("server exited")


def build_dump(workdir, keys, value_size):
    proc, port, _ = start("redis", workdir)
    try:
        wait_ready(port, proc)
        pipe = subprocess.Popen(["redis-cli", "-p", str(port), "--pipe"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL)
        value = os.urandom(value_size)
        batch = []
        for i in range(keys):
            key = b"key:%012d" % i
            batch.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value))
            if len(batch) == 10000:
                pipe.stdin.write(b"".join(batch))
                batch = []
        pipe.stdin.write(b"".join(batch))
        pipe.stdin.close()
        pipe.wait()
        assert int(cli(port, "dbsize")) == keys
        assert cli(port, "save") == b"OK"
    finally:
        stop(proc)


def load_once(kind, workdir, keys):
    proc, port, log_path = start(kind, workdir)
    try:
        wait_ready(port, proc)
        assert int(cli(port, "dbsize")) == keys, f"{kind} loaded a different number of keys"
    finally:
        stop(proc)
    match = LOADED.search(open(log_path, "rb").read())
    if not match:
        raise RuntimeError(f"{kind}: no 'DB loaded from disk' line in {log_path}")
    return float(match.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset-mib", type=int, default=1024)
    ap.add_argument("--value-size", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for tool in ("redis-server", "redis-cli"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install redis-server redis-tools")
    if not os.access(FORKLESS_BIN, os.X_OK):
        sys.exit(f"{FORKLESS_BIN} missing: cargo build --release -p forkless-server")
    keys = args.dataset_mib * (1 << 20) // args.value_size
    workdir = tempfile.mkdtemp(prefix="forkless-load-")
    try:
        build_dump(workdir, keys, args.value_size)
        size = os.path.getsize(os.path.join(workdir, "dump.rdb"))
        times = {"redis": [], "forkless": []}
        for r in range(args.rounds):
            order = ["redis", "forkless"] if r % 2 == 0 else ["forkless", "redis"]
            for kind in order:
                # Same page-cache state for both: the file was just read by the other one.
                secs = load_once(kind, workdir, keys)
                times[kind].append(secs)
                print(f"round {r + 1} {kind:8s} {secs:7.3f} s  {size / secs / 1e6:7.0f} MB/s", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\n{keys} keys x {args.value_size} B, file {size / (1 << 20):.0f} MiB, {args.rounds} rounds")
        print("| server | median load time | MB/s |")
        print("|---|---|---|")
        for kind in ("redis", "forkless"):
            print(f"| {kind} | {med[kind]:.3f} s | {size / med[kind] / 1e6:.0f} |")
        print(f"forkless/redis load speed: {med['redis'] / med['forkless']:.2f}x")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

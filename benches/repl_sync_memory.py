#!/usr/bin/env python3
"""Extra memory on the primary during a replica's full sync under writes: forkless vs redis-server.

For each primary, on the same generated data (N keys `key:%012d` of V random bytes, loaded with
`redis-cli --pipe`): start the full-speed random-overwrite workload (`redis-benchmark -t set -r N
-d V -P 16 -c 50`), take the primary's RssAnon under load as the baseline, then start Debian's
redis-server as a replica (`--replicaof`, diskless sync, delay 0) and sample every 50 ms until the
replica's link is up (or the timeout): the primary's RssAnon growth, its fork children's private
pages (Redis's copy-on-write), and INFO `mem_clients_slaves` (the writes buffered for the
replica).

    python3 benches/repl_sync_memory.py --dataset-mib 256 --value-size 1000
    python3 benches/repl_sync_memory.py --dataset-mib 256 --replica same

`--replica same` makes the replica the primary's kind: forkless -> forkless (a dual-channel
sync: the replica reads the stream while it loads; its INFO `replica_buffered_stream_peak_bytes`
is printed) against redis -> redis.

Needs redis-cli/redis-benchmark, redis-server and target/release/forkless-server
(`cargo build --release -p forkless-server`; FORKLESS_BIN overrides). Uses the helpers of
snapshot_memory.py.
"""
import argparse, os, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from snapshot_memory import (FORKLESS_BIN, Conn, free_port, load_dataset,  # noqa: E402
                             memory_sample, start_server, start_workload)

MiB = 1 << 20


def info(conn, section):
    text = conn.call("INFO", section).decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def run_one(kind, keys, value_size, timeout, replica_kind="redis"):
    workdir = tempfile.mkdtemp(prefix=f"repl-{kind}-")
    replica_dir = tempfile.mkdtemp(prefix="repl-replica-")
    proc, port = start_server(kind, workdir)
    procs = [proc]
    try:
        conn = Conn(port)
        conn.call("CONFIG", "SET", "repl-diskless-sync", "yes")
        conn.call("CONFIG", "SET", "repl-diskless-sync-delay", "0")
        load_dataset(port, keys, value_size)
        loaded = memory_sample(proc.pid)[0]
        workload = start_workload(port, keys, value_size)
        procs.append(workload)
        time.sleep(2)
        base = 0
        for _ in range(10):
            base = max(base, memory_sample(proc.pid)[0])
            time.sleep(0.1)
        replica_port = free_port()
        common = ["--port", str(replica_port), "--bind", "127.0.0.1", "--dir", replica_dir,
                  "--save", "", "--appendonly", "no", "--replicaof", "127.0.0.1", str(port)]
        binary = FORKLESS_BIN if replica_kind == "forkless" else "redis-server"
        replica = subprocess.Popen([binary, *common], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        procs.append(replica)
        t0 = time.monotonic()
        peak_parent = peak_child = peak_buffered = replica_buffered = 0
        synced_at = None
        rconn = None
        while time.monotonic() - t0 < timeout:
            parent, child = memory_sample(proc.pid)
            peak_parent = max(peak_parent, parent - base)
            peak_child = max(peak_child, child)
            memory = info(conn, "memory")
            peak_buffered = max(peak_buffered, int(memory.get("mem_clients_slaves", 0)))
            try:
                rconn = rconn or Conn(replica_port)
                replication = info(rconn, "replication")
                replica_buffered = int(replication.get("replica_buffered_stream_peak_bytes", 0))
                if replication.get("master_link_status") == "up":
                    synced_at = time.monotonic() - t0
                    break
            except (OSError, RuntimeError):
                rconn = None
            time.sleep(0.05)
        full_syncs = info(conn, "stats").get("sync_full", "?")
        return {
            "kind": kind, "dataset_mib": loaded / MiB, "base_mib": base / MiB,
            "extra_parent_mib": peak_parent / MiB, "extra_child_mib": peak_child / MiB,
            "buffered_mib": peak_buffered / MiB,
            "sync_s": synced_at, "full_syncs": full_syncs, "replica": replica_kind,
            "replica_buffered_mib": replica_buffered / MiB,
        }
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(replica_dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-mib", type=int, default=256)
    parser.add_argument("--value-size", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--only", choices=["forkless", "redis"])
    parser.add_argument("--replica", choices=["redis", "same"], default="redis",
                        help="the replica: redis-server always, or the primary's kind")
    args = parser.parse_args()
    keys = args.dataset_mib * MiB // args.value_size
    print("| primary | replica | RssAnon after load | under load | extra RssAnon (peak) | fork "
          "child private (peak) | mem_clients_slaves (peak) | buffered on the replica (peak) | "
          "sync | full syncs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind in ["forkless", "redis"]:
        if args.only and kind != args.only:
            continue
        replica_kind = kind if args.replica == "same" else "redis"
        r = run_one(kind, keys, args.value_size, args.timeout, replica_kind)
        sync = f"{r['sync_s']:.1f} s" if r["sync_s"] is not None else f"not in {args.timeout:.0f} s"
        print(f"| {kind} | {replica_kind} | {r['dataset_mib']:.0f} MiB | {r['base_mib']:.0f} MiB | "
              f"{r['extra_parent_mib']:.0f} MiB | {r['extra_child_mib']:.0f} MiB | "
              f"{r['buffered_mib']:.0f} MiB | {r['replica_buffered_mib']:.0f} MiB | {sync} | "
              f"{r['full_syncs']} |", flush=True)


if __name__ == "__main__":
    main()

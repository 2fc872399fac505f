#!/usr/bin/env python3
"""Memory for the same data in Debian's redis-server and forkless, per value type.

    python3 benches/memory_compare.py [--scale 1.0] [--big]

For each type, starts both servers on free loopback ports (persistence off), loads the same
data with `redis-cli --pipe`, and compares the processes' anonymous resident memory (RssAnon,
what the data costs the machine) after loading, minus RssAnon when empty. Prints a table of
MiB and the forkless/redis ratio. Needs redis-server, redis-cli and a release build
(cargo build --release -p forkless-server). `--big` measures collections past the small
encodings' limits instead (hashtable hashes and sets, skiplist zsets, many-chunk lists).
"""
import argparse, os, shutil, socket, subprocess, tempfile, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)

def rss_anon(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0

def start(kind, binary, workdir):
    port = free_port()
    if kind == "redis":
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir]
    else:
        cmd = [binary, "--port", str(port), "--save", "", "--dir", workdir]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG":
            return proc, port
        time.sleep(0.05)
    raise RuntimeError(f"{kind} did not start")

def datasets(scale):
    n = lambda x: max(1, int(x * scale))
    def strings():
        for i in range(n(1_000_000)):
            yield resp("SET", f"key:{i:012d}", f"value:{i:08d}")
    def hashes():
        for i in range(n(20_000)):
            args = ["HSET", f"hash:{i}"]
            for f in range(50):
                args += [f"field:{f}", f"v{i}:{f}"]
            yield resp(*args)
    def sets():
        for i in range(n(20_000)):
            yield resp("SADD", f"set:{i}", *[str(m) for m in range(i % 7, i % 7 + 50)])
    def zsets():
        for i in range(n(20_000)):
            args = ["ZADD", f"zset:{i}"]
            for m in range(50):
                args += [str(m * 1.5), f"member:{m}"]
            yield resp(*args)
    def lists():
        for i in range(n(20_000)):
            yield resp("RPUSH", f"list:{i}", *[f"item:{m}" for m in range(50)])
    def hll_sparse():
        for i in range(n(20_000)):
            yield resp("PFADD", f"hll:{i}", *[f"e{i}:{m}" for m in range(100)])
    def hll_dense():
        for i in range(n(1_000)):
            for chunk in range(4):
                yield resp("PFADD", f"hll:{i}", *[f"e{i}:{chunk}:{m}" for m in range(1000)])
    def geo():
        for i in range(n(20_000)):
            args = ["GEOADD", f"geo:{i}"]
            for m in range(50):
                args += [f"{(i * 7 + m) % 360 - 180 + 0.123456:.6f}", f"{(i + m * 3) % 170 - 85 + 0.654321:.6f}", f"place:{m}"]
            yield resp(*args)
    def bitmaps():
        # 20k bitmaps of 1 KiB grown bit by bit from the low offsets up (as a counter per
        # user-day is), and 200 of 64 KiB set sparsely, high offset first.
        for i in range(n(20_000)):
            yield b"".join(resp("SETBIT", f"bm:{i}", (i * 13 + m * 97) % 8192 if m else m, 1) for m in range(64))
        for i in range(n(200)):
            yield b"".join(resp("SETBIT", f"bigbm:{i}", 524287 - m * 4099, 1) for m in range(100))
    return {"string": strings, "hash": hashes, "set": sets, "zset": zsets, "list": lists,
            "bitmap (20k x 1 KiB, 200 x 64 KiB)": bitmaps,
            "hll (sparse, 100 elements)": hll_sparse, "hll (dense, 4000 elements)": hll_dense,
            "geo (20k x 50)": geo}

def big_datasets(scale):
    n = lambda x: max(1, int(x * scale))
    def hashes():
        for i in range(n(2_000)):
            args = ["HSET", f"hash:{i}"]
            for f in range(600):
                args += [f"field:{f}", f"v{i}:{f}"]
            yield resp(*args)
    def sets():
        for i in range(n(2_000)):
            yield resp("SADD", f"set:{i}", *[f"m{m}" for m in range(600)])
    def zsets():
        for i in range(n(2_000)):
            args = ["ZADD", f"zset:{i}"]
            for m in range(500):
                args += [str(m * 1.5), f"member:{m}"]
            yield resp(*args)
    def lists():
        for i in range(n(20)):
            yield resp("RPUSH", f"list:{i}", *[f"item:{m}" for m in range(50_000)])
    def geo():
        for i in range(n(20)):
            args = ["GEOADD", f"geo:{i}"]
            for m in range(50_000):
                args += [f"{(m * 0.0071) % 360 - 180:.6f}", f"{(m * 0.0013 + i) % 170 - 85:.6f}", f"place:{m}"]
            yield resp(*args)
    return {"hash (2k x 600)": hashes, "set (2k x 600 strings)": sets, "zset (2k x 500)": zsets, "list (20 x 50k)": lists,
            "geo (20 x 50k)": geo}

def measure(kind, binary, gen):
    workdir = tempfile.mkdtemp(prefix=f"memcmp-{kind}-")
    proc, port = start(kind, binary, workdir)
    try:
        time.sleep(0.3)
        empty = rss_anon(proc.pid)
        payload = b"".join(gen())
        subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=payload, capture_output=True, check=True)
        time.sleep(0.5)
        return rss_anon(proc.pid) - empty, int(subprocess.run(["redis-cli", "-p", str(port), "dbsize"], capture_output=True).stdout)
    finally:
        proc.kill(); proc.wait(); shutil.rmtree(workdir, ignore_errors=True)

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--binary", default="target/release/forkless-server")
    parser.add_argument("--big", action="store_true", help="big collections instead of small ones")
    parser.add_argument("--only", default="", help="measure only the types whose name contains this")
    args = parser.parse_args()
    print("| type | keys | redis MiB | forkless MiB | forkless / redis |")
    print("| --- | --- | --- | --- | --- |")
    for name, gen in (big_datasets if args.big else datasets)(args.scale).items():
        if args.only not in name:
            continue
        redis, keys_r = measure("redis", args.binary, gen)
        forkless, keys_f = measure("forkless", args.binary, gen)
        assert keys_r == keys_f, (name, keys_r, keys_f)
        print(f"| {name} | {keys_f} | {redis / 2**20:.1f} | {forkless / 2**20:.1f} | {forkless / max(redis, 1):.2f}x |", flush=True)

if __name__ == "__main__":
    main()

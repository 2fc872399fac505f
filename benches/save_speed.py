#!/usr/bin/env python3
"""Save speed on an idle server: BGSAVE MB/s with every compression setting, against the disk
and against the zstd command line on the same data.

    python3 benches/save_speed.py [--keys 1800000] [--data json|random] [--rounds 2]

Starts target/release/forkless-server (FORKLESS_BIN overrides) with `save ""`, fills it with
`--keys` values, then times BGSAVE (polled over one connection) with `rdbcompression no`,
`rdbcompression yes` (LZF) and `snapshot-compression zstd`, `--rounds` times each in turn.
Prints the file size and the speed in MB of plain RDB per second. Then it runs
`zstd -b1 -T1` and `-T2` on the plain dump (zstd level 1's own speed on this data) and
`dd oflag=direct` into the same directory (the disk's).

`--data json`: ~520-byte order records (JSON text, words, numbers, dates), which compress 3x
with zstd -1, the kind of values a real cache holds. `--data random`: 1000 random bytes per
value, which nothing compresses.
"""
import argparse, os, random, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORKLESS_BIN = os.environ.get("FORKLESS_BIN", os.path.join(ROOT, "target/release/forkless-server"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def encode(*args):
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"".join([b"*%d\r\n" % len(parts)] + [b"$%d\r\n%s\r\n" % (len(p), p) for p in parts])


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))

    def call(self, *args):
        """One command; returns the raw reply (simple, integer or bulk)."""
        self.sock.sendall(encode(*args))
        buf = b""
        while True:
            buf += self.sock.recv(1 << 20)
            if buf.startswith(b"$"):
                n = int(buf[1 : buf.index(b"\r\n")])
                if n < 0 or len(buf) >= buf.index(b"\r\n") + 2 + n + 2:
                    return buf
            elif buf.endswith(b"\r\n"):
                return buf

    def pipeline(self, commands):
        """Sends encoded commands and reads one simple reply per command."""
        self.sock.sendall(b"".join(commands))
        buf = b""
        while buf.count(b"\r\n") < len(commands):
            buf += self.sock.recv(1 << 20)


def json_values():
    rng = random.Random(42)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "zen", "dor", "fa", "gu", "pe",
                 "qui", "ba", "shi", "tra", "mon"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(5000)]
    cities = [rng.choice(words).title() for _ in range(300)]

    def value(i):
        r = random.Random(i)
        items = ",".join(
            '{"sku":"%s-%d","qty":%d,"price":%.2f}'
            % (r.choice(words), r.randint(1000, 99999), r.randint(1, 9), r.uniform(1, 500))
            for _ in range(r.randint(3, 8))
        )
        return (
            '{"id":%d,"user":"%s","email":"%s.%s@example.com","city":"%s",'
            '"created":"2026-%02d-%02dT%02d:%02d:%02dZ","status":"%s","note":"%s","items":[%s]}'
            % (i, r.choice(words), r.choice(words), r.choice(words), r.choice(cities),
               r.randint(1, 12), r.randint(1, 28), r.randint(0, 23), r.randint(0, 59),
               r.randint(0, 59), r.choice(["new", "paid", "shipped", "returned"]),
               " ".join(r.choice(words) for _ in range(r.randint(5, 20))), items)
        ).encode()

    return value


def random_values():
    return lambda i: random.Random(i).randbytes(1000)


def bgsave(conn):
    started = time.time()
    conn.call("BGSAVE")
    while b"rdb_bgsave_in_progress:1" in conn.call("INFO", "persistence"):
        time.sleep(0.01)
    return time.time() - started


def tool_speed(cmd):
    """The last MB/s figure a zstd benchmark prints (compression speed)."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    out = (done.stdout + done.stderr).replace("\r", "\n")
    lines = [line for line in out.splitlines() if "MB/s" in line]
    return lines[-1].split(",")[-2].strip() if lines else "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_800_000)
    parser.add_argument("--data", choices=["json", "random"], default="json")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    value = json_values() if args.data == "json" else random_values()
    workdir = tempfile.mkdtemp(prefix="save_speed-", dir="/var/tmp")
    port = free_port()
    server = subprocess.Popen(
        [FORKLESS_BIN, "--port", str(port), "--dir", workdir, "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                conn = Conn(port)
                break
            except OSError:
                time.sleep(0.05)
        else:
            sys.exit("the server did not start")
        started = time.time()
        for start in range(0, args.keys, 1000):
            end = min(args.keys, start + 1000)
            conn.pipeline([encode("SET", f"order:{i:09d}", value(i)) for i in range(start, end)])
        print(f"loaded {args.keys} keys ({args.data}) in {time.time() - started:.1f} s", flush=True)
        dump = os.path.join(workdir, "dump.rdb")
        settings = {
            "plain": ("no", "none"),
            "lzf": ("yes", "none"),
            "zstd": ("no", "zstd"),
        }
        plain_size = None
        for _ in range(args.rounds):
            for name, (rdbcompression, compression) in settings.items():
                conn.call("CONFIG", "SET", "rdbcompression", rdbcompression)
                conn.call("CONFIG", "SET", "snapshot-compression", compression)
                secs = bgsave(conn)
                size = os.path.getsize(dump)
                if name == "plain":
                    plain_size = size
                    shutil.copy(dump, os.path.join(workdir, "plain.rdb"))
                print(f"{name:5s}  BGSAVE {secs:5.2f} s  file {size / 1e6:6.0f} MB  "
                      f"(x{plain_size / size:.2f})  {plain_size / secs / 1e6:5.0f} MB/s of plain RDB",
                      flush=True)
        plain = os.path.join(workdir, "plain.rdb")
        for threads in (1, 2):
            speed = tool_speed(["zstd", "-b1", "-i3", f"-T{threads}", plain])
            print(f"zstd -b1 -T{threads} on the plain dump: {speed}")
        dd = subprocess.run(
            ["dd", "if=/dev/zero", f"of={os.path.join(workdir, 'dd.bin')}", "bs=1M", "count=2048",
             "oflag=direct", "conv=fdatasync"],
            capture_output=True, text=True,
        ).stderr.strip().splitlines()
        print(f"dd oflag=direct: {dd[-1] if dd else '?'}")
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Regenerates the golden RDB files in this directory with a real Redis 7.0 server.

Usage (from anywhere; needs redis-server 7.0.x, Debian's package is what CI uses):

    python3 crates/snapshot/testdata/generate.py [--types-only | --streams-only | path/to/redis-server]

It starts its own redis-server on the first free port in 7340-7349 with a temporary --dir,
writes keys with a raw RESP client (binary-safe), SAVEs, and copies dump.rdb here:

- redis-7.0-strings.rdb: strings of every shape (integers of each width, negative, canonical
  and not, long compressible, long incompressible, binary, empty, length-encoding boundaries)
  in databases 0, 1, 5 and 15, with and without TTLs, saved with the defaults (rdbcompression
  yes, rdbchecksum yes).
- redis-7.0-strings-plain.rdb: the same data saved with rdbcompression no and rdbchecksum no
  (no LZF strings, a zero CRC).
- redis-7.0-strings.txt: what both files hold, one key per line (see its header). The key
  "soon" expires two minutes after generation: loading at a later `now` must skip it.
- redis-7.0-type-<name>.rdb: one key of each collection shape in COLLECTION_FILES below (small
  and big of each type, so that every encoding Redis 7.0 writes appears), and redis-7.0-types.txt,
  their contents as Redis reports them; plus the types forkless refuses (REFUSED_FILES: a
  stream, a function library).

- redis-7.0-type-stream-<name>.rdb: streams with deleted entries, several nodes, consumer
  groups, consumers and PELs (STREAM_FILES), and redis-7.0-streams.txt, what Redis reports of
  them.

Re-running rewrites every file (random bytes and ctime differ); commit them together. With
--types-only (first argument) it rewrites only the type files and redis-7.0-types.txt; with
--streams-only only the stream-group files and redis-7.0-streams.txt.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# 2100-01-01T00:00:00Z in ms, plus a marker so that ms precision is visible.
FAR_MS = 4102444800000


def resp_command(*args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, int):
            arg = str(arg).encode()
        elif isinstance(arg, str):
            arg = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    def call(self, *args):
        self.sock.sendall(resp_command(*args))
        return self.read_reply()

    def read_reply(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            return data[:-2]
        if kind == b"*":
            return [self.read_reply() for _ in range(int(rest))]
        raise RuntimeError("bad reply %r" % line)


def free_port():
    for port in range(7340, 7350):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 7340-7349")


def string_cases():
    """(db, key, value, expire_at_ms or None, comment)."""
    rnd = os.urandom
    cases = []

    def add(db, key, value, comment, expire=None):
        cases.append((db, key, value, expire, comment))

    ints = [
        ("0", "int8"), ("1", "int8"), ("-1", "int8"), ("127", "int8 max"), ("-128", "int8 min"),
        ("128", "int16"), ("-129", "int16"), ("32767", "int16 max"), ("-32768", "int16 min"),
        ("32768", "int32"), ("-32769", "int32"), ("2147483647", "int32 max"),
        ("-2147483648", "int32 min"),
        ("2147483648", "canonical but 64-bit: plain"), ("-2147483649", "64-bit: plain"),
        ("9223372036854775807", "i64 max: plain"), ("-9223372036854775808", "i64 min: plain"),
        ("12345678901234567890", "overflows i64: plain"), ("007", "leading zeros: plain"),
        ("-0", "negative zero: plain"), ("+1", "plus sign: plain"), (" 1", "space: plain"),
        ("1 ", "trailing space: plain"), ("1.5", "float: plain"), ("0x10", "hex: plain"),
    ]
    for i, (value, comment) in enumerate(ints):
        add(0, "int:%02d" % i, value.encode(), comment)
    add(0, "empty", b"", "empty string")
    add(0, "", b"empty key", "empty key")
    add(0, "12345", b"integer-looking key", "int16-encoded key")
    add(0, b"bin\x00key\xff", bytes(range(256)), "binary key and all byte values")
    add(0, "crlf", b"\r\n", "CRLF")
    add(0, "nul", b"\x00", "NUL")
    add(0, "utf8", "h\u00e9llo \u2713".encode(), "UTF-8")
    add(0, "a20", b"a" * 20, "20 bytes: never compressed")
    add(0, "a21", b"a" * 21, "21 bytes: smallest compressible")
    add(0, "a1000", b"a" * 1000, "compressible")
    add(0, "abc15000", b"abc" * 5000, "compressible, 14-bit length")
    add(0, "x20000", b"x" * 20000, "compressible, 32-bit length")
    add(0, "lorem", (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40),
        "text")
    add(0, "random100", rnd(100), "incompressible")
    for n in (63, 64, 16383, 16384):
        add(0, "random%d" % n, rnd(n), "incompressible, length boundary %d" % n)
    add(0, "k" * 100, b"long compressible key", "long compressible key")

    add(1, "ttl:ms", b"expires 2100-01-01 +123 ms", "PEXPIREAT", FAR_MS + 123)
    add(1, "ttl:s", b"expires 2100-01-01 +1 s", "EXPIREAT (stored in ms)", FAR_MS + 1000)
    add(1, "ttl:int", b"42", "int value with TTL", FAR_MS + 7)
    add(1, "ttl:lzf", b"z" * 500, "compressed value with TTL", FAR_MS + 8)
    add(1, "soon", b"expires two minutes after generation", "skipped when loaded later",
        int(time.time() * 1000) + 120_000)
    add(1, "persistent", b"no ttl", "no TTL in a db with TTLs")
    add(5, "db5", b"five", "db 5")
    add(5, "db5:int", b"-5", "db 5 int")
    add(15, "db15", b"last db", "db 15")
    return cases


def set_case(client, db, key, value, expire):
    client.call("SELECT", db)
    client.call("SET", key, value)
    if expire is not None:
        if expire % 1000 == 0:
            client.call("EXPIREAT", key, expire // 1000)
        else:
            client.call("PEXPIREAT", key, expire)
        assert client.call("PEXPIRETIME", key) == expire


def to_hex(data):
    """Hex, or for a repeated pattern "<pattern hex>*<count>" to keep the sidecar small."""
    if isinstance(data, str):
        data = data.encode()
    for size in range(1, 65):
        count = len(data) // size
        if count >= 8 and len(data) % size == 0 and data[:size] * count == data:
            return "%s*%d" % (data[:size].hex(), count)
    return data.hex()


def pairs(n, fmt_a, fmt_b):
    return tuple(x for i in range(n) for x in (fmt_a % i, fmt_b % i))


# Collections: file suffix -> (setup commands, OBJECT ENCODING Redis must report for the key,
# RDB type code of the key in the file). Each file holds the one key named like the type; its
# contents, as Redis reports them, go to redis-7.0-types.txt. Small and big of each type, so
# both encodings appear; a list spanning several quicklist nodes; a list with a PLAIN node.
COLLECTION_FILES = {
    "list": ([("RPUSH", "list", "a", "b", "1")], "quicklist", 18),
    "list-big": ([("RPUSH", "list") + tuple(
        ("%d" % (i * 7919 - 5000000) if i % 3 == 0 else "element-%d-%s" % (i, "y" * (i % 50)))
        for i in range(3000))], "quicklist", 18),
    "list-plain": ([("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "8192"),
                    ("RPUSH", "list", "head", "p" * 9000, "-12", "q" * 20000, "tail"),
                    ("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "0")], "quicklist", 18),
    "set-intset": ([("SADD", "set", "1", "2", "3")], "intset", 11),
    "set-intset-wide": ([("SADD", "set", "-9223372036854775808", "9223372036854775807",
                          "-1", "0", "70000", "-70000")], "intset", 11),
    "set": ([("SADD", "set", "a", "b")], "hashtable", 2),
    "set-big": ([("SADD", "set") + tuple("m%d" % i for i in range(1000))
                 + tuple(str(i) for i in range(600))], "hashtable", 2),
    "zset-listpack": ([("ZADD", "zset", "1", "a", "2.5", "b")], "listpack", 17),
    "zset-listpack-scores": ([("ZADD", "zset", "-inf", "ninf", "inf", "pinf", "-3", "neg",
                               "0.1", "tenth", "1e300", "huge", "123456789012", "bigint",
                               "-0.000001", "tiny", "7", "12345")], "listpack", 17),
    "zset-skiplist": (
        [("ZADD", "zset") + tuple(x for i in range(1000) for x in (str(i), "m%d" % i))],
        "skiplist", 5),
    "zset-skiplist-scores": ([("ZADD", "zset", "0.5", "x" * 100, "-inf", "a", "inf", "b",
                               "3.14159", "pi", "-2", "-2")], "skiplist", 5),
    "hash-listpack": ([("HSET", "hash", "f", "v", "g", "1")], "listpack", 16),
    "hash-listpack-ints": ([("HSET", "hash", "1", "-1", "", "empty field", "empty value", "",
                             "big", "9223372036854775807", "neg", "-4097")], "listpack", 16),
    "hash": ([("HSET", "hash") + tuple(x for i in range(1000) for x in ("f%d" % i, "v"))],
             "hashtable", 4),
    "hash-long-value": ([("HSET", "hash", "short", "1", "long", "z" * 100)], "hashtable", 4),
}

# Types forkless refuses: file suffix -> (setup commands, type code the loader refuses with,
# or None for a function library).
REFUSED_FILES = {
    "stream": ([("XADD", "stream", "1-1", "field", "value")], 19),
    "function": ([("FUNCTION", "LOAD",
                   "#!lua name=golden\nredis.register_function('f', function() return 1 end)")],
                 None),
}


# Streams with consumer groups: file suffix -> setup commands (explicit ids, so that the sidecar
# redis-7.0-streams.txt is the same on every run except for delivery and seen times, which it
# leaves out).
STREAM_FILES = {
    "stream-groups": [("XADD", "s", "1-1", "a", "1", "b", "hello")]
    + [("XADD", "s", "%d-0" % i, "a", str(i), "b", "v%d" % i) for i in range(2, 251)]
    + [("XADD", "s", "251-0", "other", "x"),
       ("XADD", "s", "252-0", "a", "-5", "b", "99999999999"),
       ("XDEL", "s", "5-0", "100-0"),
       ("XGROUP", "CREATE", "s", "g1", "0"),
       ("XREADGROUP", "GROUP", "g1", "alice", "COUNT", "3", "STREAMS", "s", ">"),
       ("XREADGROUP", "GROUP", "g1", "bob", "COUNT", "2", "STREAMS", "s", ">"),
       ("XACK", "s", "g1", "2-0"),
       ("XCLAIM", "s", "g1", "bob", "0", "3-0"),
       ("XGROUP", "CREATE", "s", "g2", "$"),
       ("XGROUP", "CREATECONSUMER", "s", "g2", "carol"),
       ("XGROUP", "CREATE", "s", "g3", "100-0"),
       ("XADD", "s", "253-0", "a", "1", "b", "2"),
       ("XDEL", "s", "253-0")],
    "stream-empty": [("XGROUP", "CREATE", "e", "g", "0", "MKSTREAM"),
                     ("XADD", "e", "5-0", "f", "v"),
                     ("XDEL", "e", "5-0")],
}


def write_stream_files(client, version):
    """The STREAM_FILES and redis-7.0-streams.txt: per file, the key, XINFO STREAM's counters,
    each group's XINFO GROUPS fields and its PEL as XPENDING lists it (id, consumer, count)."""
    dump = os.path.join(client.workdir, "dump.rdb")
    lines = []
    for name, commands in STREAM_FILES.items():
        client.call("FLUSHALL")
        for command in commands:
            client.call(*command)
        (key,) = client.call("KEYS", "*")
        info = client.call("XINFO", "STREAM", key)
        info = dict(zip(info[0::2], info[1::2]))
        lines.append("%s\tstream\t%s\tlength=%d,last-generated-id=%s,max-deleted-entry-id=%s,"
                     "entries-added=%d" % (name, key.decode(), info[b"length"],
                                           info[b"last-generated-id"].decode(),
                                           info[b"max-deleted-entry-id"].decode(),
                                           info[b"entries-added"]))
        for group in client.call("XINFO", "GROUPS", key):
            group = dict(zip(group[0::2], group[1::2]))
            pel = client.call("XPENDING", key, group[b"name"], "-", "+", "1000")
            lines.append("%s\tgroup\t%s\tlast-delivered-id=%s,entries-read=%s,lag=%s,"
                         "consumers=%d,pel=%s" % (
                             name, group[b"name"].decode(),
                             group[b"last-delivered-id"].decode(), group[b"entries-read"],
                             group[b"lag"], group[b"consumers"],
                             " ".join("%s:%s:%d" % (p[0].decode(), p[1].decode(), p[3])
                                      for p in pel)))
        client.call("SAVE")
        shutil.copy(dump, os.path.join(HERE, "redis-7.0-type-%s.rdb" % name))
    with open(os.path.join(HERE, "redis-7.0-streams.txt"), "w") as out:
        out.write("# What the stream files redis-7.0-type-stream-*.rdb hold, written by Redis %s\n"
                  % version.split()[2][2:])
        out.write("# with generate.py (STREAM_FILES) and read back from it. Tab-separated: file,\n")
        out.write("# 'stream' or 'group', key or group name, then fields; pel is id:consumer:count.\n")
        for line in lines:
            out.write(line + "\n")


def read_collection(client, key):
    """(type, elements as a list of bytes, or of (member, score text) for a sorted set)."""
    kind = client.call("TYPE", key).decode()
    if kind == "list":
        return kind, client.call("LRANGE", key, 0, -1)
    if kind == "set":
        return kind, sorted(client.call("SMEMBERS", key))
    if kind == "hash":
        flat = client.call("HGETALL", key)
        return kind, sorted(zip(flat[0::2], flat[1::2]))
    if kind == "zset":
        flat = client.call("ZRANGE", key, 0, -1, "WITHSCORES")
        return kind, list(zip(flat[0::2], [score.decode() for score in flat[1::2]]))
    raise RuntimeError("unexpected type " + kind)


def sidecar_elements(kind, elements):
    if kind in ("list", "set"):
        return ",".join(to_hex(e) for e in elements)
    if kind == "hash":
        return ",".join("%s=%s" % (to_hex(f), to_hex(v)) for f, v in elements)
    return ",".join("%s=%s" % (to_hex(m), score) for m, score in elements)


def start_server(redis_server, workdir, *extra):
    port = free_port()
    server = subprocess.Popen(
        [redis_server, "--port", str(port), "--dir", workdir, "--save", "",
         "--appendonly", "no", "--bind", "127.0.0.1", "--enable-debug-command", "yes",
         *extra],
        stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            client = Client(port)
            client.call("PING")
            return server, client
        except (OSError, RuntimeError):
            time.sleep(0.05)
    server.terminate()
    sys.exit("redis-server did not start")


def stop_server(server):
    server.terminate()
    server.wait()


def write_type_files(client, version):
    dump = os.path.join(client.workdir, "dump.rdb")
    lines = []
    for name, (commands, encoding, _) in COLLECTION_FILES.items():
        client.call("FLUSHALL")
        client.call("SELECT", 0)
        for command in commands:
            client.call(*command)
        (key,) = client.call("KEYS", "*")
        got = client.call("OBJECT", "ENCODING", key).decode()
        assert got == encoding, "%s: encoding %s, expected %s" % (name, got, encoding)
        kind, elements = read_collection(client, key)
        lines.append("%s\t%s\t%s\t%s" % (
            name, to_hex(key), kind, sidecar_elements(kind, elements)))
        client.call("SAVE")
        shutil.copy(dump, os.path.join(HERE, "redis-7.0-type-%s.rdb" % name))
    for name, (commands, _) in REFUSED_FILES.items():
        client.call("FLUSHALL")
        client.call("FUNCTION", "FLUSH")
        for command in commands:
            client.call(*command)
        client.call("SAVE")
        shutil.copy(dump, os.path.join(HERE, "redis-7.0-type-%s.rdb" % name))
    with open(os.path.join(HERE, "redis-7.0-types.txt"), "w") as out:
        out.write("# Contents of the collection files redis-7.0-type-<name>.rdb (one key each, db 0,\n")
        out.write("# no TTL), written by Redis %s with generate.py and read back from it.\n"
                  % version.split()[2][2:])
        out.write("# Tab-separated: name, key (hex), type, elements separated by ','. Hex may be\n")
        out.write("# <hex>*<count> for a pattern repeated count times. list: elements in order;\n")
        out.write("# set: members, sorted; hash: field=value, sorted; zset: member=score in\n")
        out.write("# ZRANGE order, the score as Redis prints it.\n")
        for line in lines:
            out.write(line + "\n")


def main():
    redis_server = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") \
        else "redis-server"
    types_only = "--types-only" in sys.argv
    streams_only = "--streams-only" in sys.argv
    version = subprocess.run([redis_server, "--version"], capture_output=True, text=True).stdout
    if "v=7.0." not in version:
        sys.exit("need Redis 7.0, got: " + version)
    workdir = tempfile.mkdtemp(prefix="forkless-golden-")
    dump = os.path.join(workdir, "dump.rdb")
    strings_rdb = os.path.join(HERE, "redis-7.0-strings.rdb")
    try:
        if streams_only:
            server, client = start_server(redis_server, workdir)
            client.workdir = workdir
            write_stream_files(client, version)
            stop_server(server)
            return
        if types_only:
            server, client = start_server(redis_server, workdir)
            client.workdir = workdir
            write_type_files(client, version)
            stop_server(server)
            return
        server, client = start_server(redis_server, workdir)
        client.workdir = workdir
        cases = string_cases()
        for db, key, value, expire, _ in cases:
            set_case(client, db, key, value, expire)
        client.call("SAVE")
        shutil.copy(dump, strings_rdb)

        write_type_files(client, version)
        write_stream_files(client, version)
        stop_server(server)

        # rdbchecksum is immutable at runtime: reload the strings into a server started with
        # both options off and save them again.
        shutil.copy(strings_rdb, dump)
        server, client = start_server(
            redis_server, workdir, "--rdbcompression", "no", "--rdbchecksum", "no")
        assert client.call("DBSIZE") == sum(1 for case in cases if case[0] == 0)
        client.call("SAVE")
        shutil.copy(dump, os.path.join(HERE, "redis-7.0-strings-plain.rdb"))
        stop_server(server)

        with open(os.path.join(HERE, "redis-7.0-strings.txt"), "w") as out:
            out.write("# Contents of redis-7.0-strings.rdb and redis-7.0-strings-plain.rdb,\n")
            out.write("# written by Redis %s with generate.py.\n" % version.split()[2][2:])
            out.write("# One key per line, tab-separated: db, key (hex), value (hex, or\n")
            out.write("# <hex>*<count> for a pattern repeated count times),\n")
            out.write("# absolute expiry in ms since the Unix epoch or '-', then a comment.\n")
            for db, key, value, expire, comment in cases:
                out.write("%d\t%s\t%s\t%s\t%s\n" % (
                    db, to_hex(key), to_hex(value),
                    "-" if expire is None else str(expire), comment))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

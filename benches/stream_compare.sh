#!/usr/bin/env bash
# XADD and XREADGROUP throughput: Debian's redis-server vs forkless, same machine, same
# redis-benchmark invocation, alternating runs, medians and the forkless/redis ratio.
#
# Each round and server: the stream `bench:stream` is deleted, then XADD appends REQUESTS
# entries to it (`XADD bench:stream * field value`, one stream, as a queue has), a consumer
# group is created at the start, and XREADGROUP reads the entries back one per call as new
# deliveries (`XREADGROUP GROUP g c COUNT 1 STREAMS bench:stream >`, each adding a pending
# entry). Both commands therefore work on one key, as producers and consumers of one queue do.
# Then XRANGE reads the stream's first 10 entries (`XRANGE bench:stream - + COUNT 10`), and XACK
# acknowledges random ids of a second stream, `bench:acks`, filled first with entries 1..REQUESTS
# (explicit ids) and read whole by the group, so every id is pending until acked
# (`XACK bench:acks g __rand_int__` with -r REQUESTS: about 63% of the calls find their id
# pending, the rest find it acked already).
#
#   benches/stream_compare.sh [ROUNDS] [REQUESTS]
#   BIN=path/to/forkless-server benches/stream_compare.sh ...   (skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
REQUESTS=${2:-200000}
CLIENTS=${CLIENTS:-50}

# Two servers only: a BASELINE_BIN is not part of this comparison.
unset BASELINE_BIN
. benches/lib.sh
start_servers

tick_hz=$(getconf CLK_TCK)
# Prints "requests per second,requests per CPU-second of the server": the second counts only
# the server's own CPU time, so it moves less than the first when others load the machine.
rps() { # port pipeline command...
  local port=$1 pipeline=$2; shift 2
  local pid=$redis_pid
  [ "$port" = "$redis_port" ] || pid=$forkless_pid
  local before after rate
  before=$(cpu_ticks "$pid")
  rate=$(redis-benchmark -p "$port" -n "$REQUESTS" -c "$CLIENTS" -P "$pipeline" -r "$REQUESTS" --csv "$@" \
    | tail -1 | cut -d, -f2 | tr -d '"')
  after=$(cpu_ticks "$pid")
  echo "$rate,$(python3 -c "print(round($REQUESTS * $tick_hz / max($after - $before, 1)))")"
}
# XADD bench:acks i f v for i in 1..REQUESTS, as RESP for redis-cli --pipe.
python3 - "$REQUESTS" >"$work/acks.resp" <<'PY'
import sys
out = sys.stdout
for i in range(1, int(sys.argv[1]) + 1):
    n = str(i)
    out.write(f"*5\r\n$4\r\nXADD\r\n$10\r\nbench:acks\r\n${len(n)}\r\n{n}\r\n$1\r\nf\r\n$1\r\nv\r\n")
PY
results="$work/results.csv"
for round in $(seq "$ROUNDS"); do
  for pipeline in 1 16; do
    for server in $(rotation "$round"); do
      port=$(port_of "$server")
      redis-cli -p "$port" del bench:stream >/dev/null
      echo "$server,$pipeline,xadd,$(rps "$port" "$pipeline" xadd bench:stream '*' field value)" >>"$results"
      redis-cli -p "$port" xgroup create bench:stream g 0 >/dev/null
      echo "$server,$pipeline,xreadgroup,$(rps "$port" "$pipeline" xreadgroup group g c count 1 streams bench:stream '>')" >>"$results"
      left=$(redis-cli -p "$port" xinfo groups bench:stream | sed -n '/^lag$/{n;p}')
      [ "$left" = 0 ] || echo "warning: $server left lag=$left entries unread" >&2
      echo "$server,$pipeline,xrange,$(rps "$port" "$pipeline" xrange bench:stream - + count 10)" >>"$results"
      redis-cli -p "$port" del bench:acks >/dev/null
      redis-cli -p "$port" --pipe <"$work/acks.resp" >/dev/null
      redis-cli -p "$port" xgroup create bench:acks g 0 >/dev/null
      redis-cli -p "$port" xreadgroup group g c streams bench:acks '>' >/dev/null
      echo "$server,$pipeline,xack,$(rps "$port" "$pipeline" xack bench:acks g __rand_int__)" >>"$results"
    done
  done
  echo "round $round/$ROUNDS done" >&2
done
python3 - "$results" "$ROUNDS" "$REQUESTS" "$CLIENTS" <<'PY'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
med, cpu = {}, {}
for server, pipeline, test, value, per_cpu in rows:
    med.setdefault((test, pipeline, server), []).append(float(value))
    cpu.setdefault((test, pipeline, server), []).append(float(per_cpu))
print(f"medians of {sys.argv[2]} alternating rounds, -n {sys.argv[3]} -c {sys.argv[4]}")
print("rps: requests per second; per CPU-s: requests per second of the server's own CPU time")
print("| test | -P | redis rps | forkless rps | forkless/redis | redis per CPU-s | forkless per CPU-s | forkless/redis per CPU-s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for test in ("xadd", "xreadgroup", "xrange", "xack"):
    for pipeline in ("1", "16"):
        key_r, key_f = (test, pipeline, "redis"), (test, pipeline, "forkless")
        r, f = statistics.median(med[key_r]), statistics.median(med[key_f])
        rc, fc = statistics.median(cpu[key_r]), statistics.median(cpu[key_f])
        print(f"| {test} | {pipeline} | {r:,.0f} | {f:,.0f} | {f / r:.2f} | {rc:,.0f} | {fc:,.0f} | {fc / rc:.2f} |")
PY

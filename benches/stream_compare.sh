#!/usr/bin/env bash
# XADD and XREADGROUP throughput: Debian's redis-server vs forkless, same machine, same
# redis-benchmark invocation, alternating runs, medians and the forkless/redis ratio.
#
# Each round and server: the stream `bench:stream` is deleted, then XADD appends REQUESTS
# entries to it (`XADD bench:stream * field value`, one stream, as a queue has), a consumer
# group is created at the start, and XREADGROUP reads the entries back one per call as new
# deliveries (`XREADGROUP GROUP g c COUNT 1 STREAMS bench:stream >`, each adding a pending
# entry). Both commands therefore work on one key, as producers and consumers of one queue do.
#
#   benches/stream_compare.sh [ROUNDS] [REQUESTS]
#   BIN=path/to/forkless-server benches/stream_compare.sh ...   (skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
REQUESTS=${2:-200000}
CLIENTS=${CLIENTS:-50}

command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || {
  echo "needs redis-server and redis-benchmark (apt-get install redis-server redis-tools)" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release -p forkless-server >&2
  BIN=target/release/forkless-server
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --daemonize no >"$work/redis.log" 2>&1 &
fl_port=$(free_port)
"$BIN" --port "$fl_port" --save '' --dir "$work" >"$work/forkless.log" 2>&1 &
for port in "$redis_port" "$fl_port"; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

rps() { # port pipeline command...
  local port=$1 pipeline=$2; shift 2
  redis-benchmark -p "$port" -n "$REQUESTS" -c "$CLIENTS" -P "$pipeline" --csv "$@" \
    | tail -1 | cut -d, -f2 | tr -d '"'
}
results="$work/results.csv"
for round in $(seq "$ROUNDS"); do
  for pipeline in 1 16; do
    if (( round % 2 )); then order="redis forkless"; else order="forkless redis"; fi
    for server in $order; do
      if [ "$server" = redis ]; then port=$redis_port; else port=$fl_port; fi
      redis-cli -p "$port" del bench:stream >/dev/null
      echo "$server,$pipeline,xadd,$(rps "$port" "$pipeline" xadd bench:stream '*' field value)" >>"$results"
      redis-cli -p "$port" xgroup create bench:stream g 0 >/dev/null
      echo "$server,$pipeline,xreadgroup,$(rps "$port" "$pipeline" xreadgroup group g c count 1 streams bench:stream '>')" >>"$results"
      left=$(redis-cli -p "$port" xinfo groups bench:stream | sed -n '/^lag$/{n;p}')
      [ "$left" = 0 ] || echo "warning: $server left lag=$left entries unread" >&2
    done
  done
  echo "round $round/$ROUNDS done" >&2
done
python3 - "$results" "$ROUNDS" "$REQUESTS" "$CLIENTS" <<'PY'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
med = {}
for server, pipeline, test, value in rows:
    med.setdefault((test, pipeline, server), []).append(float(value))
print(f"medians of {sys.argv[2]} alternating rounds, -n {sys.argv[3]} -c {sys.argv[4]}")
print("| test | -P | redis rps | forkless rps | forkless/redis |")
print("| --- | --- | --- | --- | --- |")
for test in ("xadd", "xreadgroup"):
    for pipeline in ("1", "16"):
        r = statistics.median(med[(test, pipeline, "redis")])
        f = statistics.median(med[(test, pipeline, "forkless")])
        print(f"| {test} | {pipeline} | {r:,.0f} | {f:,.0f} | {f / r:.2f} |")
PY

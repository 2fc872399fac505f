#!/usr/bin/env bash
# Side-by-side throughput and latency: Debian's redis-server vs forkless, same machine, same
# redis-benchmark invocation, alternating runs, medians and ratios.
#
#   benches/compare.sh [ROUNDS] [REQUESTS]
#   BASELINE_BIN=/path/to/older/forkless-server benches/compare.sh [ROUNDS] [REQUESTS]
#   BIN=/path/to/forkless-server benches/compare.sh ...   (runs that build, skips cargo build)
#
# Prints one table row per (test, pipeline): median rps and p50/p99 latency of each server and
# the forkless/redis ratios. With BASELINE_BIN, an older forkless build runs in the same rounds
# (a third server in the rotation) and a second table gives this build against it: the
# before/after figure a change that must not slow the server down is held to. Needs redis-server and redis-benchmark (apt-get install
# redis-server redis-tools). Both servers run with persistence off, on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
REQUESTS=${2:-1000000}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}

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
ports="$redis_port $fl_port"
servers="redis forkless"
if [ -n "${BASELINE_BIN:-}" ]; then
  base_port=$(free_port)
  mkdir -p "$work/baseline"
  "$BASELINE_BIN" --port "$base_port" --save '' --dir "$work/baseline" >"$work/baseline.log" 2>&1 &
  ports="$ports $base_port"
  servers="$servers baseline"
fi
for port in $ports; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

results="$work/results.csv"
echo "server,pipeline,test,rps,p50,p99" >"$results"
for round in $(seq "$ROUNDS"); do
  for pipeline in 1 16; do
    # Rotate which server goes first, so drift in the machine's state hurts all alike.
    order=$servers
    for _ in $(seq $(( round % $(wc -w <<<"$servers") ))); do
      order="$(cut -d' ' -f2- <<<"$order") $(cut -d' ' -f1 <<<"$order")"
    done
    for server in $order; do
      case $server in
        redis) port=$redis_port ;; forkless) port=$fl_port ;; baseline) port=$base_port ;;
      esac
      redis-cli -p "$port" flushall >/dev/null
      redis-benchmark -p "$port" -t set,get -n "$REQUESTS" -r "$KEYSPACE" -c "$CLIENTS" \
        -P "$pipeline" --csv 2>/dev/null | tail -n +2 | tr -d '"' |
        awk -F, -v s="$server" -v p="$pipeline" '{print s "," p "," $1 "," $2 "," $5 "," $7}' >>"$results"
    done
  done
  echo "round $round/$ROUNDS done" >&2
done

python3 - "$results" "$ROUNDS" "$REQUESTS" "$CLIENTS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {}
for key in {(r["server"], r["pipeline"], r["test"]) for r in rows}:
    sel = [r for r in rows if (r["server"], r["pipeline"], r["test"]) == key]
    med[key] = {f: statistics.median(float(r[f]) for r in sel) for f in ("rps", "p50", "p99")}
print(f"medians of {sys.argv[2]} alternating rounds, -n {sys.argv[3]} -c {sys.argv[4]}")
print("| test | -P | redis rps | forkless rps | rps ratio | redis p50/p99 ms | forkless p50/p99 ms | p99 ratio |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for pipeline in ("1", "16"):
    for test in ("SET", "GET"):
        r, f = med.get(("redis", pipeline, test)), med.get(("forkless", pipeline, test))
        if not r or not f:
            continue
        print(f"| {test} | {pipeline} | {r['rps']:.0f} | {f['rps']:.0f} | {f['rps']/r['rps']:.2f}x "
              f"| {r['p50']:.3f}/{r['p99']:.3f} | {f['p50']:.3f}/{f['p99']:.3f} | {f['p99']/max(r['p99'],1e-9):.2f}x |")
if any(k[0] == "baseline" for k in med):
    print()
    print("this build against the baseline build, same rounds")
    print("| test | -P | baseline rps | forkless rps | rps ratio | baseline p50/p99 ms | forkless p50/p99 ms | p99 ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for pipeline in ("1", "16"):
        for test in ("SET", "GET"):
            b, f = med.get(("baseline", pipeline, test)), med.get(("forkless", pipeline, test))
            if not b or not f:
                continue
            print(f"| {test} | {pipeline} | {b['rps']:.0f} | {f['rps']:.0f} | {f['rps']/b['rps']:.2f}x "
                  f"| {b['p50']:.3f}/{b['p99']:.3f} | {f['p50']:.3f}/{f['p99']:.3f} | {f['p99']/max(b['p99'],1e-9):.2f}x |")
PY

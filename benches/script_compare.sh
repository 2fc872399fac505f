#!/usr/bin/env bash
# EVALSHA throughput: Debian's redis-server vs forkless, same machine, same redis-benchmark
# invocation, alternating runs, medians and the forkless/redis ratio. The script is the one
# issue 15 names: `redis.call('INCR', KEYS[1])` over a random key. INCR alone runs beside it
# on each server, so the cost of a script over a plain command shows too.
#
#   benches/script_compare.sh [ROUNDS] [REQUESTS]
#   BASELINE_BIN=/path/to/older/forkless-server benches/script_compare.sh [ROUNDS] [REQUESTS]
#
# With BASELINE_BIN an older forkless build runs in the same rounds (a third server) and a
# second table gives this build against it. BIN=path skips the build and runs that binary.
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
ports="$redis_port $fl_port"
servers="redis forkless"
if [ -n "${BASELINE_BIN:-}" ]; then
  base_port=$(free_port)
  mkdir -p "$work/baseline"
  "$BASELINE_BIN" --port "$base_port" --save '' --dir "$work/baseline" >"$work/baseline.log" 2>&1 &
  ports="$ports $base_port"
  servers="$servers baseline"
fi
SCRIPT="return redis.call('INCR', KEYS[1])"
for port in $ports; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  sha=$(redis-cli -p "$port" script load "$SCRIPT")
done

rps() { # port pipeline command...
  local port=$1 pipeline=$2; shift 2
  redis-benchmark -p "$port" -n "$REQUESTS" -c "$CLIENTS" -P "$pipeline" -r 100000 --csv "$@" \
    | tail -1 | cut -d, -f2 | tr -d '"'
}
results="$work/results.csv"
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
      echo "$server,$pipeline,evalsha,$(rps "$port" "$pipeline" evalsha "$sha" 1 'key:__rand_int__')" >>"$results"
      echo "$server,$pipeline,incr,$(rps "$port" "$pipeline" incr 'key:__rand_int__')" >>"$results"
    done
  done
done
python3 - "$results" <<'PY'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
med = {}
for server, pipeline, test, value in rows:
    med.setdefault((test, pipeline, server), []).append(float(value))
print("| test | -P | redis rps | forkless rps | forkless/redis |")
print("| --- | --- | --- | --- | --- |")
for test in ("evalsha", "incr"):
    for pipeline in ("1", "16"):
        r = statistics.median(med[(test, pipeline, "redis")])
        f = statistics.median(med[(test, pipeline, "forkless")])
        print(f"| {test} | {pipeline} | {r:,.0f} | {f:,.0f} | {f / r:.2f} |")
if any(key[2] == "baseline" for key in med):
    print()
    print("| test | -P | baseline rps | forkless rps | forkless/baseline |")
    print("| --- | --- | --- | --- | --- |")
    for test in ("evalsha", "incr"):
        for pipeline in ("1", "16"):
            b = statistics.median(med[(test, pipeline, "baseline")])
            f = statistics.median(med[(test, pipeline, "forkless")])
            print(f"| {test} | {pipeline} | {b:,.0f} | {f:,.0f} | {f / b:.2f} |")
PY

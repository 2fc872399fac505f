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
# FORKLESS_ARGS adds options to both forkless servers (e.g. FORKLESS_ARGS='--worker-threads 1').
#
# Besides requests per second, each run records the server's CPU time (user + system, from
# /proc/PID/stat) per request: on a machine shared with other work, requests per second depend
# on how the scheduler shares the cores between a single-threaded redis-server and forkless's
# workers, while CPU time per request is throughput per core.
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
redis_pid=$!
"$BIN" --port "$fl_port" --save '' --dir "$work" ${FORKLESS_ARGS:-} >"$work/forkless.log" 2>&1 &
fl_pid=$!
ports="$redis_port $fl_port"
servers="redis forkless"
if [ -n "${BASELINE_BIN:-}" ]; then
  base_port=$(free_port)
  mkdir -p "$work/baseline"
  "$BASELINE_BIN" --port "$base_port" --save '' --dir "$work/baseline" ${FORKLESS_ARGS:-} >"$work/baseline.log" 2>&1 &
  base_pid=$!
  ports="$ports $base_port"
  servers="$servers baseline"
fi
SCRIPT="return redis.call('INCR', KEYS[1])"
for port in $ports; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  sha=$(redis-cli -p "$port" script load "$SCRIPT")
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rps() { # port pid pipeline command...: "rps,server CPU microseconds per request"
  local port=$1 pid=$2 pipeline=$3; shift 3
  local before after rate
  before=$(cpu_ticks "$pid")
  rate=$(redis-benchmark -p "$port" -n "$REQUESTS" -c "$CLIENTS" -P "$pipeline" -r 100000 --csv "$@" \
    | tail -1 | cut -d, -f2 | tr -d '"')
  after=$(cpu_ticks "$pid")
  echo "$rate,$(( (after - before) * 1000000 / $(getconf CLK_TCK) * 100 / REQUESTS ))"
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
        redis) port=$redis_port pid=$redis_pid ;;
        forkless) port=$fl_port pid=$fl_pid ;;
        baseline) port=$base_port pid=$base_pid ;;
      esac
      echo "$server,$pipeline,evalsha,$(rps "$port" "$pid" "$pipeline" evalsha "$sha" 1 'key:__rand_int__')" >>"$results"
      echo "$server,$pipeline,incr,$(rps "$port" "$pid" "$pipeline" incr 'key:__rand_int__')" >>"$results"
    done
  done
done
python3 - "$results" <<'PY'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
med, cpu = {}, {}
for server, pipeline, test, value, centi_us in rows:
    med.setdefault((test, pipeline, server), []).append(float(value))
    cpu.setdefault((test, pipeline, server), []).append(float(centi_us) / 100)
def table(other, label):
    print(f"| test | -P | {label} rps | forkless rps | forkless/{label} | {label} CPU us/req "
          f"| forkless CPU us/req | per core: {label} CPU / forkless CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for test in ("evalsha", "incr"):
        for pipeline in ("1", "16"):
            r = statistics.median(med[(test, pipeline, other)])
            f = statistics.median(med[(test, pipeline, "forkless")])
            rc = statistics.median(cpu[(test, pipeline, other)])
            fc = statistics.median(cpu[(test, pipeline, "forkless")])
            print(f"| {test} | {pipeline} | {r:,.0f} | {f:,.0f} | {f / r:.2f} | {rc:.2f} "
                  f"| {fc:.2f} | {rc / fc:.2f} |")
table("redis", "redis")
if any(key[2] == "baseline" for key in med):
    print()
    table("baseline", "baseline")
PY

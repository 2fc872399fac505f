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

. benches/lib.sh
start_servers
SCRIPT="return redis.call('INCR', KEYS[1])"
for server in $servers; do
  sha=$(redis-cli -p "$(port_of "$server")" script load "$SCRIPT")
done

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
    for server in $(rotation "$round"); do
      port=$(port_of "$server") pid=$(pid_of "$server")
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

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

. benches/lib.sh
start_servers

results="$work/results.csv"
echo "server,pipeline,test,rps,p50,p99" >"$results"
for round in $(seq "$ROUNDS"); do
  for pipeline in 1 16; do
    for server in $(rotation "$round"); do
      port=$(port_of "$server")
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

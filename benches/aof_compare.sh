#!/usr/bin/env bash
# AOF throughput: forkless vs Debian's redis-server, same machine, same redis-benchmark
# invocation (SET, 100-byte values, 50 clients, pipeline 16), without the AOF (`none`), with
# `appendonly yes` + `appendfsync everysec`, and with `appendfsync always`. Every run starts a
# fresh server in a fresh directory.
#
#   benches/aof_compare.sh [ROUNDS] [REQUESTS]
#   SKIP_BUILD=1 benches/aof_compare.sh ...                 (run target/release/forkless-server)
#   BIN=path benches/aof_compare.sh ...                     (run that forkless build)
#   BASELINE_BIN=/path/to/older/forkless-server benches/aof_compare.sh ...
#   SETTINGS="none everysec" benches/aof_compare.sh ...     (a subset of none everysec always)
#
# Each round runs every (server, setting) pair once: forkless none, forkless everysec, forkless
# always, redis none, ..., (baseline none, ...), the list rotated by one more place each round,
# so that the runs a ratio compares are seconds apart rather than minutes, and drift in the
# machine's load hurts every pair alike. FORKLESS_ARGS adds options to both forkless builds.
#
# Output: one line per run (`round,server,setting,rps,cpu_us_per_request`), then markdown
# tables of the medians over the rounds, per setting: requests per second, the ratio to the
# same server without the AOF (of the medians, and the median of the per-round ratios, which
# pairs runs made close together), the forkless/redis ratio, and the server's CPU time (user +
# system, all threads, from /proc/PID/stat) per request. On a machine shared with other work
# requests per second move with the load; CPU time per request is the cost of a request.
# Issue 18's targets: `everysec` >= 0.9x of no AOF and >= redis-server; `always` >=
# redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
REQUESTS=${2:-200000}
SETTINGS=${SETTINGS:-none everysec always}
[ -z "${SKIP_BUILD:-}" ] || BIN=${BIN:-target/release/forkless-server}

. benches/lib.sh

names="forkless redis"
[ -z "${BASELINE_BIN:-}" ] || names="$names baseline"
pairs=()
for name in $names; do
  for setting in $SETTINGS; do pairs+=("$name:$setting"); done
done

pid=
start() { # server setting dir port
  local aof=(--appendonly no)
  case $2 in everysec|always) aof=(--appendonly yes --appendfsync "$2") ;; esac
  case $1 in
    redis)
      redis-server --port "$4" --bind 127.0.0.1 --save '' --dir "$3" --daemonize no "${aof[@]}" \
        >"$3/log" 2>&1 &
      ;;
    forkless)
      # shellcheck disable=SC2086 # FORKLESS_ARGS is a list of options
      "$BIN" --port "$4" --save '' --dir "$3" "${aof[@]}" ${FORKLESS_ARGS:-} >"$3/log" 2>&1 &
      ;;
    baseline)
      # shellcheck disable=SC2086
      "$BASELINE_BIN" --port "$4" --save '' --dir "$3" "${aof[@]}" ${FORKLESS_ARGS:-} \
        >"$3/log" 2>&1 &
      ;;
  esac
  pid=$!
  for _ in $(seq 200); do redis-cli -p "$4" ping 2>/dev/null | grep -q PONG && return; sleep 0.05; done
  echo "$1 did not start" >&2; cat "$3/log" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

results="$work/results.csv"
echo "round,server,setting,rps,cpu_us_per_request"
for round in $(seq "$ROUNDS"); do
  n=${#pairs[@]}
  for i in $(seq 0 $((n - 1))); do
    pair=${pairs[$(( (i + round - 1) % n ))]}
    server=${pair%%:*} setting=${pair#*:}
    dir="$work/$server-$setting-$round"; mkdir -p "$dir"
    port=$(free_port)
    start "$server" "$setting" "$dir" "$port"
    before=$(cpu_ticks "$pid")
    rps=$(redis-benchmark -p "$port" -t set -n "$REQUESTS" -P 16 -c 50 -d 100 --csv \
      | tail -1 | cut -d, -f2 | tr -d '"')
    after=$(cpu_ticks "$pid")
    stop
    cpu=$(python3 -c "print(f'{($after - $before) * 1e6 / $(getconf CLK_TCK) / $REQUESTS:.3f}')")
    echo "$round,$server,$setting,$rps,$cpu" | tee -a "$results"
    rm -rf "$dir"
  done
done
python3 - "$results" "$SETTINGS" <<'PY'
import csv, statistics, sys
rps, cpu = {}, {}
for round_, server, setting, value, us in csv.reader(open(sys.argv[1])):
    rps.setdefault((server, setting), {})[int(round_)] = float(value)
    cpu.setdefault((server, setting), {})[int(round_)] = float(us)
settings = sys.argv[2].split()
servers = [s for s in ("forkless", "redis", "baseline") if any(k[0] == s for k in rps)]
med = lambda d: statistics.median(d.values())
def own_ratio(server, setting):
    """The median over rounds of this setting's rps / the same round's rps without the AOF,
    and the ratio of the medians."""
    if "none" not in settings:
        return None, None
    this, none = rps[(server, setting)], rps[(server, "none")]
    paired = [this[r] / none[r] for r in this if r in none]
    return statistics.median(paired), med(this) / med(none)
print()
print("| setting | server | rps (median) | / own none: median of rounds | / own none: of medians "
      "| CPU us/req (median) |")
print("| --- | --- | --- | --- | --- | --- |")
for setting in settings:
    for server in servers:
        paired, of_medians = own_ratio(server, setting)
        ratio = "" if paired is None else f"{paired:.2f}x | {of_medians:.2f}x"
        print(f"| {setting} | {server} | {med(rps[(server, setting)]):,.0f} | {ratio or ' | '} "
              f"| {med(cpu[(server, setting)]):.2f} |")
for other in [s for s in servers if s != "forkless"]:
    print()
    print(f"| setting | forkless/{other} rps (of medians) | forkless/{other} rps (median of rounds) "
          f"| {other} CPU / forkless CPU |")
    print("| --- | --- | --- | --- |")
    for setting in settings:
        f, o = rps[("forkless", setting)], rps[(other, setting)]
        paired = statistics.median(f[r] / o[r] for r in f if r in o)
        print(f"| {setting} | {med(f) / med(o):.2f}x | {paired:.2f}x "
              f"| {med(cpu[(other, setting)]) / med(cpu[('forkless', setting)]):.2f}x |")
PY

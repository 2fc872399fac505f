#!/usr/bin/env bash
# AOF throughput: forkless vs Debian's redis-server, same machine, same redis-benchmark
# invocation (SET, 100-byte values, 50 clients, pipeline 16), without the AOF, with
# `appendonly yes` + `appendfsync everysec`, and with `appendfsync always`. Every run starts
# a fresh server in a fresh directory; the two servers alternate within each round. Prints
# every run, then per setting the medians, forkless/redis, and forkless's ratio to its own
# run without the AOF (issue 18: everysec >= 0.9x of no AOF; always >= redis-server).
#
#   benches/aof_compare.sh [ROUNDS] [REQUESTS]      (SKIP_BUILD=1: use the built binary)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
REQUESTS=${2:-200000}

command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || {
  echo "needs redis-server and redis-benchmark (apt-get install redis-server redis-tools)" >&2; exit 1; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p forkless-server >&2
BIN=${BIN:-target/release/forkless-server}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

start() { # server setting dir port
  local aof=(--appendonly no)
  case $2 in everysec|always) aof=(--appendonly yes --appendfsync "$2") ;; esac
  if [ "$1" = redis ]; then
    redis-server --port "$4" --bind 127.0.0.1 --save '' --dir "$3" --daemonize no "${aof[@]}" \
      >"$3/log" 2>&1 &
  else
    "$BIN" --port "$4" --save '' --dir "$3" "${aof[@]}" >"$3/log" 2>&1 &
  fi
  pid=$!
  for _ in $(seq 200); do redis-cli -p "$4" ping 2>/dev/null | grep -q PONG && return; sleep 0.05; done
  echo "$1 did not start" >&2; cat "$3/log" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

results="$work/results.csv"
for setting in none everysec always; do
  for round in $(seq "$ROUNDS"); do
    for server in forkless redis; do
      dir="$work/$server-$setting-$round"; mkdir -p "$dir"
      port=$(free_port)
      start "$server" "$setting" "$dir" "$port"
      rps=$(redis-benchmark -p "$port" -t set -n "$REQUESTS" -P 16 -c 50 -d 100 --csv \
        | tail -1 | cut -d, -f2 | tr -d '"')
      stop
      echo "$setting,$server,$round,$rps" | tee -a "$results"
      rm -rf "$dir"
    done
  done
done
python3 - "$results" <<'PY'
import csv, statistics, sys
runs = {}
for setting, server, _round, rps in csv.reader(open(sys.argv[1])):
    runs.setdefault((setting, server), []).append(float(rps))
med = {key: statistics.median(values) for key, values in runs.items()}
print("setting    forkless     redis   forkless/redis  forkless/forkless-no-aof  redis/redis-no-aof")
for setting in ("none", "everysec", "always"):
    f, r = med[(setting, "forkless")], med[(setting, "redis")]
    print(f"{setting:9} {f:9.0f} {r:9.0f}   {f/r:6.2f}x          {f/med[('none','forkless')]:6.2f}x"
          f"                  {r/med[('none','redis')]:6.2f}x")
PY

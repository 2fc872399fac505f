#!/bin/bash
# The process's memory against used_memory under eviction, and its peak during a BGSAVE
# (docs/benchmarks.md, "Why 0.9 L failed at 256 MiB, and what fixed it").
#
#   benches/evict_rss.sh BIN MAXMEMORY_MB CGROUP_LIMIT_MIB N_SETS [extra server options...]
#
# Starts BIN in a memory cgroup (v1, needs root) limited to CGROUP_LIMIT_MIB, with `maxmemory
# MAXMEMORY_MB allkeys-lru`; fills it with N_SETS SETs of 1000-byte values to random new keys
# (redis-benchmark, 50 clients, -P 16: every SET past the limit evicts), then runs the same load
# again and prints INFO memory's figures and the cgroup's (MiB) under it; resets the cgroup's
# max usage, sends BGSAVE, waits for it, and prints the figures with the peak (cg_max).
# Stops only the processes it started, by PID. Wrap runs over 256 MiB in `flock /work/bench.lock`.
set -u
BIN=$1; MAXMEM=$2; LIMIT=$3; N=$4; shift 4
CG=/sys/fs/cgroup/memory/evict-rss-$$
mkdir "$CG"
echo $((LIMIT << 20)) > "$CG/memory.limit_in_bytes"
echo $((LIMIT << 20)) > "$CG/memory.memsw.limit_in_bytes" 2>/dev/null
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DIR=$(mktemp -d)
sh -c "echo \$\$ > $CG/cgroup.procs; exec $BIN --port $PORT --save '' --dir $DIR --maxmemory ${MAXMEM}mb --maxmemory-policy allkeys-lru $*" > "$DIR/log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do redis-cli -p "$PORT" ping > /dev/null 2>&1 && break; sleep 0.1; done
cli() { redis-cli -p "$PORT" "$@"; }
figures() {
  local info field
  info=$(cli info memory | tr -d '\r')
  for field in used_memory used_memory_rss allocator_allocated allocator_active allocator_resident mem_snapshot_retained; do
    printf "%s=%s " "$field" "$(echo "$info" | awk -F: -v k="$field" '$1 == k { printf "%.1f", $2 / 1048576 }')"
  done
  printf "cg_rss=%.1f cg_usage=%.1f cg_max=%.1f" \
    "$(awk '$1 == "total_rss" { print $2 / 1048576 }' "$CG/memory.stat")" \
    "$(awk '{ print $1 / 1048576 }' "$CG/memory.usage_in_bytes")" \
    "$(awk '{ print $1 / 1048576 }' "$CG/memory.max_usage_in_bytes")"
  echo " keys=$(cli dbsize) oom_kills=$(awk '$1 == "oom_kill" { print $2 }' "$CG/memory.oom_control")"
}
load() { redis-benchmark -p "$PORT" -t set -d 1000 -r 1000000000 -n "$N" -P 16 -c 50 -q > /dev/null 2>&1; }
load
echo "after fill: $(figures)"
load &
LOAD=$!
sleep 2
echo "under load: $(figures)"
echo 0 > "$CG/memory.max_usage_in_bytes"
cli bgsave
for _ in $(seq 600); do
  sleep 0.05
  cli info persistence | grep -q 'rdb_bgsave_in_progress:0' && break
  kill -0 "$SERVER" 2> /dev/null || break
done
echo "after save: $(figures)"
cli info persistence | tr -d '\r' | grep -E 'rdb_last_bgsave_status|snapshot_retained_budget' | tr '\n' ' '
echo
kill "$LOAD" 2> /dev/null
wait "$LOAD" 2> /dev/null
if kill -0 "$SERVER" 2> /dev/null; then echo "server alive"; kill "$SERVER"; else echo "SERVER GONE"; fi
wait "$SERVER" 2> /dev/null
sleep 0.2
rmdir "$CG"
rm -rf "$DIR"

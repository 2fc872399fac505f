#!/usr/bin/env bash
# The cost of eviction as the dataset grows: each server starts with `maxmemory M
# allkeys-lru`, is filled with FILL inserts of 1000-byte values (-P 16; the fill itself
# evicts), then redis-benchmark SETs new keys (-r 100000000, so every SET inserts and evicts):
# 200000 at -P 1 and 1000000 at -P 16, 50 clients. Alternates BASE_BIN, HEAD_BIN and
# redis-server, ROUNDS rounds; prints bin,maxmemory,P1,rps,p99_ms,P16,rps,p99_ms,evicted,dbsize.
# Hold the machine-wide lock around it (the dataset is M):
#
#   BASE_BIN=/path/to/before HEAD_BIN=target/release/forkless-server \
#     flock /work/bench.lock benches/maxmemory_insert.sh [M] [FILL] [ROUNDS]
set -u
MM=${1:-1gb}
FILL=${2:-1200000}
ROUNDS=${3:-3}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
one() { # bin
  local port work pid p1 p16
  port=$(free_port)
  work=$(mktemp -d)
  if [ "$1" = redis ]; then
    redis-server --port "$port" --save '' --appendonly no --dir "$work" \
      --maxmemory "$MM" --maxmemory-policy allkeys-lru >/dev/null 2>&1 &
  else
    "$1" --port "$port" --save '' --dir "$work" \
      --maxmemory "$MM" --maxmemory-policy allkeys-lru >/dev/null 2>&1 &
  fi
  pid=$!
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-benchmark -p "$port" -c 50 -n "$FILL" -P 16 -r 100000000 -d 1000 -t set -q >/dev/null 2>&1
  p1=$(redis-benchmark -p "$port" -c 50 -n 200000 -r 100000000 -d 1000 -t set --csv 2>/dev/null |
    tail -1 | cut -d, -f2,7 | tr -d '"')
  p16=$(redis-benchmark -p "$port" -c 50 -n 1000000 -P 16 -r 100000000 -d 1000 -t set --csv \
    2>/dev/null | tail -1 | cut -d, -f2,7 | tr -d '"')
  echo "$1,$MM,P1,$p1,P16,$p16,$(redis-cli -p "$port" info stats | grep evicted_keys |
    tr -d '\r'),$(redis-cli -p "$port" dbsize)"
  kill "$pid"
  wait "$pid" 2>/dev/null
  rm -rf "$work"
}
for _ in $(seq "$ROUNDS"); do
  for bin in "$BASE_BIN" "$HEAD_BIN" redis; do one "$bin"; done
done

#!/usr/bin/env bash
# SET/GET throughput of two forkless builds without a memory limit, and of the second with
# `maxmemory 8mb allkeys-random` (so most SETs evict), alternating, 3 rounds, 50 clients,
# -P 1 and -P 16, 100-byte values over 100000 keys. Prints round,variant,pipeline,test,rps
# and each server's evicted_keys/used_memory.
#
#   BASE_BIN=/path/to/before/forkless-server HEAD_BIN=target/release/forkless-server \
#     benches/maxmemory.sh [REQUESTS]
set -u
N=${1:-200000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run() { # port pipeline test
  timeout 120 redis-benchmark -p "$1" -c 50 -n "$N" -P "$2" -r 100000 -d 100 -t "$3" --csv 2>/dev/null |
    tail -1 | cut -d, -f2 | tr -d '"'
}
for round in 1 2 3; do
  for variant in base head head-evict; do
    port=$(free_port)
    case $variant in
      base) args=("$BASE_BIN") ;;
      head) args=("$HEAD_BIN") ;;
      head-evict) args=("$HEAD_BIN" --maxmemory 8mb --maxmemory-policy allkeys-random) ;;
    esac
    "${args[@]}" --port "$port" --save '' --dir "$work" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    for p in 1 16; do
      for t in set get; do
        echo "$round,$variant,P$p,$t,$(run "$port" "$p" "$t")"
      done
    done
    echo "$round,$variant,$(redis-cli -p "$port" info stats | grep evicted_keys | tr -d '\r'),$(
      redis-cli -p "$port" info memory | grep ^used_memory: | tr -d '\r')"
    kill "$pid"
    wait "$pid" 2>/dev/null
  done
done

#!/usr/bin/env bash
# Runs units of Redis 7.0.15's own suite that start their own servers (spawn mode, which
# `redis-suite` cannot: it runs in external mode, where these units are tagged
# external:skip), with forkless standing in for src/redis-server. Debian's redis-check-aof,
# redis-cli and redis-benchmark stand in for Redis's. Prints runtest's output per unit.
#
#   tests/redis-suite/spawn.sh [UNIT ...]      default: integration/aof integration/aof-multi-part
#   FORKLESS_BIN=target/release/forkless-server tests/redis-suite/spawn.sh
#   RUNTEST_ARGS='--skiptest "..."'             extra runtest options
#   FORKLESS_ARGS='--snapshot-mode fork'        extra options for every forkless started
#   REAL_REDIS=1 tests/redis-suite/spawn.sh     the same units against Debian's redis-server
#
# Needs Redis's source tree at REDIS_SRC (default /tmp/redis-suite-cache/src, which
# /work/shared/tools/redis-suite fetches), tclsh, and Debian's redis-tools.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=${REDIS_SRC:-/tmp/redis-suite-cache/src}
BIN=$(realpath "${FORKLESS_BIN:-target/debug/forkless-server}")
[ -x "$BIN" ] || { echo "no forkless binary at $BIN (cargo build -p forkless-server)" >&2; exit 2; }
[ -d "$SRC/tests" ] || { echo "no Redis source tree at $SRC" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$SRC/tests" "$SRC/runtest" "$work/"
mkdir "$work/src"
for tool in redis-check-aof redis-cli redis-benchmark; do ln -s "$(command -v "$tool")" "$work/src/$tool"; done
# The harness takes a server as started when " PID: <pid>" is in its log (Redis's logo, printed
# once it listens). forkless prints no logo: the wrapper says it once the port accepts, or, for
# a server that refused to start, puts the line first in its log once it has exited. The
# watcher is started in a subshell that exits at once, so it is not the server's child: the
# suite finds the server's fork children with `pgrep -P` (get_child_pid) and must see only them.
cat > "$work/src/redis-server" <<EOF
#!/bin/bash
pid=\$\$
port=\$(awk '\$1=="port"{print \$2}' "\$1" 2>/dev/null | tail -1)
log=\$(readlink "/proc/\$\$/fd/1")
( (
  for _ in \$(seq 1 2400); do
    if ! kill -0 "\$pid" 2>/dev/null; then
      if [ -f "\$log" ]; then { echo " PID: \$pid"; cat "\$log"; } > "\$log.pid" && mv "\$log.pid" "\$log"; fi
      exit 0
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/\$port") 2>/dev/null; then echo " PID: \$pid"; exit 0; fi
    sleep 0.05
  done
) & )
exec "$BIN" "\$@" ${FORKLESS_ARGS:-}
EOF
chmod +x "$work/src/redis-server"
# REAL_REDIS=1: Debian's redis-server itself, for the baseline (it prints its own logo).
[ -z "${REAL_REDIS:-}" ] || ln -sf "$(command -v redis-server)" "$work/src/redis-server"
units=("$@")
[ ${#units[@]} -gt 0 ] || units=(integration/aof integration/aof-multi-part)
cd "$work"
status=0
for unit in "${units[@]}"; do
  eval "./runtest --single $unit --clients 1 --timeout 120 ${RUNTEST_ARGS:-}" || status=1
done
exit $status

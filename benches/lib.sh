# Shared by the side-by-side benchmark scripts (compare.sh, script_compare.sh,
# stream_compare.sh; aof_compare.sh, which starts a fresh server per run, uses its build, work
# directory, free_port and cpu_ticks only): sourced, not run. Starts Debian's redis-server, forkless ($BIN, built if
# unset) and, with BASELINE_BIN, an older forkless build, each on a free loopback port with
# persistence off, in a temporary directory removed on exit; stops only the servers it
# started (the script's own jobs). FORKLESS_ARGS adds options to both forkless servers,
# BASELINE_ARGS to the baseline only (BASELINE_BIN=$BIN BASELINE_ARGS='--worker-threads 1'
# compares one build's default against one worker).
#
# After `start_servers`: $work, $servers ("redis forkless [baseline]"), and per server
# `port_of NAME` / `pid_of NAME`; `rotation ROUND` gives the servers in the order to run in
# that round; `cpu_ticks PID` a server's CPU time so far.

command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || {
  echo "needs redis-server and redis-benchmark (apt-get install redis-server redis-tools)" >&2
  exit 1
}
if [ -z "${BIN:-}" ]; then
  cargo build --release -p forkless-server >&2
  BIN=target/release/forkless-server
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start_servers() {
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    --daemonize no >"$work/redis.log" 2>&1 &
  redis_pid=$!
  forkless_port=$(free_port)
  # shellcheck disable=SC2086 # FORKLESS_ARGS is a list of options
  "$BIN" --port "$forkless_port" --save '' --dir "$work" ${FORKLESS_ARGS:-} \
    >"$work/forkless.log" 2>&1 &
  forkless_pid=$!
  servers="redis forkless"
  if [ -n "${BASELINE_BIN:-}" ]; then
    baseline_port=$(free_port)
    mkdir -p "$work/baseline"
    # shellcheck disable=SC2086
    "$BASELINE_BIN" --port "$baseline_port" --save '' --dir "$work/baseline" ${FORKLESS_ARGS:-} \
      ${BASELINE_ARGS:-} \
      >"$work/baseline.log" 2>&1 &
    baseline_pid=$!
    servers="$servers baseline"
  fi
  local server
  for server in $servers; do
    for _ in $(seq 100); do redis-cli -p "$(port_of "$server")" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
}

port_of() { local name="${1}_port"; echo "${!name}"; }
pid_of() { local name="${1}_pid"; echo "${!name}"; }

# The servers rotated by ROUND, so drift in the machine's state hurts all alike.
rotation() {
  local order=$servers
  for _ in $(seq $(( $1 % $(wc -w <<<"$servers") ))); do
    order="$(cut -d' ' -f2- <<<"$order") $(cut -d' ' -f1 <<<"$order")"
  done
  echo "$order"
}

# A server's CPU time so far (user + system, all threads), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

#!/usr/bin/env bash
# GATEWAY_CMD for the shared reverse-proxy bench harness (shared/bench/run.sh): runs
# academy-gateway in front of the harness upstream with one user connected through the real
# OAuth2 flow (against the built-in simulator) and BENCH_KEY (default "k1-bench-harness") registered
# as a legacy key: keys have at least 12 characters, so the harness runs with
# GATEWAY_HEADER='x-api-key: k1-bench-harness'. Redis and the simulator run as children of this
# script, so the harness counts their (idle) CPU too. Everything listens on 127.0.0.1 and stops
# with this script.
#
#   GATEWAY_NAME=academy-gateway GATEWAY_HEADER='x-api-key: k1-bench-harness' \
#     GATEWAY_CMD='exec bench/gateway.sh' shared/bench/run.sh
#
# Needs: redis-server, curl, and LISTEN_ADDR / UPSTREAM_URL from the harness. Knobs (GATEWAY_BIN,
# REDIS_PORT, OPS_PORT, SIM_MINUTE, REFRESH_BEFORE, LOG_LEVEL, BENCH_KEY): bench/lib.sh; SIM_MINUTE
# and REFRESH_BEFORE are for refresh-under-load runs (access tokens live 5 Academy minutes).
# GATEWAY_STATS (a path prefix): GATEWAY_STATS.PID keeps the gateway process's peak RSS and
# Redis's INFO commandstats since the gateway began serving the harness (see stats below).
set -euo pipefail
: "${LISTEN_ADDR:?set by the harness}" "${UPSTREAM_URL:?set by the harness}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d -t agwbench.XXXXXX)
pids=()
# stats: with GATEWAY_STATS set, GATEWAY_STATS.PID holds, rewritten every second while the
# gateway serves, its peak RSS and Redis's command counts (the harness stops Redis with the rest).
stats() {
  while kill -0 "$gw" 2>/dev/null; do
    { echo "# $(date -u +%FT%TZ) $LISTEN_ADDR gateway VmHWM $(awk '/^VmHWM/ {print $2, $3}' "/proc/$gw/status")"
      redis-cli -p "$REDIS_PORT" info commandstats | grep '^cmdstat_'; } >"$GATEWAY_STATS.$$.tmp" 2>/dev/null &&
      mv "$GATEWAY_STATS.$$.tmp" "$GATEWAY_STATS.$$"
    sleep 1
  done
}
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
trap 'exit 0' INT TERM

. "$ROOT/bench/lib.sh"
start_deps
upstream="{base_url: \"$UPSTREAM_URL\", strip_prefixes: [\"/api/v1\"]}"

# Bootstrap on a private port, so the harness only sees the gateway once it is ready: the
# harness key becomes a legacy key of user "bench", connected through the real OAuth2 flow.
write_config "127.0.0.1:$(free_port)" "" "$upstream"
serve
connect_bench
kill "$gw"; wait "$gw" || true

write_config "$LISTEN_ADDR" "" "$upstream"
serve
redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
if [[ -n ${GATEWAY_STATS:-} ]]; then stats & pids+=($!); fi
wait "$gw"

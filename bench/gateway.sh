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
# Needs: redis-server, curl, and LISTEN_ADDR / UPSTREAM_URL from the harness. LOG_LEVEL (default
# info) sets the gateway's log level; access lines go to /dev/null. GATEWAY_BIN runs that binary
# instead of building one; REDIS_PORT and OPS_PORT fix those ports (to read Redis INFO
# commandstats or the gateway's /metrics during a run). SIM_MINUTE (default 1m) is how long one
# Academy minute lasts for the simulator and the gateway (access tokens live 5 of them), and
# REFRESH_BEFORE (default 60s) the gateway's oauth.refresh_before: for refresh-under-load runs.
# GATEWAY_STATS (a path prefix): GATEWAY_STATS.PID keeps the gateway process's peak RSS and
# Redis's INFO commandstats since the gateway began serving the harness (see stats below).
set -euo pipefail
: "${LISTEN_ADDR:?set by the harness}" "${UPSTREAM_URL:?set by the harness}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d -t agwbench.XXXXXX)
BIN=${GATEWAY_BIN:-$WORK/academy-gateway}
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Built as the image builds it (Dockerfile): no cgo, no symbol tables (1.7 MB less RSS than a
# default build: no libc mapped, smaller text).
[[ -n ${GATEWAY_BIN:-} ]] || (cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN" ./cmd/academy-gateway)

REDIS_PORT=${REDIS_PORT:-$(free_port)}; SIM_PORT=$(free_port); OPS_PORT=${OPS_PORT:-$(free_port)}
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$WORK" >/dev/null &
pids+=($!)
"$BIN" sim --listen "127.0.0.1:$SIM_PORT" --minute "${SIM_MINUTE:-1m}" >/dev/null &
pids+=($!)
SIM=http://127.0.0.1:$SIM_PORT

# config PROXY_ADDR writes the configuration for a proxy listener on PROXY_ADDR.
config() {
  cat >"$WORK/config.yaml" <<YAML
listen: {proxy: "$1", ops: "127.0.0.1:$OPS_PORT"}
upstream: {base_url: "$UPSTREAM_URL", strip_prefixes: ["/api/v1"]}
oauth:
  client_id: academy-demo-client
  client_secret: academy-demo-secret
  authorize_url: $SIM/authorize
  token_url: $SIM/token
  refresh_url: $SIM/refresh
  invalidate_url: $SIM/invalidate
  redirect_url: http://$1/oauth/callback
  expires_in_unit: ${SIM_MINUTE:-1m}
  refresh_before: ${REFRESH_BEFORE:-60s}
redis: {url: "redis://127.0.0.1:$REDIS_PORT/0"}
security: {encryption_keys: ["$ENC_KEY"]}
log: {level: ${LOG_LEVEL:-info}}
YAML
}
serve() {  # serve PROXY_ADDR: start the gateway in the background and wait until it is ready
  config "$1"
  "$BIN" serve 2>/dev/null &
  gw=$!
  pids+=("$gw")
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$OPS_PORT/readyz" >/dev/null && return; sleep 0.1; done
  echo "gateway did not become ready" >&2; exit 1
}
ENC_KEY=$(head -c 32 /dev/urandom | base64)
export ACADEMY_GATEWAY_CONFIG=$WORK/config.yaml
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# Bootstrap on a private port, so the harness only sees the gateway once it is ready: the
# harness key becomes a legacy key of user "bench", connected through the real OAuth2 flow.
serve "127.0.0.1:$(free_port)"
"$BIN" keys create --user bench --key "${BENCH_KEY:-k1-bench-harness}" >/dev/null
link=$("$BIN" connections authorize bench --json | sed -n 's/.*"authorize_url": *"\([^"]*\)".*/\1/p')
consent=$(curl -fs -c "$WORK/jar" -o /dev/null -w '%{redirect_url}' "$link")
curl -fsL -b "$WORK/jar" -o /dev/null "$consent&sim_user=john"
kill "$gw"; wait "$gw" || true

serve "$LISTEN_ADDR"
redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
if [[ -n ${GATEWAY_STATS:-} ]]; then stats & pids+=($!); fi
wait "$gw"

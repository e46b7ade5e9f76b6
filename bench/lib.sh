# bench/lib.sh: what bench/gateway.sh and bench/forward-auth.sh share. Sourced, not run; the
# caller sets ROOT (the repository), WORK (a scratch directory) and pids (an array of what to
# stop on exit). Everything listens on 127.0.0.1.
#
# Knobs: GATEWAY_BIN (run that binary instead of building one), REDIS_PORT, OPS_PORT,
# REDIS_PORT_FILE (receives the Redis port), SIM_MINUTE (default 1m: one Academy minute for the
# simulator and the gateway), REFRESH_BEFORE (default 60s), LOG_LEVEL (default info),
# BENCH_KEY (default k1-bench-harness: keys have at least 12 characters).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_deps: builds the gateway as the Dockerfile does (no cgo, no symbol tables: 1.7 MB less
# RSS than a default build) unless GATEWAY_BIN is set, and starts redis-server and the
# simulator. Sets BIN, REDIS_PORT, OPS_PORT, SIM, ENC_KEY and ACADEMY_GATEWAY_CONFIG.
start_deps() {
  BIN=${GATEWAY_BIN:-$WORK/academy-gateway}
  [[ -n ${GATEWAY_BIN:-} ]] || (cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN" ./cmd/academy-gateway)
  REDIS_PORT=${REDIS_PORT:-$(free_port)}; OPS_PORT=${OPS_PORT:-$(free_port)}
  local sim_port; sim_port=$(free_port)
  [[ -n ${REDIS_PORT_FILE:-} ]] && echo "$REDIS_PORT" >"$REDIS_PORT_FILE"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$WORK" >/dev/null &
  pids+=($!)
  "$BIN" sim --listen "127.0.0.1:$sim_port" --minute "${SIM_MINUTE:-1m}" >/dev/null &
  pids+=($!)
  SIM=http://127.0.0.1:$sim_port
  ENC_KEY=$(head -c 32 /dev/urandom | base64)
  export ACADEMY_GATEWAY_CONFIG=$WORK/config.yaml
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return; sleep 0.1; done
}

# write_config PROXY_ADDR LISTEN_EXTRA UPSTREAM_YAML: the configuration, with the proxy listener
# on PROXY_ADDR, LISTEN_EXTRA appended to the listen map (", auth: …" or empty) and UPSTREAM_YAML
# as the upstream map.
write_config() {
  cat >"$ACADEMY_GATEWAY_CONFIG" <<YAML
listen: {proxy: "$1", ops: "127.0.0.1:$OPS_PORT"$2}
upstream: $3
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

# serve: starts the gateway in the background on the written configuration, sets gw, and waits
# until it is ready.
serve() {
  "$BIN" serve 2>/dev/null &
  gw=$!
  pids+=("$gw")
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$OPS_PORT/readyz" >/dev/null && return; sleep 0.1; done
  echo "gateway did not become ready" >&2; exit 1
}

# connect_bench: BENCH_KEY becomes a legacy key of user "bench", connected through the real
# OAuth2 flow against the simulator (the gateway must be serving).
connect_bench() {
  "$BIN" keys create --user bench --key "${BENCH_KEY:-k1-bench-harness}" >/dev/null
  local link consent
  link=$("$BIN" connections authorize bench --json | sed -n 's/.*"authorize_url": *"\([^"]*\)".*/\1/p')
  consent=$(curl -fs -c "$WORK/jar" -o /dev/null -w '%{redirect_url}' "$link")
  curl -fsL -b "$WORK/jar" -o /dev/null "$consent&sim_user=john"
}

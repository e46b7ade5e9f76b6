#!/usr/bin/env bash
# GATEWAY_CMD for the shared reverse-proxy bench harness (shared/bench/run.sh): academy-gateway in
# forward-auth mode behind nginx, with the shipped deploy/forward-auth/nginx.conf. nginx listens
# on the harness's address, asks the gateway's auth listener about every request and forwards
# to the harness upstream itself. As in bench/gateway.sh, one user is connected through the real
# OAuth2 flow (against the built-in simulator) and BENCH_KEY (default "k1-bench-harness", send it
# with GATEWAY_HEADER='x-api-key: k1-bench-harness') is a legacy key of it.
# nginx (master and workers), the gateway, Redis and the simulator all run as children of this
# script, so the harness counts the CPU of nginx and the gateway together (plus the idle rest).
#
#   GATEWAY_NAME=forward-auth GATEWAY_HEADER='x-api-key: k1-bench-harness' \
#   GATEWAY_CMD='exec bench/forward-auth.sh' shared/bench/run.sh
#
# Needs: nginx (with auth_request, as Debian's), redis-server, curl, and LISTEN_ADDR /
# UPSTREAM_ADDR from the harness. WORKERS (default 2) sets nginx's worker_processes, LOG_LEVEL
# (default info) the gateway's log level; access lines go to /dev/null. REDIS_PORT_FILE, when
# set, receives the Redis port (to read INFO commandstats around a run).
set -euo pipefail
: "${LISTEN_ADDR:?set by the harness}" "${UPSTREAM_ADDR:?set by the harness}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d -t agwfwd.XXXXXX)
BIN=$WORK/academy-gateway
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
trap 'exit 0' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
(cd "$ROOT" && go build -o "$BIN" ./cmd/academy-gateway)

REDIS_PORT=$(free_port); SIM_PORT=$(free_port); OPS_PORT=$(free_port)
PROXY_ADDR=127.0.0.1:$(free_port); AUTH_ADDR=127.0.0.1:$(free_port)
[[ -n ${REDIS_PORT_FILE:-} ]] && echo "$REDIS_PORT" >"$REDIS_PORT_FILE"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$WORK" >/dev/null &
pids+=($!)
"$BIN" sim --listen "127.0.0.1:$SIM_PORT" >/dev/null &
pids+=($!)
SIM=http://127.0.0.1:$SIM_PORT
ENC_KEY=$(head -c 32 /dev/urandom | base64)
cat >"$WORK/config.yaml" <<YAML
listen: {proxy: "$PROXY_ADDR", ops: "127.0.0.1:$OPS_PORT", auth: "$AUTH_ADDR"}
upstream: {base_url: "http://$UPSTREAM_ADDR/api/v2", strip_prefixes: ["/api/v1", "/api/v2"]}
oauth:
  client_id: academy-demo-client
  client_secret: academy-demo-secret
  authorize_url: $SIM/authorize
  token_url: $SIM/token
  refresh_url: $SIM/refresh
  invalidate_url: $SIM/invalidate
  redirect_url: http://$PROXY_ADDR/oauth/callback
redis: {url: "redis://127.0.0.1:$REDIS_PORT/0"}
security: {encryption_keys: ["$ENC_KEY"]}
log: {level: ${LOG_LEVEL:-info}}
YAML
export ACADEMY_GATEWAY_CONFIG=$WORK/config.yaml
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

"$BIN" serve 2>/dev/null &
gw=$!
pids+=("$gw")
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$OPS_PORT/readyz" >/dev/null && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$OPS_PORT/readyz" >/dev/null || { echo "gateway did not become ready" >&2; exit 1; }
# The harness key becomes a legacy key of user "bench", connected through the real OAuth2 flow.
"$BIN" keys create --user bench --key "${BENCH_KEY:-k1-bench-harness}" >/dev/null
link=$("$BIN" connections authorize bench --json | sed -n 's/.*"authorize_url": *"\([^"]*\)".*/\1/p')
consent=$(curl -fs -c "$WORK/jar" -o /dev/null -w '%{redirect_url}' "$link")
curl -fsL -b "$WORK/jar" -o /dev/null "$consent&sim_user=john"

# nginx with the shipped site configuration, changed only for addresses and paths, plain HTTP to
# the harness upstream, and an upstream keep-alive pool as large as the other proxies' (1024).
mkdir -p "$WORK/nginx-tmp"
sed -e "s|server 127.0.0.1:9092;|server $AUTH_ADDR;|" \
    -e "s|server app-academy.make.com:443;|server $UPSTREAM_ADDR;|" \
    -e "s|proxy_pass https://academy/|proxy_pass http://academy/|" \
    -e "s|listen 80;|listen $LISTEN_ADDR;|" \
    -e "s|keepalive 64;|keepalive 1024;|" \
    "$ROOT/deploy/forward-auth/nginx.conf" >"$WORK/academy-gateway.conf"
cat >"$WORK/nginx.conf" <<NGINX
master_process on;
worker_processes ${WORKERS:-2};
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx-tmp/body;
    proxy_temp_path       $WORK/nginx-tmp/proxy;
    fastcgi_temp_path     $WORK/nginx-tmp/fastcgi;
    uwsgi_temp_path       $WORK/nginx-tmp/uwsgi;
    scgi_temp_path        $WORK/nginx-tmp/scgi;
    keepalive_requests 1000000;
    include $WORK/academy-gateway.conf;
}
NGINX
nginx -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait -n "$gw" "${pids[-1]}"

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
# UPSTREAM_ADDR from the harness. WORKERS (default 2) sets nginx's worker_processes; the other
# knobs (REDIS_PORT_FILE to receive the Redis port, LOG_LEVEL, BENCH_KEY, …) are bench/lib.sh's.
set -euo pipefail
: "${LISTEN_ADDR:?set by the harness}" "${UPSTREAM_ADDR:?set by the harness}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d -t agwfwd.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
trap 'exit 0' INT TERM

. "$ROOT/bench/lib.sh"
start_deps
PROXY_ADDR=127.0.0.1:$(free_port); AUTH_ADDR=127.0.0.1:$(free_port)
write_config "$PROXY_ADDR" ", auth: \"$AUTH_ADDR\"" \
  "{base_url: \"http://$UPSTREAM_ADDR/api/v2\", strip_prefixes: [\"/api/v1\", \"/api/v2\"]}"
serve
connect_bench

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

#!/usr/bin/env bash
# Counts the Redis commands a warm run costs: starts the shared harness's upstream and a
# GATEWAY_CMD script (default bench/forward-auth.sh) on loopback, warms up, then reads
# INFO commandstats of the script's Redis before and after one wrk run and prints the commands
# per request. Everything started here stops on exit.
#
#   HARNESS=../shared/bench bench/redis-calls.sh            # forward-auth behind nginx
#   SCRIPT=bench/gateway.sh HARNESS=../shared/bench bench/redis-calls.sh   # proxy mode
#
# Needs: what the script needs, wrk, go; DURATION (default 5) seconds, CONNS (default 32).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${HARNESS:?the shared bench directory (with upstream/)}"
SCRIPT=${SCRIPT:-$ROOT/bench/forward-auth.sh}
KEY=${BENCH_KEY:-k1-bench-harness}   # the scripts' legacy key (keys have at least 12 characters)
WORK=$(mktemp -d -t agwredis.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

(cd "$HARNESS/upstream" && go build -o "$WORK/upstream" .)
UP=127.0.0.1:$(free_port); LISTEN=127.0.0.1:$(free_port)
"$WORK/upstream" -addr "$UP" >/dev/null 2>&1 &
pids+=($!)
LISTEN_ADDR=$LISTEN UPSTREAM_ADDR=$UP UPSTREAM_URL=http://$UP REDIS_PORT_FILE=$WORK/redis.port \
  bash "$SCRIPT" >"$WORK/script.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $KEY" "http://$LISTEN/v1/items") == 200 ]] && break
  sleep 0.1
done
REDIS_PORT=$(<"$WORK/redis.port")
calls() { redis-cli -p "$REDIS_PORT" info commandstats | awk -F'[=,:]' '/^cmdstat_/ && $1 != "cmdstat_info" {n += $3} END {print n + 0}'; }
wrk -t1 -c"${CONNS:-32}" -d3s -H "x-api-key: $KEY" "http://$LISTEN/v1/items" >/dev/null   # warm-up
before=$(calls)
redis-cli -p "$REDIS_PORT" info commandstats | grep '^cmdstat_' >"$WORK/before.txt"
out=$(timeout 60 wrk -t1 -c"${CONNS:-32}" -d"${DURATION:-5}"s -H "x-api-key: $KEY" "http://$LISTEN/v1/items")
after=$(calls)
redis-cli -p "$REDIS_PORT" info commandstats | grep '^cmdstat_' >"$WORK/after.txt"
reqs=$(awk '/ requests in / {print $1}' <<<"$out")
echo "requests: $reqs; Redis commands during the run: $((after - before)) (INFO itself excluded)"
awk -v r="$reqs" -v c=$((after - before)) 'BEGIN { printf "Redis commands per request: %.6f\n", c / r }'
echo "commandstats after the run:"; cat "$WORK/after.txt"

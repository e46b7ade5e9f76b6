#!/bin/sh
# Onboards the user "demo" the way a person would, headlessly: asks the admin API for an
# onboarding link, opens it, consents at the simulated Academy as John Doe (sim_user=john), follows
# the redirect back to the gateway's callback, then issues an API key and prints a curl line.
# The links name localhost (what a browser on the host sees); --connect-to sends those requests to
# the gateway and academy services instead. OPS_URL, GATEWAY_ADDR and ACADEMY_ADDR change where
# it goes (the compose defaults: gateway:9090, gateway:8080, academy:8081).
set -eu
ops=${OPS_URL:-http://gateway:9090}
auth="Authorization: Bearer ${ADMIN_TOKEN}"
to="--connect-to localhost:8080:${GATEWAY_ADDR:-gateway:8080} --connect-to localhost:8081:${ACADEMY_ADDR:-academy:8081}"
jar=$(mktemp)

tries=0
until curl -fsS -o /dev/null "$ops/readyz" 2>/dev/null; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then echo "onboard: the gateway was not ready within 60 s" >&2; exit 1; fi
  sleep 1
done

# json VALUE: the string value of a top-level key of a JSON object on stdin.
json() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | sed 's/\\u0026/\&/g'; }

link=$(curl -fsS -X POST -H "$auth" "$ops/admin/connections/demo/authorize" | json authorize_url)
[ -n "$link" ] || { echo "onboard: no onboarding link from the admin API" >&2; exit 1; }
# shellcheck disable=SC2086 # $to is two options
consent=$(curl -fsS $to -c "$jar" -b "$jar" -o /dev/null -w '%{redirect_url}' "$link")
[ -n "$consent" ] || { echo "onboard: the onboarding link did not lead to the Academy" >&2; exit 1; }
# shellcheck disable=SC2086
curl -fsSL $to -c "$jar" -b "$jar" -o /dev/null "${consent}&sim_user=john"

key=$(curl -fsS -X POST -H "$auth" -H 'Content-Type: application/json' \
  -d '{"user":"demo","scopes":["read","write"],"name":"compose demo"}' "$ops/admin/keys" | json key)
[ -n "$key" ] || { echo "onboard: no key from the admin API" >&2; exit 1; }

cat <<DONE

academy-gateway is up: user "demo" is connected to the simulated Academy as John Doe.

  curl -s -H 'x-api-key: ${key}' http://localhost:8080/api/v1/movies

Dashboard: http://localhost:3000   Alerts: http://localhost:9091/alerts
DONE

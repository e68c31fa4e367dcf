#!/usr/bin/env bash
# End-to-end check of split roles with the real binary: one `gantry serve --role control` and two
# `gantry serve --role gateway` processes sharing a PostgreSQL database. Everything goes through
# the gateways: the admin registers and deploys the demo model through gateway 1 (proxied /api),
# the deploy reaches both gateways' route tables, a user's key works through both, a limit set on
# the deployment takes effect in both (shared: what one admitted, the other refuses), a service scaled to zero is woken by a request through a
# gateway (its report reaches the control role), a key revoked through gateway 2 stops working in
# both, both gateways' usage records reach the shared database, and failed authentications through
# both gateways count together. Needs PG_URL (a superuser URL),
# GANTRY_TEST_LLAMA_SERVER and GANTRY_TEST_MODEL (scripts/test.sh sets them).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
GANTRY=${1:-.build/debug/gantry}
: "${PG_URL:?}" "${GANTRY_TEST_LLAMA_SERVER:?}" "${GANTRY_TEST_MODEL:?}"

DATA=$(mktemp -d /tmp/gantry-split.XXXXXX)
# Hex: a secret starting with '-' would read as a flag.
SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
DB="split_$$"
psql -q "$PG_URL" -c "CREATE DATABASE $DB" >/dev/null
DB_URL="${PG_URL/\/postgres\?/\/$DB?}"
CONTROL_PORT=$(free_port)
CONTROL="http://127.0.0.1:$CONTROL_PORT"
PIDS=()
fail() { fail_with_logs "split-roles test" "$*"; }
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  pkill -9 -f "$DATA/control" 2>/dev/null || true
  psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
trap cleanup EXIT


"$GANTRY" serve --role control --host 127.0.0.1 --port "$CONTROL_PORT" --data-dir "$DATA/control" \
  --database-url "$DB_URL" --introspection-secret="$SECRET" --engine-threads 1 \
  --llama-server "$GANTRY_TEST_LLAMA_SERVER" >"$DATA/control.stdout" 2>"$DATA/control.stderr" &
CONTROL_PID=$!
PIDS+=("$CONTROL_PID")
wait_healthy "$CONTROL"
ADMIN=$(grep -o 'gk_[A-Za-z0-9_-]*' "$DATA/control.stdout" | head -n 1 || true)
[ -n "$ADMIN" ] || fail "no bootstrap admin key printed"

GATEWAYS=()
for name in g1 g2; do
  port=$(free_port)
  "$GANTRY" serve --role gateway --host 127.0.0.1 --port "$port" --data-dir "$DATA/$name" \
    --database-url "$DB_URL" --introspection-secret="$SECRET" --control-url "$CONTROL" \
    >"$DATA/$name.stdout" 2>"$DATA/$name.stderr" &
  PIDS+=("$!")
  GATEWAYS+=("http://127.0.0.1:$port")
done
G1=${GATEWAYS[0]}
G2=${GATEWAYS[1]}
wait_healthy "$G1"
wait_healthy "$G2"
grep -q 'gk_' "$DATA/g1.stdout" && fail "a gateway printed an admin key"

api() { # api GATEWAY KEY METHOD PATH [JSON] -> body; fails on a status >= 400
  local body
  body=$(curl -sS -f -X "$3" "$1$4" -H "Authorization: Bearer $2" -H 'Content-Type: application/json' ${5:+-d "$5"}) \
    || fail "$3 $4 through $1 failed"
  printf '%s' "$body"
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
status() { # status GATEWAY KEY BODY -> HTTP status of a chat completion
  curl -s -o /dev/null -w '%{http_code}' "$1/v1/chat/completions" -H "Authorization: Bearer $2" \
    -H 'Content-Type: application/json' -d "$3"
}
CHAT='{"model":"chat","messages":[{"role":"user","content":"Hi"}],"max_tokens":2}'

# The admin works through gateway 1: every /api call is proxied to the control role.
api "$G1" "$ADMIN" POST /api/v1/models '{"name":"smollm2","task":"chat"}' >/dev/null
api "$G1" "$ADMIN" POST /api/v1/models/smollm2/versions \
  "{\"format\":\"gguf\",\"context_limit\":1024,\"artifact_uri\":\"file://$GANTRY_TEST_MODEL\"}" >/dev/null
api "$G1" "$ADMIN" POST /api/v1/deployments '{"name":"chat","model":"smollm2"}' >/dev/null
for _ in $(seq 1 300); do
  state=$(api "$G2" "$ADMIN" GET /api/v1/deployments/chat | json 'd["status"]')
  [ "$state" = ready ] && break
  sleep 0.2
done
[ "$state" = ready ] || fail "the deployment never became ready (last status: $state)"
ready_at=$(date +%s.%N)

api "$G1" "$ADMIN" POST /api/v1/users '{"name":"ann"}' >/dev/null
KEY=$(api "$G2" "$ADMIN" POST /api/v1/keys '{"name":"ann-key","user":"ann"}' | json 'd["key"]')
KEY_ID=$(api "$G2" "$ADMIN" GET "/api/v1/keys?all=true" | json '[k["id"] for k in d["data"] if k["name"]=="ann-key"][0]')

# The deploy reached both gateways' route tables (the route watch), and the key works in both.
for gateway in "$G1" "$G2"; do
  for _ in $(seq 1 50); do [ "$(status "$gateway" "$KEY" "$CHAT")" = 200 ] && break; sleep 0.1; done
  [ "$(status "$gateway" "$KEY" "$CHAT")" = 200 ] || fail "chat through $gateway did not answer 200"
  models=$(api "$gateway" "$KEY" GET /v1/models | json '[m["id"] for m in d["data"]]')
  [ "$models" = "['chat']" ] || fail "/v1/models through $gateway: $models"
done
echo "deploy reached both gateways within $(python3 -c "print(round($(date +%s.%N) - $ready_at, 2))") s of ready"

# A limit set on the deployment (through gateway 2) reaches both gateways with the routes: one
# request per minute per key, over both gateways together (the leader's ledger shares it): once
# gateway 1 admitted the key's request, gateway 2 refuses even its first.
api "$G2" "$ADMIN" PATCH /api/v1/deployments/chat '{"limits":{"requests_per_minute_per_key":1}}' >/dev/null
seen=""
for _ in $(seq 1 50); do
  first=$(status "$G1" "$KEY" "$CHAT")
  second=$(status "$G1" "$KEY" "$CHAT")
  seen="$seen $first/$second"
  [ "$second" = 429 ] && break
  sleep 0.1
done
[ "$second" = 429 ] || fail "the per-key limit did not take effect through gateway 1 ($seen)"
sleep 0.5 # the route watch brings the limit to gateway 2 within milliseconds
seen=""
for _ in $(seq 1 50); do
  code=$(status "$G2" "$KEY" "$CHAT")
  seen="$seen $code"
  [ "$code" = 429 ] && break
  sleep 0.1
done
[ "$code" = 429 ] || fail "the per-key limit did not take effect through gateway 2 ($seen)"
[ "${seen# }" = 429 ] || fail "gateway 2 admitted a request of a key whose 1 a minute gateway 1 had used ($seen)"
for gateway in "$G1" "$G2"; do
  headers=$(curl -s -D - -o /dev/null "$gateway/v1/chat/completions" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "$CHAT")
  grep -qi '^x-ratelimit-limit-requests: 1' <<<"$headers" || fail "no x-ratelimit headers through $gateway"
done
echo "a limit set through gateway 2 took effect in both gateways, shared: gateway 2 refused the key's first request there"

# The leader's history of the service counts every gateway's requests (their reports carry
# them): its minutes add up to the usage records the gateways wrote, 429s included.
for _ in $(seq 1 50); do
  history=$(api "$G1" "$ADMIN" GET /api/v1/deployments/chat/metrics | json 'sum(m["requests"] for m in d["minutes"])')
  recorded=$(api "$G2" "$ADMIN" GET "/api/v1/usage?model=chat&group_by=day" | json 'sum(r["requests"] for r in d["data"])')
  [ "$history" = "$recorded" ] && [ "$history" -gt 0 ] && break
  sleep 0.2
done
[ "$history" = "$recorded" ] && [ "$history" -gt 0 ] \
  || fail "the leader's history counts $history requests, the usage records $recorded"
echo "the leader's history counts all $history requests of both gateways"
# The console is the control role's, reached through a gateway like the rest of the API.
page=$(curl -sS -f "$G2/console/services/chat" -H "Authorization: Bearer $ADMIN") || fail "the console through gateway 2"
grep -q 'id="instances"' <<<"$page" || fail "the console's service page through gateway 2 has no instances"

# Scale from zero through a gateway: the request waits in the gateway's queue, the gateway reports
# it to the control role, which starts an instance; the route watch brings it back to the gateway.
api "$G1" "$ADMIN" POST /api/v1/deployments \
  '{"name":"zero","model":"smollm2","min_replicas":0,"max_replicas":1,"autoscaling":{"scale_down_window_seconds":1}}' >/dev/null
for _ in $(seq 1 300); do
  zero=$(api "$G1" "$ADMIN" GET /api/v1/deployments/zero | json 'd["status"] + "/" + str(len(d["instances"]))')
  [ "$zero" = idle/0 ] && break
  sleep 0.2
done
[ "$zero" = idle/0 ] || fail "the zero deployment never went idle with no instance ($zero)"
woke_at=$(date +%s.%N)
[ "$(status "$G2" "$ADMIN" '{"model":"zero","messages":[{"role":"user","content":"Hi"}],"max_tokens":2}')" = 200 ] \
  || fail "a request through gateway 2 did not wake the zero deployment"
echo "scale from zero through a gateway: answered in $(python3 -c "print(round($(date +%s.%N) - $woke_at, 2))") s"

# Revoked through gateway 2 (proxied to the control role): the route watch tells both gateways to
# forget the key's remembered verification (kept 5 s otherwise), so both refuse it within 1 s.
for gateway in "$G1" "$G2"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$gateway/v1/models" -H "Authorization: Bearer $KEY")" = 200 ] \
    || fail "the key does not work through $gateway before its revocation"
done
api "$G2" "$ADMIN" DELETE "/api/v1/keys/$KEY_ID" >/dev/null
revoked_at=$(date +%s.%N)
for gateway in "$G1" "$G2"; do
  code=""
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$gateway/v1/models" -H "Authorization: Bearer $KEY")
    [ "$code" = 401 ] && break
    sleep 0.02
  done
  [ "$code" = 401 ] || fail "the revoked key still works through $gateway ($code)"
done
revocation_s=$(python3 -c "print(round($(date +%s.%N) - $revoked_at, 2))")
python3 -c "import sys; sys.exit(0 if $revocation_s < 1.0 else 1)" \
  || fail "the revocation took $revocation_s s to reach both gateways (bound: 1 s)"
echo "revocation reached both gateways within $revocation_s s"

# Both gateways wrote usage records to the shared database (flushed every second).
for _ in $(seq 1 50); do
  records=$(api "$G1" "$ADMIN" GET "/api/v1/usage?limit=1000" | json 'len([r for r in d["data"] if r["status"] == 200])')
  [ "$records" -ge 4 ] && break
  sleep 0.2
done
[ "$records" -ge 4 ] || fail "only $records successful requests are in the shared usage records"

# The failed-authentication slowdown counts over both gateways: from an address of its own, ten
# wrong keys through each gateway (each below its own allowance of 20, together at it) block the
# address on both (the reports reach the control role, the route watch brings the block back),
# even for a valid key; other addresses are not affected.
from_other() { # GATEWAY KEY -> status of GET /v1/models sent from 127.0.0.9
  curl -s --interface 127.0.0.9 -o /dev/null -w '%{http_code}' "$1/v1/models" -H "Authorization: Bearer $2"
}
for gateway in "$G1" "$G2"; do
  for _ in $(seq 1 10); do
    [ "$(from_other "$gateway" "gk_wrong")" = 401 ] || fail "a wrong key through $gateway was not refused with 401"
  done
done
for gateway in "$G1" "$G2"; do
  code=""
  for _ in $(seq 1 50); do
    code=$(from_other "$gateway" "$ADMIN")
    [ "$code" = 429 ] && break
    sleep 0.1
  done
  [ "$code" = 429 ] || fail "20 failures over two gateways did not block the address on $gateway ($code)"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$gateway/v1/models" -H "Authorization: Bearer $ADMIN")" = 200 ] \
    || fail "the block reached another address on $gateway"
done
echo "failed authentications counted over both gateways: 10 + 10 blocked the address on both"

# SIGTERM: the gateways flush and stop; the control role stops its engine.
for pid in "${PIDS[@]}"; do kill -TERM "$pid"; done
for pid in "${PIDS[@]}"; do wait "$pid" || fail "process $pid did not exit cleanly after SIGTERM"; done
PIDS=()
pgrep -f "$DATA/control" >/dev/null && fail "an engine outlived the control role"
echo "split-roles test passed: deploy, limit, scale from zero, revocation and the failed-authentication slowdown through two gateway processes in front of one control process"

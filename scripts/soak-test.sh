#!/usr/bin/env bash
# Soak of the per-connection bounds with the real binary (issue 17, item 4): while good clients
# call a model service, misbehaving connections run in loops: heads sent a byte at a time, /v1
# bodies that stall, bodies of the largest size with no credential or a wrong one, and pipelined
# bursts of 1 MiB bodies nobody reads the answers of. The service is gantry-fake-engine (a FAKE
# OpenAI engine, named as such) deployed as the custom engine. scripts/soak_clients.py checks that
# good clients see no error, slow clients are closed by their deadlines with 408, unauthenticated
# bodies are refused with 401, and the server's RSS stays within SOAK_RSS_BOUND_MIB of its value
# before the soak. Usage: soak-test.sh [GANTRY] [FAKE_ENGINE]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
GANTRY=${1:-.build/debug/gantry}
FAKE=$(realpath "${2:-.build/debug/gantry-fake-engine}")
SECONDS_TO_SOAK=${SOAK_SECONDS:-20}
RSS_BOUND_MIB=${SOAK_RSS_BOUND_MIB:-64}
PER_KIND=${SOAK_PER_KIND:-25}
KINDS=${SOAK_KINDS:-slow_head,slow_body,unauthenticated,pipelined}

DATA=$(mktemp -d /tmp/gantry-soak.XXXXXX)
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
fail() {
  echo "soak test FAILED: $*" >&2
  tail -n 20 "$DATA/gantry.stderr" >&2 || true
  exit 1
}
cleanup() {
  [ -n "${GANTRY_PID:-}" ] && kill -9 "$GANTRY_PID" 2>/dev/null || true
  pkill -9 -f "$DATA" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

"$GANTRY" serve --host 127.0.0.1 --port "$PORT" --data-dir "$DATA/gantry" --log-level warning --engine-threads 1 \
  --head-timeout 2 --body-timeout 2 --idle-timeout 5 \
  --custom-engine-command "$FAKE --host {host} --port {port} --model {model}" >"$DATA/gantry.stdout" 2>"$DATA/gantry.stderr" &
GANTRY_PID=$!
for _ in $(seq 1 150); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.2; done
ADMIN=""
for _ in $(seq 1 50); do ADMIN=$(grep -o 'gk_[A-Za-z0-9_-]*' "$DATA/gantry.stdout" | head -n 1 || true); [ -n "$ADMIN" ] && break; sleep 0.1; done
[ -n "$ADMIN" ] || fail "no bootstrap admin key printed"
api() { gantry_api "$BASE" "$ADMIN" "$@"; } # method path [json]
register_fake_model "$BASE" "$ADMIN" "$DATA"
api POST /api/v1/deployments '{"name":"fake","model":"fake-model","engine":"custom"}' >/dev/null
api POST /api/v1/users '{"name":"soak"}' >/dev/null
KEY=$(api POST /api/v1/keys '{"name":"soak","user":"soak"}' | grep -o 'gk_[A-Za-z0-9_-]*' | head -n 1 || true)
[ -n "$KEY" ] || fail "no user key"
gantry_wait_ready "$BASE" "$ADMIN" fake
# Warm up (connection pools, caches, the allocator's arenas) before the baseline is taken.
for _ in $(seq 1 50); do
  curl -sf -o /dev/null "$BASE/v1/chat/completions" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d '{"model":"fake","messages":[{"role":"user","content":"hi"}],"max_tokens":8}' || fail "warm-up request failed"
done

for round in $(seq 1 "${SOAK_ROUNDS:-1}"); do
  summary=$(python3 scripts/soak_clients.py --port "$PORT" --key "$KEY" --pid "$GANTRY_PID" --seconds "$SECONDS_TO_SOAK" \
    --head-timeout 2 --body-timeout 2 --max-request-bytes 4194304 --rss-bound-mib "$RSS_BOUND_MIB" --per-kind "$PER_KIND" \
    --kinds "$KINDS") \
    || fail "bounds broken: ${summary:-no summary}"
  echo "soak round $round passed: $summary"
done

#!/usr/bin/env bash
# End-to-end check of the real `gantry` binary, as an administrator and a user would use it:
# start `gantry serve`, take the bootstrap admin key from its output, register the demo model,
# deploy it on llama.cpp, get a chat completion (plain and streamed) with curl, then stop Gantry
# with SIGTERM and check that it exits cleanly, leaves no engine process behind and never logged
# a key. Needs GANTRY_TEST_LLAMA_SERVER and GANTRY_TEST_MODEL (scripts/test.sh sets them).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
GANTRY=${1:-.build/debug/gantry}
: "${GANTRY_TEST_LLAMA_SERVER:?}" "${GANTRY_TEST_MODEL:?}" "${GANTRY_TEST_OIDC_ISSUER:?}"

DATA=$(mktemp -d /tmp/gantry-smoke.XXXXXX)
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
fail() { echo "smoke test FAILED: $*" >&2; echo "--- gantry stderr (last 30 lines)" >&2; tail -n 30 "$DATA/stderr" >&2 || true; exit 1; }
cleanup() { [ -n "${GANTRY_PID:-}" ] && kill -9 "$GANTRY_PID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT

start_gantry() {
  GANTRY_AUTH_OIDC_CLIENT_SECRET="$GANTRY_TEST_OIDC_CLIENT_SECRET" \
    "$GANTRY" serve --port "$PORT" --data-dir "$DATA" --engine-threads 1 --llama-server "$GANTRY_TEST_LLAMA_SERVER" \
    --oidc-issuer "$GANTRY_TEST_OIDC_ISSUER" --oidc-client-id "$GANTRY_TEST_OIDC_CLIENT_ID" \
    >>"$DATA/stdout" 2>>"$DATA/stderr" &
  GANTRY_PID=$!
  for _ in $(seq 1 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.2; done
}
start_gantry
curl -sf "$BASE/readyz" >/dev/null || fail "/readyz is not ready"
ADMIN=$(grep -o 'gk_[A-Za-z0-9_-]*' "$DATA/stdout" | head -n 1 || true)
[ -n "$ADMIN" ] || fail "no bootstrap admin key printed"
auth=(-H "Authorization: Bearer $ADMIN" -H "Content-Type: application/json")

status=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/models")
[ "$status" = 401 ] || fail "no key should give 401, got $status"

# A user logs in from the CLI (device flow through Gantry) and manages keys with it.
export XDG_CONFIG_HOME="$DATA/config"
"$GANTRY" login --server "$BASE" >"$DATA/login.out" 2>&1 &
LOGIN_PID=$!
CODE=
for _ in $(seq 1 100); do
  CODE=$(grep -o 'confirm the code: [A-Z0-9]*' "$DATA/login.out" | awk '{print $NF}' || true)
  [ -n "$CODE" ] && break; sleep 0.1
done
[ -n "$CODE" ] || fail "gantry login printed no code: $(cat "$DATA/login.out")"
curl -sf "$GANTRY_TEST_OIDC_ISSUER/device" -d "user_code=$CODE&username=bob&password=bob-pw&action=authorize" >/dev/null \
  || fail "could not approve the device code at the provider"
wait "$LOGIN_PID" || fail "gantry login failed: $(cat "$DATA/login.out")"
[ "$(stat -c %a "$XDG_CONFIG_HOME/gantry/credentials.json")" = 600 ] || fail "credentials file is not 0600"
# The same with a browser (loopback redirect): curl plays the browser.
"$GANTRY" login --browser --server "$BASE" >"$DATA/browser-login.out" 2>&1 &
LOGIN_PID=$!
URL=
for _ in $(seq 1 100); do
  URL=$(grep -o "$BASE/auth/cli?[^ ]*" "$DATA/browser-login.out" || true)
  [ -n "$URL" ] && break; sleep 0.1
done
[ -n "$URL" ] || fail "gantry login --browser printed no URL: $(cat "$DATA/browser-login.out")"
FORM=$(curl -sfL -c "$DATA/jar" -b "$DATA/jar" "$URL" -w '\n%{url_effective}') || fail "could not reach the login form"
AUTHORIZE=$(echo "$FORM" | tail -n 1)
TX=$(echo "$FORM" | grep -o 'name="transaction_id" value="[^"]*"' | sed 's/.*value="//; s/"$//')
curl -sfL -c "$DATA/jar" -b "$DATA/jar" "$AUTHORIZE" --data-urlencode "transaction_id=$TX" \
  -d "username=bob&password=bob-pw" >/dev/null || fail "the browser login did not reach the CLI"
wait "$LOGIN_PID" || fail "gantry login --browser failed: $(cat "$DATA/browser-login.out")"
grep -q "Logged in as bob" "$DATA/browser-login.out" || fail "gantry login --browser did not log in"

USER_KEY=$("$GANTRY" keys create smoke-key) || fail "gantry keys create"
keys=$("$GANTRY" keys list) || fail "gantry keys list"
grep -q 'smoke-key' <<<"$keys" || fail "gantry keys list does not show the new key"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $USER_KEY" "$BASE/v1/models")" = 200 ] \
  || fail "the CLI-created key does not work"

# Register the demo model by upload: the CLI streams it with a progress bar and completes the
# version; the engine then loads it from the node's artifact cache, not from the original file.
# An interrupted push is resumed by running it again with --version: done files are skipped.
GANTRY_SERVER="$BASE" GANTRY_API_KEY="$ADMIN" "$GANTRY" models push smollm2-135m-instruct "$GANTRY_TEST_MODEL" \
  --context-limit 2048 --no-complete >"$DATA/push.out" 2>&1 || fail "gantry models push: $(cat "$DATA/push.out")"
GANTRY_SERVER="$BASE" GANTRY_API_KEY="$ADMIN" "$GANTRY" models push smollm2-135m-instruct "$GANTRY_TEST_MODEL" \
  --version 1 >"$DATA/resume.out" 2>&1 || fail "gantry models push --version 1: $(cat "$DATA/resume.out")"
grep -q 'already uploaded, skipped' "$DATA/resume.out" || fail "the resumed push uploaded the file again"
grep -q 'smollm2-135m-instruct@1 is ready' "$DATA/resume.out" || fail "the resumed push did not complete the version"
started=$(date +%s.%N)
curl -sf "${auth[@]}" "$BASE/api/v1/deployments" -d '{"name":"smollm2","model":"smollm2-135m-instruct"}' >/dev/null \
  || fail "create deployment"
for _ in $(seq 1 600); do
  state=$(curl -sf "${auth[@]}" "$BASE/api/v1/deployments/smollm2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  [ "$state" = ready ] && break
  sleep 0.2
done
[ "$state" = ready ] || fail "deployment never became ready (last status: $state)"
echo "deploy-to-ready: $(python3 -c "print(round($(date +%s.%N) - $started, 2))") s"

reply=$(curl -sf "${auth[@]}" "$BASE/v1/chat/completions" \
  -d '{"model":"smollm2","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}') || fail "chat completion"
echo "$reply" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["choices"][0]["message"]["content"].strip(), r; assert r["usage"]["completion_tokens"] > 0' \
  || fail "chat completion has no content: $reply"
stream=$(curl -sfN "${auth[@]}" "$BASE/v1/chat/completions" \
  -d '{"model":"smollm2","stream":true,"messages":[{"role":"user","content":"Count to three."}],"max_tokens":16}') || fail "stream"
[ "$(echo "$stream" | grep -c '^data: {')" -ge 2 ] || fail "stream has fewer than two events"
grep -q '^data: \[DONE\]' <<<"$stream" || fail "stream did not end with [DONE]"
cached=$(find "$DATA" -path '*/artifacts/ver_*/*.gguf' | head -n 1)
[ -n "$cached" ] && cmp -s "$cached" "$GANTRY_TEST_MODEL" || fail "the engine's model is not the verified cached copy"
# Read the page first: `curl | grep -q` fails under pipefail when grep stops reading early.
[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/metrics")" = 401 ] || fail "/metrics answered without a credential"
metrics=$(curl -sf -H "Authorization: Bearer $ADMIN" "$BASE/metrics") || fail "/metrics did not answer an admin"
grep -q 'gantry_http_requests_total{.*route="/v1/chat/completions"' <<<"$metrics" || fail "/metrics has no request counter"
grep -q 'gantry_inference_tokens_total{service="smollm2",version="[^"]*",direction="completion"}' <<<"$metrics" \
  || fail "/metrics has no token counter"

# Limits and usage from the CLI: an admin issues bob a key allowed one request per minute.
LIMITED=$(GANTRY_SERVER="$BASE" GANTRY_API_KEY="$ADMIN" "$GANTRY" keys create limited --user bob --rpm 1) \
  || fail "gantry keys create --user --rpm"
chat_body='{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"max_tokens":2}'
first=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $LIMITED" -H 'Content-Type: application/json' \
  "$BASE/v1/chat/completions" -d "$chat_body")
second=$(curl -s -D "$DATA/limited.headers" -o "$DATA/limited.body" -w '%{http_code}' -H "Authorization: Bearer $LIMITED" \
  -H 'Content-Type: application/json' "$BASE/v1/chat/completions" -d "$chat_body")
[ "$first" = 200 ] && [ "$second" = 429 ] || fail "a 1-per-minute key answered $first then $second"
grep -qi '^retry-after: [1-9]' "$DATA/limited.headers" || fail "the 429 has no retry-after"
grep -q '"code":"rate_limit_exceeded"' "$DATA/limited.body" || fail "the 429 is not rate_limit_exceeded"
# The admin lifts the key's limit from the CLI: the next request is admitted at once.
GANTRY_SERVER="$BASE" GANTRY_API_KEY="$ADMIN" "$GANTRY" keys limit "$(cut -d_ -f2 <<<"$LIMITED")" --rpm 100 >/dev/null \
  || fail "gantry keys limit"
third=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $LIMITED" -H 'Content-Type: application/json' \
  "$BASE/v1/chat/completions" -d "$chat_body")
[ "$third" = 200 ] || fail "after gantry keys limit --rpm 100 the key answered $third"
usage=$(GANTRY_SERVER="$BASE" GANTRY_API_KEY="$ADMIN" "$GANTRY" usage --daily) || fail "gantry usage --daily"
grep -q ' smollm2 ' <<<"$usage" || fail "gantry usage --daily does not show smollm2: $usage"

# A rolling update from the CLI: new engine arguments are a new revision, rolled out while the
# old instance serves; the CLI waits until it is done.
export GANTRY_SERVER="$BASE" GANTRY_API_KEY="$ADMIN"
"$GANTRY" deployments update smollm2 --engine-arg=--temp --engine-arg 0.2 >"$DATA/update.out" 2>&1 \
  || fail "gantry deployments update: $(cat "$DATA/update.out")"
listing=$("$GANTRY" deployments list) || fail "gantry deployments list"
grep -q '^smollm2  v1  llama-cpp  ready' <<<"$listing" || fail "unexpected deployments list: $listing"
events=$("$GANTRY" deployments events smollm2) || fail "gantry deployments events"
grep -q 'draining: replaced by revision' <<<"$events" || fail "no roll-out in the events: $events"
"$GANTRY" deployments logs smollm2 --max-bytes 2000 >"$DATA/engine.log" || fail "gantry deployments logs"
grep -q -- '--temp 0.2' <<<"$(tr '\0' ' ' </proc/"$(pgrep -P "$GANTRY_PID" -f llama-server | head -n 1)"/cmdline)" \
  || fail "the new engine does not run with the new arguments"
unset GANTRY_SERVER GANTRY_API_KEY

ENGINE_PID=$(pgrep -P "$GANTRY_PID" -f llama-server | head -n 1 || true)
[ -n "$ENGINE_PID" ] || fail "no llama-server child found"
# Gantry itself crashes (SIGKILL) while its engine runs. A new Gantry on the same data adopts the
# engine: the same process keeps serving, with no second allocation and no restart.
kill -9 "$GANTRY_PID"; wait "$GANTRY_PID" 2>/dev/null || true
kill -0 "$ENGINE_PID" 2>/dev/null || fail "the engine died with gantry"
start_gantry
adopted=
for _ in $(seq 1 100); do
  adopted=$(curl -sf "${auth[@]}" "$BASE/api/v1/deployments/smollm2" | python3 -c 'import json,sys; d=json.load(sys.stdin); i=d["instances"]; print(i[0]["pid"] if d["status"]=="ready" and len(i)==1 else "")' || true)
  [ -n "$adopted" ] && break
  sleep 0.2
done
[ "$adopted" = "$ENGINE_PID" ] || fail "the restarted gantry did not adopt engine $ENGINE_PID (instance pid: $adopted)"
curl -sf "${auth[@]}" "$BASE/v1/chat/completions" -d '{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"max_tokens":4}' \
  >/dev/null || fail "chat through the adopted engine"
events=$(curl -sf "${auth[@]}" "$BASE/api/v1/deployments/smollm2/events") || fail "events"
grep -q "adopted running engine (pid $ENGINE_PID)" <<<"$events" || fail "no adoption event: $events"
allocations=$(curl -sf "${auth[@]}" "$BASE/api/v1/allocations") || fail "allocations"
[ "$(python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))' <<<"$allocations")" = 1 ] \
  || fail "adoption changed the allocations: $allocations"
# SIGTERM while a stream is in flight: the stream must still finish.
curl -sfN "${auth[@]}" "$BASE/v1/chat/completions" >"$DATA/inflight" \
  -d '{"model":"smollm2","stream":true,"messages":[{"role":"user","content":"Tell a story."}],"max_tokens":48}' &
CURL_PID=$!
for _ in $(seq 1 600); do [ -s "$DATA/inflight" ] && break; sleep 0.05; done
[ -s "$DATA/inflight" ] || fail "the in-flight stream sent nothing within 30 s"
kill -TERM "$GANTRY_PID"
code=0; wait "$GANTRY_PID" || code=$?
wait "$CURL_PID" || fail "the in-flight stream failed during shutdown"
grep -q '^data: \[DONE\]' "$DATA/inflight" || fail "the in-flight stream was cut by shutdown"
GANTRY_PID=
[ "$code" = 0 ] || fail "gantry exited with $code after SIGTERM"
sleep 0.5
# The adopted engine is no child of this gantry: once stopped it may linger as a zombie until
# init reaps it, so "alive" means present and not in state Z.
alive() { [ -e "/proc/$1/stat" ] && ! grep -q ') [ZX] ' "/proc/$1/stat"; }
if alive "$ENGINE_PID"; then fail "llama-server ($ENGINE_PID) outlived gantry"; fi
if grep -q 'gk_' "$DATA/stderr"; then fail "an API key appeared in the logs"; fi
# One grep, no pipe: under pipefail a `grep | grep -q` fails when the second stops reading early.
grep -q '"msg":"request",.*"request_id"' "$DATA/stderr" || fail "access log lines carry no request_id"
echo "smoke test passed: CLI login (device code and browser) and keys, model push with resume, deploy from the artifact cache, chat, stream, metrics, a per-key limit and usage from the CLI, a rolling update from the CLI, engine adopted after gantry was killed, graceful shutdown with an in-flight stream, no orphaned engine, no key in logs"

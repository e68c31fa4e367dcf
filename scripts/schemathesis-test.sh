#!/usr/bin/env bash
# The OpenAPI document in the tree (Sources/GantryCommands/Resources/openapi.json) against a
# running Gantry, with schemathesis (pinned in scripts/peers/schemathesis.txt) generating the
# requests:
#   - `gantry serve` with a fixture GPU node (fixtures/nvidia-smi/8xH100.csv, simulated) and seed
#     data, so that reads find real objects: model fake-model with a ready version 1, deployment
#     fake served by gantry-fake-engine (a FAKE OpenAI engine, named as such), user ann with a key,
#     two usage records of hers (one request answered, one refused as too long);
#   - schemathesis runs every /api operation twice, as ann (a plain user: mostly 403s, the
#     user's own views) and as the bootstrap admin, then the admin's stateful phase (requests
#     chained by the links between operations), with the checks not_a_server_error,
#     status_code_conformance, content_type_conformance and response_schema_conformance: no 5xx,
#     only documented statuses and content types, and every answer matches its schema.
# The document tested is the file in the tree, not the one compiled into the binary, so a change
# to it is tested without a rebuild. Any failure fails the script (schemathesis prints each with a
# curl line to reproduce it). SCHEMATHESIS_SEED=N repeats a run's generated cases (each run
# prints its seed); SCHEMATHESIS_MAX_EXAMPLES (default 20) sizes it; SCHEMATHESIS_REPORTS=DIR keeps
# a JUnit report and a HAR of every request and answer per run under DIR.
# Left out: GET /api/v1/routes (a long poll of up to timeout_seconds=300 per request),
# POST /api/v1/routes/reports and POST /api/v1/limits/sync (a gateway's service calls, which
# would feed the fuzzer's made-up load and limit grants into the server's state), and PUT and GET
# .../files/{path} (streamed file bodies, not JSON).
# Usage: scripts/schemathesis-test.sh [GANTRY] [FAKE_ENGINE]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
GANTRY=$(realpath "${1:-.build/debug/gantry}")
FAKE=$(realpath "${2:-.build/debug/gantry-fake-engine}")
SCHEMA=$PWD/Sources/GantryCommands/Resources/openapi.json
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-20}
ensure_python_env schemathesis scripts/peers/schemathesis.txt scripts/peers/schemathesis.lock
SCHEMATHESIS=$PY_ENV/bin/schemathesis

DATA=$(mktemp -d /tmp/gantry-schemathesis.XXXXXX)
GANTRY_PID=
fail() {
  echo "schemathesis test FAILED: $*" >&2
  echo "--- gantry.stderr (last 20 lines)" >&2
  tail -n 20 "$DATA/gantry.stderr" >&2 || true
  exit 1
}
cleanup() {
  # Gantry stops its engines on SIGTERM; -9 only when it has not stopped within 10 s.
  if [ -n "$GANTRY_PID" ]; then
    kill -TERM "$GANTRY_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$GANTRY_PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$GANTRY_PID" 2>/dev/null || true
  fi
  rm -rf "$DATA"
}
on_exit cleanup
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# Schemathesis also sends requests with missing or made-up credentials: with the default limit of
# failed authentications per address and minute, 127.0.0.1 would be answered 429 for the rest of
# each minute, and the operations behind it would go untested.
step "gantry on a fixture GPU node"
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
"$GANTRY" serve --port "$PORT" --data-dir "$DATA/gantry" --engine-threads 1 --reconcile-interval 1 \
  --gpu-source "fixture:$PWD/fixtures/nvidia-smi/8xH100.csv" --resource-poll 2 \
  --custom-engine-command "$FAKE --host {host} --port {port} --model {model}" --log-level notice \
  --max-failed-auth 100000 >"$DATA/gantry.stdout" 2>"$DATA/gantry.stderr" &
GANTRY_PID=$!
wait_healthy "$BASE"
ADMIN=$(grep -o 'gk_[A-Za-z0-9_-]*' "$DATA/gantry.stdout" | head -n 1 || true)
[ -n "$ADMIN" ] || fail "no bootstrap admin key printed"

step "seed data: model fake-model (version 1 ready), deployment fake, user ann with a key"
register_fake_model "$BASE" "$ADMIN" "$DATA"
gantry_api "$BASE" "$ADMIN" POST /api/v1/deployments \
  '{"name":"fake","model":"fake-model","engine":"custom","replicas":1}' >/dev/null
gantry_wait_ready "$BASE" "$ADMIN" fake
ANN_ID=$(gantry_api "$BASE" "$ADMIN" POST /api/v1/users '{"name":"ann"}' | json 'd["id"]')
ANN_ANSWER=$(gantry_api "$BASE" "$ADMIN" POST /api/v1/keys '{"name":"ann-key","user":"ann"}')
ANN=$(json 'd["key"]' <<<"$ANN_ANSWER")
ANN_KEY_ID=$(json 'd["id"]' <<<"$ANN_ANSWER")
INSTANCE=$(gantry_api "$BASE" "$ADMIN" GET /api/v1/deployments/fake | json 'd["instances"][0]["id"]')
# Usage records for GET /api/v1/usage: an answered request and one refused as too long, as ann.
for tokens in 8 100000; do
  curl -s -o /dev/null "$BASE/v1/chat/completions" -H "Authorization: Bearer $ANN" -H 'Content-Type: application/json' \
    -d "{\"model\":\"fake\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":$tokens}" ||
    fail "POST /v1/chat/completions: no answer"
done

# Reads, and changes that leave the seed usable, name the seed's objects (random names are 404s).
# Values seen in earlier answers are not reused in the coverage and fuzzing phases: a delete
# would then remove the seed's deployment, or ann's key, while other operations still read them.
# The stateful phase (links from one answer to the next request, deletes included) runs last, on
# its own, for the same reason.
cat >"$DATA/schemathesis.toml" <<TOML
[phases.examples]
extra-data-sources = { responses = false }

[phases.coverage]
extra-data-sources = { responses = false }

[phases.fuzzing]
extra-data-sources = { responses = false }

# (One `include-name-regex` per entry: schemathesis ORs an entry's separate include filters.)
[[operations]]
include-name-regex = '^GET /api/v1/deployments/\{name\}(/events|/metrics)?$'
parameters = { "path.name" = "fake" }

[[operations]]
include-name-regex = '^GET /api/v1/deployments/\{name\}/instances/\{id\}/'
parameters = { "path.name" = "fake", "path.id" = "$INSTANCE" }

# gantry-fake-engine serves no /metrics: the instance's metrics are the route's documented 503
# (problem details, "its engine did not answer"), not a server fault.
[[operations]]
include-name-regex = '^GET /api/v1/deployments/\{name\}/instances/\{id\}/metrics$'
checks = { not_a_server_error = { expected-statuses = ["2XX", "3XX", "4XX", 503] } }

[[operations]]
include-name-regex = '^(GET|PATCH) /api/v1/models/\{name\}$|^GET /api/v1/models/\{name\}/versions$'
parameters = { "path.name" = "fake-model" }

[[operations]]
include-name-regex = '^(GET|PATCH) /api/v1/models/\{name\}/versions/\{version\}$'
parameters = { "path.name" = "fake-model", "path.version" = "1" }

[[operations]]
include-name-regex = '^PATCH /api/v1/users/\{id\}$'
parameters = { "path.id" = "$ANN_ID" }

[[operations]]
include-name-regex = '^PATCH /api/v1/keys/\{id\}$'
parameters = { "path.id" = "$ANN_KEY_ID" }
TOML

SUMMARY=()
# fuzz LABEL KEY PHASES: one schemathesis run over the /api operations with KEY as the credential.
fuzz() {
  local label=$1 key=$2 phases=$3 log="$DATA/schemathesis-$1.log" status=0 extra=()
  [ -n "${SCHEMATHESIS_SEED:-}" ] && extra=(--seed "$SCHEMATHESIS_SEED")
  [ -n "${SCHEMATHESIS_REPORTS:-}" ] && mkdir -p "$SCHEMATHESIS_REPORTS/$label" &&
    extra+=(--report junit,har --report-dir "$(realpath "$SCHEMATHESIS_REPORTS")/$label")
  step "schemathesis as $label: $phases ($MAX_EXAMPLES examples per operation)"
  # From the data directory, so that nothing it writes lands in the tree.
  (cd "$DATA" && timeout 240 "$SCHEMATHESIS" --config-file "$DATA/schemathesis.toml" run "$SCHEMA" \
    --url "$BASE" -H "Authorization: Bearer $key" \
    --include-path-regex '^/api/' \
    --exclude-operation-id get_api_v1_routes \
    --exclude-operation-id post_api_v1_routes_reports \
    --exclude-operation-id post_api_v1_limits_sync \
    --exclude-operation-id put_api_v1_models_name_versions_version_files_path \
    --exclude-operation-id get_api_v1_models_name_versions_version_files_path \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases "$phases" --max-examples "$MAX_EXAMPLES" "${extra[@]}" --request-timeout 30 --no-color) 2>&1 | tee "$log" || status=$?
  local cases
  cases=$(grep -E '^ *[0-9]+ generated' "$log" | tail -n 1 | sed 's/^ *//' || true)
  if [ "$status" = 124 ]; then
    SUMMARY+=("$label: ran past 240 s (${cases:-no summary})")
  elif [ "$status" != 0 ]; then
    SUMMARY+=("$label: FAILED, exit $status (${cases:-no summary})")
  else
    SUMMARY+=("$label: passed (${cases:-no summary})")
  fi
  return "$status"
}

# The plain user first: the admin's runs may disable ann or revoke her key.
RESULT=0
fuzz user "$ANN" coverage,fuzzing || RESULT=1
fuzz admin "$ADMIN" coverage,fuzzing || RESULT=1
fuzz admin-stateful "$ADMIN" stateful || RESULT=1
kill -0 "$GANTRY_PID" 2>/dev/null || fail "gantry exited during the runs"

step "summary (${SECONDS}s)"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
[ "$RESULT" = 0 ] || fail "schemathesis found failures (see above)"
step "schemathesis test passed"

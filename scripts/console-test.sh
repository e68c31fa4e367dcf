#!/usr/bin/env bash
# The web console's journeys in a real browser: Debian's headless chromium and chromium-driver
# (installed by apt when missing) driven by Selenium from the test peers, against `gantry serve`
# with nanoidp for login, a fixture GPU node (fixtures/nvidia-smi/8xH100.csv, simulated, named as
# such) and llama.cpp's llama-server with the demo model as the engine. See
# Tests/browser/console_journeys.py for the two scenarios and what each step checks.
# Screenshots of every page go to CONSOLE_SCREENSHOTS (default: a folder under the run's data,
# printed at the end).
# Needs GANTRY_TEST_LLAMA_SERVER and GANTRY_TEST_MODEL (scripts/test.sh sets them); starts its own
# nanoidp unless GANTRY_TEST_OIDC_ISSUER is set.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
GANTRY=$(realpath "${1:-.build/debug/gantry}")
: "${GANTRY_TEST_LLAMA_SERVER:?}" "${GANTRY_TEST_MODEL:?}"
ensure_debian_packages chromium:chromium chromedriver:chromium-driver
ensure_test_peers
[ -n "${GANTRY_TEST_OIDC_ISSUER:-}" ] || start_nanoidp

DATA=$(mktemp -d /tmp/gantry-console.XXXXXX)
SHOTS=${CONSOLE_SCREENSHOTS:-$DATA/screenshots}
fail() {
  echo "console test FAILED: $*" >&2
  echo "--- gantry stderr (last 30 lines)" >&2; tail -n 30 "$DATA/gantry.stderr" >&2 || true
  exit 1
}
cleanup() {
  for pid in ${GANTRY_PID:-} ${PLAIN_PID:-}; do
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  done
  # The screenshots stay when they were asked for elsewhere.
  rm -rf "$DATA"
}
on_exit cleanup

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
step "gantry with OIDC login, a fixture GPU node and llama.cpp on $BASE"
GANTRY_AUTH_OIDC_CLIENT_SECRET="$GANTRY_TEST_OIDC_CLIENT_SECRET" \
  "$GANTRY" serve --port "$PORT" --data-dir "$DATA/gantry" --engine-threads 1 --reconcile-interval 1 \
  --llama-server "$GANTRY_TEST_LLAMA_SERVER" --gpu-source "fixture:$PWD/fixtures/nvidia-smi/8xH100.csv" \
  --resource-poll 2 --oidc-issuer "$GANTRY_TEST_OIDC_ISSUER" --oidc-client-id "$GANTRY_TEST_OIDC_CLIENT_ID" \
  --log-level notice >"$DATA/gantry.stdout" 2>"$DATA/gantry.stderr" &
GANTRY_PID=$!
wait_healthy "$BASE"
# A second server without an identity provider, for the console's login with an API key.
PLAIN_PORT=$(free_port)
PLAIN="http://127.0.0.1:$PLAIN_PORT"
"$GANTRY" serve --port "$PLAIN_PORT" --data-dir "$DATA/plain" --log-level notice \
  --gpu-source "fixture:$PWD/fixtures/nvidia-smi/4xA10G-2xL4.csv" >"$DATA/plain.stdout" 2>"$DATA/plain.stderr" &
PLAIN_PID=$!
wait_healthy "$PLAIN"
PLAIN_ADMIN=$(grep -o 'gk_[A-Za-z0-9_-]*' "$DATA/plain.stdout" | head -n 1 || true)
[ -n "$PLAIN_ADMIN" ] || fail "the second server printed no admin key"

step "the admin's and the user's journeys in headless chromium"
"$PEERS/bin/python" Tests/browser/console_journeys.py "$BASE" "$GANTRY_TEST_MODEL" "$SHOTS" "$PLAIN" "$PLAIN_ADMIN" \
  || fail "a console journey failed (screenshots so far: $SHOTS)"
if [ -z "${CONSOLE_SCREENSHOTS:-}" ]; then
  # Kept for whoever reads CI's output: the folder outlives the run's data.
  KEPT=$(mktemp -d /tmp/gantry-console-screenshots.XXXXXX)
  cp "$SHOTS"/*.png "$KEPT"/
  echo "screenshots kept in $KEPT"
fi
step "console test passed"

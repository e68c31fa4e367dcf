#!/usr/bin/env bash
# What a gateway in front of an engine costs: the same load (wrk, same settings) against
#   (a) gantry-fake-engine directly (a FAKE OpenAI engine: canned answers, far faster than any proxy),
#   (b) nginx as a reverse proxy (upstream keepalive, proxy_buffering off),
#   (c) Gantry's gateway (gateway.relay full, the default; in the interleaved rounds also engine and
#       off, each a Gantry of its own; release build, API keys on, a user's key, limits per service, per key on
#       the service and per key with a token quota, usage records; the fake engine deployed as
#       the custom engine),
#   (d) LiteLLM's proxy (PyPI, 2 workers, master key), shorter runs.
# Figures: non-streaming requests/s at CONNECTIONS connections; latency p50/p99 on one
# connection and what each proxy adds; streams/s and SSE events/s; added time to first token
# (200 sequential streams); each proxy's peak RSS. Then 1,000 concurrent streams held open
# straight to a fake engine and through Gantry (and Gantry's RSS), and, when GANTRY_TEST_LLAMA_SERVER and GANTRY_TEST_MODEL are set,
# llama-server's tokens/s directly and through Gantry (4 streams, 3 runs each).
# Prints one markdown table and puts it into docs/benchmarks.md between the gateway-bench markers.
#
#   bash bench/gateway.sh                       # DURATION=10 CONNECTIONS=64
#   DURATION=3 bash bench/gateway.sh            # a quick run
# Knobs: DURATION, WARMUP (2), CONNECTIONS (64), LITELLM_DURATION (min(DURATION, 5)),
# TTFT_REQUESTS (200), STREAMS (1000), STREAM_DELAY_MS (200), STREAM_EVENTS_HELD (50),
# ROUNDS (5: interleaved rounds of the two throughput runs against the engine, nginx and Gantry),
# RELAY_MODES ("engine off": the other gateway.relay modes, each a Gantry of its own measured in
# the same rounds beside the default, full; "" for none),
# BUILD=0 (use the binaries in .build/release as they are), SKIP_LITELLM=1, DOCS=0 (no docs update),
# SKIP_SHARED_LIMITS=1 (skip the last part: bench/shared-limits.sh, a gateway behind a control process
# with shared limits and without).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-64}
LITELLM_DURATION=${LITELLM_DURATION:-$((DURATION < 5 ? DURATION : 5))}
TTFT_REQUESTS=${TTFT_REQUESTS:-200}
STREAMS=${STREAMS:-1000}
STREAM_DELAY_MS=${STREAM_DELAY_MS:-200}
STREAM_EVENTS_HELD=${STREAM_EVENTS_HELD:-50}
STREAM_EVENTS=16
LITELLM_VERSION=$(sed -n 's/^litellm\[proxy\]==\([^ ]*\).*/\1/p' scripts/peers/litellm.txt)
TOKEN_RUNS=${TOKEN_RUNS:-3}
TOKEN_STREAMS=${TOKEN_STREAMS:-4}
MAX_TOKENS=${MAX_TOKENS:-128}
BIN=.build/release
CLIENT=bench/gateway/client.py
STARTED_AT=$SECONDS

fail() { echo "gateway bench FAILED: $*" >&2; exit 1; }
# Last lines of a log, for failure messages.
logtail() { echo "--- $1 (last 20 lines)"; tail -n 20 "$1" 2>/dev/null || true; }

# --- tools ----------------------------------------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((STREAMS * 3 + 100)) ] || fail "ulimit -n is $(ulimit -n); $STREAMS streams need more (raise the hard limit)"
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || fail "please install: ${missing[*]} (Debian packages)"
  step "installing ${missing[*]} (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ "${SKIP_LITELLM:-0}" != 1 ]; then
  # LiteLLM's proxy at its pin (scripts/peers/litellm.txt), in an environment of the project's own.
  ensure_python_env litellm scripts/peers/litellm.txt || fail "installing litellm failed"
  LITELLM_VENV=$PY_ENV
fi

if [ "${BUILD:-1}" != 0 ]; then
  step "building gantry and gantry-fake-engine (release, static Swift stdlib)"
  build_log=$(mktemp /tmp/gantry-gateway-build.XXXXXX)
  for product in gantry gantry-fake-engine; do
    swift build -c release --static-swift-stdlib --product "$product" >"$build_log" 2>&1 \
      || { tail -n 30 "$build_log" >&2; rm -f "$build_log"; fail "swift build --product $product (BUILD=0 uses the binaries as they are)"; }
  done
  rm -f "$build_log"
fi
GANTRY="$BIN/gantry"
FAKE="$PWD/$BIN/gantry-fake-engine"
[ -x "$GANTRY" ] && [ -x "$FAKE" ] || fail "$GANTRY or $FAKE missing"

# --- process bookkeeping: everything started here is stopped on exit --------------------------
WORK=$(mktemp -d /tmp/gantry-gateway-bench.XXXXXX)
chmod 755 "$WORK"
RESULTS="$WORK/results.tsv"
GROUPS_STARTED=()   # process group ids (each server runs in its own session)
# Starts "$@" in its own session (so its workers can be stopped with it); sets LAST_PID.
spawn() {
  local log=$1; shift
  setsid "$@" >"$log" 2>&1 &
  LAST_PID=$!
  GROUPS_STARTED+=("$LAST_PID")
}
stop_group() { # pgid: TERM, up to 10 s, then KILL
  local pgid=$1
  kill -TERM -- "-$pgid" 2>/dev/null || kill -TERM "$pgid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 -- "-$pgid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL -- "-$pgid" 2>/dev/null || true
}
ENGINE_PIDS=()      # engines Gantry started (own process groups), in case Gantry dies first
GANTRY_PIDS=()      # every Gantry started, the default relay mode's first
cleanup() {
  set +e
  for pid in "${GANTRY_PIDS[@]}"; do ENGINE_PIDS+=($(pgrep -P "$pid" 2>/dev/null)); done
  for pgid in "${GROUPS_STARTED[@]}"; do stop_group "$pgid"; done
  for pid in "${ENGINE_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && grep -qE 'gantry-fake-engine|llama-server' "/proc/$pid/cmdline" 2>/dev/null \
      && kill -KILL "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url, seconds, log, [curl args]: polls until 200
  local url=$1 seconds=$2 log=$3; shift 3
  for _ in $(seq 1 $((seconds * 10))); do
    curl -sf -o /dev/null "$@" "$url" && return 0
    sleep 0.1
  done
  logtail "$log" >&2
  fail "$url did not answer 200 within $seconds s"
}
hwm_kib() { # VmHWM summed over the given pids
  local total=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
mib() { python3 -c "print(f'{$1 / 1024:.1f} MiB')"; }

# --- request bodies and wrk scripts -------------------------------------------------------------
CHAT='{"model":"fake","messages":[{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":16}'
STREAM='{"model":"fake","stream":true,"messages":[{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":16}'
write_lua() { # file, body, key ("-" for none)
  {
    echo 'wrk.method = "POST"'
    echo "wrk.body = '$2'"
    echo 'wrk.headers["Content-Type"] = "application/json"'
    [ "$3" = - ] || echo "wrk.headers[\"Authorization\"] = \"Bearer $3\""
  } >"$1"
}
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; } # target, figure, value

# Parses wrk's output: requests/s, non-2xx answers and socket errors.
wrk_rps() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
wrk_errors() {
  local non2xx socket
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$1"); socket=$(grep -o 'Socket errors:.*' "$1" || true)
  echo "${non2xx:-0}${socket:+ (${socket#Socket errors: })}"
}
wrk_pct() { awk -v p="$2" '$1 == p {print $2}' "$1"; } # file, 50% or 99% -> "123.45us"

# Runs every measurement against one target: name, base URL, key ("-" for none), duration.
# prepare NAME BASE KEY: the wrk scripts, and one correct answer and stream first (a clear failure
# beats a table of error rates); records the events per stream, and leaves them in `events`.
prepare() {
  local name=$1 base=$2 key=$3
  local url="$base/v1/chat/completions" k=() answer
  [ "$key" != - ] && k=(-H "Authorization: Bearer $key")
  write_lua "$WORK/chat-$name.lua" "$CHAT" "$key"
  write_lua "$WORK/stream-$name.lua" "$STREAM" "$key"
  # A correct answer first: a clear failure beats a table of error rates.
  answer=$(curl -s "${k[@]}" -H 'Content-Type: application/json' "$url" -d "$CHAT") || fail "$name: no answer"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["choices"] and d["usage"]["total_tokens"] > 0' "$answer" 2>/dev/null \
    || fail "$name: unexpected answer: ${answer:0:300}"
  events=$(python3 "$CLIENT" events "$url" "$key" "$STREAM") || fail "$name: the stream check failed"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["done"] and d["events"] > 0' "$events" 2>/dev/null \
    || fail "$name: unexpected stream: $events"
  events=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["events"])' "$events")
  record "$name" events "$events"
}

measure() {
  local name=$1 base=$2 key=$3 duration=$4
  local url="$base/v1/chat/completions"
  prepare "$name" "$base" "$key"

  step "$name: non-streaming, $CONNECTIONS connections, ${duration}s after ${WARMUP}s warm-up"
  wrk --timeout 10s -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$WORK/chat-$name.lua" "$url" >/dev/null
  wrk --timeout 10s -t1 -c"$CONNECTIONS" -d"${duration}s" -s "$WORK/chat-$name.lua" "$url" >"$WORK/wrk-$name.txt"
  record "$name" rps "$(wrk_rps "$WORK/wrk-$name.txt")"
  record "$name" errors_plain "$(wrk_errors "$WORK/wrk-$name.txt")"

  step "$name: latency on one connection"
  wrk --timeout 10s -t1 -c1 -d"${WARMUP}s" -s "$WORK/chat-$name.lua" "$url" >/dev/null
  wrk --timeout 10s -t1 -c1 -d"${duration}s" --latency -s "$WORK/chat-$name.lua" "$url" >"$WORK/lat-$name.txt"
  record "$name" p50 "$(wrk_pct "$WORK/lat-$name.txt" 50%)"
  record "$name" p99 "$(wrk_pct "$WORK/lat-$name.txt" 99%)"
  record "$name" errors_latency "$(wrk_errors "$WORK/lat-$name.txt")"

  step "$name: streaming, $CONNECTIONS connections ($events events per stream)"
  wrk --timeout 10s -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$WORK/stream-$name.lua" "$url" >/dev/null
  wrk --timeout 10s -t1 -c"$CONNECTIONS" -d"${duration}s" -s "$WORK/stream-$name.lua" "$url" >"$WORK/swrk-$name.txt"
  record "$name" stream_rps "$(wrk_rps "$WORK/swrk-$name.txt")"
  record "$name" errors_stream "$(wrk_errors "$WORK/swrk-$name.txt")"

  step "$name: time to first token, $TTFT_REQUESTS sequential streams on one connection"
  local ttft
  ttft=$(python3 "$CLIENT" ttft "$url" "$key" "$STREAM" "$TTFT_REQUESTS") || fail "$name: time-to-first-token client failed"
  record "$name" ttft "$ttft"
}

# --- (a) the fake engine directly ---------------------------------------------------------------
FAKE_PORT=$(free_port)
spawn "$WORK/fake.log" "$FAKE" --host 127.0.0.1 --port "$FAKE_PORT" --stream-events "$STREAM_EVENTS"
FAKE_PID=$LAST_PID
wait_http "http://127.0.0.1:$FAKE_PORT/health" 10 "$WORK/fake.log"
measure direct "http://127.0.0.1:$FAKE_PORT" - "$DURATION"
held_seconds=$(python3 -c "print(round($STREAM_EVENTS_HELD * $STREAM_DELAY_MS / 1000, 1))")
HELD_BODY='{"model":"fake-held","stream":true,"messages":[{"role":"user","content":"Hold this stream open."}],"max_tokens":16}'
held_streams() { # target, url, pid whose RSS is sampled
  local held
  step "$1: $STREAMS concurrent streams, each $STREAM_EVENTS_HELD events ${STREAM_DELAY_MS} ms apart (~${held_seconds} s)"
  held=$(python3 "$CLIENT" streams "$2" "${4:--}" "$HELD_BODY" "$STREAMS" "$3") || fail "the $STREAMS-stream client failed"
  echo "$held" >&2
  record "$1" held "$held"
}
# The same streams straight to a fake engine that spaces its events: the client and the limits
# of this machine can hold them (a baseline for Gantry's figure below).
FAKE_HELD_PORT=$(free_port)
spawn "$WORK/fake-held.log" "$FAKE" --host 127.0.0.1 --port "$FAKE_HELD_PORT" --stream-events "$STREAM_EVENTS_HELD" \
  --event-delay-ms "$STREAM_DELAY_MS"
FAKE_HELD_PID=$LAST_PID
wait_http "http://127.0.0.1:$FAKE_HELD_PORT/health" 10 "$WORK/fake-held.log"
held_streams direct "http://127.0.0.1:$FAKE_HELD_PORT/v1/chat/completions" "$FAKE_HELD_PID"
stop_group "$FAKE_HELD_PID"

# --- (b) nginx ------------------------------------------------------------------------------------
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  upstream fake { server 127.0.0.1:$FAKE_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
CONF
spawn "$WORK/nginx/stdout.log" "$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;'
NGINX_PID=$LAST_PID
wait_http "http://127.0.0.1:$NGINX_PORT/health" 10 "$WORK/nginx/error.log"
measure nginx "http://127.0.0.1:$NGINX_PORT" - "$DURATION"
record nginx rss_kib "$(hwm_kib $(pgrep -g "$NGINX_PID"))"
record meta nginx_version "$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"

# --- (c) Gantry ---------------------------------------------------------------------------------
# start_gantry NAME RELAY [held]: a Gantry with gateway.relay = RELAY, the fake engine deployed as
# the custom engine behind it, and a user's key; sets G_BASE, G_PID, G_ADMIN and G_KEY.
start_gantry() {
  local name=$1 relay=$2 held=${3:-} port
  port=$(free_port)
  G_BASE="http://127.0.0.1:$port"
  local args=(serve --port "$port" --data-dir "$WORK/$name" --log-level warning --engine-threads 1 --relay "$relay"
    --custom-engine-command "$FAKE --host {host} --port {port} --model {model} --stream-events $STREAM_EVENTS")
  [ -n "${GANTRY_TEST_LLAMA_SERVER:-}" ] && args+=(--llama-server "$GANTRY_TEST_LLAMA_SERVER")
  mkdir -p "$WORK/$name"
  spawn "$WORK/$name.stdout" "$GANTRY" "${args[@]}"
  G_PID=$LAST_PID
  GANTRY_PIDS+=("$G_PID")
  wait_http "$G_BASE/healthz" 60 "$WORK/$name.stdout"
  wait_http "$G_BASE/readyz" 30 "$WORK/$name.stdout"
  G_ADMIN=
  for _ in $(seq 1 50); do G_ADMIN=$(grep -o 'gk_[A-Za-z0-9_-]*' "$WORK/$name.stdout" | head -n 1 || true); [ -n "$G_ADMIN" ] && break; sleep 0.1; done
  [ -n "$G_ADMIN" ] || { logtail "$WORK/$name.stdout" >&2; fail "$name printed no bootstrap admin key"; }
  local base=$G_BASE admin=$G_ADMIN
  g_api() { gantry_api "$base" "$admin" "$@"; }
  step "$name (gateway.relay $relay): registering a tiny model file, deploying the fake engine as the custom engine"
  mkdir -p "$WORK/$name-model"
  register_fake_model "$G_BASE" "$G_ADMIN" "$WORK/$name-model"
  # Limits on (high enough never to refuse, so every request pays for the check): per service,
  # per key on the service, and on the key itself with a token quota; usage accounting is always on.
  g_api POST /api/v1/deployments '{"name":"fake","model":"fake-model","engine":"custom","limits":{"requests_per_minute":100000000,"tokens_per_minute":1000000000000,"requests_per_minute_per_key":100000000,"tokens_per_minute_per_key":1000000000000}}' >/dev/null
  [ -n "$held" ] && g_api POST /api/v1/deployments "{\"name\":\"fake-held\",\"model\":\"fake-model\",\"engine\":\"custom\",\"engine_args\":[\"--event-delay-ms\",\"$STREAM_DELAY_MS\",\"--stream-events\",\"$STREAM_EVENTS_HELD\"]}" >/dev/null
  g_api POST /api/v1/users '{"name":"bench"}' >/dev/null
  G_KEY=$(g_api POST /api/v1/keys '{"name":"bench","user":"bench","limits":{"requests_per_minute":100000000,"tokens_per_minute":1000000000000,"token_quota":1000000000000000,"quota_period":"day"}}' | grep -o 'gk_[A-Za-z0-9_-]*' | head -n 1 || true)
  [ -n "$G_KEY" ] || fail "$name: could not read the new user key"
  gantry_wait_ready "$G_BASE" "$G_ADMIN" fake
  [ -z "$held" ] || gantry_wait_ready "$G_BASE" "$G_ADMIN" fake-held
}
start_gantry gantry full held
GBASE=$G_BASE GANTRY_PID=$G_PID ADMIN=$G_ADMIN USER_KEY=$G_KEY
api() { gantry_api "$GBASE" "$ADMIN" "$@"; } # method path [json]
measure gantry "$GBASE" "$USER_KEY" "$DURATION"
record gantry rss_kib "$(hwm_kib "$GANTRY_PID")"

# The other relay modes, measured only in the interleaved rounds, beside the default.
declare -A ROUND_URL=([direct]="http://127.0.0.1:$FAKE_PORT/v1/chat/completions"
  [nginx]="http://127.0.0.1:$NGINX_PORT/v1/chat/completions" [gantry]="$GBASE/v1/chat/completions")
ROUND_TARGETS=(direct nginx gantry)
for relay in ${RELAY_MODES-engine off}; do
  start_gantry "gantry_$relay" "$relay"
  prepare "gantry_$relay" "$G_BASE" "$G_KEY"
  ROUND_URL[gantry_$relay]="$G_BASE/v1/chat/completions"
  ROUND_TARGETS+=("gantry_$relay")
done

# --- interleaved rounds -------------------------------------------------------------------------
# Single runs on this shared machine drift by 10-15 % from one minute to the next, so the ratios
# the targets name are also taken round by round: each round runs the engine, nginx and Gantry
# back to back with the same load.
for round in $(seq 1 "$ROUNDS"); do
  order=("${ROUND_TARGETS[@]}")
  # Odd rounds run in reverse, so that no target always runs right after the same other one (a
  # Gantry measured just after another inherits its warm caches and its leftover sockets).
  if [ $((round % 2)) = 1 ]; then
    order=()
    for ((i = ${#ROUND_TARGETS[@]} - 1; i >= 0; i--)); do order+=("${ROUND_TARGETS[$i]}"); done
  fi
  for target in "${order[@]}"; do
    url=${ROUND_URL[$target]}
    step "round $round of $ROUNDS: $target, non-streaming and streaming, $CONNECTIONS connections"
    for kind in chat stream; do
      wrk --timeout 10s -t1 -c"$CONNECTIONS" -d1s -s "$WORK/$kind-$target.lua" "$url" >/dev/null
      wrk --timeout 10s -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/$kind-$target.lua" "$url" >"$WORK/round-$kind-$target.txt"
      record "$target" "round_${kind}_$round" "$(wrk_rps "$WORK/round-$kind-$target.txt")"
      record "$target" "round_${kind}_errors_$round" "$(wrk_errors "$WORK/round-$kind-$target.txt")"
    done
  done
done
record meta rounds "$ROUNDS"
stop_group "$NGINX_PID"
for pid in "${GANTRY_PIDS[@]:1}"; do ENGINE_PIDS+=($(pgrep -P "$pid" 2>/dev/null)); stop_group "$pid"; done

# --- 1,000 streams held open through Gantry ---------------------------------------------------
held_streams gantry "$GBASE/v1/chat/completions" "$GANTRY_PID" "$USER_KEY"
record gantry held_hwm_kib "$(hwm_kib "$GANTRY_PID")"

# --- (d) LiteLLM ----------------------------------------------------------------------------------
if [ "${SKIP_LITELLM:-0}" != 1 ]; then
  LITELLM_PORT=$(free_port)
  LITELLM_KEY="sk-bench-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
  cat >"$WORK/litellm.yaml" <<YAML
model_list:
  - model_name: fake
    litellm_params:
      model: openai/fake
      api_base: http://127.0.0.1:$FAKE_PORT/v1
      api_key: fake
general_settings:
  master_key: $LITELLM_KEY
litellm_settings:
  telemetry: false
YAML
  step "LiteLLM $LITELLM_VERSION: 2 workers, ${LITELLM_DURATION}s runs"
  spawn "$WORK/litellm.log" env -C "$WORK" LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
    "$LITELLM_VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" --num_workers 2 \
    --telemetry False
  LITELLM_PID=$LAST_PID
  wait_http "http://127.0.0.1:$LITELLM_PORT/health/liveliness" 180 "$WORK/litellm.log"
  measure litellm "http://127.0.0.1:$LITELLM_PORT" "$LITELLM_KEY" "$LITELLM_DURATION"
  record litellm rss_kib "$(hwm_kib $(pgrep -g "$LITELLM_PID"))"
  record litellm processes "$(pgrep -g "$LITELLM_PID" | wc -l)"
  stop_group "$LITELLM_PID"
fi

# --- the real engine ------------------------------------------------------------------------------
if [ -n "${GANTRY_TEST_LLAMA_SERVER:-}" ] && [ -n "${GANTRY_TEST_MODEL:-}" ]; then
  step "llama-server: $TOKEN_STREAMS streams x $MAX_TOKENS tokens, $TOKEN_RUNS runs directly and through Gantry"
  # The fake deployments hold CPU threads that Gantry's placement would not give to the engine.
  for name in fake fake-held; do
    api DELETE "/api/v1/deployments/$name" >/dev/null
    for _ in $(seq 1 300); do
      [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$GBASE/api/v1/deployments/$name")" = 404 ] && break
      sleep 0.1
    done
  done
  api POST /api/v1/models '{"name":"smollm2","task":"chat"}' >/dev/null
  api POST /api/v1/models/smollm2/versions "{\"format\":\"gguf\",\"context_limit\":2048,\"artifact_uri\":\"file://$GANTRY_TEST_MODEL\"}" >/dev/null
  api POST /api/v1/deployments "{\"name\":\"smollm2\",\"model\":\"smollm2\",\"engine_args\":[\"--parallel\",\"$TOKEN_STREAMS\"]}" >/dev/null
  gantry_wait_ready "$GBASE" "$ADMIN" smollm2
  LLAMA_PORT=$(free_port)
  # The same flags as Gantry's llama-cpp adapter, and the same --parallel.
  spawn "$WORK/llama.log" "$GANTRY_TEST_LLAMA_SERVER" --model "$GANTRY_TEST_MODEL" --host 127.0.0.1 --port "$LLAMA_PORT" \
    --ctx-size 2048 --threads 1 --parallel "$TOKEN_STREAMS" --alias smollm2 --offline --metrics --no-webui
  LLAMA_PID=$LAST_PID
  wait_http "http://127.0.0.1:$LLAMA_PORT/health" 120 "$WORK/llama.log"
  TOK_BODY="{\"model\":\"smollm2\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":$MAX_TOKENS,\"messages\":[{\"role\":\"user\",\"content\":\"Write a long story about a lighthouse keeper.\"}]}"
  direct_runs=() gantry_runs=()
  python3 "$CLIENT" tokens "http://127.0.0.1:$LLAMA_PORT/v1/chat/completions" - "$TOK_BODY" 1 >/dev/null || fail "llama-server warm-up"
  python3 "$CLIENT" tokens "$GBASE/v1/chat/completions" "$USER_KEY" "$TOK_BODY" 1 >/dev/null || fail "Gantry llama-server warm-up"
  for _ in $(seq 1 "$TOKEN_RUNS"); do  # interleaved, so that drift hits both alike
    direct_runs+=("$(python3 "$CLIENT" tokens "http://127.0.0.1:$LLAMA_PORT/v1/chat/completions" - "$TOK_BODY" "$TOKEN_STREAMS" \
      | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["tokens_per_s"], 1))')") || fail "llama-server direct run"
    gantry_runs+=("$(python3 "$CLIENT" tokens "$GBASE/v1/chat/completions" "$USER_KEY" "$TOK_BODY" "$TOKEN_STREAMS" \
      | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["tokens_per_s"], 1))')") || fail "llama-server run through Gantry"
  done
  stop_group "$LLAMA_PID"
  record llama direct "${direct_runs[*]}"
  record llama gantry "${gantry_runs[*]}"
fi

# --- the table --------------------------------------------------------------------------------------
for pair in "duration=$DURATION" "warmup=$WARMUP" "connections=$CONNECTIONS" "litellm_duration=$LITELLM_DURATION" \
  "litellm_version=$LITELLM_VERSION" "ttft_requests=$TTFT_REQUESTS" "streams=$STREAMS" "stream_delay_ms=$STREAM_DELAY_MS" \
  "stream_events_held=$STREAM_EVENTS_HELD" "token_streams=$TOKEN_STREAMS" "max_tokens=$MAX_TOKENS" "token_runs=$TOKEN_RUNS" \
  "cores=$(nproc)" "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" "date=$(date -u +%Y-%m-%d)" \
  "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- Sources Package.swift 2>/dev/null || echo ' + uncommitted changes')" \
  "elapsed_s=$((SECONDS - STARTED_AT))"; do
  record meta "${pair%%=*}" "${pair#*=}"
done
docs=docs/benchmarks.md
[ "${DOCS:-1}" = 0 ] && docs=-
python3 bench/gateway/report.py "$RESULTS" "$docs" || fail "report.py failed (results: $(cat "$RESULTS"))"
[ "$docs" = - ] || step "docs/benchmarks.md updated (between the gateway-bench markers)"
echo "whole run: $((SECONDS - STARTED_AT)) s" >&2

# --- limits shared by every gateway ------------------------------------------------------------------
# A gateway process behind a control process: its rate with one shared limit, with six and a quota,
# and with none (bench/shared-limits.sh, its own table between the shared-limits-bench markers).
if [ "${SKIP_SHARED_LIMITS:-0}" != 1 ]; then
  step "limits shared by every gateway (bench/shared-limits.sh)"
  BUILD=0 DOCS="${DOCS:-1}" DURATION="$((DURATION < 5 ? DURATION : 5))" bash bench/shared-limits.sh \
    || fail "bench/shared-limits.sh failed"
fi

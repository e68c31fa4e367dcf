#!/usr/bin/env bash
# Orchestration figures with the real engine (llama.cpp's llama-server, the SmolLM2 demo model,
# one thread per instance):
#   - the engine's own start time (spawn to a healthy /health), started by hand;
#   - Gantry's deploy-to-ready (POST /api/v1/deployments to status "ready"), and the difference;
#   - failover: kill -9 of the engine to the first successful chat completion;
#   - a rolling update to a new version under back-to-back requests: duration, failed requests;
#   - scale from zero: the first request to an idle service, answered.
#
#   bash bench/orchestration.sh          # RUNS=3, the release binary when built, else debug
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

RUNS=${RUNS:-3}
GANTRY=${GANTRY:-.build/release/gantry}
[ -x "$GANTRY" ] || GANTRY=.build/debug/gantry
ENGINE=${GANTRY_TEST_LLAMA_SERVER:-$HOME/.cache/gantry/engines/llama-cpp/0.3.36/llama-server}
MODEL=${GANTRY_TEST_MODEL:-$HOME/.cache/gantry/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -x "$ENGINE" ] && [ -f "$MODEL" ] || { echo "needs the engine and demo model: gantry engines install llama-cpp; gantry demo-model" >&2; exit 1; }
WORK=$(mktemp -d /tmp/gantry-bench.XXXXXX)
on_exit "rm -rf '$WORK' || true"
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.2f}')"; }
mean() { python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(f'{sum(v)/len(v):.2f} s (runs: {\", \".join(sys.argv[1:])})')" "$@"; }

step "the engine alone: spawn to healthy, $RUNS runs"
alone=()
for _ in $(seq 1 "$RUNS"); do
  port=$(free_port)
  started=$(now)
  "$ENGINE" --model "$MODEL" --host 127.0.0.1 --port "$port" --ctx-size 1024 --threads 1 --parallel 1 --no-webui \
    >"$WORK/engine.log" 2>&1 &
  pid=$!
  until curl -sf "127.0.0.1:$port/health" >/dev/null; do sleep 0.01; done
  alone+=("$(since "$started")")
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
"$GANTRY" serve --port "$PORT" --data-dir "$WORK/data" --log-level warning --engine-threads 1 --llama-server "$ENGINE" \
  >"$WORK/stdout" 2>"$WORK/stderr" &
GANTRY_PID=$!
on_exit "kill $GANTRY_PID 2>/dev/null || true"
for _ in $(seq 1 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
KEY=$(grep -o 'gk_[A-Za-z0-9_-]*' "$WORK/stdout" | head -n 1)
api() { curl -sf -X "$1" "$BASE$2" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' ${3:+-d "$3"}; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
chat() { curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/chat/completions" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d '{"model":"chat","messages":[{"role":"user","content":"Hi"}],"max_tokens":4}'; }
wait_for() { # python condition on d (the deployment), timeout seconds
  for _ in $(seq 1 $(($2 * 50))); do
    [ "$(api GET /api/v1/deployments/chat | field "$1")" = True ] && return 0
    sleep 0.02
  done
  echo "timed out waiting for: $1" >&2; return 1
}
api POST /api/v1/models '{"name":"smollm2","task":"chat"}' >/dev/null
for _ in 1 2; do
  api POST /api/v1/models/smollm2/versions "{\"format\":\"gguf\",\"context_limit\":1024,\"artifact_uri\":\"file://$MODEL\"}" >/dev/null
done

step "Gantry: deploy-to-ready, $RUNS runs"
deploys=()
for _ in $(seq 1 "$RUNS"); do
  started=$(now)
  api POST /api/v1/deployments '{"name":"chat","model":"smollm2","version":"1"}' >/dev/null
  wait_for 'd["status"] == "ready"' 120
  deploys+=("$(since "$started")")
  api DELETE /api/v1/deployments/chat >/dev/null
  for _ in $(seq 1 500); do api GET /api/v1/deployments/chat >/dev/null || break; sleep 0.02; done
done

step "failover: kill -9 of the engine to the first good answer, $RUNS runs (a fresh deployment each)"
failovers=()
for _ in $(seq 1 "$RUNS"); do
  api POST /api/v1/deployments '{"name":"chat","model":"smollm2","version":"1"}' >/dev/null
  wait_for 'd["status"] == "ready"' 120
  [ "$(chat)" = 200 ] || { echo "no answer before the kill" >&2; exit 1; }
  pid=$(api GET /api/v1/deployments/chat | field 'd["instances"][0]["pid"]')
  killed=$(now)
  kill -9 "$pid"
  until [ "$(chat)" = 200 ]; do sleep 0.02; done
  failovers+=("$(since "$killed")")
  api DELETE /api/v1/deployments/chat >/dev/null
  for _ in $(seq 1 500); do api GET /api/v1/deployments/chat >/dev/null || break; sleep 0.02; done
done
api POST /api/v1/deployments '{"name":"chat","model":"smollm2","version":"1"}' >/dev/null
wait_for 'd["status"] == "ready"' 120

step "rolling update 1 -> 2 (and back), requests back to back"
updates=()
for target in 2 1; do
  ok=0 failed=0
  started=$(now)
  api PATCH /api/v1/deployments/chat "{\"version\":\"$target\"}" >/dev/null
  while :; do
    if [ "$(chat)" = 200 ]; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
    [ "$(api GET /api/v1/deployments/chat | field "d['status'] == 'ready' and d['version'] == '$target' and len(d['instances']) == 1")" = True ] && break
  done
  updates+=("to v$target: $(since "$started") s, $ok requests ok, $failed failed")
done

step "scale from zero"
api DELETE /api/v1/deployments/chat >/dev/null
for _ in $(seq 1 500); do api GET /api/v1/deployments/chat >/dev/null || break; sleep 0.02; done
api POST /api/v1/deployments \
  '{"name":"chat","model":"smollm2","min_replicas":0,"max_replicas":1,"autoscaling":{"scale_down_window_seconds":2}}' >/dev/null
wait_for 'd["status"] == "idle"' 120
started=$(now)
code=$(chat)
zero="$(since "$started") s (status $code)"

echo
echo "| figure | value |"
echo "|---|---|"
echo "| llama-server alone, spawn to healthy | $(mean "${alone[@]}") |"
echo "| Gantry deploy-to-ready | $(mean "${deploys[@]}") |"
echo "| overhead | $(python3 -c "import sys; a=[float(x) for x in sys.argv[1].split()]; b=[float(x) for x in sys.argv[2].split()]; print(f'{sum(b)/len(b) - sum(a)/len(a):.2f} s')" "${alone[*]}" "${deploys[*]}") |"
echo "| failover (kill -9 to first good answer) | $(mean "${failovers[@]}") |"
for line in "${updates[@]}"; do echo "| rolling update $line |"; done | sed 's/: /| /'
echo "| scale from zero: first request answered | $zero |"

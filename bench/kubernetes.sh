#!/usr/bin/env bash
# Gantry with --runtime kubernetes, timed against the same engine run locally:
#   - the control plane's own start (etcd, kube-apiserver, kube-scheduler 1.20, scripts/lib.sh);
#   - deploy-to-ready: POST /api/v1/deployments (1 GPU) to status "ready": the pod applied,
#     placed by kube-scheduler, its init container (`gantry fetch-model`) downloading the demo
#     model (94 MiB) from Gantry, llama-server loading it, the readiness probe passing;
#   - an engine crash restarted in place by the kubelet: kill -9 to the first good answer;
#   - a node lost: its pod is deleted with it, and Gantry starts the instance on another node:
#     `kill-node` to the first good answer.
# The nodes are scripts/kubernetes/standin-kubelet.py, a TEST STAND-IN for the kubelet that runs
# pods as local processes (no container runtime here), so pull times are not in these figures.
#
#   bash bench/kubernetes.sh          # RUNS=3, the release binary when built, else debug
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

RUNS=${RUNS:-3}
GANTRY=${GANTRY:-.build/release/gantry}
[ -x "$GANTRY" ] || GANTRY=.build/debug/gantry
GANTRY=$(realpath "$GANTRY")
ENGINE=${GANTRY_TEST_LLAMA_SERVER:-$HOME/.cache/gantry/engines/llama-cpp/0.3.36/llama-server}
MODEL=${GANTRY_TEST_MODEL:-$HOME/.cache/gantry/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -x "$ENGINE" ] && [ -f "$MODEL" ] || { echo "needs the engine and demo model: gantry engines install llama-cpp; gantry demo-model" >&2; exit 1; }
ensure_test_peers
WORK=$(mktemp -d /tmp/gantry-kube-bench.XXXXXX)
on_exit "rm -rf '$WORK' || true"
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.2f}')"; }
mean() { python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(f'{sum(v)/len(v):.2f} s (runs: {\", \".join(sys.argv[1:])})')" "$@"; }

ensure_kubernetes_control_plane
step "the control plane's start"
started=$(now)
start_kubernetes_control_plane
control_plane=$(since "$started")
KUBECTL=(kubectl --kubeconfig "$GANTRY_TEST_KUBECONFIG")
"${KUBECTL[@]}" create namespace bench >/dev/null

step "the stand-in kubelet (nodes gpu-h100, gpu-a10g, cpu-only)"
mkfifo "$WORK/standin.in"
exec 3<>"$WORK/standin.in"
"$GANTRY_TEST_PYTHON" scripts/kubernetes/standin-kubelet.py --kubeconfig "$GANTRY_TEST_KUBECONFIG" \
  --nodes scripts/kubernetes/nodes-fixture.json --node-prefix bench- --work-dir "$WORK/standin" \
  --images "{\"gantry-bench/llama-server\": \"$ENGINE\", \"gantry:latest\": \"$GANTRY\"}" \
  <"$WORK/standin.in" >"$WORK/standin.out" 2>"$WORK/standin.log" &
STANDIN_PID=$!
stop_standin() { # SIGTERM (it deletes its pods and Nodes), SIGKILL after 10 s; never waits longer
  kill "$STANDIN_PID" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$STANDIN_PID" 2>/dev/null || return 0; sleep 0.1; done
  pkill -9 -P "$STANDIN_PID" 2>/dev/null; kill -9 "$STANDIN_PID" 2>/dev/null || true
}
on_exit stop_standin
until grep -q "standin-kubelet ready" "$WORK/standin.out"; do sleep 0.05; done
standin() { # COMMAND: sends it and waits for its answer
  local answers
  answers=$(grep -c '^ok$\|^error' "$WORK/standin.out" || true)
  echo "$1" >&3
  until [ "$(grep -c '^ok$\|^error' "$WORK/standin.out" || true)" -gt "$answers" ]; do sleep 0.02; done
  tail -n 1 "$WORK/standin.out" | grep -q '^ok$' || { echo "stand-in: $1: $(tail -n 1 "$WORK/standin.out")" >&2; return 1; }
}

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
"$GANTRY" serve --port "$PORT" --data-dir "$WORK/data" --log-level warning --runtime kubernetes \
  --kubeconfig "$GANTRY_TEST_KUBECONFIG_GANTRY" --kube-namespace bench --kube-readiness-period 1 \
  --kube-registry-url "$BASE" --kube-images llama-cpp=gantry-bench/llama-server \
  >"$WORK/stdout" 2>"$WORK/stderr" &
GANTRY_PID=$!
on_exit "kill $GANTRY_PID 2>/dev/null || true"
for _ in $(seq 1 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
KEY=$(grep -o 'gk_[A-Za-z0-9_-]*' "$WORK/stdout" | head -n 1) || { echo "gantry did not start:" >&2; tail -n 20 "$WORK/stderr" >&2; exit 1; }
api() { gantry_api "$BASE" "$KEY" "$@"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
chat() { curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/chat/completions" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d '{"model":"chat","messages":[{"role":"user","content":"Hi"}],"max_tokens":4}'; }
wait_for() { # python condition on d (the deployment), timeout seconds
  for _ in $(seq 1 $(($2 * 50))); do
    [ "$(api GET /api/v1/deployments/chat | field "$1")" = True ] && return 0
    sleep 0.02
  done
  echo "timed out waiting for: $1" >&2; tail -n 20 "$WORK/stderr" >&2; return 1
}
deleted() { # until GET answers 404 (gantry_api would end the script on it)
  for _ in $(seq 1 1500); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$BASE/api/v1/deployments/chat")" = 404 ] && return 0
    sleep 0.02
  done
  echo "the deployment was never deleted" >&2; return 1
}

step "uploading the demo model into the registry, as versions 1 and 2"
api POST /api/v1/models '{"name":"smollm2","task":"chat"}' >/dev/null
for version in 1 2; do
  api POST /api/v1/models/smollm2/versions '{"format":"gguf","context_limit":1024}' >/dev/null
  curl -sf -X PUT -T "$MODEL" -H "Authorization: Bearer $KEY" \
    "$BASE/api/v1/models/smollm2/versions/$version/files/model.gguf" >/dev/null
  api POST "/api/v1/models/smollm2/versions/$version/complete" >/dev/null
done

step "deploy-to-ready on 1 GPU, $RUNS runs"
deploys=()
for _ in $(seq 1 "$RUNS"); do
  started=$(now)
  api POST /api/v1/deployments '{"name":"chat","model":"smollm2","version":"1","resources":{"gpus":1}}' >/dev/null
  wait_for 'd["status"] == "ready"' 120
  deploys+=("$(since "$started")")
  api DELETE /api/v1/deployments/chat >/dev/null
  deleted
done

step "an engine crash restarted in place: kill -9 to the first good answer, $RUNS runs"
api POST /api/v1/deployments '{"name":"chat","model":"smollm2","version":"1","resources":{"gpus":1}}' >/dev/null
wait_for 'd["status"] == "ready"' 120
crashes=()
for run in $(seq 1 "$RUNS"); do
  [ "$(chat)" = 200 ] || { echo "no answer before the crash" >&2; exit 1; }
  pod=$("${KUBECTL[@]}" -n bench get pods -l app.kubernetes.io/managed-by=gantry -o jsonpath='{.items[0].metadata.name}')
  killed=$(now)
  standin "crash bench/$pod/engine"
  sleep 0.05
  until [ "$(chat)" = 200 ]; do sleep 0.02; done
  crashes+=("$(since "$killed")")
  wait_for "d['instances'][0]['restarts'] >= $run and d['status'] == 'ready'" 60
done

step "rolling update 1 -> 2, requests back to back"
ok=0 failed=0
started=$(now)
api PATCH /api/v1/deployments/chat '{"version":"2"}' >/dev/null
while :; do
  if [ "$(chat)" = 200 ]; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
  [ "$(api GET /api/v1/deployments/chat | field "d['status'] == 'ready' and d['version'] == '2' and len(d['instances']) == 1")" = True ] && break
done
update="$(since "$started") s, $ok requests ok, $failed failed"

step "a node lost: kill-node to the first good answer on another node"
node=$(api GET /api/v1/deployments/chat | field 'd["instances"][0]["node"]')
killed=$(now)
standin "kill-node $node"
sleep 0.05
until [ "$(chat)" = 200 ]; do sleep 0.05; done
node_lost="$(since "$killed") s ($node lost; now on $(api GET /api/v1/deployments/chat | field 'd["instances"][0]["node"]'))"

echo
echo "| figure | value |"
echo "|---|---|"
echo "| control plane start (etcd, kube-apiserver, kube-scheduler) | $control_plane s |"
echo "| deploy-to-ready on 1 GPU (schedule, fetch 94 MiB, load, probe) | $(mean "${deploys[@]}") |"
echo "| engine crash: kill -9 to the first good answer | $(mean "${crashes[@]}") |"
echo "| rolling update v1 -> v2 under back-to-back requests | $update |"
echo "| node lost: to the first good answer on another node | $node_lost |"

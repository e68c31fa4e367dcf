#!/usr/bin/env bash
# Checks that need an NVIDIA GPU, run on the device machine (no network, no Swift):
#   1. GPU discovery: nvidia-smi's own output, and `gantry resources` through NVML and nvidia-smi;
#   2. a CUDA build of llama-server from the same llama.cpp sources Gantry installs;
#   3. that engine on the GPU, directly and deployed by Gantry with `resources.gpus: 1`: the
#      allocation, CUDA_VISIBLE_DEVICES pinning, tokens/s direct and through Gantry, placement
#      refusals, no engine left after SIGTERM.
# Inputs under $IN (default tmp/device): gantry.xz (stripped release build), llama-src.tar.xz,
# tiny.gguf (a small random-weight model: the demo model is too large to carry), libs.tar.xz
# (libxml2 and ICU, used only if the machine lacks them). Everything lands in $OUT.
set -uo pipefail
IN=${IN:-tmp/device}
OUT=${OUT:-/tmp/gantry-gpu-check}
mkdir -p "$OUT"
W=$(mktemp -d)
IN=$(cd "$IN" && pwd)
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/steps.log"; }
FIELDS=index,uuid,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw

log "1. discovery"
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
nvidia-smi --query-gpu=$FIELDS --format=csv,noheader,nounits >"$OUT/nvidia-smi-query.csv" 2>&1
xz -dc "$IN/gantry.xz" >"$W/gantry" && chmod +x "$W/gantry"
if ldd "$W/gantry" | grep -q 'not found'; then
  mkdir -p "$W/lib" && xz -dc "$IN/libs.tar.xz" | tar -x -C "$W/lib" && export LD_LIBRARY_PATH="$W/lib"
  log "using carried libxml2/ICU"
fi
{
  for source in nvml nvidia-smi auto "fixture:$OUT/nvidia-smi-query.csv"; do
    echo "## gantry resources --gpu-source $source"
    "$W/gantry" resources --gpu-source "$source" 2>&1
  done
} >"$OUT/resources.txt"
"$W/gantry" resources --gpu-source nvml --json >"$OUT/resources-nvml.json" 2>&1
"$W/gantry" resources --gpu-source nvidia-smi --json >"$OUT/resources-nvidia-smi.json" 2>&1
cat "$OUT/nvidia-smi-query.csv" "$OUT/resources.txt"

LS="${PREBUILT_LLAMA_SERVER:-}"
if [ -z "$LS" ]; then
log "2. CUDA build of llama-server"
mkdir -p "$W/src" && tar -xJf "$IN/llama-src.tar.xz" -C "$W/src"
{
  nvcc --version
  cmake -S "$W/src" -B "$W/build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DGGML_CUDA_FA=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF &&
    timeout "${BUILD_TIMEOUT:-330}" cmake --build "$W/build" --target llama-server -j 16
} >"$OUT/cuda-build.log" 2>&1
LS="$W/build/bin/llama-server"
fi
if [ ! -x "$LS" ]; then
  log "CUDA build failed or timed out"; tail -n 40 "$OUT/cuda-build.log"; exit 0
fi
log "built: $("$LS" --version 2>&1 | tail -n 2 | tr '\n' ' ')"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# N concurrent non-streamed completions of MAX tokens each; prints tokens, seconds, tokens/s.
load() { # url key model n max
  local start end total=0 pids=()
  start=$(date +%s.%N)
  for i in $(seq 1 "$4"); do
    curl -s "$1/v1/chat/completions" -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
      -d "{\"model\":\"$3\",\"messages\":[{\"role\":\"user\",\"content\":\"story $i\"}],\"max_tokens\":$5,\"ignore_eos\":true}" \
      >"$W/load.$i" &
    pids+=($!)
  done
  wait "${pids[@]}" # only the requests: the engine runs in the background too
  end=$(date +%s.%N)
  for i in $(seq 1 "$4"); do total=$((total + $(grep -o '"completion_tokens":[0-9]*' "$W/load.$i" | cut -d: -f2 || echo 0))); done
  python3 -c "print(f'{$total} tokens in {$end-$start:.2f} s = {$total/($end-$start):.0f} tokens/s')"
}

log "3a. llama-server directly on the GPU"
P=$(free_port)
started=$(date +%s.%N)
"$LS" -m "$IN/tiny.gguf" --host 127.0.0.1 --port "$P" --ctx-size 8192 --parallel 4 --n-gpu-layers 999 \
  --no-webui >"$OUT/direct-engine.log" 2>&1 &
ENGINE=$!
for _ in $(seq 1 1200); do curl -sf "127.0.0.1:$P/health" >/dev/null && break; sleep 0.05; done
log "direct engine healthy after $(python3 -c "print(f'{$(date +%s.%N)-$started:.2f}')") s"
load "http://127.0.0.1:$P" none tiny 4 1500 >/dev/null # warm-up
for run in 1 2 3; do log "direct, 4 concurrent: $(load "http://127.0.0.1:$P" none tiny 4 1500)"; done
kill "$ENGINE"; wait "$ENGINE" 2>/dev/null

log "3b. the same engine deployed by Gantry on GPU 0"
GP=$(free_port)
BASE="http://127.0.0.1:$GP"
"$W/gantry" serve --port "$GP" --data-dir "$W/data" --gpu-source nvml --llama-server "$LS" --reconcile-interval 1 \
  >"$W/gantry.out" 2>"$OUT/gantry-stderr.log" &
GANTRY=$!
for _ in $(seq 1 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
ADMIN=$(grep -o 'gk_[A-Za-z0-9_-]*' "$W/gantry.out" | head -n 1)
api() { curl -s -X "$1" "$BASE$2" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' ${3:+-d "$3"}; }
api POST /api/v1/models '{"name":"tiny","task":"chat"}' >/dev/null
api POST /api/v1/models/tiny/versions \
  "{\"format\":\"gguf\",\"context_limit\":8192,\"artifact_uri\":\"file://$IN/tiny.gguf\",\"engine_args\":[\"--parallel\",\"4\"]}" >/dev/null
started=$(date +%s.%N)
api POST /api/v1/deployments '{"name":"tiny-gpu","model":"tiny","resources":{"gpus":1}}' >"$OUT/deploy.json"
for _ in $(seq 1 1200); do api GET /api/v1/deployments/tiny-gpu | grep -q '"status":"ready"' && break; sleep 0.05; done
log "Gantry deploy-to-ready $(python3 -c "print(f'{$(date +%s.%N)-$started:.2f}')") s"
api GET /api/v1/deployments/tiny-gpu >"$OUT/deployment.json"
PID=$(grep -o '"pid":[0-9]*' "$OUT/deployment.json" | head -n 1 | cut -d: -f2)
{
  echo "engine pid $PID: $(tr '\0' '\n' </proc/"$PID"/environ | grep -E '^CUDA_VISIBLE_DEVICES=')"
  tr '\0' ' ' </proc/"$PID"/cmdline; echo
  nvidia-smi --query-compute-apps=pid,process_name,used_memory,gpu_uuid --format=csv
  echo "## /api/v1/gpus"; api GET /api/v1/gpus; echo
  echo "## /api/v1/allocations"; api GET /api/v1/allocations; echo
} >"$OUT/pinning.txt" 2>&1
cat "$OUT/pinning.txt"
load "$BASE" "$ADMIN" tiny-gpu 4 1500 >/dev/null
for run in 1 2 3; do log "through Gantry, 4 concurrent: $(load "$BASE" "$ADMIN" tiny-gpu 4 1500)"; done
log "a second deployment wanting the only GPU: $(api POST /api/v1/deployments '{"name":"second","model":"tiny","resources":{"gpus":1}}' | head -c 120)"
sleep 3
log "its status: $(api GET /api/v1/deployments/second | grep -o '"status_message":"[^"]*"')"
log "two GPUs on a one-GPU machine: $(api POST /api/v1/deployments '{"name":"third","model":"tiny","resources":{"gpus":2}}')"
api GET /api/v1/deployments/tiny-gpu/events >"$OUT/events.json"
kill -TERM "$GANTRY"; wait "$GANTRY"
log "gantry exited $?; engines left: $(pgrep -f "$LS" | wc -l)"
log done

#!/usr/bin/env bash
# The shipped Prometheus rules and Grafana dashboard against a running Gantry under traffic:
#   - `promtool check rules` and `promtool test rules` (deploy/prometheus/gantry-rules.test.yml);
#   - `gantry serve` with a fixture GPU node (fixtures/nvidia-smi/8xH100.csv, simulated, named as
#     such) and one model service on one of its GPUs, served by gantry-fake-engine (a FAKE OpenAI
#     engine, named as such: this test is about the metrics, not the engine);
#   - Debian's `prometheus` scrapes it every second with the metrics token, with the rules loaded,
#     while clients send requests (some refused as too long, so errors are counted);
#   - a query per seed metric of the service returns a value, every recording rule returns one
#     for the service, every Grafana panel's query returns data, and Prometheus reports the
#     rules healthy and the target up.
# Usage: scripts/prometheus-test.sh [GANTRY] [FAKE_ENGINE]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
GANTRY=$(realpath "${1:-.build/debug/gantry}")
FAKE=$(realpath "${2:-.build/debug/gantry-fake-engine}")
ensure_debian_packages prometheus:prometheus promtool:prometheus

DATA=$(mktemp -d /tmp/gantry-prometheus.XXXXXX)
PIDS=()
fail() {
  echo "prometheus test FAILED: $*" >&2
  for log in "$DATA"/*.stderr; do echo "--- $log (last 20 lines)" >&2; tail -n 20 "$log" >&2 || true; done
  exit 1
}
cleanup() {
  # Gantry stops its engines on SIGTERM; -9 only for what did not stop within 10 s.
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$DATA"
}
on_exit cleanup
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

step "promtool: the rules parse, and their unit tests pass"
promtool check rules deploy/prometheus/gantry-rules.yml || fail "promtool check rules"
promtool test rules deploy/prometheus/gantry-rules.test.yml || fail "promtool test rules"

step "gantry on a fixture GPU node, one model service on one GPU"
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
METRICS_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
"$GANTRY" serve --port "$PORT" --data-dir "$DATA/gantry" --engine-threads 1 --reconcile-interval 1 \
  --gpu-source "fixture:$PWD/fixtures/nvidia-smi/8xH100.csv" --resource-poll 1 --metrics-token "$METRICS_TOKEN" \
  --custom-engine-command "$FAKE --host {host} --port {port} --model {model}" --log-level notice \
  >"$DATA/gantry.stdout" 2>"$DATA/gantry.stderr" &
PIDS+=("$!")
wait_healthy "$BASE"
ADMIN=$(grep -o 'gk_[A-Za-z0-9_-]*' "$DATA/gantry.stdout" | head -n 1 || true)
[ -n "$ADMIN" ] || fail "no bootstrap admin key printed"
register_fake_model "$BASE" "$ADMIN" "$DATA"
gantry_api "$BASE" "$ADMIN" POST /api/v1/deployments \
  '{"name":"fake","model":"fake-model","engine":"custom","replicas":1,"resources":{"gpus":1}}' >/dev/null
gantry_wait_ready "$BASE" "$ADMIN" fake

step "prometheus scraping it every second, with the shipped rules"
PROM_PORT=$(free_port)
PROM="http://127.0.0.1:$PROM_PORT"
cat >"$DATA/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/deploy/prometheus/gantry-rules.yml
scrape_configs:
  - job_name: gantry
    authorization:
      credentials: $METRICS_TOKEN
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
YAML
prometheus --config.file "$DATA/prometheus.yml" --storage.tsdb.path "$DATA/tsdb" \
  --web.listen-address "127.0.0.1:$PROM_PORT" --log.level warn >"$DATA/prometheus.stdout" 2>"$DATA/prometheus.stderr" &
PIDS+=("$!")
for _ in $(seq 1 100); do curl -sf "$PROM/-/ready" >/dev/null && break; sleep 0.2; done
curl -sf "$PROM/-/ready" >/dev/null || fail "prometheus did not become ready"

step "traffic: four clients for 25 s, one request in ten too long for the context"
CHAT='{"model":"fake","messages":[{"role":"user","content":"Hi"}],"max_tokens":16}'
TOO_LONG='{"model":"fake","messages":[{"role":"user","content":"Hi"}],"max_tokens":100000}'
client() {
  local until=$((SECONDS + 25)) n=0 body
  while [ $SECONDS -lt $until ]; do
    n=$((n + 1))
    body=$CHAT
    [ $((n % 10)) = 0 ] && body=$TOO_LONG
    curl -s -o /dev/null "$BASE/v1/chat/completions" -H "Authorization: Bearer $ADMIN" \
      -H 'Content-Type: application/json' -d "$body" || true
  done
}
CLIENTS=()
for _ in 1 2 3 4; do client & CLIENTS+=("$!"); done
wait "${CLIENTS[@]}"

query() { # PROMQL -> the number of series in the instant result (fails on a query error)
  curl -sf -G "$PROM/api/v1/query" --data-urlencode "query=$1" | json 'len(d["data"]["result"]) if d["status"] == "success" else -1'
}
value() { # PROMQL -> the first series' value
  curl -sf -G "$PROM/api/v1/query" --data-urlencode "query=$1" | json 'd["data"]["result"][0]["value"][1]'
}
require_series() { # PROMQL WHAT
  local count
  count=$(query "$1") || fail "$2: the query failed: $1"
  [ "$count" -gt 0 ] || fail "$2: no series for $1"
}

step "a value per seed metric of the service"
[ "$(value 'up{job="gantry"}')" = 1 ] || fail "the gantry target is not up"
for metric in \
  gantry_inference_request_duration_seconds_bucket gantry_inference_time_to_first_token_seconds_bucket \
  gantry_inference_requests_total gantry_service_gpu_utilization_ratio gantry_service_gpu_memory_used_bytes \
  gantry_inference_errors_total gantry_inference_tokens_total gantry_inference_in_flight \
  gantry_inference_instance_in_flight; do
  require_series "$metric{service=\"fake\"}" "seed metric"
  echo "  $metric{service=\"fake\"}: $(query "$metric{service=\"fake\"}") series"
done
# The GPU the instance holds is the fixture's, with its utilisation; the errors are the too-long ones.
gpu=$(value 'gantry_service_gpu_utilization_ratio{service="fake"}')
python3 -c "import sys; v=float('$gpu'); sys.exit(0 if v in (0.97, 0.95, 0.0) else 1)" \
  || fail "the service's GPU utilisation $gpu is none of the fixture's values"
types=$(curl -sf -G "$PROM/api/v1/query" --data-urlencode 'query=gantry_inference_errors_total{service="fake"}' \
  | json '",".join(sorted(r["metric"]["type"] for r in d["data"]["result"]))')
echo "  errors counted by type: $types"
[ -n "$types" ] || fail "the too-long requests were not counted as errors"

step "every recording rule has a value for the service (the rules evaluate every 15 s)"
RECORDED=$(python3 -c '
import re
print(" ".join(re.findall(r"record: (\S+)", open("deploy/prometheus/gantry-rules.yml").read())))')
for _ in $(seq 1 40); do
  missing=""
  for rule in $RECORDED; do [ "$(query "$rule{service=\"fake\"}")" -gt 0 ] || missing="$missing $rule"; done
  [ -z "$missing" ] && break
  sleep 1
done
[ -z "$missing" ] || fail "recording rules without a value for the service:$missing"
for rule in $RECORDED; do echo "  $rule{service=\"fake\"} = $(value "$rule{service=\"fake\"}")"; done
health=$(curl -sf "$PROM/api/v1/rules" | json '",".join(sorted({r["health"] for g in d["data"]["groups"] for r in g["rules"]}))')
[ "$health" = ok ] || fail "prometheus reports rule health: $health"

step "every Grafana panel's query returns data"
python3 - "$PROM" deploy/grafana/gantry-services.json <<'PY' || fail "a Grafana panel's query returned nothing"
import json, sys, urllib.parse, urllib.request
prom, path = sys.argv[1], sys.argv[2]
board = json.load(open(path))
assert board["templating"]["list"][1]["name"] == "service"
empty = []
for panel in board["panels"]:
    for target in panel["targets"]:
        expr = target["expr"].replace("$service", "fake").replace("$__rate_interval", "1m")
        url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer = json.load(urllib.request.urlopen(url))
        if answer["status"] != "success" or not answer["data"]["result"]:
            # A panel of limit refusals has nothing to show without a limit: the only one allowed empty.
            if "limit_rejections" not in expr:
                empty.append((panel["title"], expr))
        else:
            print(f"  {panel['title']}: {len(answer['data']['result'])} series for {target['legendFormat']}")
for title, expr in empty:
    print(f"  EMPTY: {title}: {expr}", file=sys.stderr)
sys.exit(1 if empty else 0)
PY
step "prometheus test passed"

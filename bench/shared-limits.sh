#!/usr/bin/env bash
# What exact limits over many gateways cost a gateway (issue 20): one gateway process
# (`--role gateway`, release build) in front of a control process on a private PostgreSQL, the
# fake engine (gantry-fake-engine, a FAKE OpenAI engine) deployed twice as the custom engine:
#   limited: a service with per-minute request and token limits, overall and per key, called with a
#            key with its own request and token limits and a token quota, all shared with every
#            other gateway through the leader's ledger (high enough never to refuse, so every
#            request pays for every check: 7 budgets taken from this gateway's grants);
#   one:     the open service called with a key with one shared limit (requests per minute);
#   open:    a service and a key with no limit and no quota.
# The same wrk load (non-streaming, CONNECTIONS connections) runs against both, interleaved over
# ROUNDS rounds (this machine drifts 10-15 % from one minute to the next); the figure is the median
# of the per-round ratios. Prints a markdown table and puts it in docs/benchmarks.md between the
# shared-limits-bench markers.
#
#   bash bench/shared-limits.sh                 # DURATION=10 ROUNDS=5 CONNECTIONS=64
# Knobs: DURATION, WARMUP (2), ROUNDS, CONNECTIONS, BUILD=0 (use .build/release as it is), DOCS=0.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-64}
fail() { echo "shared-limits bench FAILED: $*" >&2; exit 1; }
command -v wrk >/dev/null || fail "please install wrk (Debian package)"
if [ "${BUILD:-1}" != 0 ]; then
  step "release build"
  swift build -c release --product gantry >/dev/null
  swift build -c release --product gantry-fake-engine >/dev/null
fi
GANTRY=$(realpath .build/release/gantry)
FAKE=$(realpath .build/release/gantry-fake-engine)
WORK=$(mktemp -d /tmp/gantry-shared-bench.XXXXXX)
SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  pkill -KILL -f "$FAKE" 2>/dev/null || true
  rm -rf "$WORK"
}
on_exit cleanup
start_private_postgres

CONTROL_PORT=$(free_port)
CONTROL="http://127.0.0.1:$CONTROL_PORT"
"$GANTRY" serve --role control --port "$CONTROL_PORT" --data-dir "$WORK/control" --database-url "$PG_URL" \
  --introspection-secret="$SECRET" --engine-threads 1 --log-level warning \
  --custom-engine-command "$FAKE --host {host} --port {port} --model {model}" >"$WORK/control.log" 2>&1 &
PIDS+=("$!")
wait_healthy "$CONTROL"
ADMIN=""
for _ in $(seq 1 50); do ADMIN=$(grep -o 'gk_[A-Za-z0-9_-]*' "$WORK/control.log" | head -n 1 || true); [ -n "$ADMIN" ] && break; sleep 0.1; done
[ -n "$ADMIN" ] || fail "no bootstrap admin key printed"
GATEWAY_PORT=$(free_port)
GATEWAY="http://127.0.0.1:$GATEWAY_PORT"
"$GANTRY" serve --role gateway --port "$GATEWAY_PORT" --data-dir "$WORK/gateway" --database-url "$PG_URL" \
  --introspection-secret="$SECRET" --control-url "$CONTROL" --log-level warning >"$WORK/gateway.log" 2>&1 &
PIDS+=("$!")
wait_healthy "$GATEWAY"
api() { gantry_api "$CONTROL" "$ADMIN" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

step "deploying the fake engine twice: with shared limits, and with none"
register_fake_model "$CONTROL" "$ADMIN" "$WORK"
HIGH_LIMITS='"requests_per_minute":100000000,"tokens_per_minute":1000000000000'
api POST /api/v1/deployments "{\"name\":\"limited\",\"model\":\"fake-model\",\"engine\":\"custom\",\"limits\":{$HIGH_LIMITS,\"requests_per_minute_per_key\":100000000,\"tokens_per_minute_per_key\":1000000000000}}" >/dev/null
api POST /api/v1/deployments '{"name":"open","model":"fake-model","engine":"custom"}' >/dev/null
api POST /api/v1/users '{"name":"bench"}' >/dev/null
LIMITED_KEY=$(api POST /api/v1/keys "{\"name\":\"limited\",\"user\":\"bench\",\"limits\":{$HIGH_LIMITS,\"token_quota\":1000000000000000,\"quota_period\":\"day\"}}" | json 'd["key"]')
OPEN_KEY=$(api POST /api/v1/keys '{"name":"open","user":"bench"}' | json 'd["key"]')
ONE_KEY=$(api POST /api/v1/keys '{"name":"one","user":"bench","limits":{"requests_per_minute":100000000}}' | json 'd["key"]')
gantry_wait_ready "$CONTROL" "$ADMIN" limited
gantry_wait_ready "$CONTROL" "$ADMIN" open

write_lua() { # FILE MODEL KEY
  cat >"$1" <<EOF
wrk.method = "POST"
wrk.body = '{"model":"$2","messages":[{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $3"
EOF
}
write_lua "$WORK/limited.lua" limited "$LIMITED_KEY"
write_lua "$WORK/open.lua" open "$OPEN_KEY"
write_lua "$WORK/one.lua" open "$ONE_KEY"
for target in limited open; do
  key=$([ "$target" = limited ] && echo "$LIMITED_KEY" || echo "$OPEN_KEY")
  code=""
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$GATEWAY/v1/chat/completions" -H "Authorization: Bearer $key" \
      -H 'Content-Type: application/json' -d "{\"model\":\"$target\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":8}")
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || fail "the gateway does not serve $target ($code)"
done

if [ "${PROFILE:-}" != "" ]; then
  # PROFILE=limited|open: where the gateway's CPU goes under that load (perf), instead of rounds.
  wrk --timeout 10s -t1 -c"$CONNECTIONS" -d"$((DURATION + 2))s" -s "$WORK/$PROFILE.lua" "$GATEWAY/v1/chat/completions" >/dev/null &
  LOAD_PID=$!
  sleep 1
  perf record -F 999 -g -o "$WORK/perf.data" ${PROFILE_SCOPE:--a} -- sleep "$DURATION" 2>/dev/null
  perf report -i "$WORK/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E "^ +[0-9]" | head -n 12
  wait "$LOAD_PID"
  [ -z "${PROFILE_KEEP:-}" ] || cp "$WORK/perf.data" "$PROFILE_KEEP"
  perf report -i "$WORK/perf.data" --children --comms "${PROFILE_COMMS:-NIO-SGLTN-1-#1,NIO-SGLTN-1-#2}" --sort symbol --stdio -g none 2>/dev/null | grep -E "^ +[0-9]" | grep -E "${PROFILE_GREP:-.}" | head -n 70
  exit 0
fi
RESULTS="$WORK/results"
: >"$RESULTS"
GATEWAY_PID=${PIDS[1]}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for round in $(seq 1 "$ROUNDS"); do
  order=(limited one open)
  [ $((round % 2)) = 0 ] && order=(open one limited)
  for target in "${order[@]}"; do
    step "round $round: $target, $CONNECTIONS connections, ${DURATION}s after ${WARMUP}s warm-up"
    url="$GATEWAY/v1/chat/completions"
    wrk --timeout 10s -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$WORK/$target.lua" "$url" >/dev/null
    before=$(cpu_ticks "$GATEWAY_PID")
    wrk --timeout 10s -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/$target.lua" "$url" >"$WORK/wrk.txt"
    after=$(cpu_ticks "$GATEWAY_PID")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.txt")
    requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$WORK/wrk.txt")
    [ -z "$non2xx" ] || fail "$target: $non2xx answers were not 2xx"
    # The gateway's CPU per request (user + system), steadier than the rate on a shared machine.
    echo "$round $target $rps $(python3 -c "print(($after - $before) * 1e6 / $(getconf CLK_TCK) / $requests)")" >>"$RESULTS"
  done
done
admitted=$(psql -At "$PG_URL" -c "SELECT count(*) FROM usage_records WHERE status = 200")
# Which path served the requests: the direct relay, or the router (a request waiting for a grant
# is handed to it).
metrics=$(curl -s "$GATEWAY/metrics" -H "Authorization: Bearer $ADMIN")
grep -E '^gantry_inference_relay' <<<"$metrics" >&2 || true

TABLE=$(python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$CONNECTIONS" "$admitted" <<'EOF'
import collections, statistics, sys
path, rounds, duration, connections, admitted = sys.argv[1], *sys.argv[2:]
rps = collections.defaultdict(dict)
cpu = collections.defaultdict(dict)
for line in open(path):
    r, target, value, micros = line.split()
    rps[int(r)][target] = float(value)
    cpu[int(r)][target] = float(micros)
ratios = [rps[r]["limited"] / rps[r]["open"] for r in sorted(rps)]
median = statistics.median(ratios)
one_ratios = [rps[r]["one"] / rps[r]["open"] for r in sorted(rps)]
one_median = statistics.median(one_ratios)
rows = [
    "| | requests/s, median of %s rounds | per round |" % rounds,
    "|---|---|---|",
    "| gateway, no limit and no quota | %.0f | %s |" % (
        statistics.median(rps[r]["open"] for r in rps), ", ".join("%.0f" % rps[r]["open"] for r in sorted(rps))),
    "| gateway, 6 per-minute limits and a quota shared through the ledger | %.0f | %s |" % (
        statistics.median(rps[r]["limited"] for r in rps), ", ".join("%.0f" % rps[r]["limited"] for r in sorted(rps))),
    "| gateway, one shared limit (the key's requests per minute) | %.0f | %s |" % (
        statistics.median(rps[r]["one"] for r in rps), ", ".join("%.0f" % rps[r]["one"] for r in sorted(rps))),
    "| one shared limit / no limits (median of the per-round ratios) | **%.1f %%** | %s |" % (
        100 * one_median, ", ".join("%.1f %%" % (100 * x) for x in one_ratios)),
    "| 6 limits and a quota / no limits (median of the per-round ratios) | **%.1f %%** | %s |" % (
        100 * median, ", ".join("%.1f %%" % (100 * x) for x in ratios)),
]
rows += ["", "| gateway CPU per request (user + system) | median | per round |", "|---|---|---|"]
for target, name in [("open", "no limit and no quota"), ("one", "one shared limit"), ("limited", "6 limits and a quota")]:
    rows.append("| %s | %.1f µs | %s |" % (
        name, statistics.median(cpu[r][target] for r in cpu), ", ".join("%.1f" % cpu[r][target] for r in sorted(cpu))))
print("\n".join(rows))
print()
print("wrk, non-streaming chat completions, %s connections, %s s per run; one `--role gateway` process (release build) "
      "in front of a `--role control` process on PostgreSQL, gantry-fake-engine (FAKE) as the engine; "
      "%s answered requests in the usage table." % (connections, duration, admitted))
print("RATIO one %.4f all %.4f" % (one_median, median), file=sys.stderr)
EOF
)
echo
echo "$TABLE"
if [ "${DOCS:-1}" != 0 ]; then
  python3 - docs/benchmarks.md "$TABLE" <<'EOF'
import sys
path, table = sys.argv[1], sys.argv[2]
text = open(path).read()
start, end = "<!-- shared-limits-bench:start -->", "<!-- shared-limits-bench:end -->"
block = start + "\n" + table + "\n" + end
if start in text:
    text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n## Limits shared by every gateway (bench/shared-limits.sh)\n\n" + block + "\n"
open(path, "w").write(text)
EOF
fi

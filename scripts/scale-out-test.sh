#!/usr/bin/env bash
# Fault tolerance with the real binary (issue 20): two control replicas (`--role control`, sharing
# one data directory as two processes on one host would, so either can adopt the other's engine
# processes) and three gateways, each on its own loopback address, over a private PostgreSQL
# cluster of this test's own. The service is gantry-fake-engine (a FAKE OpenAI engine, named as
# such) as the custom engine, two replicas. Under steady load through all three gateways (each
# gateway's clients with their own key, scripts/scale_out_clients.py):
#   1. the leader is killed with SIGKILL while a roll-out is under way: the standby must serve the
#      route table as leader within 5 s, adopt the running engines (the new revision's engine
#      started by the dead leader is kept, not started again), finish the roll-out with exactly
#      two engines, and no request through any gateway may fail;
#   2. one gateway is killed with SIGKILL: requests through the other two fail 0;
#   3. PostgreSQL is stopped for 10 s: the gateways keep answering the keys they verified, and once
#      it is back the usage table holds exactly one record per request the surviving gateways
#      answered (none lost, none doubled).
# Usage: scale-out-test.sh [GANTRY] [FAKE_ENGINE]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
GANTRY=$(realpath "${1:-.build/debug/gantry}")
FAKE=$(realpath "${2:-.build/debug/gantry-fake-engine}")
FAILOVER_BOUND_S=${FAILOVER_BOUND_S:-5}
OUTAGE_S=${OUTAGE_S:-10}

DATA=$(mktemp -d /tmp/gantry-scale.XXXXXX)
SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
PIDS=()
fail() { fail_with_logs "scale-out test" "$*"; }
cleanup() {
  touch "$DATA/stop"
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  pkill -9 -f "$FAKE" 2>/dev/null || true
  rm -rf "$DATA"
}
on_exit cleanup
start_private_postgres
now() { date +%s.%N; }
since() { python3 -c "print(round($(now) - $1, 2))"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

start_control() { # NAME ADDRESS PORT
  "$GANTRY" serve --role control --host "$2" --port "$3" --data-dir "$DATA/control" --database-url "$PG_URL" \
    --introspection-secret="$SECRET" --engine-threads 1 --reconcile-interval 1 --log-level notice \
    --custom-engine-command "$FAKE --host {host} --port {port} --model {model}" \
    >"$DATA/$1.stdout" 2>"$DATA/$1.stderr" &
  PIDS+=("$!")
  LAST_PID=$!
}
leader_gauge() { # BASE VALUE: whether its gantry_control_leader gauge is VALUE
  # Read whole first: with pipefail, `curl | grep -q` fails when grep stops reading early.
  local metrics
  metrics=$(curl -s "$1/metrics" -H "Authorization: Bearer $ADMIN") || return 1
  grep -q "^gantry_control_leader $2" <<<"$metrics"
}
routes_status() { # BASE -> the status of the route table's request with the service credential
  curl -s -o /dev/null -w '%{http_code}' "$1/api/v1/routes" -H "Authorization: Bearer $SECRET" || true
}

A_PORT=$(free_port)
B_PORT=$(free_port)
A="http://127.0.0.2:$A_PORT"
B="http://127.0.0.3:$B_PORT"
start_control a 127.0.0.2 "$A_PORT"
A_PID=$LAST_PID
wait_healthy "$A"
ADMIN=""
for _ in $(seq 1 50); do ADMIN=$(grep -o 'gk_[A-Za-z0-9_-]*' "$DATA/a.stdout" | head -n 1 || true); [ -n "$ADMIN" ] && break; sleep 0.1; done
[ -n "$ADMIN" ] || fail "no bootstrap admin key printed"
for _ in $(seq 1 100); do [ "$(routes_status "$A")" = 200 ] && break; sleep 0.1; done
[ "$(routes_status "$A")" = 200 ] || fail "replica a, alone, never led"
start_control b 127.0.0.3 "$B_PORT"
B_PID=$LAST_PID
wait_healthy "$B"
sleep 1.5
[ "$(routes_status "$B")" = 503 ] || fail "replica b serves the route table while a leads"
leader_gauge "$A" 1 || fail "replica a leads but its gantry_control_leader gauge does not say 1"
leader_gauge "$B" 0 || fail "replica b is a standby but its gantry_control_leader gauge does not say 0"

GATEWAYS=()
GATEWAY_PIDS=()
for index in 0 1 2; do
  port=$(free_port)
  address="127.0.0.$((4 + index))"
  "$GANTRY" serve --role gateway --host "$address" --port "$port" --data-dir "$DATA/g$index" \
    --database-url "$PG_URL" --introspection-secret="$SECRET" --control-url "$A,$B" --log-level notice \
    >"$DATA/g$index.stdout" 2>"$DATA/g$index.stderr" &
  PIDS+=("$!")
  GATEWAY_PIDS+=("$!")
  GATEWAYS+=("http://$address:$port")
done
for gateway in "${GATEWAYS[@]}"; do wait_healthy "$gateway"; done
G0=${GATEWAYS[0]}
api() { gantry_api "$G0" "$ADMIN" "$@"; } # METHOD PATH [JSON], through a gateway (proxied /api)

register_fake_model "$G0" "$ADMIN" "$DATA"
api POST /api/v1/deployments '{"name":"fake","model":"fake-model","engine":"custom","replicas":2}' >/dev/null
gantry_wait_ready "$G0" "$ADMIN" fake
api POST /api/v1/users '{"name":"load"}' >/dev/null
KEYS=()
KEY_IDS=()
for index in 0 1 2; do
  KEYS+=("$(api POST /api/v1/keys "{\"name\":\"g$index\",\"user\":\"load\"}" | json 'd["key"]')")
done
for index in 0 1 2; do
  KEY_IDS+=("$(api GET "/api/v1/keys?all=true" | json "[k['id'] for k in d['data'] if k['name']=='g$index'][0]")")
done
# Every gateway serves the service before the load starts.
for index in 0 1 2; do
  code=""
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "${GATEWAYS[$index]}/v1/chat/completions" \
      -H "Authorization: Bearer ${KEYS[$index]}" -H 'Content-Type: application/json' \
      -d '{"model":"fake","messages":[{"role":"user","content":"hi"}],"max_tokens":8}')
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || fail "gateway $index does not serve the service ($code)"
done

IFS=,
python3 scripts/scale_out_clients.py --gateways "${GATEWAYS[*]}" --keys "${KEYS[*]}" --threads-per-gateway 2 \
  --stop-file "$DATA/stop" --out "$DATA/answers" &
LOAD_PID=$!
unset IFS
sleep 2

# --- 1. SIGKILL of the leader during a roll-out -----------------------------------------------
# Each new engine takes 3 s to listen, so the roll-out of two replicas lasts several seconds.
api PATCH /api/v1/deployments/fake '{"engine_args":["--startup-delay-ms","3000"]}' >/dev/null
NEW_PID=""
for _ in $(seq 1 100); do
  NEW_PID=$(pgrep -f -- "^$FAKE .*--startup-delay-ms 3000" | head -n 1 || true)
  [ -n "$NEW_PID" ] && break
  sleep 0.05
done
[ -n "$NEW_PID" ] || fail "the roll-out started no engine of the new revision"
kill -9 "$A_PID"
KILLED_AT=$(now)
KILL_EPOCH=$(date +%s.%N)
LED=""
for _ in $(seq 1 200); do
  if [ "$(routes_status "$B")" = 200 ]; then LED=$(since "$KILLED_AT"); break; fi
  sleep 0.05
done
[ -n "$LED" ] || fail "replica b never served the route table after the leader died"
python3 -c "import sys; sys.exit(0 if $LED <= $FAILOVER_BOUND_S else 1)" \
  || fail "replica b led after $LED s (bound: $FAILOVER_BOUND_S s)"
echo "leader killed mid roll-out: replica b leads and serves the route table after $LED s"
leader_gauge "$B" 1 || fail "replica b leads but its gantry_control_leader gauge does not say 1"
gb() { gantry_api "$B" "$ADMIN" "$@"; }
state=""
for _ in $(seq 1 300); do
  state=$(gb GET /api/v1/deployments/fake | json \
    '"%s %d %d" % (d["status"], len([i for i in d["instances"] if i["revision_id"] == d["revision"]["id"] and i["state"] == "ready"]), len(d["instances"]))')
  [ "$state" = "ready 2 2" ] && break
  sleep 0.2
done
[ "$state" = "ready 2 2" ] || fail "the roll-out did not complete under the new leader (status, new ready, instances: $state)"
kill -0 "$NEW_PID" 2>/dev/null || fail "the engine the dead leader started (pid $NEW_PID) was not kept"
engines=$(pgrep -f -- "^$FAKE " | wc -l)
[ "$engines" = 2 ] || fail "$engines engine processes run after the roll-out, not 2: $(pgrep -af -- "^$FAKE ")"
adopted=$(gb GET /api/v1/deployments/fake/events | json 'len([e for e in d["data"] if e["kind"] == "instance_adopted"])')
[ "$adopted" -ge 1 ] || fail "no instance_adopted event"
echo "roll-out completed under the new leader: 2 engines of the new revision, $adopted adopted, pid $NEW_PID kept"

# --- 2. SIGKILL of one gateway ------------------------------------------------------------------
kill -9 "${GATEWAY_PIDS[2]}"
GATEWAY_KILL_EPOCH=$(date +%s.%N)
sleep 3

# --- 3. PostgreSQL stopped for OUTAGE_S seconds ---------------------------------------------------
stop_postgres_server
OUTAGE_EPOCH=$(date +%s.%N)
sleep "$OUTAGE_S"
start_postgres_server
BACK_EPOCH=$(date +%s.%N)
echo "PostgreSQL was stopped for $(python3 -c "print(round($BACK_EPOCH - $OUTAGE_EPOCH, 1))") s under load"
sleep 4
touch "$DATA/stop"
wait "$LOAD_PID" || fail "the load clients failed"

# Every answer the surviving gateways gave is in the usage table once: wait for their buffers.
count_records() { # KEY_ID
  psql -At "$PG_URL" -c "SELECT count(*) FROM usage_records WHERE key_id = '$1' AND status = 200" 2>/dev/null || echo 0
}
python3 - "$DATA/answers" "$KILL_EPOCH" "$GATEWAY_KILL_EPOCH" "$OUTAGE_EPOCH" "$BACK_EPOCH" >"$DATA/summary" <<'EOF' || fail "$(cat "$DATA/summary")"
import collections, sys
path, kill, gateway_kill, outage, back = sys.argv[1], *map(float, sys.argv[2:])
answered = collections.Counter()
failures = []
for line in open(path):
    at, gateway, outcome = line.split()
    at, gateway = float(at), int(gateway)
    if outcome == "200":
        answered[gateway] += 1
    elif not (gateway == 2 and at >= gateway_kill - 0.5):
        failures.append((round(at - kill, 2), gateway, outcome))
phases = {
    "during the leader failover": lambda t: kill <= t < gateway_kill,
    "during the database outage": lambda t: outage <= t < back,
}
counts = {name: 0 for name in phases}
for line in open(path):
    at, gateway, outcome = line.split()
    for name, inside in phases.items():
        if inside(float(at)) and outcome == "200" and int(gateway) < 2:
            counts[name] += 1
print(" ".join(str(answered[g]) for g in range(3)))
print("; ".join("%d answered %s" % (n, name) for name, n in counts.items()))
if failures:
    print("requests failed through surviving gateways (s after the leader's kill, gateway, outcome): %s" % failures[:20])
    sys.exit(1)
if min(counts.values()) == 0:
    print("no request was answered in a phase: %s" % counts)
    sys.exit(1)
EOF
read -r ANSWERED0 ANSWERED1 ANSWERED2 < "$DATA/summary"
echo "requests failed through surviving gateways: 0; $(sed -n 2p "$DATA/summary")"
ANSWERED=("$ANSWERED0" "$ANSWERED1" "$ANSWERED2")
for index in 0 1; do
  expected=$((ANSWERED[index] + 1)) # and the check above that it serves
  recorded=0
  for _ in $(seq 1 100); do
    recorded=$(count_records "${KEY_IDS[$index]}")
    [ "$recorded" -ge "$expected" ] && break
    sleep 0.2
  done
  [ "$recorded" = "$expected" ] \
    || fail "gateway $index answered $expected requests with status 200 and the usage table holds $recorded"
done
LOST=$(( ANSWERED2 + 1 - $(count_records "${KEY_IDS[2]}") ))
echo "usage records: exactly one per answer for the surviving gateways ($((ANSWERED0 + ANSWERED1)) answers under load); the SIGKILLed gateway lost $LOST of its $((ANSWERED2 + 1)) (its buffer, at most 1 s)"

# --- 4. Limits and quotas shared by every gateway -------------------------------------------------
# Back to two control replicas (a, restarted, is now the standby) and three gateways (the killed
# one restarted on its address), then 200 clients spread over the three gateways against each
# kind of limit in turn: what all gateways admit together stays within the limit, and at least
# 90 % of it is admitted. Each run lasts LIMIT_RUN_S, inside one minute, so "per minute" limits
# are compared with everything admitted.
LIMIT_RUN_S=${LIMIT_RUN_S:-8}
start_control a 127.0.0.2 "$A_PORT"
wait_healthy "$A"
port=$(free_port)
"$GANTRY" serve --role gateway --host 127.0.0.6 --port "$port" --data-dir "$DATA/g2b" \
  --database-url "$PG_URL" --introspection-secret="$SECRET" --control-url "$A,$B" --log-level notice \
  >"$DATA/g2b.stdout" 2>"$DATA/g2b.stderr" &
PIDS+=("$!")
GATEWAYS[2]="http://127.0.0.6:$port"
wait_healthy "${GATEWAYS[2]}"
# One replica whose streams last 16 x 100 ms: what it runs at once is what the gateways admitted.
# This host's two CPU threads: the first service gives one up for it.
gb PATCH /api/v1/deployments/fake '{"replicas":1}' >/dev/null
for _ in $(seq 1 100); do
  [ "$(gb GET /api/v1/deployments/fake | json 'len(d["instances"])')" = 1 ] && break
  sleep 0.2
done
gb POST /api/v1/deployments '{"name":"slow","model":"fake-model","engine":"custom","replicas":1,"engine_args":["--event-delay-ms","100"],"limits":{"concurrent_requests":12}}' >/dev/null
gantry_wait_ready "$B" "$ADMIN" slow
SLOW_ENGINE=$(gb GET /api/v1/deployments/slow | json '[i["endpoint"] for i in d["instances"] if i["state"] == "ready"][0]')
gb POST /api/v1/users '{"name":"limits"}' >/dev/null
limited_key() { # NAME LIMITS_JSON -> "KEY KEY_ID"
  gb POST /api/v1/keys "{\"name\":\"$1\",\"user\":\"limits\",\"limits\":$2}" | json 'd["key"] + " " + d["id"]'
}
read -r RPM_KEY RPM_ID <<<"$(limited_key rpm '{"requests_per_minute":300}')"
read -r TPM_KEY TPM_ID <<<"$(limited_key tpm '{"tokens_per_minute":20000}')"
read -r QUOTA_KEY QUOTA_ID <<<"$(limited_key quota '{"token_quota":6000,"quota_period":"day"}')"
read -r SLOW_KEY _ <<<"$(limited_key slow '{}')"
ALL_GATEWAYS=$(IFS=,; echo "${GATEWAYS[*]}")
run_limited() { # NAME KEY MODEL [EXTRA ARGS]: prints the clients' summary
  python3 scripts/shared_limits_clients.py --gateways "$ALL_GATEWAYS" --key "$2" --model "$3" --clients 200 \
    --seconds "$LIMIT_RUN_S" "${@:4}" >"$DATA/limits-$1.json" || fail "the clients against the $1 limit failed"
  cat "$DATA/limits-$1.json"
}
recorded_tokens() { # KEY_ID: tokens of its answered requests in the usage table, once written
  sleep 2
  psql -At "$PG_URL" -c "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM usage_records WHERE key_id = '$1' AND status = 200"
}
check_between() { # WHAT VALUE LOW HIGH
  python3 -c "import sys; sys.exit(0 if $3 <= $2 <= $4 else 1)" || fail "$1: $2, not within [$3, $4]"
}
summary_field() { json "d[\"$2\"]" <"$DATA/limits-$1.json"; }

run_limited rpm "$RPM_KEY" fake >/dev/null
check_between "requests admitted against 300 a minute" "$(summary_field rpm answered)" 270 300
check_between "usage records of the 300-a-minute key" "$(count_records "$RPM_ID")" 270 300
echo "300 requests per minute over 3 gateways: $(summary_field rpm answered) admitted ($(summary_field rpm per_gateway) per gateway), $(summary_field rpm statuses)"

run_limited tpm "$TPM_KEY" fake >/dev/null
check_between "tokens admitted against 20000 a minute" "$(recorded_tokens "$TPM_ID")" 18000 20000
echo "20000 tokens per minute over 3 gateways: $(recorded_tokens "$TPM_ID") tokens in $(summary_field tpm answered) answers ($(summary_field tpm per_gateway) per gateway)"

run_limited quota "$QUOTA_KEY" fake >/dev/null
check_between "tokens used of a 6000-token quota" "$(recorded_tokens "$QUOTA_ID")" 5400 6000
echo "a 6000-token quota over 3 gateways: $(recorded_tokens "$QUOTA_ID") tokens used in $(summary_field quota answered) answers"

run_limited concurrency "$SLOW_KEY" slow --stream --engine "$SLOW_ENGINE" >/dev/null
check_between "streams running at once against 12 concurrent" "$(summary_field concurrency peak_running)" 11 12
check_between "mean streams running against 12 concurrent" "$(summary_field concurrency mean_running)" 10.8 12
echo "12 concurrent requests over 3 gateways: at most $(summary_field concurrency peak_running) at once at the engine, $(summary_field concurrency mean_running) on average, $(summary_field concurrency answered) answered"
for run in rpm tpm quota concurrency; do
  [ "$(summary_field "$run" unexpected)" = "[]" ] || fail "the $run clients got answers other than 200 and 429: $(summary_field "$run" unexpected)"
done

for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
echo "scale-out test passed: leader failover in $LED s mid roll-out with 0 failed requests, a gateway killed with 0 failures elsewhere, a ${OUTAGE_S} s database outage with no usage record lost or doubled, limits exact over 3 gateways"

#!/usr/bin/env bash
# Upload benchmark: streams one large file (default 512 MiB of random bytes) through Gantry's
# upload API into an S3 store (moto, started here) and prints the throughput and how far
# Gantry's resident memory grew while it did. For comparison, the same file is uploaded straight
# to the same moto with boto3 (the official AWS SDK for Python, multipart): the S3 server's own
# speed on this machine, which bounds what any proxy in front of it can reach.
#
#   bash bench/upload.sh            # SIZE_MIB=512, the release binary when built, else debug
#   SIZE_MIB=1024 GANTRY=.build/release/gantry bash bench/upload.sh
#   STORE=local bash bench/upload.sh   # Gantry's own cost, without S3 behind it
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

SIZE_MIB=${SIZE_MIB:-512}
GANTRY=${GANTRY:-.build/release/gantry}
[ -x "$GANTRY" ] || GANTRY=.build/debug/gantry
[ -x "$GANTRY" ] || { echo "build gantry first: swift build -c release" >&2; exit 1; }

ensure_test_peers   # moto and boto3 at their pins, in the project's environment; python3 is its interpreter
start_moto
WORK=$(mktemp -d /tmp/gantry-bench.XXXXXX)
on_exit "rm -rf '$WORK' || true"
step "writing $SIZE_MIB MiB of random bytes"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/model.bin"
SHA=$(sha256sum "$WORK/model.bin" | cut -d' ' -f1)

export AWS_ACCESS_KEY_ID="$GANTRY_TEST_S3_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$GANTRY_TEST_S3_SECRET_ACCESS_KEY"
python3 - "$GANTRY_TEST_S3_ENDPOINT" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
for bucket in ("gantry-bench", "baseline-bench"):
    s3.create_bucket(Bucket=bucket)
PY

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
STORE=${STORE:-s3}
store_flags=(--object-store s3 --s3-endpoint "$GANTRY_TEST_S3_ENDPOINT" --s3-bucket gantry-bench --s3-part-size "${PART_MIB:-8}" --s3-parts-in-flight "${IN_FLIGHT:-3}")
[ "$STORE" = local ] && store_flags=(--object-store local)
"$GANTRY" serve --port "$PORT" --data-dir "$WORK/data" --log-level warning "${store_flags[@]}" \
  >"$WORK/stdout" 2>"$WORK/stderr" &
GANTRY_PID=$!
on_exit "kill $GANTRY_PID 2>/dev/null || true"
for _ in $(seq 1 300); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
ADMIN=$(grep -o 'gk_[A-Za-z0-9_-]*' "$WORK/stdout" | head -n 1 || true)
[ -n "$ADMIN" ] || { echo "gantry did not start:" >&2; tail -n 20 "$WORK/stderr" >&2; exit 1; }
auth=(-H "Authorization: Bearer $ADMIN")
curl -sf "${auth[@]}" -H 'content-type: application/json' "$BASE/api/v1/models" -d '{"name":"bench"}' >/dev/null
curl -sf "${auth[@]}" -H 'content-type: application/json' "$BASE/api/v1/models/bench/versions" \
  -d '{"format":"safetensors","context_limit":4096}' >/dev/null

# A 1 MiB warm-up upload first: the first S3 call pages in code and data that stay for the
# life of the process (the XML parser, date formatting, the HTTP client's connection pool), which
# is start-up cost, not the cost of streaming a large file.
head -c $((1 << 20)) /dev/urandom >"$WORK/warmup.bin"
curl -sf -T "$WORK/warmup.bin" "${auth[@]}" "$BASE/api/v1/models/bench/versions/1/files/warmup.bin" >/dev/null

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$GANTRY_PID/status"; }
status_line() { grep -E "^$1" "/proc/$GANTRY_PID/status" | awk '{print $2}'; }
echo "before: $(grep -E '^(VmRSS|RssAnon|RssFile)' /proc/$GANTRY_PID/status | tr -s ' \t' ' ' | tr '\n' ' ')" >&2
BEFORE=$(rss_kib)
# Sample resident memory every 20 ms while the upload runs; keep the peak.
( peak=0; while kill -0 "$GANTRY_PID" 2>/dev/null && [ ! -e "$WORK/done" ]; do
    now=$(rss_kib || echo 0); [ "$now" -gt "$peak" ] && peak=$now && echo "$peak" >"$WORK/peak"; sleep 0.02; done ) &
SAMPLER=$!
step "uploading through Gantry (curl -T streams the file; Gantry streams it on in multipart parts)"
RESULT=$(curl -sS -o "$WORK/response" -w '%{http_code} %{time_total}' -T "$WORK/model.bin" "${auth[@]}" \
  -H "x-gantry-sha256: $SHA" "$BASE/api/v1/models/bench/versions/1/files/model.safetensors")
touch "$WORK/done"; wait "$SAMPLER" || true
read -r CODE SECONDS_GANTRY <<<"$RESULT"
[ "$CODE" = 201 ] || { echo "upload failed: HTTP $CODE $(cat "$WORK/response")" >&2; exit 1; }
grep -q "\"sha256\":\"$SHA\"" "$WORK/response" || { echo "digest not recorded: $(cat "$WORK/response")" >&2; exit 1; }
PEAK=$(cat "$WORK/peak")
echo "after:  $(grep -E '^(VmRSS|RssAnon|RssFile)' /proc/$GANTRY_PID/status | tr -s ' \t' ' ' | tr '\n' ' ')" >&2

step "uploading the same file straight to moto with boto3 (baseline)"
SECONDS_BOTO=$(python3 - "$GANTRY_TEST_S3_ENDPOINT" "$WORK/model.bin" <<'PY'
import sys, time, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
started = time.monotonic()
s3.upload_file(sys.argv[2], "baseline-bench", "model.safetensors")
print(round(time.monotonic() - started, 3))
PY
)

python3 - "$SIZE_MIB" "$SECONDS_GANTRY" "$SECONDS_BOTO" "$BEFORE" "$PEAK" "$GANTRY" "$STORE" <<'PY'
import sys
size, gantry, boto, before, peak, binary = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
store = "S3 (moto)" if sys.argv[7] == "s3" else "the local directory store"
print(f"binary: {binary}")
print(f"file: {size:.0f} MiB of random bytes, sha256 checked by Gantry")
print(f"through Gantry into {store}: {gantry:.2f} s, {size / gantry:.1f} MiB/s")
print(f"boto3 straight into moto:      {boto:.2f} s, {size / boto:.1f} MiB/s")
print(f"Gantry resident memory: {before / 1024:.1f} MiB before, {peak / 1024:.1f} MiB peak, growth {(peak - before) / 1024:.1f} MiB (target < 64 MiB)")
PY

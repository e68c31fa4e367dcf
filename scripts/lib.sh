# Helpers shared by scripts/test.sh and scripts/smoke-test.sh.

# Cleanup actions run on exit, last added first.
EXIT_ACTIONS=()
on_exit() { EXIT_ACTIONS=("$1" "${EXIT_ACTIONS[@]}"); trap 'for action in "${EXIT_ACTIONS[@]}"; do eval "$action"; done' EXIT; }

step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*" >&2; }

# A free TCP port on 127.0.0.1 (the kernel picks it).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Where Gantry caches what it builds and fetches (the engine, the demo model, the peers' environments).
GANTRY_CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/gantry

# A virtual environment of the project's own with exactly the pins of REQUIREMENTS (and the
# constraints of LOCK, when given): ensure_python_env NAME REQUIREMENTS [LOCK]. It lives under the
# cache directory, keyed by a digest of the files and the interpreter's version, so a changed pin
# makes a new one. Every call checks each installed version against its pin
# (scripts/peers/check.py); an environment that is missing, incomplete or fails the check is built
# anew, and one that still fails the check after that stops the run, so a drifting image or a
# hand-changed environment can never make the suite test something else. Sets PY_ENV to its
# directory. The system's Python packages are neither used (the environment does not see them)
# nor changed.
ensure_python_env() {
  local name=$1 requirements=$2 lock=${3:-} key files=("$2") constraints=()
  [ -n "$lock" ] && files+=("$lock") && constraints=(-c "$lock")
  key=$( (python3 --version; cat "${files[@]}") | sha256sum | cut -c1-12)
  PY_ENV="$GANTRY_CACHE_DIR/python/$name-$key"
  mkdir -p "$GANTRY_CACHE_DIR/python" || return 1
  # Runs on one machine share the environment: one at a time checks or builds it (a second run
  # that found it wrong while the first rebuilt it would remove it under the first).
  local lock_fd status=0
  exec {lock_fd}>"$PY_ENV.lock" || return 1
  flock -w 900 "$lock_fd" || { echo "waited 15 min for $PY_ENV.lock" >&2; exec {lock_fd}>&-; return 1; }
  build_python_env "${files[@]}" || status=$?
  exec {lock_fd}>&-
  return "$status"
}

# ensure_python_env's work, under its lock. Each step says `|| return 1`: a caller's `||` turns
# off `set -e` inside the function.
build_python_env() {
  if [ -f "$PY_ENV/.complete" ] && "$PY_ENV/bin/python" scripts/peers/check.py "$@" >&2; then return 0; fi
  step "installing the pinned $name peers into $PY_ENV"
  rm -rf "$PY_ENV" || return 1
  python3 -m venv "$PY_ENV" || return 1
  "$PY_ENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-virtualenv \
    -r "$requirements" "${constraints[@]}" || return 1
  "$PY_ENV/bin/python" scripts/peers/check.py "$@" >&2 || return 1
  touch "$PY_ENV/.complete"
}

# The test peers (moto, nanoidp, the openai client, cmake): sets PEERS to their environment, puts
# its bin first on PATH (so `python3`, `cmake` and `moto_server` are the pinned ones for every
# step after this) and exports GANTRY_TEST_PYTHON for the tests that run Python.
ensure_test_peers() {
  ensure_python_env test scripts/peers/test.txt scripts/peers/test.lock
  PEERS=$PY_ENV
  export PATH="$PEERS/bin:$PATH"
  export GANTRY_TEST_PYTHON="$PEERS/bin/python"
}

# A C++ compiler is needed to build llama-server (cmake comes with the test peers); install one
# when missing.
ensure_build_tools() {
  command -v c++ >/dev/null && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || { echo "please install a C++ compiler (g++)" >&2; return 1; }
  step "installing g++"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
}

# Starts a throwaway PostgreSQL cluster on a free port; exports PG_URL; removes it on exit.
start_private_postgres() {
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -x "$bindir/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; return 1; }
  PG_DIR=$(mktemp -d /tmp/gantry-pg.XXXXXX)
  PG_PORT=$(free_port)
  local as=()
  # initdb refuses to run as root; run the cluster as the postgres user then.
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; as=(runuser -u postgres --); fi
  step "starting a private PostgreSQL on 127.0.0.1:$PG_PORT ($PG_DIR)"
  "${as[@]}" "$bindir/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
  "${as[@]}" "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
  PG_CTL=("${as[@]}" "$bindir/pg_ctl")
  on_exit stop_private_postgres
}

stop_private_postgres() {
  [ -n "${PG_DIR:-}" ] || return 0
  "${PG_CTL[@]}" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}

# Starts nanoidp (a real OIDC provider from PyPI) on a free port with Gantry's test client and
# users; exports GANTRY_TEST_OIDC_*; stops it on exit. Users: alice / alice-pw (group
# gantry-admins) and bob / bob-pw.
start_nanoidp() {
  IDP_DIR=$(mktemp -d /tmp/gantry-idp.XXXXXX)
  IDP_PORT=$(free_port)
  local secret management
  secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
  management=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
  mkdir -p "$IDP_DIR/config" "$IDP_DIR/keys"
  cat >"$IDP_DIR/config/settings.yaml" <<YAML
config_version: 1
server:
  host: "127.0.0.1"
  port: $IDP_PORT
oauth:
  issuer: "http://127.0.0.1:$IDP_PORT"
  audience: "gantry-api"
  require_pkce: true
  clients:
    - client_id: "gantry"
      client_secret: "$secret"
      token_endpoint_auth_method: "client_secret_basic"
      redirect_uris:
        - "http://127.0.0.1/auth/callback"
jwt:
  keys_dir: "$IDP_DIR/keys"
session:
  secret_key: "$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
  management_secret: "$management"
logging:
  level: "WARNING"
device_flow:
  polling_interval: 1
  code_expiry_seconds: 600
authority_prefixes:
  groups: ""
YAML
  cat >"$IDP_DIR/config/users.yaml" <<'YAML'
config_version: 1
users:
  alice:
    password: "alice-pw"
    email: "alice@example.test"
    groups: ["gantry-admins"]
    attributes:
      name: "Alice Admin"
  bob:
    password: "bob-pw"
    email: "bob@example.test"
    attributes:
      name: "Bob Builder"
YAML
  step "starting nanoidp (OIDC provider) on 127.0.0.1:$IDP_PORT"
  (cd "$IDP_DIR" && exec "$PEERS/bin/python" -m nanoidp --config "$IDP_DIR/config" --host 127.0.0.1 --port "$IDP_PORT" >"$IDP_DIR/log" 2>&1) &
  IDP_PID=$!
  on_exit stop_nanoidp
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$IDP_PORT/health" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$IDP_PORT/health" >/dev/null || { tail -n 20 "$IDP_DIR/log" >&2; echo "nanoidp did not start" >&2; return 1; }
  export GANTRY_TEST_OIDC_ISSUER="http://127.0.0.1:$IDP_PORT"
  export GANTRY_TEST_OIDC_CLIENT_ID="gantry"
  export GANTRY_TEST_OIDC_CLIENT_SECRET="$secret"
  export GANTRY_TEST_OIDC_MANAGEMENT_SECRET="$management"
  export GANTRY_TEST_OIDC_AUDIENCE="gantry-api"
}

# Under `set -e` a failing command here would end the script with its status (wait answers 143
# for the stopped server), so every step tolerates failure.
stop_nanoidp() {
  if [ -n "${IDP_PID:-}" ]; then kill "$IDP_PID" 2>/dev/null || true; wait "$IDP_PID" 2>/dev/null || true; fi
  if [ -n "${IDP_DIR:-}" ]; then rm -rf "$IDP_DIR" || true; fi
  return 0
}

# Starts moto (an S3-compatible server from PyPI) on a free port with request signing enforced:
# the first three calls (free of authentication) create an IAM user with an access key for the
# tests, and moto checks the signature of every call after them. Exports GANTRY_TEST_S3_ENDPOINT,
# GANTRY_TEST_S3_ACCESS_KEY_ID and GANTRY_TEST_S3_SECRET_ACCESS_KEY; stops moto on exit. Each test
# run makes its own bucket.
start_moto() {
  MOTO_DIR=$(mktemp -d /tmp/gantry-moto.XXXXXX)
  MOTO_PORT=$(free_port)
  step "starting moto (S3) on 127.0.0.1:$MOTO_PORT"
  (cd "$MOTO_DIR" && INITIAL_NO_AUTH_ACTION_COUNT=3 exec "$PEERS/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$MOTO_DIR/log" 2>&1) &
  MOTO_PID=$!
  on_exit stop_moto
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" && break; sleep 0.1; done
  curl -s -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" || { tail -n 20 "$MOTO_DIR/log" >&2; echo "moto did not start" >&2; return 1; }
  local key
  # boto3 comes with moto, in the peers' environment.
  key=$("$PEERS/bin/python" - "http://127.0.0.1:$MOTO_PORT" <<'PY'
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="gantry-test")
iam.put_user_policy(UserName="gantry-test", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="gantry-test")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
PY
  ) || { tail -n 20 "$MOTO_DIR/log" >&2; echo "could not create moto's test access key" >&2; return 1; }
  export GANTRY_TEST_S3_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
  export GANTRY_TEST_S3_ACCESS_KEY_ID="${key%% *}"
  export GANTRY_TEST_S3_SECRET_ACCESS_KEY="${key#* }"
}

# Tolerates every failure, like stop_nanoidp.
stop_moto() {
  if [ -n "${MOTO_PID:-}" ]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
  if [ -n "${MOTO_DIR:-}" ]; then rm -rf "$MOTO_DIR" || true; fi
  return 0
}

# --- talking to a running Gantry (bench/gateway.sh, scripts/soak-test.sh) ----------------------
# Each calls `fail MESSAGE`, which the calling script defines.

gantry_api() { # BASE KEY METHOD PATH [JSON] -> the answer's body; fails with it on a non-2xx
  local out code
  out=$(curl -s -w '\n%{http_code}' -X "$3" "$1$4" -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
    ${5:+-d "$5"}) || fail "$3 $4: no answer"
  code=${out##*$'\n'}; out=${out%$'\n'*}
  [[ $code == 2* ]] || fail "$3 $4 -> $code: $out"
  printf '%s' "$out"
}

gantry_wait_ready() { # BASE KEY DEPLOYMENT: until it is ready (2 minutes at most)
  local state=
  for _ in $(seq 1 600); do
    state=$(gantry_api "$1" "$2" GET "/api/v1/deployments/$3" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    [ "$state" = ready ] && return 0
    [ "$state" = failed ] && break
    sleep 0.2
  done
  gantry_api "$1" "$2" GET "/api/v1/deployments/$3/events" >&2 || true
  fail "deployment $3 never became ready (last status: $state)"
}

register_fake_model() { # BASE KEY DIR: model fake-model, version 1, one file the fake engine ignores
  printf 'gantry-fake-engine: no weights\n' >"$3/fake-model.bin"
  gantry_api "$1" "$2" POST /api/v1/models '{"name":"fake-model","task":"chat"}' >/dev/null
  gantry_api "$1" "$2" POST /api/v1/models/fake-model/versions \
    '{"format":"fake","context_limit":4096,"description":"no weights: the fake engine ignores it"}' >/dev/null
  local code
  code=$(curl -s -o "$3/put.out" -w '%{http_code}' -T "$3/fake-model.bin" -H "Authorization: Bearer $2" \
    "$1/api/v1/models/fake-model/versions/1/files/model.bin") || fail "PUT model.bin: no answer"
  [[ $code == 2* ]] || fail "PUT model.bin -> $code: $(cat "$3/put.out")"
  gantry_api "$1" "$2" POST /api/v1/models/fake-model/versions/1/complete >/dev/null
}

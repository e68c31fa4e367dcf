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
  PG_CTL=("${as[@]}" "$bindir/pg_ctl")
  start_postgres_server
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
  on_exit stop_private_postgres
}

# The private cluster's server alone, stopped and started again on the same port and data (the
# scale-out test takes the database away under load).
start_postgres_server() {
  "${PG_CTL[@]}" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null
}

stop_postgres_server() {
  "${PG_CTL[@]}" -D "$PG_DIR/data" -m fast -w stop >/dev/null
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

# A multi-process test failed: says so, then shows the end of each process's stderr in $DATA.
fail_with_logs() { # TEST MESSAGE
  echo "$1 FAILED: $2" >&2
  for log in "$DATA"/*.stderr; do echo "--- $log (last 15 lines)" >&2; tail -n 15 "$log" >&2 || true; done
  exit 1
}

wait_healthy() { # BASE: until its /healthz answers, 30 s at most
  for _ in $(seq 1 150); do curl -sf "$1/healthz" >/dev/null && return 0; sleep 0.2; done
  fail "$1 did not become healthy"
}

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

# --- a real Kubernetes control plane for the Kubernetes tests (scripts/kubernetes/) ------------
# kube-apiserver and kube-scheduler 1.20.2 built from Debian bookworm's `kubernetes` source
# package (no binary of them is packaged), Debian's etcd, and scripts/kubernetes/
# standin-kubelet.py standing in for the kubelet. Measured facts behind the choices:
# /work/shared/kubernetes-test-cluster.md.

KUBE_ORIG_TARBALL=kubernetes_1.20.5+really1.20.2.orig.tar.gz
KUBE_ORIG_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
KUBE_PATCHES=(scripts/kubernetes/reflect2-go118.patch)

# Builds kube-apiserver and kube-scheduler once (measured: 354 CPU-s, 220 s on 2 cores; up to
# 712 CPU-s, 12 min, on a busier machine; the times are in BUILD-INFO) and keeps only
# the two static binaries (150 MB) under the cache directory, keyed by the source's digest and the patches
# (a changed patch builds anew); installs etcd (and, for a build, Go 1.19, rsync, jq, make,
# patch) when missing. Sets and exports KUBE_BIN_DIR. A cached build returns at once.
ensure_kubernetes_control_plane() {
  local key
  key=$( (echo "$KUBE_ORIG_SHA256"; cat "${KUBE_PATCHES[@]}") | sha256sum | cut -c1-12) || return 1
  KUBE_BIN_DIR="$GANTRY_CACHE_DIR/kubernetes/1.20.2-$key"
  export KUBE_BIN_DIR
  ensure_debian_packages etcd:etcd-server || return 1
  [ -f "$KUBE_BIN_DIR/.complete" ] && return 0
  mkdir -p "$GANTRY_CACHE_DIR/kubernetes" || return 1
  # One build at a time per machine: a second run waits for the first one's binaries.
  local lock_fd status=0
  exec {lock_fd}>"$KUBE_BIN_DIR.lock" || return 1
  flock -w 3600 "$lock_fd" || { echo "waited an hour for $KUBE_BIN_DIR.lock" >&2; exec {lock_fd}>&-; return 1; }
  [ -f "$KUBE_BIN_DIR/.complete" ] || build_kubernetes_control_plane || status=$?
  exec {lock_fd}>&-
  return "$status"
}

# Installs, as root with apt, the packages whose command is missing: ensure_debian_packages
# COMMAND:PACKAGE... (COMMAND may be a path).
ensure_debian_packages() {
  local pair missing=()
  for pair in "$@"; do command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}"); done
  [ ${#missing[@]} = 0 ] && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || { echo "please install ${missing[*]}" >&2; return 1; }
  step "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The Debian mirror the machine's apt already uses (deb822 .sources or one-line sources.list),
# for the source package; deb.debian.org when none is found.
debian_mirror_uri() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
    /^[[:space:]]*$/ { if (uri != "" && suites ~ /(^| )bookworm( |$)/) { print uri; exit } uri = ""; suites = ""; next }
    tolower($1) == "uris:" { uri = $2 }
    tolower($1) == "suites:" { $1 = ""; suites = $0 " " }
    END { if (uri != "" && suites ~ /(^| )bookworm( |$)/) print uri }' | head -n 1)
  [ -n "$uri" ] || uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -E 's/\[[^]]*\]//' | awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }')
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

# ensure_kubernetes_control_plane's work, under its lock. `|| return 1` on each step: a caller's
# `||` turns off `set -e` inside the function.
build_kubernetes_control_plane() {
  ensure_debian_packages /usr/lib/go-1.19/bin/go:golang-1.19-go rsync:rsync jq:jq make:make patch:patch || return 1
  local work mirror apt_opts=() wall user sys
  work=$(mktemp -d "$GANTRY_CACHE_DIR/kubernetes/build.XXXXXX") || return 1
  on_exit "rm -rf '$work'"
  step "building kube-apiserver and kube-scheduler 1.20.2 into $KUBE_BIN_DIR (about 12 minutes on 2 cores; log: $work/build.log)"
  # A private apt configuration: the system's sources and lists stay as they are.
  mirror=$(debian_mirror_uri)
  mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src" || return 1
  printf 'deb-src %s bookworm main\n' "$mirror" >"$work/apt/sources.list"
  apt_opts=(-q -o "Dir::Etc::SourceList=$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache")
  # apt's download sandbox user (_apt) may not write into a private directory.
  [ "$(id -u)" = 0 ] && apt_opts+=(-o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update >"$work/apt.log" 2>&1 &&
    (cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only kubernetes >>"$work/apt.log" 2>&1) ||
    { tail -n 20 "$work/apt.log" >&2; echo "could not fetch the kubernetes source package from $mirror" >&2; return 1; }
  echo "$KUBE_ORIG_SHA256  $work/src/$KUBE_ORIG_TARBALL" | sha256sum -c --quiet - ||
    { echo "$KUBE_ORIG_TARBALL is missing or not the one expected (sha256 $KUBE_ORIG_SHA256)" >&2; return 1; }
  tar -xzf "$work/src/$KUBE_ORIG_TARBALL" -C "$work" || return 1
  local tree=$work/kubernetes-1.20.2 patch
  for patch in "${KUBE_PATCHES[@]}"; do patch -d "$tree" -p1 -s <"$patch" || return 1; done
  # `make` runs the code generators before `go build`; GOPROXY=off: everything is in vendor/.
  local TIMEFORMAT='%R %U %S'
  { time (cd "$tree" && PATH=/usr/lib/go-1.19/bin:$PATH GOPROXY=off CGO_ENABLED=0 \
      make WHAT="cmd/kube-apiserver cmd/kube-scheduler" >"$work/build.log" 2>&1); } 2>"$work/time" ||
    { tail -n 30 "$work/build.log" >&2; echo "the Kubernetes build failed" >&2; return 1; }
  read -r wall user sys <"$work/time"
  step "built in ${wall%.*} s wall, $(( ${user%.*} + ${sys%.*} )) CPU-s"
  rm -rf "$KUBE_BIN_DIR" && mkdir -p "$KUBE_BIN_DIR" || return 1
  local built
  built=$(dirname "$(find "$tree/_output/local/bin" -type f -name kube-apiserver | head -n 1)")
  cp "$built/kube-apiserver" "$built/kube-scheduler" "$KUBE_BIN_DIR/" || return 1
  printf 'built %s from %s with %s; %s s wall, %s s user, %s s sys\n' "$(date -u +%FT%TZ)" "$KUBE_ORIG_TARBALL" \
    "${KUBE_PATCHES[*]}" "$wall" "$user" "$sys" >"$KUBE_BIN_DIR/BUILD-INFO"
  touch "$KUBE_BIN_DIR/.complete"
  rm -rf "$work"
}

# Starts etcd, kube-apiserver and kube-scheduler on free ports of 127.0.0.1 in a fresh temporary
# directory (KUBE_DIR: logs, certificates, kubeconfigs), waits (60 s at most) until the apiserver is
# ready, and stops them and removes the directory on exit. No kubelet and no controller-manager:
# scripts/kubernetes/standin-kubelet.py runs pods. Users (static tokens):
#   admin    group system:masters                -> GANTRY_TEST_KUBECONFIG, GANTRY_TEST_KUBE_TOKEN
#   gantry   group gantry-test, ClusterRole gantry-test (pods, pods/log, pods/status, events, nodes)
#                                                 -> GANTRY_TEST_KUBECONFIG_GANTRY, GANTRY_TEST_KUBE_TOKEN_GANTRY
#   limited  no RBAC grant at all (403s)          -> GANTRY_TEST_KUBECONFIG_LIMITED, GANTRY_TEST_KUBE_TOKEN_LIMITED
# Also exports GANTRY_TEST_KUBE_URL (https://127.0.0.1:PORT), GANTRY_TEST_KUBE_CA (the CA of the
# apiserver's serving certificate, made here with openssl; the kubeconfigs verify with it) and
# GANTRY_TEST_KUBE_BIN (the binaries' directory) and GANTRY_TEST_ETCD_URL (etcd's client URL).
start_kubernetes_control_plane() {
  [ -n "${KUBE_BIN_DIR:-}" ] || ensure_kubernetes_control_plane || return 1
  ensure_debian_packages openssl:openssl curl:curl kubectl:kubernetes-client || return 1
  local started etcd_port peer_port api_port scheduler_port admin limited gantry
  started=$(date +%s.%N)
  KUBE_DIR=$(mktemp -d /tmp/gantry-kube.XXXXXX) || return 1
  KUBE_PIDS=()
  on_exit stop_kubernetes_control_plane
  etcd_port=$(free_port) && peer_port=$(free_port) && api_port=$(free_port) && scheduler_port=$(free_port) || return 1
  admin=$(openssl rand -hex 24) && limited=$(openssl rand -hex 24) && gantry=$(openssl rand -hex 24) || return 1
  mkdir -p "$KUBE_DIR/pki" || return 1
  # The apiserver's own self-signed certificate (in --cert-dir, apiserver.crt) would do for
  # 127.0.0.1, but a CA of our own and a serving certificate it signed (IP 127.0.0.1, localhost)
  # is what a client is normally given: GANTRY_TEST_KUBE_CA is that CA.
  make_kube_pki "$KUBE_DIR/pki" || { echo "could not make the control plane's certificates" >&2; return 1; }
  printf '%s,admin,admin,"system:masters"\n%s,limited,limited\n%s,gantry,gantry,"gantry-test"\n' \
    "$admin" "$limited" "$gantry" >"$KUBE_DIR/tokens.csv"
  chmod 600 "$KUBE_DIR/tokens.csv"
  step "starting a Kubernetes 1.20 control plane (etcd, kube-apiserver, kube-scheduler) on 127.0.0.1:$api_port ($KUBE_DIR)"
  etcd --name cp --data-dir "$KUBE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "cp=http://127.0.0.1:$peer_port" >"$KUBE_DIR/etcd.log" 2>&1 &
  KUBE_PIDS+=($!)
  # Admission: without ServiceAccount pods need no ServiceAccount (no controller-manager makes
  # `default`), and without TaintNodesByCondition a new Node gets no node.kubernetes.io/not-ready
  # taint (no node controller would ever remove it). Logs: the apiserver reaches a Node's
  # InternalIP at its daemonEndpoints port over HTTPS (the stand-in kubelet's log server); with
  # no --kubelet-certificate-authority it does not verify that server's certificate. Pods are
  # not held in the apiserver's watch cache (pods#0): their lists and watches go to etcd, so a
  # test can compact etcd (GANTRY_TEST_ETCD_URL) and get the 410 Gone a long-lived cluster gives
  # an informer that fell behind; a young cache would still serve any old version.
  "$KUBE_BIN_DIR/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$KUBE_DIR/pki" --tls-cert-file "$KUBE_DIR/pki/apiserver.crt" --tls-private-key-file "$KUBE_DIR/pki/apiserver.key" \
    --token-auth-file "$KUBE_DIR/tokens.csv" --authorization-mode Node,RBAC \
    --service-account-key-file "$KUBE_DIR/pki/sa.pub" --service-account-signing-key-file "$KUBE_DIR/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none \
    --disable-admission-plugins=ServiceAccount,TaintNodesByCondition \
    --kubelet-preferred-address-types=InternalIP --watch-cache-sizes=pods#0 >"$KUBE_DIR/apiserver.log" 2>&1 &
  KUBE_PIDS+=($!)
  export GANTRY_TEST_KUBE_URL="https://127.0.0.1:$api_port"
  export GANTRY_TEST_KUBE_CA="$KUBE_DIR/pki/ca.crt"
  export GANTRY_TEST_KUBE_TOKEN="$admin" GANTRY_TEST_KUBE_TOKEN_GANTRY="$gantry" GANTRY_TEST_KUBE_TOKEN_LIMITED="$limited"
  export GANTRY_TEST_KUBE_BIN="$KUBE_BIN_DIR" GANTRY_TEST_ETCD_URL="http://127.0.0.1:$etcd_port"
  export GANTRY_TEST_KUBECONFIG="$KUBE_DIR/admin.kubeconfig"
  export GANTRY_TEST_KUBECONFIG_GANTRY="$KUBE_DIR/gantry.kubeconfig"
  export GANTRY_TEST_KUBECONFIG_LIMITED="$KUBE_DIR/limited.kubeconfig"
  write_kubeconfig "$GANTRY_TEST_KUBECONFIG" admin "$admin" &&
    write_kubeconfig "$GANTRY_TEST_KUBECONFIG_GANTRY" gantry "$gantry" &&
    write_kubeconfig "$GANTRY_TEST_KUBECONFIG_LIMITED" limited "$limited" || return 1
  local i ready=
  for i in $(seq 1 300); do
    if curl -sf --cacert "$GANTRY_TEST_KUBE_CA" -H "Authorization: Bearer $admin" "$GANTRY_TEST_KUBE_URL/readyz" >/dev/null; then
      ready=1; break
    fi
    kill -0 "${KUBE_PIDS[1]}" 2>/dev/null || break
    sleep 0.2
  done
  if [ -z "$ready" ]; then
    tail -n 15 "$KUBE_DIR/etcd.log" >&2; tail -n 30 "$KUBE_DIR/apiserver.log" >&2
    echo "kube-apiserver did not become ready within 60 s (logs above, in $KUBE_DIR)" >&2
    return 1
  fi
  "$KUBE_BIN_DIR/kube-scheduler" --kubeconfig "$GANTRY_TEST_KUBECONFIG" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "$scheduler_port" --port 0 >"$KUBE_DIR/scheduler.log" 2>&1 &
  KUBE_PIDS+=($!)
  # Should this shell die without running its exit actions (SIGKILL, an action before ours that
  # stopped the trap), a watchdog stops the three and removes the directory within a few seconds.
  local shell_pid=$$
  (set +e; trap '' TERM INT; while kill -0 "$shell_pid" 2>/dev/null && [ -d "$KUBE_DIR" ]; do sleep 2; done
   kill "${KUBE_PIDS[@]}" 2>/dev/null; sleep 5; kill -9 "${KUBE_PIDS[@]}" 2>/dev/null; rm -rf "$KUBE_DIR") \
    </dev/null >/dev/null 2>&1 &
  KUBE_WATCHDOG_PID=$!
  kubectl --kubeconfig "$GANTRY_TEST_KUBECONFIG" apply -f - >"$KUBE_DIR/rbac.log" 2>&1 <<'YAML' ||
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: gantry-test
rules:
- apiGroups: [""]
  resources: [pods, events]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [pods/log, pods/status]
  verbs: [get]
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: gantry-test
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: gantry-test
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: gantry-test
YAML
    { cat "$KUBE_DIR/rbac.log" >&2; echo "could not create the gantry-test ClusterRole" >&2; return 1; }
  # The scheduler binds pods once its secure port answers (about a second).
  for i in $(seq 1 150); do
    curl -sk "https://127.0.0.1:$scheduler_port/healthz" >/dev/null && break
    kill -0 "${KUBE_PIDS[2]}" 2>/dev/null || break
    sleep 0.2
  done
  curl -sk "https://127.0.0.1:$scheduler_port/healthz" >/dev/null ||
    { tail -n 30 "$KUBE_DIR/scheduler.log" >&2; echo "kube-scheduler did not start" >&2; return 1; }
  step "Kubernetes control plane ready in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
}

# A CA, the apiserver's serving certificate (EC P-256, for 127.0.0.1 and localhost) and the
# service-account signing key pair in DIR.
make_kube_pki() {
  local dir=$1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=gantry-test-kubernetes-ca" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return 1
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$dir/apiserver.key" -out "$dir/apiserver.csr" 2>/dev/null || return 1
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1" \
    "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$dir/apiserver.ext"
  openssl x509 -req -in "$dir/apiserver.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
    -extfile "$dir/apiserver.ext" -out "$dir/apiserver.crt" 2>/dev/null || return 1
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null && openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
}

# A kubeconfig for one user of the running control plane: write_kubeconfig FILE USER TOKEN. Plain
# block YAML (what standin-kubelet.py's small reader expects), verifying with GANTRY_TEST_KUBE_CA.
write_kubeconfig() {
  cat >"$1" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: gantry-test
  cluster:
    server: $GANTRY_TEST_KUBE_URL
    certificate-authority: $GANTRY_TEST_KUBE_CA
users:
- name: $2
  user:
    token: $3
contexts:
- name: $2@gantry-test
  context:
    cluster: gantry-test
    user: $2
    namespace: default
current-context: $2@gantry-test
YAML
  chmod 600 "$1"
}

# Tolerates every failure, like stop_nanoidp. The scheduler and the apiserver go first, etcd last.
stop_kubernetes_control_plane() {
  local i pid
  if [ -n "${KUBE_WATCHDOG_PID:-}" ]; then kill -9 "$KUBE_WATCHDOG_PID" 2>/dev/null || true; wait "$KUBE_WATCHDOG_PID" 2>/dev/null || true; fi
  for ((i = ${#KUBE_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${KUBE_PIDS[i]}
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  KUBE_PIDS=()
  if [ -n "${KUBE_DIR:-}" ]; then rm -rf "$KUBE_DIR" || true; fi
  return 0
}

#!/usr/bin/env bash
# Runs every test of Gantry with the real services they need:
#   - the test peers from PyPI (scripts/peers/test.txt: moto, nanoidp, the openai client, cmake),
#     installed at their pinned versions into a virtual environment of the project's own under
#     the cache directory, checked by version on every run, and used only from there;
#   - a private PostgreSQL cluster (initdb into a temporary directory, a free port, removed on exit);
#   - nanoidp, a real OpenID Connect provider from PyPI, on a free port;
#   - moto, an S3-compatible server from PyPI that checks request signatures, on a free port;
#   - llama.cpp's llama-server, built once into the cache by `gantry engines install llama-cpp`;
#   - the demo model (SmolLM2-135M-Instruct GGUF), fetched and verified into the cache;
#   - the official `openai` Python client, which OpenAIClientTests runs against Gantry;
#   - a Kubernetes 1.20 control plane (etcd, kube-apiserver, kube-scheduler, built once from
#     Debian's source package into the cache) on free ports, for the Kubernetes runtime's tests;
#     their nodes are scripts/kubernetes/standin-kubelet.py, a TEST STAND-IN for the kubelet.
# Then `swift test`, then end-to-end tests of the real `gantry` binary: the all-in-one smoke test,
# split roles (a control process behind two gateway processes), scale-out and failures (two
# control replicas and three gateways, processes killed and the database stopped under load) and a
# soak of the per-connection bounds; Debian's Prometheus scraping a live Gantry under traffic with
# the shipped rules (deploy/prometheus) and the Grafana dashboard's queries (deploy/grafana); the web
# console's admin and user journeys in Debian's headless chromium driven by Selenium; schemathesis
# checking every /api answer against the OpenAPI document.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_test_peers       # sets PEERS; its bin goes first on PATH; exports GANTRY_TEST_PYTHON
ensure_build_tools
step "building gantry and its tests"
swift build --build-tests
GANTRY=".build/debug/gantry"

step "installing the engine (cached after the first run)"
LLAMA_SERVER=$("$GANTRY" engines install llama-cpp | tail -n 1)
step "fetching the demo model (cached after the first run)"
MODEL=$("$GANTRY" demo-model | tail -n 1)

start_private_postgres   # sets PG_URL; the cluster is removed on exit
start_nanoidp            # exports GANTRY_TEST_OIDC_*; stopped on exit
start_moto               # exports GANTRY_TEST_S3_*; stopped on exit

export GANTRY_TEST_POSTGRES_URL="$PG_URL"
export GANTRY_TEST_LLAMA_SERVER="$LLAMA_SERVER"
export GANTRY_TEST_MODEL="$MODEL"

step "swift test (all but the Kubernetes cluster suite)"
swift test --skip-build --skip KubernetesClusterTests

# The cluster suite runs alone, after the rest: its control plane, stand-in kubelet and engines
# would otherwise load the 2 cores under the timing-bound tests of the other suites.
ensure_kubernetes_control_plane  # built once into the cache
start_kubernetes_control_plane   # exports GANTRY_TEST_KUBE*, GANTRY_TEST_ETCD_URL; stopped on exit
step "swift test: the Kubernetes runtime against the control plane"
swift test --skip-build --filter KubernetesClusterTests

step "end-to-end smoke test of the gantry binary"
bash scripts/smoke-test.sh "$GANTRY"

step "split roles: two gateway processes in front of a control process"
PG_URL="$PG_URL" bash scripts/split-roles-test.sh "$GANTRY"

step "scale-out: leader failover mid roll-out, a gateway killed, the database stopped, under load"
bash scripts/scale-out-test.sh "$GANTRY" .build/debug/gantry-fake-engine

step "soak: misbehaving client connections beside good ones, with the server's RSS bounded"
bash scripts/soak-test.sh "$GANTRY" .build/debug/gantry-fake-engine

step "prometheus: the shipped rules and dashboard against a live gantry under traffic"
bash scripts/prometheus-test.sh "$GANTRY" .build/debug/gantry-fake-engine

step "schemathesis: every /api operation against the OpenAPI document, as a user and as an admin"
bash scripts/schemathesis-test.sh "$GANTRY" .build/debug/gantry-fake-engine

step "console: an admin's and a user's journeys in headless chromium"
bash scripts/console-test.sh "$GANTRY"
step "all tests passed"

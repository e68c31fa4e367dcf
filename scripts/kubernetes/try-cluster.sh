#!/usr/bin/env bash
# A manual demo and check of the Kubernetes test setup (not part of the test suite): builds (once)
# and starts the control plane, starts the stand-in kubelet with scripts/kubernetes/
# nodes-fixture.json, runs a pod with an init container, an emptyDir, a GPU request and a
# readiness probe through the real scheduler, and shows logs, a crash and restart, deletion, an
# unschedulable pod, RBAC's 403, a custom resource (the reflect2 patch) and node loss.
#   scripts/kubernetes/try-cluster.sh          run the checks, then stop everything
#   KEEP=1 scripts/kubernetes/try-cluster.sh   ... then keep the cluster until Enter is pressed
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

fail() { echo "FAILED: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# kubectl 1.32 warns about its skew with a 1.20 server on every call; that line is dropped.
k() { kubectl --kubeconfig "$GANTRY_TEST_KUBECONFIG" "$@" 2> >(grep -v 'version difference between client' >&2); }

started=$(now)
ensure_kubernetes_control_plane
step "ensure_kubernetes_control_plane: $(since "$started") s ($KUBE_BIN_DIR)"
start_kubernetes_control_plane

step "kubeconfigs (verified against $GANTRY_TEST_KUBE_CA)"
k get nodes
kubectl --kubeconfig "$GANTRY_TEST_KUBECONFIG_GANTRY" get nodes 2>&1 | grep -v 'version difference'
if out=$(kubectl --kubeconfig "$GANTRY_TEST_KUBECONFIG_LIMITED" get pods 2>&1); then fail "limited may list pods"; fi
echo "limited: $(grep -v 'version difference' <<<"$out")"
grep -q Forbidden <<<"$out" || fail "limited: expected Forbidden"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$GANTRY_TEST_KUBE_CA" \
  -H "Authorization: Bearer $GANTRY_TEST_KUBE_TOKEN_LIMITED" "$GANTRY_TEST_KUBE_URL/api/v1/namespaces/default/pods")
echo "limited, GET pods with curl: HTTP $code"; [ "$code" = 403 ] || fail "expected 403"

step "a custom resource with nested maps (needs the reflect2 patch)"
k apply -f - <<'YAML'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.gantry.dev
spec:
  group: test.gantry.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
YAML
k wait --for condition=established --timeout=30s crd/widgets.test.gantry.dev
k apply -f - <<'YAML'
apiVersion: test.gantry.dev/v1
kind: Widget
metadata: {name: w1, namespace: default}
spec:
  engine: {name: llama, settings: {threads: 4, extra: {a: "1", b: ["x", {c: "d"}]}}}
YAML
k get widgets w1 -o jsonpath='{.spec}'; echo
kill -0 "${KUBE_PIDS[1]}" || fail "kube-apiserver died"

step "the stand-in kubelet"
SK_DIR=$(mktemp -d /tmp/gantry-standin.XXXXXX)
mkfifo "$SK_DIR/in"
python3 scripts/kubernetes/standin-kubelet.py --kubeconfig "$GANTRY_TEST_KUBECONFIG" \
  --nodes scripts/kubernetes/nodes-fixture.json --work-dir "$SK_DIR/work" \
  --images "{\"*\": \"$PWD/scripts/kubernetes/test-engine.py\", \"init-test\": \"/bin/sh\"}" \
  <"$SK_DIR/in" >"$SK_DIR/out" 2>"$SK_DIR/log" &
SK_PID=$!
exec {SK_IN}>"$SK_DIR/in"
on_exit "kill $SK_PID 2>/dev/null || true; wait $SK_PID 2>/dev/null || true; rm -rf '$SK_DIR'"
for _ in $(seq 1 100); do grep -q 'standin-kubelet ready' "$SK_DIR/out" && break; sleep 0.1; done
grep -q 'standin-kubelet ready' "$SK_DIR/out" || { cat "$SK_DIR/log" >&2; fail "the stand-in did not start"; }
sk() { # a command to the stand-in, then its answer
  local lines
  lines=$(wc -l <"$SK_DIR/out")
  echo "$*" >&"$SK_IN"
  for _ in $(seq 1 100); do tail -n +"$((lines + 1))" "$SK_DIR/out" | grep -qE '^(ok|error)' && break; sleep 0.1; done
  tail -n +"$((lines + 1))" "$SK_DIR/out"
}
k get nodes -L nvidia.com/gpu.product,nvidia.com/gpu.count
k get node gpu-h100 -o jsonpath='{.status.allocatable}'; echo

step "a pod: init container, emptyDir at /models, 2 GPUs, readiness probe"
applied=$(now)
k apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: engine-1
  namespace: default
  labels: {app.kubernetes.io/managed-by: gantry, gantry.dev/deployment: demo}
spec:
  nodeSelector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
  terminationGracePeriodSeconds: 5
  volumes:
  - name: models
    emptyDir: {}
  initContainers:
  - name: fetch
    image: init-test
    command: ["sh", "-c", "echo hi > /models/x"]
    volumeMounts: [{name: models, mountPath: /models}]
  containers:
  - name: engine
    image: test-engine:1
    args: ["--host", "$(POD_IP)", "--port", "8080", "--model", "/models/x"]
    env:
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    ports: [{name: http, containerPort: 8080}]
    resources:
      limits: {nvidia.com/gpu: 2}
    volumeMounts: [{name: models, mountPath: /models}]
    readinessProbe:
      httpGet: {path: /health, port: 8080}
      periodSeconds: 1
YAML
node=
for _ in $(seq 1 100); do
  node=$(k get pod engine-1 -o jsonpath='{.spec.nodeName}'); [ -n "$node" ] && break; sleep 0.05
done
bound=$(now)
echo "bound to ${node:-nothing} $(awk -v a="$applied" -v b="$bound" 'BEGIN { printf "%.2f", b - a }') s after apply"
[ "$node" = gpu-h100 ] || fail "expected gpu-h100"
k wait --for condition=Ready --timeout=60s pod/engine-1
echo "Ready $(since "$bound") s after the binding was seen"
k get pod engine-1 -o wide
ip=$(k get pod engine-1 -o jsonpath='{.status.podIP}')
echo "podIP $ip; conditions: $(k get pod engine-1 -o jsonpath='{range .status.conditions[*]}{.type}={.status} {end}')"
curl -sf "http://$ip:8080/health"; echo
curl -sf "http://$ip:8080/v1/models"; echo
step "kubectl logs (through the apiserver's pods/log proxy to the stand-in's log server)"
k logs engine-1 -c fetch || true
k logs engine-1 --tail=3
k get pod engine-1 -o jsonpath='{.status.initContainerStatuses[0].state}'; echo

step "crash: the engine is SIGKILLed and restarted"
sk crash default/engine-1
for _ in $(seq 1 100); do
  [ "$(k get pod engine-1 -o jsonpath='{.status.containerStatuses[0].restartCount}')" = 1 ] && break; sleep 0.1
done
k get pod engine-1 -o jsonpath='{.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].lastState}'; echo
k wait --for condition=Ready --timeout=60s pod/engine-1
k logs engine-1 --previous --tail=2

step "an unschedulable pod (16 GPUs)"
k apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: too-big, namespace: default}
spec:
  containers:
  - name: engine
    image: test-engine:1
    resources:
      limits: {nvidia.com/gpu: 16}
YAML
for _ in $(seq 1 50); do
  msg=$(k get pod too-big -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}'); [ -n "$msg" ] && break; sleep 0.1
done
echo "too-big: $(k get pod too-big -o jsonpath='{.status.phase}'): $msg"
[[ $msg == "0/3 nodes are available: "* ]] || fail "unexpected scheduler message"
k delete pod too-big --wait=false

step "deleting the pod: SIGTERM, gone"
pid=$(pgrep -f -- "--port 8080 --model $SK_DIR/work/default/engine-1/models/x" | head -n 1)
echo "engine process $pid"
deleted=$(now)
k delete pod engine-1 --timeout=30s
echo "deleted in $(since "$deleted") s"
sleep 0.2
kill -0 "$pid" 2>/dev/null && fail "the engine process still runs"
k get pods

step "node loss: kill-node gpu-h100"
k apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: engine-2, namespace: default}
spec:
  nodeSelector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
  containers:
  - name: engine
    image: test-engine:1
    args: ["--host", "$(POD_IP)", "--port", "8080"]
    env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
    resources:
      limits: {nvidia.com/gpu: 1}
YAML
k wait --for condition=Ready --timeout=60s pod/engine-2
sk kill-node gpu-h100
sleep 0.5
k get nodes
k get pods

step "the stand-in's log"
tail -n 40 "$SK_DIR/log"
if [ -n "${KEEP:-}" ]; then
  echo "KUBECONFIG=$GANTRY_TEST_KUBECONFIG; press Enter to stop" >&2
  read -r
fi
step "all good"

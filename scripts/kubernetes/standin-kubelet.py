#!/usr/bin/env python3
"""standin-kubelet: a TEST STAND-IN for the kubelet, not a kubelet.

It registers Node objects with a real kube-apiserver, watches the pods the real kube-scheduler
binds to them, and runs each pod's containers as plain local processes on this machine, so that
tests of Gantry's Kubernetes backend can run real engines "in pods" without a container runtime.
Python 3.11 standard library only.

What it does for a pod bound to one of its nodes:
- gives the pod a loopback address of its own (127.0.0.2, 127.0.0.3, ... by default; freed ones
  are reused) as status.podIP, with hostIP 127.0.0.1;
- makes a directory per volume: emptyDir (and configMap/secret, filled from the API objects)
  under WORK/<namespace>/<pod>/<volume>; hostPath under WORK/hostpath/<node>/<path> (kept across
  pods, like a node's disk); persistentVolumeClaim under WORK/pvc/<namespace>/<claim>;
- stands in for mounting: in every container's command, args, env values and workingDir, each
  occurrence of a volumeMount's mountPath at the start of a path (at the start of the string or
  after a character such as space, '=', ':', ',', '>', quotes) is replaced by that local
  directory (plus subPath). "/models/x" becomes "WORK/ns/pod/models/x";
- resolves env (value, valueFrom.fieldRef, configMapKeyRef, secretKeyRef, envFrom) and expands
  $(VAR) in command and args like the kubelet ($$ is a literal $, unknown references stay);
- maps the container's image to a local program with --images (key "*" is the default; a value
  may be a path or a JSON list such as ["python3", "/path/engine.py"]); the first element of
  `command` is replaced by the program, the rest of `command` and then `args` follow; an image
  without a program is reported as ErrImagePull, then ImagePullBackOff;
- runs init containers in order to completion, then the main containers (working directory: the
  pod's directory; stdout and stderr into WORK/<namespace>/<pod>/.logs/<container>.<restart>.log;
  the stand-in's own environment is inherited, with the pod's env on top);
- restarts exited containers per restartPolicy with a back-off of 1 s doubling to 10 s
  (CrashLoopBackOff, lastState, restartCount);
- runs readiness, liveness and startup probes (httpGet, tcpSocket on the pod's address; exec as a
  local command, mount paths rewritten, a command not found here other than sh or bash taken as
  the image's program); a liveness or startup probe past its failureThreshold kills the container;
- writes status with a strategic merge patch on pods/NAME/status when it changed (phase,
  conditions Initialized/ContainersReady/Ready, container statuses, podIP) and posts kubelet-like
  events (Pulled, Created, Started, Killing, BackOff, Unhealthy, Failed);
- on metadata.deletionTimestamp: SIGTERM, SIGKILL after the grace period (at most 30 s), then
  deletes the pod with gracePeriodSeconds=0; a pod that vanishes (DELETED) just has its processes
  killed;
- serves the kubelet's log endpoint (GET /containerLogs/NS/POD/CONTAINER with tailLines,
  limitBytes, previous, follow) over HTTPS on 127.0.0.1, so `kubectl logs` works through the
  apiserver (the Nodes' InternalIP is 127.0.0.1 and daemonEndpoints.kubeletEndpoint.Port this
  server's port; the apiserver does not verify a kubelet's certificate unless it was started with
  --kubelet-certificate-authority).

Commands on stdin, one per line, each answered with a line `ok` or `error: ...` on stdout:
  kill-node NAME               the machine vanishes: its processes are killed, its Node is
                               deleted and its pods are deleted with gracePeriodSeconds=0
  crash NAMESPACE/POD[/CONTAINER]
                               SIGKILL the pod's running main containers (or that one), so the
                               restart path runs
  pods                         one line per pod it runs: NAMESPACE/POD IP PHASE (then ok)

Several stand-ins at once (tests in parallel) need distinct --node-prefix values and distinct
--pod-cidr networks (127.0.N.0/24), and node labels of their own (--node-label) to keep the
scheduler from mixing their pods. Not stood in for: exec, attach and port-forward, the log
options timestamps/sinceSeconds/sinceTime, resource limits, preStop hooks, image pulls.

It prints `standin-kubelet ready` on stdout once its Nodes exist and the pod watch runs. On
SIGTERM or SIGINT it kills all its processes, deletes its pods (gracePeriodSeconds=0) and its
Nodes, and exits 0. What it does is logged on stderr with timestamps.
"""

import argparse
import base64
import datetime
import http.client
import http.server
import ipaddress
import json
import os
import queue
import re
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid

MAX_GRACE_SECONDS = 30
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 10.0
BACKOFF_RESET_AFTER = 60.0  # a container that ran this long starts its next back-off at 1 s
IMAGE_PULL_BACKOFF_AFTER = 2.0
TICK = 0.1
WATCH_TIMEOUT = 300  # seconds a watch request asks for; it reconnects from the last resourceVersion


def log(message):
    now = datetime.datetime.now(datetime.timezone.utc)
    sys.stderr.write(f"{now.strftime('%H:%M:%S.%f')[:-3]} standin-kubelet: {message}\n")
    sys.stderr.flush()


def say(line):
    """A line on stdout (the readiness line and the answers to stdin commands)."""
    with say.lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


say.lock = threading.Lock()


def rfc3339(t=None):
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the API server ---------------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


def read_kubeconfig(path):
    """server, certificate-authority (file or inline data), token and insecure flag of the
    current context's cluster and user. A small reader for the simple block-style YAML that
    kubectl and scripts/lib.sh write; with several clusters or users, current-context decides."""
    text = open(path).read()
    entries = {"clusters": {}, "users": {}, "contexts": {}}
    section = None
    current = None
    current_context = None
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        stripped = line.strip()
        if indent == 0 and not stripped.startswith("- "):
            key = stripped.split(":", 1)[0]
            section = key if key in entries else None
            if key == "current-context":
                current_context = unquote(stripped.split(":", 1)[1].strip())
            continue
        if section is None:
            continue
        item = stripped[2:] if stripped.startswith("- ") else stripped
        if ":" not in item:
            continue
        key, value = item.split(":", 1)
        key, value = key.strip(), unquote(value.strip())
        if stripped.startswith("- "):
            current = {}
            entries[section][f"#{len(entries[section])}"] = current
        if current is None:
            continue
        current[key] = value
    # Entries are keyed by position; give them their names.
    named = {}
    for section, items in entries.items():
        named[section] = {}
        for item in items.values():
            named[section][item.get("name", "")] = item
    context = named["contexts"].get(current_context) or next(iter(named["contexts"].values()), {})
    cluster = named["clusters"].get(context.get("cluster")) or next(iter(named["clusters"].values()), {})
    user = named["users"].get(context.get("user")) or next(iter(named["users"].values()), {})
    ca = cluster.get("certificate-authority")
    ca_data = cluster.get("certificate-authority-data")
    if ca and not os.path.isabs(ca):
        ca = os.path.join(os.path.dirname(os.path.abspath(path)), ca)
    return {
        "server": cluster.get("server"),
        "ca": ca,
        "ca_data": base64.b64decode(ca_data).decode() if ca_data else None,
        "insecure": cluster.get("insecure-skip-tls-verify") == "true",
        "token": user.get("token"),
    }


def unquote(value):
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


class Api:
    """A small client of the API server: one persistent connection per thread, bearer token."""

    def __init__(self, server, token, ca=None, ca_data=None, insecure=False):
        url = urllib.parse.urlsplit(server)
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.https = url.scheme == "https"
        self.token = token
        if self.https:
            if insecure:
                self.context = ssl._create_unverified_context()
            else:
                self.context = ssl.create_default_context(cafile=ca, cadata=ca_data)
        self.local = threading.local()

    def connect(self, timeout):
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def headers(self, content_type=None):
        headers = {"Accept": "application/json", "User-Agent": "standin-kubelet"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def request(self, method, path, body=None, content_type="application/json", ok=(200, 201, 202)):
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = self.connect(30)
            try:
                conn.request(method, path, body=data, headers=self.headers(content_type if data else None))
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 1:
                    raise
                continue
            if response.status not in ok:
                raise ApiError(response.status, payload.decode(errors="replace"))
            return json.loads(payload) if payload else None

    def stream(self, path, timeout):
        """A streaming GET (a watch): returns the response after the headers arrived."""
        conn = self.connect(timeout)
        conn.request("GET", path, headers=self.headers())
        response = conn.getresponse()
        if response.status != 200:
            payload = response.read().decode(errors="replace")
            conn.close()
            raise ApiError(response.status, payload)
        return conn, response


# --- env, $(VAR) expansion and the mount stand-in ----------------------------------------------

def expand(text, env):
    """Kubernetes' $(VAR) expansion: $(NAME) becomes NAME's value when defined and stays as it
    is otherwise; $$ is a literal $; any other $ is kept."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2:close]
                    out.append(env[name] if name in env else f"$({name})")
                    i = close + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def mount_substituter(mounts):
    """A function replacing each mountPath at the start of a path by its local directory.
    mounts: [(mountPath, local dir)]; longer mount paths win."""
    mounts = [(m.rstrip("/"), local) for m, local in mounts if m.rstrip("/")]
    if not mounts:
        return lambda text: text
    mounts.sort(key=lambda m: -len(m[0]))
    table = dict(mounts)
    pattern = re.compile(r"(?<![\w.~/-])(" + "|".join(re.escape(m) for m, _ in mounts) + r")(?=/|$|[^\w.~-])")
    return lambda text: pattern.sub(lambda match: table[match.group(1)], text)


# --- the pods ---------------------------------------------------------------------------------

class Probe:
    """One probe of one container (readiness, liveness or startup)."""

    def __init__(self, kind, spec):
        self.kind = kind
        self.spec = spec
        self.period = max(int(spec.get("periodSeconds") or 10), 1)
        self.initial_delay = int(spec.get("initialDelaySeconds") or 0)
        self.timeout = max(int(spec.get("timeoutSeconds") or 1), 1)
        self.success_threshold = max(int(spec.get("successThreshold") or 1), 1)
        self.failure_threshold = max(int(spec.get("failureThreshold") or 3), 1)
        self.reset()

    def reset(self):
        self.successes = 0
        self.failures = 0
        self.next_at = None
        self.in_flight = False
        self.result = None  # None: not yet known; True/False after the thresholds
        self.last_error = ""


class Container:
    def __init__(self, pod, spec, init):
        self.pod = pod
        self.spec = spec
        self.name = spec["name"]
        self.image = spec.get("image", "")
        self.init = init
        self.proc = None
        self.state = {"waiting": {"reason": "PodInitializing" if init or pod.has_init else "ContainerCreating"}}
        self.last_state = {}
        self.restart_count = 0
        self.next_start = 0.0
        self.backoff = BACKOFF_FIRST
        self.started_at = None
        self.done = False  # terminated for good (init completed, or no restart by policy)
        self.succeeded = False
        self.pull_failed_at = None
        self.killed_by_probe = None
        self.container_id = None
        self.log_path = None
        self.probes = {kind: Probe(kind, spec[f"{kind}Probe"])
                       for kind in ("readiness", "liveness", "startup") if spec.get(f"{kind}Probe")}

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def ready(self):
        if not self.running:
            return False
        if "startup" in self.probes and self.probes["startup"].result is not True:
            return False
        probe = self.probes.get("readiness")
        return probe is None or probe.result is True

    def status(self):
        status = {
            "name": self.name,
            "image": self.image,
            "imageID": f"standin://{self.image}",
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready() if not self.init else self.succeeded,
            "restartCount": self.restart_count,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        if not self.init:
            started = self.running and ("startup" not in self.probes or self.probes["startup"].result is True)
            status["started"] = started
        return status


class Pod:
    def __init__(self, kubelet, obj):
        self.kubelet = kubelet
        self.obj = obj
        meta = obj["metadata"]
        self.uid = meta["uid"]
        self.namespace = meta["namespace"]
        self.name = meta["name"]
        self.node = obj["spec"]["nodeName"]
        self.key = f"{self.namespace}/{self.name}"
        spec = obj["spec"]
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.has_init = bool(spec.get("initContainers"))
        self.init_containers = [Container(self, c, True) for c in spec.get("initContainers") or []]
        self.containers = [Container(self, c, False) for c in spec.get("containers") or []]
        self.ip = None
        self.dir = os.path.join(kubelet.work_dir, self.namespace, self.name)
        self.prepared = False
        self.prepare_at = 0.0
        self.prepare_error = None
        self.start_time = None
        self.conditions = {}  # type -> condition dict we wrote (with its lastTransitionTime)
        self.last_sent = None
        self.terminating_since = None
        self.kill_deadline = None
        self.gone = False  # deleted from the API (DELETED event or vanished from a list)
        self.finished = False
        self.events = {}

    def all_containers(self):
        return self.init_containers + self.containers


class StandinKubelet:
    def __init__(self, args):
        self.args = args
        self.images = load_images(args.images)
        self.work_dir = os.path.abspath(args.work_dir)
        os.makedirs(self.work_dir, exist_ok=True)
        self.node_labels = dict(label.split("=", 1) for label in args.node_label)
        self.pod_network = ipaddress.ip_network(args.pod_cidr)
        self.nodes = {}  # name -> node object we registered
        self.pods = {}  # uid -> Pod
        self.forgotten = set()  # uids of pods it stopped for good: late events about them change nothing
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.commands = queue.Queue()
        self.stopping = False
        self.resource_version = None
        self.api = make_api(args)
        self.log_port = None

    # -- nodes ---------------------------------------------------------------------------------

    def register_nodes(self):
        fixture = json.load(open(self.args.nodes))
        if isinstance(fixture, dict):
            fixture = fixture.get("items", [fixture])
        for template in fixture:
            node = json.loads(json.dumps(template))
            node.setdefault("apiVersion", "v1")
            node.setdefault("kind", "Node")
            meta = node.setdefault("metadata", {})
            for field in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
                meta.pop(field, None)
            name = self.args.node_prefix + meta["name"]
            meta["name"] = name
            labels = meta.setdefault("labels", {})
            labels["kubernetes.io/hostname"] = name
            labels.setdefault("kubernetes.io/os", "linux")
            labels.update(self.node_labels)
            status = node.setdefault("status", {})
            now = rfc3339()
            conditions = status.setdefault("conditions", [])
            if not any(c.get("type") == "Ready" for c in conditions):
                conditions.append({"type": "Ready", "status": "True"})
            for condition in conditions:
                condition.setdefault("reason", "KubeletReady" if condition["type"] == "Ready" else "StandinKubelet")
                condition.setdefault("message", "standin-kubelet (a test stand-in for the kubelet)")
                condition["lastHeartbeatTime"] = now
                condition["lastTransitionTime"] = now
            status.setdefault("addresses", [{"type": "InternalIP", "address": "127.0.0.1"}])
            status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": self.log_port}}
            info = status.setdefault("nodeInfo", {})
            for key, value in {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": os.uname().release,
                               "osImage": "standin-kubelet", "containerRuntimeVersion": "standin://1",
                               "kubeletVersion": "v1.20.2-standin", "kubeProxyVersion": "v1.20.2-standin",
                               "operatingSystem": "linux", "architecture": "amd64"}.items():
                info.setdefault(key, value)
            try:
                self.api.request("DELETE", f"/api/v1/nodes/{name}", ok=(200, 202))
                log(f"node {name} existed: replacing it")
            except ApiError as error:
                if error.status != 404:
                    raise
            for attempt in range(50):
                try:
                    created = self.api.request("POST", "/api/v1/nodes", node)
                    break
                except ApiError as error:
                    if error.status != 409 or attempt == 49:
                        raise
                    time.sleep(0.1)
            self.nodes[name] = created
            log(f"registered node {name}")

    def delete_node(self, name):
        try:
            self.api.request("DELETE", f"/api/v1/nodes/{name}", ok=(200, 202))
            log(f"deleted node {name}")
        except (ApiError, OSError) as error:
            log(f"could not delete node {name}: {error}")

    # -- the pod watch -------------------------------------------------------------------------

    def list_pods(self):
        listed = self.api.request("GET", "/api/v1/pods")
        self.resource_version = listed["metadata"]["resourceVersion"]
        seen = set()
        for obj in listed.get("items", []):
            if self.mine(obj):
                seen.add(obj["metadata"]["uid"])
                self.observe(obj)
        with self.lock:
            for uid, pod in self.pods.items():
                if uid not in seen and not pod.gone:
                    log(f"pod {pod.key} is gone (not in a fresh list)")
                    pod.gone = True
        self.wake.set()

    def mine(self, obj):
        return obj.get("spec", {}).get("nodeName") in self.nodes

    def observe(self, obj):
        uid = obj["metadata"]["uid"]
        with self.lock:
            pod = self.pods.get(uid)
            if pod is None:
                if self.stopping or uid in self.forgotten:
                    return
                pod = Pod(self, obj)
                self.pods[uid] = pod
                log(f"pod {pod.key} bound to {pod.node}: running it")
            else:
                pod.obj = obj
        self.wake.set()

    def watch_pods(self, ready):
        announced = False
        while not self.stopping:
            try:
                if self.resource_version is None:
                    self.list_pods()
                query = urllib.parse.urlencode({"watch": "true", "resourceVersion": self.resource_version,
                                                "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_TIMEOUT)})
                conn, response = self.api.stream(f"/api/v1/pods?{query}", timeout=WATCH_TIMEOUT + 30)
                if not announced:
                    announced = True
                    ready.set()
                try:
                    while not self.stopping:
                        line = response.readline()
                        if not line:
                            break
                        event = json.loads(line)
                        kind, obj = event.get("type"), event.get("object", {})
                        if kind == "ERROR":
                            log(f"watch error: {obj.get('message')} (code {obj.get('code')}): listing anew")
                            self.resource_version = None
                            break
                        self.resource_version = obj.get("metadata", {}).get("resourceVersion", self.resource_version)
                        if kind == "BOOKMARK" or not self.mine(obj):
                            continue
                        if kind == "DELETED":
                            with self.lock:
                                pod = self.pods.get(obj["metadata"]["uid"])
                                if pod and not pod.gone:
                                    log(f"pod {pod.key} was deleted")
                                    pod.gone = True
                            self.wake.set()
                        else:
                            self.observe(obj)
                finally:
                    conn.close()
            except ApiError as error:
                if error.status == 410:
                    log("watch: resourceVersion too old (410 Gone): listing anew")
                else:
                    log(f"watch failed: {error}")
                    time.sleep(1)
                self.resource_version = None
            except Exception as error:  # noqa: BLE001 - the watch must go on
                if self.stopping:
                    return
                log(f"watch interrupted: {error!r}; reconnecting")
                time.sleep(0.5)

    # -- the loop that runs the pods -----------------------------------------------------------

    def run_loop(self):
        while not self.stopping:
            self.wake.wait(TICK)
            self.wake.clear()
            self.run_commands()
            with self.lock:
                pods = list(self.pods.values())
            for pod in pods:
                try:
                    with self.lock:
                        self.step(pod)
                except Exception:  # noqa: BLE001 - one bad pod never stops the others
                    log(f"pod {pod.key}: {traceback.format_exc().strip()}")
                    time.sleep(0.2)

    def step(self, pod):
        if pod.finished:
            return
        now = time.time()
        if pod.gone:
            self.stop_pod(pod, 0)
            if not self.any_running(pod):
                self.forget(pod)
            return
        if pod.obj["metadata"].get("deletionTimestamp"):
            if pod.terminating_since is None:
                pod.terminating_since = now
                grace = pod.obj["metadata"].get("deletionGracePeriodSeconds")
                if grace is None:
                    grace = pod.obj["spec"].get("terminationGracePeriodSeconds", 30)
                grace = min(max(int(grace), 0), MAX_GRACE_SECONDS)
                pod.kill_deadline = now + grace
                log(f"pod {pod.key} is being deleted: stopping it (grace {grace} s)")
                for c in pod.all_containers():
                    if c.running:
                        self.event(pod, c, "Normal", "Killing", f"Stopping container {c.name}")
            self.stop_pod(pod, pod.kill_deadline)
            if not self.any_running(pod):
                self.forget(pod)
                try:
                    self.api.request("DELETE", f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}",
                                     {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                                      "preconditions": {"uid": pod.uid}}, ok=(200, 202))
                    log(f"pod {pod.key} deleted")
                except ApiError as error:
                    if error.status not in (404, 409):
                        log(f"could not delete pod {pod.key}: {error}")
            return
        if not pod.prepared:
            if now >= pod.prepare_at:
                self.prepare(pod, now)
            if not pod.prepared:
                pod.prepare_at = max(pod.prepare_at, now + 1)
                self.report(pod)
                return
        if pod.start_time is None:
            pod.start_time = now
        initialized = True
        for c in pod.init_containers:
            if c.done:
                continue
            initialized = False
            self.run_container(pod, c, now)
            break
        if initialized:
            for c in pod.containers:
                self.run_container(pod, c, now)
                self.run_probes(pod, c, now)
        self.report(pod)

    def any_running(self, pod):
        return any(c.proc is not None and c.proc.poll() is None for c in pod.all_containers())

    def stop_pod(self, pod, kill_deadline):
        now = time.time()
        for c in pod.all_containers():
            if c.proc is None or c.proc.poll() is not None:
                continue
            sig = signal.SIGKILL if now >= kill_deadline else signal.SIGTERM
            if sig == signal.SIGTERM and getattr(c, "sent_term", False):
                continue
            c.sent_term = True
            try:
                os.killpg(c.proc.pid, sig)
            except ProcessLookupError:
                pass

    def forget(self, pod):
        pod.finished = True
        self.forgotten.add(pod.uid)
        for c in pod.all_containers():
            if c.proc is not None:
                try:
                    os.killpg(c.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                c.proc.wait()
        shutil.rmtree(pod.dir, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(pod.dir))
        except OSError:
            pass
        self.pods.pop(pod.uid, None)
        log(f"pod {pod.key} stopped" + (f"; address {pod.ip} free" if pod.ip else ""))

    # -- preparing a pod: address, volumes ------------------------------------------------------

    def allocate_ip(self):
        used = {p.ip for p in self.pods.values() if p.ip and not p.finished}
        for index, address in enumerate(self.pod_network.hosts()):
            if index == 0:
                continue  # network+1 is the host's own (127.0.0.1)
            if str(address) not in used:
                return str(address)
        raise RuntimeError(f"no free address left in {self.pod_network}")

    def prepare(self, pod, now):
        try:
            if pod.ip is None:
                pod.ip = self.allocate_ip()
            os.makedirs(pod.dir, exist_ok=True)
            os.makedirs(os.path.join(pod.dir, ".logs"), exist_ok=True)
            pod.volumes = {}
            for volume in pod.obj["spec"].get("volumes") or []:
                pod.volumes[volume["name"]] = self.make_volume(pod, volume)
            pod.prepared = True
            pod.prepare_error = None
            log(f"pod {pod.key}: address {pod.ip}, directory {pod.dir}")
        except Exception as error:  # noqa: BLE001
            if pod.prepare_error != str(error):
                log(f"pod {pod.key}: cannot prepare it yet: {error}")
                self.event(pod, None, "Warning", "FailedMount", str(error))
            pod.prepare_error = str(error)

    def make_volume(self, pod, volume):
        name = volume["name"]
        local = os.path.join(pod.dir, name)
        if "hostPath" in volume:
            path = volume["hostPath"].get("path", "/").lstrip("/")
            local = os.path.join(self.work_dir, "hostpath", pod.node, path)
            if volume["hostPath"].get("type") in ("File", "FileOrCreate"):
                os.makedirs(os.path.dirname(local), exist_ok=True)
                open(local, "a").close()
                return local
        elif "persistentVolumeClaim" in volume:
            local = os.path.join(self.work_dir, "pvc", pod.namespace, volume["persistentVolumeClaim"]["claimName"])
        os.makedirs(local, exist_ok=True)
        for kind, field in (("configMap", "configmaps"), ("secret", "secrets")):
            source = volume.get(kind)
            if source is None:
                continue
            object_name = source.get("name") or source.get("secretName")
            data = self.get_data(pod.namespace, field, object_name, source.get("optional", False))
            items = source.get("items")
            pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
            for key, path in pairs:
                if key not in data:
                    continue
                target = os.path.join(local, path)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write(data[key])
        return local

    def get_data(self, namespace, field, name, optional):
        """The data of a ConfigMap or Secret as bytes per key."""
        try:
            obj = self.api.request("GET", f"/api/v1/namespaces/{namespace}/{field}/{name}")
        except ApiError as error:
            if error.status == 404 and optional:
                return {}
            raise RuntimeError(f"{field[:-1]} {namespace}/{name}: {error}") from None
        data = {}
        if field == "secrets":
            for key, value in (obj.get("data") or {}).items():
                data[key] = base64.b64decode(value)
            for key, value in (obj.get("stringData") or {}).items():
                data[key] = value.encode()
        else:
            for key, value in (obj.get("data") or {}).items():
                data[key] = value.encode()
            for key, value in (obj.get("binaryData") or {}).items():
                data[key] = base64.b64decode(value)
        return data

    # -- containers ----------------------------------------------------------------------------

    def program_for(self, image):
        program = self.images.get(image, self.images.get("*"))
        if program is None:
            return None
        if isinstance(program, str):
            program = [program]
        program = list(program)
        if (len(program) == 1 and program[0].endswith(".py") and os.path.isfile(program[0])
                and not os.access(program[0], os.X_OK)):
            program = [sys.executable] + program
        return program

    def mounts_of(self, pod, c):
        """[(mountPath, local directory)] of a container's volumeMounts."""
        mounts = []
        for mount in c.spec.get("volumeMounts") or []:
            local = pod.volumes.get(mount["name"])
            if local is None:
                raise RuntimeError(f"volumeMount {mount['name']!r} names no volume of the pod")
            if mount.get("subPath"):
                local = os.path.join(local, mount["subPath"])
                if not os.path.exists(local):
                    os.makedirs(local, exist_ok=True)
            if mount["mountPath"].rstrip("/"):
                mounts.append((mount["mountPath"], local))
        return mounts

    def build_command(self, pod, c):
        """argv, env and working directory of a container, or raises with the reason."""
        substitute = mount_substituter(self.mounts_of(pod, c))
        env = {}
        for source in c.spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, field in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                ref = source.get(kind)
                if ref is not None:
                    data = self.get_data(pod.namespace, field, ref["name"], ref.get("optional", False))
                    for key, value in data.items():
                        env[prefix + key] = value.decode(errors="replace")
        for var in c.spec.get("env") or []:
            name = var["name"]
            if "value" in var or "valueFrom" not in var:
                env[name] = substitute(expand(var.get("value", ""), env))
                continue
            source = var["valueFrom"]
            if "fieldRef" in source:
                env[name] = self.field_value(pod, source["fieldRef"]["fieldPath"])
            elif "configMapKeyRef" in source or "secretKeyRef" in source:
                kind, field = ("configMapKeyRef", "configmaps") if "configMapKeyRef" in source else ("secretKeyRef", "secrets")
                ref = source[kind]
                data = self.get_data(pod.namespace, field, ref["name"], ref.get("optional", False))
                if ref["key"] in data:
                    env[name] = data[ref["key"]].decode(errors="replace")
                elif not ref.get("optional"):
                    raise RuntimeError(f"couldn't find key {ref['key']} in {field[:-1]} {pod.namespace}/{ref['name']}")
            elif "resourceFieldRef" in source:
                env[name] = self.resource_value(c, source["resourceFieldRef"])
            else:
                log(f"pod {pod.key}: env {name}: unsupported valueFrom {list(source)}; left empty")
                env[name] = ""
        program = self.program_for(c.image)
        if program is None:
            return None, env, None
        command = [substitute(part) for part in c.spec.get("command") or []]
        args = [substitute(part) for part in c.spec.get("args") or []]
        command = [expand(part, env) for part in command]
        args = [expand(part, env) for part in args]
        argv = program + command[1:] + args
        workdir = pod.dir
        if c.spec.get("workingDir"):
            candidate = substitute(c.spec["workingDir"])
            if os.path.isdir(candidate):
                workdir = candidate
        return argv, env, workdir

    def field_value(self, pod, path):
        meta, spec = pod.obj["metadata"], pod.obj["spec"]
        simple = {
            "status.podIP": pod.ip, "status.podIPs": pod.ip, "status.hostIP": "127.0.0.1",
            "metadata.name": pod.name, "metadata.namespace": pod.namespace, "metadata.uid": pod.uid,
            "spec.nodeName": pod.node, "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        }
        if path in simple:
            return simple[path] or ""
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return (meta.get(match.group(1)) or {}).get(match.group(2), "")
        if path in ("metadata.labels", "metadata.annotations"):
            return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get(path.split(".")[1]) or {}).items()))
        log(f"pod {pod.key}: unsupported fieldRef {path}; left empty")
        return ""

    def resource_value(self, c, ref):
        resources = c.spec.get("resources") or {}
        kind, resource = ref["resource"].split(".", 1)
        value = (resources.get(kind) or {}).get(resource)
        if value is None and kind == "requests":
            value = (resources.get("limits") or {}).get(resource)
        return str(value) if value is not None else "0"

    def run_container(self, pod, c, now):
        if c.proc is not None:
            code = c.proc.poll()
            if code is None:
                return
            try:
                os.killpg(c.proc.pid, signal.SIGKILL)  # what the container's main process left behind
            except (ProcessLookupError, PermissionError):
                pass
            self.container_exited(pod, c, code, now)
        if c.done or now < c.next_start:
            return
        try:
            argv, env, workdir = self.build_command(pod, c)
        except Exception as error:  # noqa: BLE001
            message = str(error)
            if c.state.get("waiting", {}).get("message") != message:
                log(f"pod {pod.key} container {c.name}: {message}")
                self.event(pod, c, "Warning", "Failed", f"Error: {message}")
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": message}}
            c.next_start = now + 1
            return
        if argv is None:
            if c.pull_failed_at is None:
                c.pull_failed_at = now
                message = f'standin-kubelet: no program for image "{c.image}" (see --images)'
                log(f"pod {pod.key} container {c.name}: {message}")
                self.event(pod, c, "Warning", "Failed", f'Failed to pull image "{c.image}": {message}')
                c.state = {"waiting": {"reason": "ErrImagePull", "message": message}}
            elif now - c.pull_failed_at >= IMAGE_PULL_BACKOFF_AFTER and c.state["waiting"]["reason"] == "ErrImagePull":
                c.state = {"waiting": {"reason": "ImagePullBackOff",
                                       "message": f'Back-off pulling image "{c.image}"'}}
                self.event(pod, c, "Normal", "BackOff", f'Back-off pulling image "{c.image}"')
            c.next_start = now + 1
            return
        c.pull_failed_at = None
        env = {**os.environ, "HOSTNAME": pod.name, **env}
        c.log_path = os.path.join(pod.dir, ".logs", f"{c.name}.{c.restart_count}.log")
        try:
            with open(c.log_path, "ab") as out:
                c.proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as error:
            message = f"failed to start {argv[0]}: {error}"
            log(f"pod {pod.key} container {c.name}: {message}")
            self.event(pod, c, "Warning", "Failed", f"Error: {message}")
            c.proc = None
            self.container_exited(pod, c, 128, now, reason="StartError", message=message)
            return
        c.sent_term = False
        c.started_at = now
        c.container_id = f"standin://{pod.uid[:8]}-{c.name}-{c.restart_count}"
        c.state = {"running": {"startedAt": rfc3339(now)}}
        for probe in c.probes.values():
            probe.reset()
            probe.next_at = now + probe.initial_delay
        log(f"pod {pod.key} container {c.name} started (pid {c.proc.pid}): {' '.join(argv)}")
        if c.restart_count == 0:
            self.event(pod, c, "Normal", "Pulled", f'Container image "{c.image}" already present on machine')
        self.event(pod, c, "Normal", "Created", f"Created container {c.name}")
        self.event(pod, c, "Normal", "Started", f"Started container {c.name}")

    def container_exited(self, pod, c, code, now, reason=None, message=None):
        if code < 0:
            code = 128 - code  # killed by a signal, as a container runtime reports it
        if c.proc is not None:
            c.proc = None
        if reason is None:
            reason = "Completed" if code == 0 else "Error"
        terminated = {"exitCode": code, "reason": reason,
                      "startedAt": rfc3339(c.started_at or now), "finishedAt": rfc3339(now),
                      "containerID": c.container_id or ""}
        if message:
            terminated["message"] = message
        elif c.killed_by_probe:
            terminated["message"] = c.killed_by_probe
        c.killed_by_probe = None
        log(f"pod {pod.key} container {c.name} exited with {code} ({reason})")
        restart = (pod.restart_policy == "Always" and not c.init) or \
            (pod.restart_policy != "Never" and code != 0)
        if c.init and code == 0:
            c.done = True
            c.succeeded = True
            c.state = {"terminated": terminated}
            return
        if not restart:
            c.done = True
            c.succeeded = code == 0
            c.state = {"terminated": terminated}
            return
        ran = now - (c.started_at or now)
        if ran >= BACKOFF_RESET_AFTER:
            c.backoff = BACKOFF_FIRST
        c.last_state = {"terminated": terminated}
        c.restart_count += 1
        c.next_start = now + c.backoff
        c.state = {"waiting": {"reason": "CrashLoopBackOff",
                               "message": f"back-off {c.backoff:g}s restarting failed container={c.name} "
                                          f"pod={pod.name}_{pod.namespace}({pod.uid})"}}
        self.event(pod, c, "Warning", "BackOff", "Back-off restarting failed container")
        c.backoff = min(c.backoff * 2, BACKOFF_MAX)

    # -- probes --------------------------------------------------------------------------------

    def run_probes(self, pod, c, now):
        if not c.running:
            return
        startup = c.probes.get("startup")
        for kind in ("startup", "readiness", "liveness"):
            probe = c.probes.get(kind)
            if probe is None or probe.in_flight or probe.next_at is None or now < probe.next_at:
                continue
            if kind != "startup" and startup is not None and startup.result is not True:
                continue
            if kind == "startup" and probe.result is True:
                continue
            probe.in_flight = True
            probe.next_at = now + probe.period
            threading.Thread(target=self.probe_once, args=(pod, c, probe, c.proc), daemon=True).start()

    def probe_once(self, pod, c, probe, proc):
        ok, detail = False, ""
        try:
            ok, detail = self.check(pod, c, probe)
        except Exception as error:  # noqa: BLE001
            ok, detail = False, str(error)
        with self.lock:
            probe.in_flight = False
            if c.proc is not proc or pod.finished:
                return  # the container restarted or stopped meanwhile
            if ok:
                probe.successes += 1
                probe.failures = 0
                if probe.successes >= probe.success_threshold and probe.result is not True:
                    probe.result = True
                    log(f"pod {pod.key} container {c.name}: {probe.kind} probe succeeded")
            else:
                probe.failures += 1
                probe.successes = 0
                probe.last_error = detail
                if probe.failures == 1 or probe.failures % 10 == 0:
                    self.event(pod, c, "Warning", "Unhealthy", f"{probe.kind.capitalize()} probe failed: {detail}")
                if probe.failures >= probe.failure_threshold and probe.result is not False:
                    probe.result = False
                    log(f"pod {pod.key} container {c.name}: {probe.kind} probe failed: {detail}")
                if probe.failures >= probe.failure_threshold and probe.kind in ("liveness", "startup"):
                    reason = f"Container {c.name} failed {probe.kind} probe, will be restarted"
                    self.event(pod, c, "Normal", "Killing", reason)
                    c.killed_by_probe = reason
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.wake.set()

    def check(self, pod, c, probe):
        spec = probe.spec
        if "httpGet" in spec:
            get = spec["httpGet"]
            port = self.port_of(c, get.get("port"))
            host = get.get("host") or pod.ip
            path = get.get("path") or "/"
            if not path.startswith("/"):
                path = "/" + path
            if get.get("scheme", "HTTP").upper() == "HTTPS":
                conn = http.client.HTTPSConnection(host, port, timeout=probe.timeout,
                                                   context=ssl._create_unverified_context())
            else:
                conn = http.client.HTTPConnection(host, port, timeout=probe.timeout)
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.20")
            url = f"{get.get('scheme', 'HTTP').lower()}://{host}:{port}{path}"
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read(1024)
            except OSError as error:
                return False, f'Get "{url}": {error}'
            finally:
                conn.close()
            if 200 <= response.status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {response.status} {body[:200]!r}"
        if "tcpSocket" in spec:
            port = self.port_of(c, spec["tcpSocket"].get("port"))
            host = spec["tcpSocket"].get("host") or pod.ip
            with socket.create_connection((host, port), timeout=probe.timeout):
                return True, ""
        if "exec" in spec:
            with self.lock:
                argv, env, workdir = self.build_command(pod, c)
                substitute = mount_substituter(self.mounts_of(pod, c))
            # Mount paths are rewritten as in the container's command; a command not found here
            # (other than sh or bash) is taken as the image's program.
            command = [substitute(part) for part in spec["exec"].get("command") or []]
            if command and os.path.basename(command[0]) not in ("sh", "bash") and shutil.which(command[0]) is None:
                program = self.program_for(c.image) or []
                command = program + command[1:]
            done = subprocess.run(command, cwd=workdir, env={**os.environ, **env}, capture_output=True,
                                  timeout=probe.timeout)
            if done.returncode == 0:
                return True, ""
            return False, f"command {command!r} exited with {done.returncode}: {done.stdout[-200:]!r}"
        return True, ""

    def port_of(self, c, port):
        if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise RuntimeError(f"port {port!r} is not a number and names no port of container {c.name}")

    # -- status --------------------------------------------------------------------------------

    def condition(self, pod, kind, ok, reason=None, message=None):
        status = "True" if ok else "False"
        previous = pod.conditions.get(kind)
        condition = {"type": kind, "status": status, "lastProbeTime": None,
                     "lastTransitionTime": rfc3339()}
        if previous is not None and previous["status"] == status:
            condition["lastTransitionTime"] = previous["lastTransitionTime"]
        # None deletes a reason or message an earlier status had (a strategic merge patch merges
        # conditions by type, field by field).
        condition["reason"] = reason if not ok and reason else None
        condition["message"] = message if not ok and message else None
        pod.conditions[kind] = condition
        return condition

    def phase(self, pod):
        if any(c.done and not c.succeeded for c in pod.init_containers):
            return "Failed"
        if not all(c.done for c in pod.init_containers):
            return "Pending"
        if pod.containers and all(c.done for c in pod.containers):
            return "Succeeded" if all(c.succeeded for c in pod.containers) else "Failed"
        started = any(c.running or c.restart_count > 0 or c.done for c in pod.containers)
        return "Running" if started else "Pending"

    def report(self, pod):
        phase = self.phase(pod)
        initialized = all(c.done and c.succeeded for c in pod.init_containers)
        unready = [c.name for c in pod.containers if not c.ready()]
        incomplete = [c.name for c in pod.init_containers if not (c.done and c.succeeded)]
        if phase in ("Succeeded", "Failed"):
            reason, message = "PodCompleted", None
        else:
            reason, message = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
        conditions = [
            self.condition(pod, "Initialized", initialized, "ContainersNotInitialized",
                           f"containers with incomplete status: [{' '.join(incomplete)}]"),
            self.condition(pod, "Ready", not unready and phase == "Running", reason, message),
            self.condition(pod, "ContainersReady", not unready and phase == "Running", reason, message),
        ]
        status = {"phase": phase, "conditions": conditions, "hostIP": "127.0.0.1"}
        if pod.ip:
            status["podIP"] = pod.ip
            status["podIPs"] = [{"ip": pod.ip}]
        if pod.start_time:
            status["startTime"] = rfc3339(pod.start_time)
        if pod.prepare_error:
            status["message"] = pod.prepare_error
        if pod.init_containers:
            status["initContainerStatuses"] = [c.status() for c in pod.init_containers]
        status["containerStatuses"] = [c.status() for c in pod.containers]
        if status == pod.last_sent:
            return
        try:
            self.api.request("PATCH", f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/status",
                             {"metadata": {"uid": pod.uid}, "status": status},
                             content_type="application/strategic-merge-patch+json")
            if pod.last_sent is None or pod.last_sent.get("phase") != phase:
                log(f"pod {pod.key}: phase {phase}")
            if pod.last_sent is not None and not self.ready_of(pod.last_sent) and self.ready_of(status):
                log(f"pod {pod.key}: Ready")
            pod.last_sent = status
        except ApiError as error:
            if error.status == 404 or (error.status == 409 and "UID" in error.body):
                pod.gone = True  # deleted, or replaced by a pod of the same name
            else:
                log(f"pod {pod.key}: status update failed: {error}")
        except OSError as error:
            log(f"pod {pod.key}: status update failed: {error}")

    @staticmethod
    def ready_of(status):
        return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))

    def event(self, pod, c, kind, reason, message):
        """A kubelet-like event; a repeat of the same one counts up instead."""
        field_path = None
        if c is not None:
            field_path = f"spec.initContainers{{{c.name}}}" if c.init else f"spec.containers{{{c.name}}}"
        key = (reason, message, field_path)
        now = rfc3339()
        try:
            known = pod.events.get(key)
            if known is not None:
                known["count"] += 1
                self.api.request("PATCH", f"/api/v1/namespaces/{pod.namespace}/events/{known['name']}",
                                 {"count": known["count"], "lastTimestamp": now},
                                 content_type="application/merge-patch+json")
                return
            name = f"{pod.name}.{uuid.uuid4().hex[:16]}"
            involved = {"kind": "Pod", "namespace": pod.namespace, "name": pod.name, "uid": pod.uid,
                        "apiVersion": "v1", "resourceVersion": pod.obj["metadata"].get("resourceVersion", "")}
            if field_path:
                involved["fieldPath"] = field_path
            self.api.request("POST", f"/api/v1/namespaces/{pod.namespace}/events", {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": pod.namespace},
                "involvedObject": involved, "reason": reason, "message": message, "type": kind,
                "source": {"component": "kubelet", "host": pod.node},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "reportingComponent": "kubelet", "reportingInstance": pod.node,
            })
            pod.events[key] = {"name": name, "count": 1}
        except (ApiError, OSError) as error:
            log(f"pod {pod.key}: could not post event {reason}: {error}")

    # -- stdin commands ------------------------------------------------------------------------

    def read_commands(self):
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            done = threading.Event()
            self.commands.put((line, done))
            self.wake.set()
            done.wait()

    def run_commands(self):
        while True:
            try:
                line, done = self.commands.get_nowait()
            except queue.Empty:
                return
            try:
                answer = self.command(line.split())
                for extra in answer or []:
                    say(extra)
                say("ok")
            except Exception as error:  # noqa: BLE001
                say(f"error: {error}")
            done.set()

    def command(self, words):
        if words[0] == "kill-node" and len(words) == 2:
            name = words[1]
            if name not in self.nodes and self.args.node_prefix + name in self.nodes:
                name = self.args.node_prefix + name
            if name not in self.nodes:
                raise RuntimeError(f"no node {name} here")
            log(f"kill-node {name}: the machine vanishes")
            del self.nodes[name]
            with self.lock:
                victims = [p for p in self.pods.values() if p.node == name and not p.finished]
                for pod in victims:
                    self.forget(pod)
            self.delete_node(name)
            for pod in victims:
                try:
                    self.api.request("DELETE", f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}",
                                     {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                                      "preconditions": {"uid": pod.uid}}, ok=(200, 202))
                except ApiError as error:
                    if error.status not in (404, 409):
                        raise
            return []
        if words[0] == "crash" and len(words) == 2:
            parts = words[1].split("/")
            if len(parts) not in (2, 3):
                raise RuntimeError("usage: crash NAMESPACE/POD[/CONTAINER]")
            with self.lock:
                pods = [p for p in self.pods.values() if p.namespace == parts[0] and p.name == parts[1] and not p.finished]
                if not pods:
                    raise RuntimeError(f"no pod {parts[0]}/{parts[1]} runs here")
                killed = 0
                for c in pods[0].containers:
                    if (len(parts) == 2 or c.name == parts[2]) and c.running:
                        os.killpg(c.proc.pid, signal.SIGKILL)
                        killed += 1
                if not killed:
                    raise RuntimeError("no running container to crash")
                log(f"crash {words[1]}: killed {killed} container(s)")
            return []
        if words[0] == "pods" and len(words) == 1:
            with self.lock:
                return [f"{p.key} {p.ip} {self.phase(p)}" for p in self.pods.values() if not p.finished]
        raise RuntimeError(f"unknown command {' '.join(words)!r} (kill-node NAME, crash NS/POD[/CONTAINER], pods)")

    # -- shutting down -------------------------------------------------------------------------

    def shutdown(self):
        self.stopping = True
        log("stopping: killing processes, deleting pods and nodes")
        with self.lock:
            pods = list(self.pods.values())
            for pod in pods:
                self.stop_pod(pod, time.time() + 2)
        deadline = time.time() + 2
        while time.time() < deadline and any(self.any_running(p) for p in pods):
            time.sleep(0.05)
        with self.lock:
            for pod in pods:
                if not pod.finished:
                    self.forget(pod)
        try:
            listed = self.api.request("GET", "/api/v1/pods")
            for obj in listed.get("items", []):
                if self.mine(obj):
                    meta = obj["metadata"]
                    try:
                        self.api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                                         {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
                                         ok=(200, 202))
                    except ApiError as error:
                        if error.status != 404:
                            log(f"could not delete pod {meta['namespace']}/{meta['name']}: {error}")
        except (ApiError, OSError) as error:
            log(f"could not list pods to delete them: {error}")
        for name in list(self.nodes):
            self.delete_node(name)


# --- the log server ---------------------------------------------------------------------------

class LogHandler(http.server.BaseHTTPRequestHandler):
    kubelet = None

    def log_message(self, fmt, *args):
        log("log server: " + fmt % args)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        if parts == ["healthz"]:
            return self.answer(200, b"ok")
        if len(parts) != 4 or parts[0] != "containerLogs":
            return self.answer(404, b"standin-kubelet serves /containerLogs/NAMESPACE/POD/CONTAINER only\n")
        _, namespace, name, container = parts
        kubelet = self.kubelet
        with kubelet.lock:
            pod = next((p for p in kubelet.pods.values()
                        if p.namespace == namespace and p.name == name and not p.finished), None)
            c = next((c for c in pod.all_containers() if c.name == container), None) if pod else None
            if c is None:
                return self.answer(404, f'pod "{name}" or container "{container}" not found\n'.encode())
            previous = query.get("previous", ["false"])[0] == "true"
            restart = c.restart_count - 1 if previous else c.restart_count
            if restart < 0 or (previous and not c.last_state):
                return self.answer(400, f'previous terminated container "{container}" in pod "{name}" not found\n'.encode())
            path = os.path.join(pod.dir, ".logs", f"{container}.{restart}.log")
            if not previous and c.log_path is None:
                return self.answer(400, f'container "{container}" in pod "{name}" is waiting to start: '
                                        f'{next(iter(c.state.get("waiting", {"": ""}).values()), "")}\n'.encode())
        follow = query.get("follow", ["false"])[0] == "true" and not previous
        tail = query.get("tailLines", [None])[0]
        limit = query.get("limitBytes", [None])[0]
        limit = int(limit) if limit else None
        try:
            data = open(path, "rb").read()
        except FileNotFoundError:
            data = b""
        offset = len(data)
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail):]) if int(tail) > 0 else b""
        if limit is not None:
            data = data[:limit]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if not follow:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Connection", "close")
        self.end_headers()
        sent = len(data)
        self.wfile.write(data)
        self.wfile.flush()
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                while limit is None or sent < limit:
                    chunk = f.read(65536)
                    if chunk:
                        if limit is not None:
                            chunk = chunk[:limit - sent]
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        sent += len(chunk)
                        continue
                    with kubelet.lock:
                        alive = not pod.finished and c.log_path == path and c.running
                    if not alive:
                        rest = f.read()
                        if rest:
                            self.wfile.write(rest if limit is None else rest[:limit - sent])
                        break
                    time.sleep(0.2)
        except (OSError, ssl.SSLError):
            pass  # the client went away
        self.close_connection = True

    def answer(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LogServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def start_log_server(kubelet):
    cert = os.path.join(kubelet.work_dir, "kubelet.crt")
    key = os.path.join(kubelet.work_dir, "kubelet.key")
    if not (os.path.exists(cert) and os.path.exists(key)):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
                        "-subj", "/CN=standin-kubelet", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
    LogHandler.kubelet = kubelet
    server = LogServer(("127.0.0.1", 0), LogHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    kubelet.log_port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"log server on https://127.0.0.1:{kubelet.log_port}")
    return server


# --- main -------------------------------------------------------------------------------------

def load_images(value):
    if value.startswith("@"):
        value = open(value[1:]).read()
    images = json.loads(value)
    if not isinstance(images, dict):
        raise SystemExit("--images: a JSON object from image to program")
    return images


def make_api(args):
    server, token, ca, ca_data, insecure = args.server, args.token, args.ca, None, False
    if args.kubeconfig:
        config = read_kubeconfig(args.kubeconfig)
        server = server or config["server"]
        token = token or config["token"]
        if not ca:
            ca, ca_data, insecure = config["ca"], config["ca_data"], config["insecure"]
    if not server:
        raise SystemExit("no API server: give --kubeconfig or --server")
    return Api(server, token, ca=ca, ca_data=ca_data, insecure=insecure)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="standin-kubelet.py",
        description="A TEST STAND-IN for the kubelet (not a kubelet): registers Nodes with a real "
                    "kube-apiserver and runs the pods bound to them as local processes, each on a "
                    "loopback address of its own, with mount paths rewritten to local directories. "
                    "stdin commands: 'kill-node NAME', 'crash NAMESPACE/POD[/CONTAINER]', 'pods'; "
                    "each answered by 'ok' (or 'error: ...') on stdout. More in the module's docstring.")
    parser.add_argument("--kubeconfig", help="kubeconfig with server, certificate-authority and token")
    parser.add_argument("--server", help="API server URL (instead of or overriding --kubeconfig)")
    parser.add_argument("--token", help="bearer token (instead of or overriding --kubeconfig)")
    parser.add_argument("--ca", help="CA file to verify the API server (instead of or overriding --kubeconfig)")
    parser.add_argument("--nodes", required=True, help="JSON list of Node objects to register")
    parser.add_argument("--node-prefix", default="", help="prefix for the Nodes' names (unique nodes per test)")
    parser.add_argument("--node-label", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra label on every Node (repeatable)")
    parser.add_argument("--images", default="{}",
                        help='JSON map from container image to a local program (path or JSON list), '
                             '"*" the default; @FILE reads it from a file (default: {}: no images)')
    parser.add_argument("--work-dir", help="where pods' directories and logs go (default: a temporary "
                                           "directory, removed on exit)")
    parser.add_argument("--pod-cidr", default="127.0.0.0/24",
                        help="loopback network of the pods' addresses, from its second host address on "
                             "(default: 127.0.0.0/24: 127.0.0.2, 127.0.0.3, ...)")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    temporary = None
    if not args.work_dir:
        temporary = args.work_dir = tempfile.mkdtemp(prefix="standin-kubelet.")
    kubelet = StandinKubelet(args)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
        kubelet.stopping = True
        kubelet.wake.set()

    # A parent may start us with these signals blocked (Foundation's Process hands its spawning
    # thread's mask on, and Swift's worker threads block SIGTERM): unblock them, or a test's
    # terminate would wait out its deadline. The pods' processes inherit the cleared mask.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start_log_server(kubelet)
    kubelet.register_nodes()
    watching = threading.Event()
    threading.Thread(target=kubelet.watch_pods, args=(watching,), daemon=True).start()
    while not watching.wait(0.1):
        if stop.is_set():
            break
    if not stop.is_set():
        say("standin-kubelet ready")
        threading.Thread(target=kubelet.read_commands, daemon=True).start()
        try:
            kubelet.run_loop()
        finally:
            kubelet.stopping = True
    kubelet.shutdown()
    if temporary:
        shutil.rmtree(temporary, ignore_errors=True)
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

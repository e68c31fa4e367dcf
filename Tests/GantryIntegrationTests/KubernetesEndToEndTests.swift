import AsyncHTTPClient
import Foundation
import GantryCommands
import GantryCore
import GantryKubernetes
import GantryServing
import GantryTestSupport
import Logging
import NIOCore
import Testing

/// Gantry with `--runtime kubernetes` against the test control plane: a model uploaded to the
/// registry, a deployment on two H100 GPUs, its pod placed by the real kube-scheduler and run by
/// the stand-in kubelet (the init container is the real `gantry fetch-model`, the engine the real
/// llama-server with the demo model), chat through the gateway, a crash restarted in place, a
/// rolling update with no failed request, a deployment the cluster cannot hold, and a restart of Gantry that adopts the running pod.
/// Part of KubernetesClusterTests so that it never runs beside that suite's nodes.
extension KubernetesClusterTests {
    static let llamaImage = "gantry-test/llama-server"
    static let gatewaySecret = "kubernetes-gateway-secret-for-tests-0123456789"

    /// The `gantry` executable built beside the tests (the init container's program).
    static var gantryExecutable: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/gantry").path
    }

    static func json(_ body: [UInt8]) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
    }

    /// Polls `url` until `condition` holds on its JSON, or `seconds` pass.
    @discardableResult
    static func poll(
        _ api: LiveAPI, _ url: String, seconds: Int = 120, _ what: String, until condition: ([String: Any]) -> Bool
    ) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var last: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            last = json(try await api.send("GET", url).body)
            if condition(last) { return last }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("\(what) never happened: \(last)")
        throw GantryError(.internal, "timed out waiting: \(what)")
    }

    static func instances(_ deployment: [String: Any]) -> [[String: Any]] {
        deployment["instances"] as? [[String: Any]] ?? []
    }

    static func events(_ api: LiveAPI, _ base: String, _ name: String) async throws -> [[String: Any]] {
        json(try await api.send("GET", "\(base)/api/v1/deployments/\(name)/events?limit=200").body)["data"]
            as? [[String: Any]] ?? []
    }

    /// What a test on the cluster works with: the stand-in kubelet's nodes, the administrator's
    /// client, the namespace Gantry's pods go to, and a Gantry serving there with the demo model
    /// uploaded as versions 1 and 2.
    struct ClusterGantry: Sendable {
        let standin: StandinKubelet
        let kube: KubernetesClient
        let namespace: String
        let base: String
        let api: LiveAPI
    }

    /// Runs `body` with Gantry on the cluster (`--runtime kubernetes`, Gantry's own RBAC user), on
    /// nodes of a stand-in kubelet that maps the llama.cpp image to the cached llama-server and
    /// Gantry's image to the built `gantry`; everything is stopped and deleted after it.
    func withGantryOnCluster(_ body: @Sendable (ClusterGantry) async throws -> Void) async throws {
        let llamaServer = try TestEnvironment.require(TestEnvironment.llamaServer)
        let model = try TestEnvironment.require(TestEnvironment.model)
        try await withStandin(images: [Self.llamaImage: llamaServer, "gantry:latest": Self.gantryExecutable]) { standin in
            let data = try TemporaryDirectory()
            try await withNamespace { kube, namespace in
                let port = try FreePort.find()
                try await TestServer.running(port: port, flags: gantryFlags(namespace: namespace, port: port, data: data.path)) {
                    test, base in
                    let api = LiveAPI(key: test.adminKey)
                    try await Self.uploadDemoModel(api, base, model: model)
                    try await body(ClusterGantry(standin: standin, kube: kube, namespace: namespace, base: base, api: api))
                }
            }
        }
    }

    func gantryFlags(namespace: String, port: Int, data: String) -> [GantrySetting: String] {
        [
            .runtime: "kubernetes", .kubeconfig: gantry, .kubeNamespace: namespace, .kubeReadinessPeriod: "1",
            .kubeRegistryURL: "http://127.0.0.1:\(port)", .kubeImages: "llama-cpp=\(Self.llamaImage)",
            .dataDir: data, .databaseURL: "sqlite://\(data)/gantry.sqlite", .introspectionSecret: Self.gatewaySecret,
        ]
    }

    @Test(
        "a deployment runs as a pod the scheduler places on the right GPUs, serves chat through the control and a gateway elsewhere, restarts in place, rolls to v2 with none failed, is adopted",
        .tags(.llamaCpp, .python))
    func deploymentOnCluster() async throws {
        let llamaServer = try TestEnvironment.require(TestEnvironment.llamaServer)
        let model = try TestEnvironment.require(TestEnvironment.model)
        try await withStandin(images: [Self.llamaImage: llamaServer, "gantry:latest": Self.gantryExecutable]) { standin in
            let data = try TemporaryDirectory()
            try await withNamespace { kube, namespace in
                let port = try FreePort.find()
                let flags = gantryFlags(namespace: namespace, port: port, data: data.path)
                let (podName, adminKey) = try await TestServer.running(port: port, flags: flags) { test, base in
                    let api = LiveAPI(key: test.adminKey)
                    try await Self.uploadDemoModel(api, base, model: model)
                    let started = ContinuousClock.now
                    let created = try await api.send(
                        "POST", "\(base)/api/v1/deployments",
                        #"{"name":"chat","model":"smollm2","version":"1","resources":{"gpus":2,"gpu_name":"h100"}}"#)
                    #expect(created.status == 201, "\(String(decoding: created.body, as: UTF8.self))")
                    let ready = try await Self.poll(api, "\(base)/api/v1/deployments/chat", "the deployment ready") {
                        Self.instances($0).first?["state"] as? String == "ready"
                    }
                    let deployToReady = ContinuousClock.now - started
                    print("[kubernetes] deploy to ready (scheduling, 94 MiB model fetch, engine load): \(deployToReady)")
                    let instance = try #require(Self.instances(ready).first)
                    #expect(instance["node"] as? String == standin.node("gpu-h100"), "\(instance)")
                    #expect((instance["endpoint"] as? String)?.hasPrefix("http://127.0.0.") == true, "\(instance)")

                    // The pod as the cluster has it: two GPUs, on the H100 node, owned by Gantry.
                    let pods = try await kube.list(
                        Pod.self, namespace: namespace, labelSelector: "app.kubernetes.io/managed-by=gantry")
                    let pod = try #require(pods.items.first, "no pod in \(namespace)")
                    #expect(pods.items.count == 1)
                    #expect(pod.spec?.nodeName == standin.node("gpu-h100"))
                    #expect(pod.spec?.containers.first?.resources?.limits?["nvidia.com/gpu"] == "2")
                    #expect(pod.spec?.initContainers?.first?.env?.first?.value?.hasPrefix("gmf.") == true)

                    // A chat completion through the gateway reaches the engine in the pod.
                    try await Self.expectChat(api, base)
                    // So does one through a gateway process on another address: it routes to the pod's
                    // own address, which any host of the cluster reaches, not to the control's host.
                    try await GatewayRoleTests.runningGateway(
                        controlURL: base, secret: Self.gatewaySecret, database: "sqlite://\(data.path)/gantry.sqlite",
                        port: try FreePort.find(), directory: data.path, host: "127.0.0.250"
                    ) { gatewayBase in
                        try await Self.expectChat(api, gatewayBase)
                    }

                    // The engine's log comes through pods/log (the kubelet's log endpoint), and its metrics
                    // from the pod's own address.
                    let instanceURL = "\(base)/api/v1/deployments/chat/instances/\(try #require(instance["id"] as? String))"
                    let log = try await api.send("GET", "\(instanceURL)/logs?max_bytes=65536")
                    #expect(log.status == 200 && String(decoding: log.body, as: UTF8.self).contains("llama"), "\(log.status)")
                    let metrics = try await api.send("GET", "\(instanceURL)/metrics")
                    #expect(
                        metrics.status == 200 && String(decoding: metrics.body, as: UTF8.self).contains("llamacpp:"),
                        "\(metrics.status)")

                    // The cluster's nodes, as Gantry lists them, count the pod's GPUs as requested.
                    try await Self.poll(api, "\(base)/api/v1/nodes", seconds: 10, "the H100 node's 2 GPUs requested") {
                        let nodes = $0["data"] as? [[String: Any]] ?? []
                        let h100 = nodes.first { $0["name"] as? String == standin.node("gpu-h100") }
                        return h100?["gpus_requested"] as? Int == 2 && (h100?["gpus"] as? [Any])?.count == 8
                    }

                    // The engine crashes: the kubelet restarts it in place and Gantry counts it.
                    let name = try #require(pod.metadata.name)
                    try await standin.command("crash \(namespace)/\(name)/engine")
                    try await Self.poll(api, "\(base)/api/v1/deployments/chat", "the restart counted and ready again") {
                        let first = Self.instances($0).first
                        return (first?["restarts"] as? Int ?? 0) >= 1 && first?["state"] as? String == "ready"
                    }
                    #expect(try await Self.events(api, base, "chat").contains { $0["kind"] as? String == "instance_restarted" })
                    let same = try await kube.list(
                        Pod.self, namespace: namespace, labelSelector: "app.kubernetes.io/managed-by=gantry")
                    #expect(same.items.map(\.metadata.name) == [name], "the restart replaced the pod")
                    // The instance stays `ready` but out of routing until the kubelet's probe passes
                    // again; then it serves (the restarted engine loads its model first).
                    try await Self.expectServingAgain(api, base)

                    // A rolling update to version 2 under back-to-back requests: a new pod, none failed.
                    #expect(try await api.send("PATCH", "\(base)/api/v1/deployments/chat", #"{"version":"2"}"#).status == 200)
                    var answered = 0
                    var failed: [String] = []
                    while true {
                        let answer = try await api.send(
                            "POST", "\(base)/v1/chat/completions",
                            #"{"model":"chat","messages":[{"role":"user","content":"Hi"}],"max_tokens":2}"#)
                        if answer.status == 200 {
                            answered += 1
                        } else {
                            failed.append(String(decoding: answer.body, as: UTF8.self))
                        }
                        let now = Self.json(try await api.send("GET", "\(base)/api/v1/deployments/chat").body)
                        if now["version"] as? String == "2", now["status"] as? String == "ready", Self.instances(now).count == 1 {
                            break
                        }
                    }
                    #expect(failed.isEmpty && answered > 0, "\(answered) answered, failed: \(failed)")
                    let updated = try await kube.list(
                        Pod.self, namespace: namespace, labelSelector: "app.kubernetes.io/managed-by=gantry")
                    let current = try #require(updated.items.first { $0.metadata.deletionTimestamp == nil }?.metadata.name)
                    #expect(current != name, "the update kept the old pod")
                    try await Self.waitForPods(kube, namespace, count: 1)

                    // More H100s than are free: the scheduler's reason reaches the deployment.
                    let big = try await api.send(
                        "POST", "\(base)/api/v1/deployments",
                        #"{"name":"big","model":"smollm2","version":"1","resources":{"gpus":7,"gpu_name":"h100"}}"#)
                    #expect(big.status == 201, "\(String(decoding: big.body, as: UTF8.self))")
                    let blocked = try await Self.poll(api, "\(base)/api/v1/deployments/big", "the scheduler's verdict") {
                        Self.instances($0).first?["state"] as? String == "placing"
                            && (Self.instances($0).first?["state_message"] as? String ?? "").contains(
                                "Insufficient nvidia.com/gpu")
                    }
                    #expect(
                        try await Self.events(api, base, "big").contains {
                            $0["kind"] as? String == "scale_blocked"
                                && ($0["message"] as? String ?? "").contains("Insufficient nvidia.com/gpu")
                        }, "\(blocked)")
                    #expect(try await api.send("DELETE", "\(base)/api/v1/deployments/big").status == 202)
                    try await Self.waitForPods(kube, namespace, count: 1)
                    return (current, test.adminKey)
                }

                // Gantry restarts on the same store: it adopts the running pod instead of making another.
                try await TestServer.running(port: port, flags: flags, adminKey: adminKey) { _, base in
                    let api = LiveAPI(key: adminKey)
                    let deployment = try await Self.poll(api, "\(base)/api/v1/deployments/chat", "the adopted instance ready") {
                        Self.instances($0).first?["state"] as? String == "ready"
                    }
                    #expect(Self.instances(deployment).count == 1)
                    #expect(
                        try await Self.events(api, base, "chat").contains { $0["kind"] as? String == "instance_adopted" })
                    let pods = try await kube.list(
                        Pod.self, namespace: namespace, labelSelector: "app.kubernetes.io/managed-by=gantry")
                    #expect(pods.items.map(\.metadata.name) == [podName], "the restart made a new pod")
                    try await Self.expectServingAgain(api, base)
                    #expect(try await api.send("DELETE", "\(base)/api/v1/deployments/chat").status == 202)
                    try await Self.waitForPods(kube, namespace, count: 0)
                }
            }
        }
    }

    @Test(
        "a deployment the cluster cannot hold waits with the scheduler's reason and goes ahead once GPUs free; an image that cannot be pulled is rolled back",
        .tags(.llamaCpp, .python))
    func capacityAndBadImage() async throws {
        // No program for vLLM's image: the stand-in reports ErrImagePull, as a kubelet would.
        try await withGantryOnCluster { cluster in
            let (kube, namespace, base, api) = (cluster.kube, cluster.namespace, cluster.base, cluster.api)
            let deployments = "\(base)/api/v1/deployments"
            // 3 of the A10G node's 4 GPUs, then 2 more: the second waits for the scheduler.
            #expect(
                try await api.send(
                    "POST", deployments,
                    #"{"name":"a","model":"smollm2","version":"1","resources":{"gpus":3,"gpu_name":"a10g"}}"#
                ).status == 201)
            try await Self.poll(api, "\(deployments)/a", "a ready") { $0["status"] as? String == "ready" }
            #expect(
                try await api.send(
                    "POST", deployments,
                    #"{"name":"b","model":"smollm2","version":"1","resources":{"gpus":2,"gpu_name":"a10g"}}"#
                ).status == 201)
            try await Self.poll(api, "\(deployments)/b", "b waiting for the scheduler") {
                let first = Self.instances($0).first
                return first?["state"] as? String == "placing"
                    && (first?["state_message"] as? String ?? "").contains("Insufficient nvidia.com/gpu")
            }
            // Deleting a frees its GPUs: b goes ahead by itself.
            #expect(try await api.send("DELETE", "\(deployments)/a").status == 202)
            let placed = try await Self.poll(api, "\(deployments)/b", "b ready once GPUs freed") {
                $0["status"] as? String == "ready"
            }
            let node = Self.instances(placed).first?["node"] as? String
            #expect(node?.hasSuffix("gpu-a10g") == true, "\(placed)")

            // A new revision whose image cannot be pulled fails to start and is rolled back;
            // the old instance serves throughout.
            #expect(try await api.send("PATCH", "\(deployments)/b", #"{"engine":"vllm"}"#).status == 200)
            try await Self.poll(api, "\(deployments)/b/events?limit=200", seconds: 120, "the roll-back") { answer in
                (answer["data"] as? [[String: Any]] ?? []).contains { $0["kind"] as? String == "rolled_back" }
            }
            let events = try await Self.events(api, base, "b")
            #expect(
                events.contains {
                    $0["kind"] as? String == "instance_crashed"
                        && ($0["message"] as? String ?? "").contains("ErrImagePull")
                }, "\(events.map { $0["message"] ?? "" })")
            try await Self.poll(api, "\(deployments)/b", "b back on its ready revision") {
                $0["status"] as? String == "ready" && Self.instances($0).count == 1
            }
            let answer = try await api.send(
                "POST", "\(base)/v1/chat/completions",
                #"{"model":"b","messages":[{"role":"user","content":"Hi"}],"max_tokens":2}"#)
            #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
            #expect(try await api.send("DELETE", "\(deployments)/b").status == 202)
            try await Self.waitForPods(kube, namespace, count: 0)
        }
    }

    @Test(
        "a cordoned node's deleted pod comes back on another node; a namespace being deleted is reported, not crashed on",
        .tags(.llamaCpp, .python))
    func cordonAndDeletedNamespace() async throws {
        try await withGantryOnCluster { cluster in
            let (standin, kube, namespace, base, api) = (
                cluster.standin, cluster.kube, cluster.namespace, cluster.base, cluster.api
            )
            let url = "\(base)/api/v1/deployments/chat"
            #expect(
                try await api.send(
                    "POST", "\(base)/api/v1/deployments",
                    #"{"name":"chat","model":"smollm2","version":"1","resources":{"gpus":1}}"#
                ).status == 201)
            let ready = try await Self.poll(api, url, "ready") { $0["status"] as? String == "ready" }
            let first = try #require(Self.instances(ready).first?["node"] as? String)
            #expect(first.hasPrefix(standin.nodePrefix), "\(first)")

            // Cordon its node and delete its pod (a drain): the instance comes back elsewhere.
            _ = try await kube.apply(Node(metadata: ObjectMeta(name: first), spec: NodeSpec(unschedulable: true)))
            let pod = try #require(
                try await kube.list(
                    Pod.self, namespace: namespace, labelSelector: "app.kubernetes.io/managed-by=gantry"
                ).items.first?.metadata.name)
            try await kube.delete(Pod.self, name: pod, namespace: namespace, gracePeriodSeconds: 0)
            let moved = try await Self.poll(api, url, "ready on another node") {
                let instance = Self.instances($0).first
                return instance?["state"] as? String == "ready" && instance?["node"] as? String != first
            }
            let second = Self.instances(moved).first?["node"] as? String
            #expect(second?.hasPrefix(standin.nodePrefix) == true && second != first, "\(moved)")
            #expect(try await Self.events(api, base, "chat").contains { $0["kind"] as? String == "instance_crashed" })
            _ = try await kube.apply(Node(metadata: ObjectMeta(name: first), spec: NodeSpec(unschedulable: false)))

            // The namespace is deleted under Gantry (with no namespace controller here, its
            // pods are deleted by hand): new pods are refused, and the instance says why.
            try await kube.delete(Namespace.self, name: namespace, namespace: nil)
            for item in try await kube.list(Pod.self, namespace: namespace).items {
                if let name = item.metadata.name {
                    try await kube.delete(Pod.self, name: name, namespace: namespace, gracePeriodSeconds: 0)
                }
            }
            try await Self.poll(api, "\(url)/events?limit=200", "the refusal reported") { answer in
                (answer["data"] as? [[String: Any]] ?? []).contains {
                    ($0["message"] as? String ?? "").contains("being terminated")
                }
            }
            #expect(try await api.send("GET", "\(base)/healthz").status == 200)
            #expect(try await api.send("DELETE", url).status == 202)
        }
    }

    @Test("start-up with a user lacking a grant stops, naming the server, the user and the permission")
    func startupRefused() async throws {
        let data = try TemporaryDirectory()
        var flags = gantryFlags(namespace: "default", port: 1, data: data.path)
        flags[.kubeconfig] = limited
        do {
            _ = try await TestServer.make(flags: flags)
            Issue.record("Gantry started on a cluster it may not read")
        } catch {
            let text = "\(error)"
            #expect(
                text.contains("Kubernetes runtime") && text.contains(#"User "limited" cannot list resource "nodes""#), "\(text)")
            #expect(text.contains(try TestEnvironment.require("GANTRY_TEST_KUBE_URL")), "\(text)")
        }
    }

    /// Runs kubectl (the administrator's kubeconfig) and returns its exit status and output.
    func kubectl(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        let directory = try TemporaryDirectory()
        let log = directory.path + "/kubectl.log"
        let process = try ChildProcess.spawn(["kubectl", "--kubeconfig", admin] + arguments, outputPath: log)
        let status = await process.wait()
        return (status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    @Test("deploy/kubernetes: the API server accepts every manifest, and its RBAC grants what Gantry uses, no more")
    func deployManifests() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let kube = try client(admin)
        defer { Task { try? await kube.shutdown() } }
        _ = try await kube.apply(Namespace(name: "gantry"))
        let dryRun = try await kubectl(["apply", "--dry-run=server", "-k", root + "/deploy/kubernetes"])
        #expect(dryRun.status == 0, "\(dryRun.output)")
        for kind in ["deployment.apps/gantry-control", "deployment.apps/gantry-gateway", "service/gantry", "role.rbac"] {
            #expect(dryRun.output.contains(kind), "\(kind) missing: \(dryRun.output)")
        }
        // The RBAC for real, then asked as the control role's ServiceAccount.
        let rbac = try await kubectl(["apply", "-n", "gantry", "-f", root + "/deploy/kubernetes/rbac.yaml"])
        #expect(rbac.status == 0, "\(rbac.output)")
        let control = "system:serviceaccount:gantry:gantry-control"
        let needed: [[String]] = [
            ["list", "nodes"], ["watch", "nodes"], ["list", "pods", "--all-namespaces"], ["watch", "pods", "--all-namespaces"],
            ["create", "pods", "-n", "gantry"], ["patch", "pods", "-n", "gantry"], ["delete", "pods", "-n", "gantry"],
            ["get", "pods/log", "-n", "gantry"], ["create", "events", "-n", "gantry"],
        ]
        for permission in needed {
            let answer = try await kubectl(["auth", "can-i", "--as", control] + permission)
            // The verdict is the last line (warnings such as "not namespace scoped" come first).
            #expect(answer.output.split(separator: "\n").last?.hasPrefix("yes") == true, "\(permission): \(answer.output)")
        }
        let refused: [[String]] = [
            ["create", "pods", "-n", "default"], ["delete", "nodes"], ["get", "secrets", "-n", "gantry"],
            ["list", "pods", "--as", "system:serviceaccount:gantry:gantry-gateway", "-n", "gantry"],
        ]
        for permission in refused {
            let arguments = permission.contains("--as") ? permission : ["--as", control] + permission
            let answer = try await kubectl(["auth", "can-i"] + arguments)
            #expect(answer.output.split(separator: "\n").last?.hasPrefix("no") == true, "\(permission): \(answer.output)")
        }
        _ = try? await kubectl(["delete", "-n", "gantry", "-f", root + "/deploy/kubernetes/rbac.yaml"])
        _ = try? await kube.delete(Namespace.self, name: "gantry", namespace: nil)
    }

    /// The demo model as versions 1 and 2 of `smollm2`, its file uploaded into the registry (a cluster's
    /// nodes fetch it from there; a file:// artifact is on Gantry's disk only).
    static func uploadDemoModel(_ api: LiveAPI, _ base: String, model: String) async throws {
        #expect(try await api.send("POST", "\(base)/api/v1/models", #"{"name":"smollm2","task":"chat"}"#).status == 201)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: model)))
        for number in 1...2 {
            let version = try await api.send(
                "POST", "\(base)/api/v1/models/smollm2/versions", #"{"format":"gguf","context_limit":1024}"#)
            #expect(version.status == 201)
            let files = "\(base)/api/v1/models/smollm2/versions/\(number)/files/"
            #expect(try await api.upload(files + "model.gguf", TestChunks(bytes: bytes), length: bytes.count).status == 201)
            #expect(try await api.send("POST", "\(base)/api/v1/models/smollm2/versions/\(number)/complete").status == 200)
        }
    }

    static func expectChat(_ api: LiveAPI, _ base: String) async throws {
        let answer = try await api.send(
            "POST", "\(base)/v1/chat/completions",
            #"{"model":"chat","messages":[{"role":"user","content":"Say hi"}],"max_tokens":4}"#)
        #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
        let usage = json(answer.body)["usage"] as? [String: Any]
        #expect((usage?["completion_tokens"] as? Int ?? 0) > 0, "\(String(decoding: answer.body, as: UTF8.self))")
    }

    /// Sends chat completions until one succeeds (60 s at most): a restarted engine is back in
    /// routing once its readiness probe passes and the next reconcile pass sees it.
    static func expectServingAgain(_ api: LiveAPI, _ base: String) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        var last = ""
        while ContinuousClock.now < deadline {
            let answer = try await api.send(
                "POST", "\(base)/v1/chat/completions",
                #"{"model":"chat","messages":[{"role":"user","content":"Say hi"}],"max_tokens":4}"#)
            if answer.status == 200 { return }
            last = "\(answer.status) \(String(decoding: answer.body, as: UTF8.self))"
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("the restarted engine never served again: \(last)")
    }

    /// Waits (30 s at most) until `count` Gantry pods are left in the namespace.
    static func waitForPods(_ kube: KubernetesClient, _ namespace: String, count: Int) async throws {
        var left = -1
        for _ in 0..<300 {
            left = try await kube.list(Pod.self, namespace: namespace, labelSelector: "app.kubernetes.io/managed-by=gantry")
                .items.count
            if left == count { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("\(left) Gantry pods left in \(namespace), not \(count)")
    }
}

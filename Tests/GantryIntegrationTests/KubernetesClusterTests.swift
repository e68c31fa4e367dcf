import AsyncHTTPClient
import Foundation
import GantryCore
import GantryKubernetes
import GantryResources
import GantryServing
import GantryTestSupport
import Logging
import Testing

/// The Kubernetes client, informers and node source against a real control plane: kube-apiserver
/// and kube-scheduler 1.20.2 with etcd, started by scripts/test.sh (scripts/lib.sh
/// start_kubernetes_control_plane). Nodes come from the stand-in kubelet. Serialized: Nodes are
/// cluster-wide, and the scheduler would place one test's pods on another's nodes.
@Suite(
    "Kubernetes: client, informers and nodes against a real kube-apiserver and kube-scheduler", .serialized,
    .tags(.kubernetes))
struct KubernetesClusterTests {
    let admin: String
    let gantry: String
    let limited: String
    let logger = Logger(label: "kubernetes-test")

    init() throws {
        admin = try TestEnvironment.require(TestEnvironment.kubeconfigAdmin)
        gantry = try TestEnvironment.require(TestEnvironment.kubeconfigGantry)
        limited = try TestEnvironment.require(TestEnvironment.kubeconfigLimited)
    }

    func client(_ kubeconfig: String) throws -> KubernetesClient {
        try KubernetesClient(config: try KubeConfig.load(path: kubeconfig), logger: logger)
    }

    /// Compacts etcd's history up to its current revision, as a long-lived cluster does every few
    /// minutes: a watch from an older version then ends with 410 Gone (pods bypass the apiserver's
    /// watch cache in the test control plane, which would otherwise still serve old versions).
    func compactEtcd(upTo revision: String) async throws {
        let etcd = try TestEnvironment.require(TestEnvironment.etcdURL)
        var request = HTTPClientRequest(url: etcd + "/v3/kv/compaction")
        request.method = .POST
        request.body = .bytes(.init(string: #"{"revision":"\#(revision)","physical":true}"#))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 16)
        #expect(response.status == .ok, "etcd compaction: \(String(buffer: body))")
    }

    /// A stand-in kubelet for `body`, stopped after it (its Nodes and pods deleted).
    func withStandin<T>(images: [String: String], _ body: (StandinKubelet) async throws -> T) async throws -> T {
        let standin = try await StandinKubelet.start(kubeconfig: admin, images: images)
        do {
            let result = try await body(standin)
            await standin.stop()
            return result
        } catch {
            await standin.stop()
            throw error
        }
    }

    /// A fresh namespace for one test, deleted after it (its pods are removed by the test).
    func withNamespace(_ body: (KubernetesClient, String) async throws -> Void) async throws {
        let client = try client(admin)
        let namespace = "gantry-t-\(UInt32.random(in: 0...UInt32.max))"
        try await client.apply(Namespace(name: namespace))
        do {
            try await body(client, namespace)
        } catch {
            _ = try? await client.delete(Namespace.self, name: namespace, namespace: nil)
            try? await client.shutdown()
            throw error
        }
        _ = try? await client.delete(Namespace.self, name: namespace, namespace: nil)
        try await client.shutdown()
    }

    static func pod(_ name: String, namespace: String, gpus: Int, labels: [String: String] = ["test": "client"]) -> Pod {
        var container = Container(name: "engine", image: "gantry-test-image")
        container.resources = ResourceRequirements(limits: ["nvidia.com/gpu": String(gpus)])
        var spec = PodSpec(containers: [container])
        spec.terminationGracePeriodSeconds = 0
        return Pod(metadata: ObjectMeta(name: name, namespace: namespace, labels: labels), spec: spec)
    }

    /// A stand-in for NVIDIA's dcgm-exporter on `node`: Python's HTTP server serving
    /// fixtures/dcgm-exporter (its `metrics` file) on the pod's address, port 9400.
    static func dcgmExporterPod(namespace: String, node: String) -> Pod {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/dcgm-exporter").path
        var container = Container(name: "exporter", image: "gantry-test/dcgm-exporter")
        container.command = ["python3", "-m", "http.server", "9400", "--bind", "$(POD_IP)", "--directory", fixtures]
        container.env = [EnvVar(name: "POD_IP", fieldPath: "status.podIP")]
        var spec = PodSpec(containers: [container])
        spec.nodeSelector = ["kubernetes.io/hostname": node]
        spec.terminationGracePeriodSeconds = 0
        return Pod(
            metadata: ObjectMeta(
                name: "dcgm-exporter", namespace: namespace, labels: ["app.kubernetes.io/name": "dcgm-exporter"]),
            spec: spec)
    }

    @Test("apply is idempotent, list and watch by label see the scheduler's verdict, delete ends the watch's pod")
    func applyListWatchDelete() async throws {
        try await withNamespace { client, namespace in
            let before = try await client.list(Pod.self, namespace: namespace, labelSelector: "test=client")
            #expect(before.items.isEmpty)
            let events = client.watch(
                Pod.self, namespace: namespace, labelSelector: "test=client",
                resourceVersion: try #require(before.metadata.resourceVersion))
            // More GPUs than any node has: the scheduler says why, in the pod's condition.
            let first = try await client.apply(Self.pod("big", namespace: namespace, gpus: 64))
            let second = try await client.apply(Self.pod("big", namespace: namespace, gpus: 64))
            // The same object, unchanged (the scheduler may have written its status in between).
            #expect(first.metadata.uid == second.metadata.uid && first.spec == second.spec, "re-applying changed the pod")
            _ = try await client.apply(
                Self.pod("other", namespace: namespace, gpus: 1, labels: ["test": "elsewhere"]))
            var seen: [String] = []
            var reason: String?
            var deleting = false
            for try await event in events {
                switch event {
                case .added(let pod): seen.append("ADDED \(pod.metadata.name ?? "")")
                case .modified(let pod):
                    if let condition = pod.status?.condition("PodScheduled"), condition.status == "False" {
                        reason = condition.message
                    }
                case .deleted(let pod): seen.append("DELETED \(pod.metadata.name ?? "")")
                default: break
                }
                if reason != nil, !deleting {
                    deleting = true
                    #expect(try await client.delete(Pod.self, name: "big", namespace: namespace, gracePeriodSeconds: 0))
                }
                if seen.contains("DELETED big") { break }
            }
            #expect(seen == ["ADDED big", "DELETED big"], "the watch saw another label's pod, or missed one")
            // "0/N nodes are available: N Insufficient nvidia.com/gpu", or, with no nodes at all,
            // "no nodes available to schedule pods".
            #expect(reason?.contains("nodes") == true && reason?.contains("available") == true, "\(reason ?? "no reason")")
            #expect(try await client.get(Pod.self, name: "big", namespace: namespace) == nil)
            #expect(try await !client.delete(Pod.self, name: "big", namespace: namespace))
            // A version the server no longer keeps ends the watch with 410 Gone.
            let now = try await client.list(Pod.self, namespace: namespace)
            try await compactEtcd(upTo: try #require(now.metadata.resourceVersion))
            var gone: Status?
            for try await event in client.watch(Pod.self, namespace: namespace, resourceVersion: "1") {
                if case .error(let status) = event { gone = status }
                break
            }
            #expect(gone?.code == 410, "\(String(describing: gone))")
            try await client.delete(Pod.self, name: "other", namespace: namespace, gracePeriodSeconds: 0)
        }
    }

    @Test("an informer resuming from an expired version lists again, then follows adds and deletes")
    func informerRelists() async throws {
        try await withNamespace { client, namespace in
            let early = try await client.apply(Self.pod("early", namespace: namespace, gpus: 64))
            try await compactEtcd(upTo: try #require(early.metadata.resourceVersion))
            let informer = KubernetesInformer<Pod>(
                client: client, scope: .init(namespace: namespace), resumeFrom: "1", logger: logger)
            let changes = AsyncStream<Void>.makeStream()
            await informer.onChange { changes.continuation.yield() }
            let task = Task { try await informer.run() }
            defer { task.cancel() }
            await informer.waitUntilSynced()
            #expect(await informer.listCount == 1, "the 410 did not lead to a list")
            #expect(await Array(informer.snapshot().keys) == ["\(namespace)/early"])
            _ = try await client.apply(Self.pod("late", namespace: namespace, gpus: 64))
            try await client.delete(Pod.self, name: "early", namespace: namespace, gracePeriodSeconds: 0)
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline, await Set(informer.snapshot().keys) != ["\(namespace)/late"] {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(await Set(informer.snapshot().keys) == ["\(namespace)/late"])
            #expect(await informer.listCount == 1, "a healthy watch listed again")
            try await client.delete(Pod.self, name: "late", namespace: namespace, gracePeriodSeconds: 0)
        }
    }

    @Test("refusals name the URL, the user and the missing permission; an unreachable server names its URL")
    func errors() async throws {
        let client = try client(limited)
        defer { Task { try? await client.shutdown() } }
        do {
            _ = try await client.list(Pod.self, namespace: "default")
            Issue.record("a user without grants listed pods")
        } catch let error as KubernetesError {
            let text = "\(error)"
            #expect(error.code == 403)
            #expect(text.contains(client.config.server + "/api/v1/namespaces/default/pods"), "\(text)")
            #expect(text.contains(#"User "limited" cannot list resource "pods""#), "\(text)")
        }
        let port = try FreePort.find()
        let nowhere = try KubernetesClient(
            config: KubeConfig(server: "https://127.0.0.1:\(port)", credential: .token("x")), logger: logger)
        do {
            _ = try await nowhere.list(Node.self, namespace: nil)
            Issue.record("a closed port answered")
        } catch let error as KubernetesError {
            #expect("\(error)".contains("https://127.0.0.1:\(port)"), "\(error)")
        }
        try await nowhere.shutdown()
    }

    @Test(
        "nodes and GPUs from the cluster: allocatable, GPU Feature Discovery labels, pods' GPU requests, dcgm-exporter readings, cordons",
        .tags(.python))
    func nodeSource() async throws {
        let python = try TestEnvironment.require(TestEnvironment.python)
        try await withStandin(images: ["gantry-test/dcgm-exporter": python]) { standin in
            try await withNamespace { client, namespace in
                let nodes = KubernetesInformer<Node>(client: client, scope: .init(), logger: logger)
                let pods = KubernetesInformer<Pod>(client: client, scope: .init(), logger: logger)
                let tasks = [Task { try await nodes.run() }, Task { try await pods.run() }]
                defer { tasks.forEach { $0.cancel() } }
                let source = KubernetesNodeSource(
                    nodes: nodes, pods: pods, exporters: DCGMExporterScraper(httpClient: .shared))
                let h100 = standin.node("gpu-h100")
                // A dcgm-exporter on the H100 node: the fixture in the exporter's format, served on
                // the pod's address and port 9400 as the exporter's DaemonSet would.
                _ = try await client.apply(Self.dcgmExporterPod(namespace: namespace, node: h100))
                // Another manager's pod holds 3 of the H100 node's GPUs.
                var foreign = Self.pod("foreign", namespace: namespace, gpus: 3)
                foreign.spec?.nodeSelector = ["kubernetes.io/hostname": h100]
                _ = try await client.apply(foreign)
                var inventory: [NodeInventory] = []
                let deadline = ContinuousClock.now + .seconds(20)
                while ContinuousClock.now < deadline {
                    inventory = try await source.nodes().filter { $0.name.hasPrefix(standin.nodePrefix) }
                    if inventory.first(where: { $0.name == h100 })?.gpusRequested == 3 { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                let byName = Dictionary(uniqueKeysWithValues: inventory.map { ($0.name, $0) })
                var gpuNode = try #require(byName[h100], "\(inventory.map(\.name))")
                #expect(gpuNode.gpus.count == 8 && gpuNode.gpusRequested == 3)
                #expect(gpuNode.gpus.allSatisfy { $0.name == "NVIDIA-H100-80GB-HBM3" && $0.memoryTotalMiB == 81559 })
                #expect(Set(gpuNode.gpus.map(\.uuid)).count == 8)
                // The exporter's readings: real UUIDs, utilisation and memory in use for GPUs 0 and 1.
                for _ in 0..<100 where gpuNode.gpus[0].utilizationPercent == nil {
                    try await Task.sleep(for: .milliseconds(100))
                    gpuNode = try #require(try await source.nodes().first { $0.name == h100 })
                }
                #expect(
                    gpuNode.gpus[0].uuid == "GPU-3f1c2a7e-9b41-4d0c-8e2f-5a6b7c8d9e01", "\(gpuNode.gpus[0])\n\(standin.logTail)")
                #expect(gpuNode.gpus[0].utilizationPercent == 87 && gpuNode.gpus[0].memoryUsedMiB == 71362)
                #expect(gpuNode.gpus[1].utilizationPercent == 0 && gpuNode.gpus[1].memoryUsedMiB == 0)
                #expect(gpuNode.gpus[2].utilizationPercent == nil && gpuNode.gpus[2].uuid == "\(h100)/gpu2")
                #expect(
                    try await source.nodes().first { $0.name == standin.node("gpu-a10g") }?.gpus.first?.utilizationPercent == nil)
                #expect(gpuNode.cpuCount == 208 && gpuNode.memoryBytes == 2015 * 1_073_741_824)
                #expect(gpuNode.gpuSource == "kubernetes" && !gpuNode.simulated && gpuNode.unschedulableReasons == [])
                #expect(byName[standin.node("gpu-a10g")]?.gpus.count == 4)
                #expect(byName[standin.node("cpu-only")]?.gpus.isEmpty == true)
                // Cordoning shows; uncordoning clears it.
                _ = try await client.apply(Node(metadata: ObjectMeta(name: h100), spec: NodeSpec(unschedulable: true)))
                var reasons: [String]?
                for _ in 0..<100 {
                    reasons = try await source.nodes().first { $0.name == h100 }?.unschedulableReasons
                    if reasons == ["cordoned"] { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(reasons == ["cordoned"])
                try await client.delete(Pod.self, name: "foreign", namespace: namespace, gracePeriodSeconds: 0)
                try await client.delete(Pod.self, name: "dcgm-exporter", namespace: namespace, gracePeriodSeconds: 0)
            }
        }
    }
}

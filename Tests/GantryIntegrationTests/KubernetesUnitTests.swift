import Foundation
import GantryCore
import GantryKubernetes
import GantryServing
import GantryTestSupport
import Testing

@testable import GantryResources

@Suite("Kubernetes: quantities, kubeconfigs, pod manifests and pod status, without a cluster")
struct KubernetesUnitTests {
    @Test("quantities: plain, decimal and binary suffixes, millis, exponents; junk is nil")
    func quantities() {
        #expect(Quantity.value("8") == 8)
        #expect(Quantity.value("500m") == 0.5)
        #expect(Quantity.value("16Gi") == 17_179_869_184)
        #expect(Quantity.value("1000000Ki") == 1_024_000_000)
        #expect(Quantity.value("1.5") == 1.5)
        #expect(Quantity.value("1e3") == 1000)
        #expect(Quantity.value("2k") == 2000)
        #expect(Quantity.whole("3500m") == 3)
        for junk in ["", "Gi", "-1", "abc", "1.2.3Mi", "nan"] { #expect(Quantity.value(junk) == nil, "\(junk)") }
    }

    func write(_ text: String, in directory: TemporaryDirectory, name: String = "config") throws -> String {
        let path = directory.path + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("a kubeconfig's current context: server, a CA file relative to it, a token, the namespace")
    func kubeconfigToken() throws {
        let directory = try TemporaryDirectory()
        _ = try write("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", in: directory, name: "ca.crt")
        let path = try write(
            """
            apiVersion: v1
            kind: Config
            current-context: test
            clusters:
            - name: other
              cluster: {server: "https://10.0.0.1:6443"}
            - name: local
              cluster:
                server: https://127.0.0.1:6443/
                certificate-authority: ca.crt
            users:
            - name: gantry
              user: {token: abc123}
            contexts:
            - name: test
              context: {cluster: local, user: gantry, namespace: models}
            """, in: directory)
        let config = try KubeConfig.load(path: path)
        #expect(config.server == "https://127.0.0.1:6443")
        #expect(config.credential == .token("abc123"))
        #expect(config.namespace == "models")
        #expect(config.certificateAuthorityPEM.map { String(decoding: $0, as: UTF8.self) }?.contains("AAAA") == true)
        #expect(!config.skipsTLSVerification)
    }

    @Test("kubeconfig: inline client certificate, a token file, and the errors that name what is wrong")
    func kubeconfigVariants() throws {
        let directory = try TemporaryDirectory()
        let certificate = Data("CERT".utf8).base64EncodedString()
        let key = Data("KEY".utf8).base64EncodedString()
        let path = try write(
            """
            current-context: a
            clusters: [{name: c, cluster: {server: "https://k:443", insecure-skip-tls-verify: true}}]
            users:
            - {name: cert, user: {client-certificate-data: \(certificate), client-key-data: \(key)}}
            - {name: file, user: {tokenFile: token}}
            - {name: plugin, user: {exec: {command: aws}}}
            contexts:
            - {name: a, context: {cluster: c, user: cert}}
            - {name: b, context: {cluster: c, user: file}}
            - {name: p, context: {cluster: c, user: plugin}}
            - {name: lost, context: {cluster: nowhere, user: cert}}
            """, in: directory)
        let a = try KubeConfig.load(path: path)
        #expect(a.credential == .clientCertificate(certificatePEM: Array("CERT".utf8), keyPEM: Array("KEY".utf8)))
        #expect(a.skipsTLSVerification)
        #expect(try KubeConfig.load(path: path, context: "b").credential == .tokenFile(directory.path + "/token"))
        #expect(throws: KubernetesError.self) { try KubeConfig.load(path: path, context: "p") }
        do {
            _ = try KubeConfig.load(path: path, context: "lost")
            Issue.record("a context naming a missing cluster was accepted")
        } catch {
            #expect("\(error)".contains("no cluster 'nowhere'"))
        }
        #expect(throws: KubernetesError.self) { try KubeConfig.load(path: directory.path + "/absent") }
        #expect(throws: KubernetesError.self) { try KubeConfig.inCluster(environment: [:]) }
    }

    static let version = ModelVersion(
        id: "mv_1", modelID: "m_1", version: "3", description: "", format: "gguf", contextLimit: 4096, inputSchema: nil,
        outputSchema: nil, defaultEngine: nil, engineArgs: [], artifactURI: nil, status: .ready, statusMessage: "",
        deprecated: false, createdAt: Date(), updatedAt: Date())

    /// The GPU products a pod's required node affinity allows.
    static func productsAllowed(_ pod: Pod) -> [String]? {
        let terms = pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms
        guard let terms, terms.count == 1, let expressions = terms[0].matchExpressions, expressions.count == 1,
            expressions[0].key == "nvidia.com/gpu.product", expressions[0].operator == "In"
        else { return nil }
        return expressions[0].values
    }

    @Test("an instance's pod: labels, image and arguments, port, GPU limits, GPU product affinity, probe, grace, volume")
    func manifest() throws {
        let spec = EngineLaunchSpec(
            instanceID: "ins_abc", deploymentName: "chat", engine: "llama-cpp", modelPath: "/models/mv_1", contextLimit: 4096,
            extraArguments: ["--temp", "0"], cpuThreads: 4, modelVersion: Self.version, gpuCount: 2,
            gpuName: "NVIDIA H100 80GB HBM3", revisionID: "rev_1")
        let configuration = KubernetesRuntimeConfiguration(namespace: "ai", memoryPerInstance: "8Gi")
        let pod = PodManifest.make(
            spec, adapter: LlamaCppAdapter(binary: "/usr/bin/llama-server"), image: "ghcr.io/ggml-org/llama.cpp:server-cuda",
            podName: "gantry-ins-abc-x1y2z", configuration: configuration)
        #expect(pod.metadata.namespace == "ai")
        #expect(
            pod.metadata.labels == [
                "app.kubernetes.io/managed-by": "gantry", "gantry.dev/installation": "gantry", "gantry.dev/deployment": "chat",
                "gantry.dev/revision": "rev_1", "gantry.dev/instance": "ins_abc",
            ])
        let engine = try #require(pod.spec?.containers.first)
        #expect(engine.name == "engine")
        #expect(engine.image == "ghcr.io/ggml-org/llama.cpp:server-cuda")
        #expect(engine.command == ["/app/llama-server"])
        let args = try #require(engine.args)
        #expect(args.first == "--model" && args[1] == "/models/mv_1")
        #expect(args.contains("$(POD_IP)") && args.contains("8080") && args.contains("--n-gpu-layers"))
        #expect(Array(args.suffix(2)) == ["--temp", "0"])
        #expect(engine.env == [EnvVar(name: "POD_IP", fieldPath: "status.podIP")])
        #expect(engine.resources?.limits == ["nvidia.com/gpu": "2"])
        #expect(engine.resources?.requests == ["cpu": "4", "memory": "8Gi"])
        #expect(engine.readinessProbe?.httpGet?.path == "/health" && engine.readinessProbe?.httpGet?.port == 8080)
        #expect(engine.ports == [ContainerPort(name: "http", containerPort: 8080)])
        // No product known to match: the exact label, so the scheduler says no node matches.
        #expect(Self.productsAllowed(pod) == ["NVIDIA-H100-80GB-HBM3"])
        #expect(pod.spec?.tolerations == [Toleration(key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule")])
        // `gpu_name` is a part of the name: every product of the cluster that contains it.
        let products = PodManifest.matchingProducts(
            "h100", among: ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A10G", "NVIDIA-H100-NVL", "NVIDIA-H100-NVL"])
        #expect(products == ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-NVL"])
        #expect(PodManifest.matchingProducts("H100 80GB", among: ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-NVL"]).count == 1)
        let anyH100 = PodManifest.make(
            spec, adapter: LlamaCppAdapter(binary: "/usr/bin/llama-server"), image: "x", podName: "p",
            configuration: configuration, gpuProducts: products)
        #expect(Self.productsAllowed(anyH100) == products)
        #expect(pod.spec?.terminationGracePeriodSeconds == 30)
        #expect(pod.spec?.automountServiceAccountToken == false)
        #expect(pod.spec?.volumes == [.emptyDir("models")])
        #expect(engine.volumeMounts == [VolumeMount(name: "models", mountPath: "/models")])
        // A CPU instance asks for no GPU and selects no product.
        var cpu = spec
        cpu.gpuCount = 0
        let cpuPod = PodManifest.make(
            cpu, adapter: VLLMAdapter(), image: "vllm", podName: "p",
            configuration: KubernetesRuntimeConfiguration(namespace: "ai", nodeModelCache: "/var/cache/gantry"))
        #expect(cpuPod.spec?.containers.first?.resources?.limits == nil)
        #expect(cpuPod.spec?.affinity == nil && cpuPod.spec?.tolerations == nil)
        #expect(cpuPod.spec?.containers.first?.command == ["vllm", "serve"])
        #expect(cpuPod.spec?.containers.first?.args?.first == "/models/mv_1")
        #expect(cpuPod.spec?.volumes == [.hostPath("models", path: "/var/cache/gantry")])
        // Pod names are new per start and valid DNS labels.
        let names = Set((0..<20).map { _ in PodManifest.podName(instanceID: "ins_ABC_def") })
        #expect(names.count == 20)
        #expect(names.allSatisfy { $0.hasPrefix("gantry-ins-abc-def-") && $0.count <= 63 })
    }

    func pod(_ status: String) throws -> Pod {
        let json = """
            {"metadata":{"name":"p","namespace":"ai"},"spec":{"nodeName":"n1","containers":[{"name":"engine","image":"x"}]},
             "status":\(status)}
            """
        return try JSONDecoder().decode(Pod.self, from: Data(json.utf8))
    }

    @Test("pod status: the scheduler's reason verbatim, fetching, image errors, ready, restarts, lost node, deletion")
    func observation() throws {
        var pending = try pod(
            #"{"phase":"Pending","conditions":[{"type":"PodScheduled","status":"False","reason":"Unschedulable","message":"0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}"#
        )
        pending.spec?.nodeName = nil
        #expect(
            PodObservation.observe(pending, port: 8080, nodeExists: true).health
                == .unschedulable("0/3 nodes are available: 3 Insufficient nvidia.com/gpu."))
        let fetching = try pod(
            #"{"phase":"Pending","podIP":"10.1.2.3","initContainerStatuses":[{"name":"fetch","state":{"running":{}}}]}"#)
        let seen = PodObservation.observe(fetching, port: 8080, nodeExists: true)
        #expect(seen.health == .fetching)
        #expect(seen.node == "n1" && seen.endpoint == "http://10.1.2.3:8080")
        let failedFetch = try pod(
            #"{"phase":"Pending","initContainerStatuses":[{"name":"fetch","state":{"waiting":{"reason":"CrashLoopBackOff"}},"lastState":{"terminated":{"exitCode":3,"message":"digest mismatch"}}}]}"#
        )
        #expect(
            PodObservation.observe(failedFetch, port: 8080, nodeExists: true).health
                == .exited("fetching the model files failed (exit code 3: digest mismatch)"))
        let pull = try pod(
            #"{"phase":"Pending","containerStatuses":[{"name":"engine","ready":false,"restartCount":0,"state":{"waiting":{"reason":"ErrImagePull","message":"pull access denied for nope"}}}]}"#
        )
        #expect(
            PodObservation.observe(pull, port: 8080, nodeExists: true).health
                == .exited("ErrImagePull: pull access denied for nope"))
        let ready = try pod(
            #"{"phase":"Running","podIP":"fd00::5","containerStatuses":[{"name":"engine","ready":true,"restartCount":2,"state":{"running":{}}}]}"#
        )
        let readySeen = PodObservation.observe(ready, port: 8080, nodeExists: true)
        #expect(readySeen.health == .ready && readySeen.restarts == 2 && readySeen.endpoint == "http://[fd00::5]:8080")
        #expect(PodObservation.observe(ready, port: 8080, nodeExists: false).health == .exited("its node n1 is gone"))
        let crashing = try pod(
            #"{"phase":"Running","containerStatuses":[{"name":"engine","ready":false,"restartCount":1,"state":{"waiting":{"reason":"CrashLoopBackOff"}},"lastState":{"terminated":{"exitCode":137,"reason":"Error"}}}]}"#
        )
        #expect(
            PodObservation.observe(crashing, port: 8080, nodeExists: true).health
                == .unhealthy("the engine exited with code 137 (Error); the kubelet restarts it"))
        var deleting = ready
        deleting.metadata.deletionTimestamp = "2026-12-04T00:00:00Z"
        guard case .exited = PodObservation.observe(deleting, port: 8080, nodeExists: true).health else {
            Issue.record("a pod being deleted still counted as running")
            return
        }
        let evicted = try pod(#"{"phase":"Failed","reason":"Evicted","message":"The node was low on resource: memory."}"#)
        #expect(
            PodObservation.observe(evicted, port: 8080, nodeExists: true).health
                == .exited("its pod ai/p failed: Evicted: The node was low on resource: memory."))
    }

    @Test("dcgm-exporter's text: utilisation and framebuffer memory per UUID from the fixture; the rest skipped")
    func dcgmExporterText() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let text = try String(
            contentsOf: root.appendingPathComponent("fixtures/dcgm-exporter/metrics"), encoding: .utf8)
        let readings = DCGMExporterText.parse(text)
        #expect(
            readings == [
                DCGMReading(
                    uuid: "GPU-3f1c2a7e-9b41-4d0c-8e2f-5a6b7c8d9e01", hostname: "gpu-h100", index: 0,
                    modelName: "NVIDIA H100 80GB HBM3", utilizationPercent: 87, memoryUsedMiB: 71362, memoryFreeMiB: 9641,
                    pod: "gantry/gantry-ins-4f2a9c-x1y2z"),
                DCGMReading(
                    uuid: "GPU-8a2d4e6f-1c3b-4a5d-9e7f-0b1c2d3e4f52", hostname: "gpu-h100", index: 1,
                    modelName: "NVIDIA H100 80GB HBM3", utilizationPercent: 0, memoryUsedMiB: 0, memoryFreeMiB: 81004),
            ])
        // Variants the format allows: escapes in label values, spaces, a timestamp, NaN, CRLF,
        // and lines to skip (no UUID, malformed, unterminated).
        let variants = DCGMExporterText.parse(
            """
            DCGM_FI_DEV_GPU_UTIL{ gpu="3", UUID="GPU-a", modelName="A \\\"quoted\\\" name", Hostname="n1" } 101 1700000000000\r
            DCGM_FI_DEV_FB_USED{gpu="3",UUID="GPU-a"} NaN
            DCGM_FI_DEV_FB_FREE{UUID="GPU-a",gpu="3",} 12.6
            DCGM_FI_DEV_GPU_UTIL{gpu="4"} 50
            DCGM_FI_DEV_GPU_UTIL{gpu="5",UUID="GPU-b} 50
            DCGM_FI_DEV_GPU_UTIL{gpu="6",UUID="GPU-c"}
            DCGM_FI_DEV_GPU_UTIL{gpu="7" UUID="GPU-d"} 5
            """)
        #expect(
            variants == [
                DCGMReading(
                    uuid: "GPU-a", hostname: "n1", index: 3, modelName: #"A "quoted" name"#, utilizationPercent: 100,
                    memoryUsedMiB: nil, memoryFreeMiB: 13)
            ], "\(variants)")
    }

    @Test("a node's GPUs take an exporter's readings by index; memory size from them only when no label gave it")
    func gpuReadingsMerge() {
        let gpus = (0..<2).map {
            GPUInfo(
                index: $0, uuid: "n/gpu\($0)", name: "NVIDIA-A10G", memoryTotalMiB: 0, memoryUsedMiB: nil,
                utilizationPercent: nil, temperatureCelsius: nil, powerWatts: nil)
        }
        let node = NodeInventory(
            name: "n", cpuCount: 8, memoryBytes: 1, labels: [:], gpus: gpus, gpuSource: "kubernetes", simulated: false,
            observedAt: Date())
        let merged = KubernetesNodeSource.withReadings(
            node,
            [
                DCGMReading(
                    uuid: "GPU-x", hostname: "n", index: 1, modelName: "", utilizationPercent: 40, memoryUsedMiB: 1000,
                    memoryFreeMiB: 21000),
                DCGMReading(
                    uuid: "GPU-y", hostname: "n", index: 9, modelName: "", utilizationPercent: 1, memoryUsedMiB: 1,
                    memoryFreeMiB: 1),
            ])
        #expect(merged.gpus[0] == gpus[0])
        #expect(merged.gpus[1].uuid == "GPU-x" && merged.gpus[1].utilizationPercent == 40)
        #expect(merged.gpus[1].memoryUsedMiB == 1000 && merged.gpus[1].memoryTotalMiB == 22000)
        #expect(merged.gpus[1].heldBy == nil, "no pod mapping, no holder")
    }

    @Test("a GPU an engine pod uses, as dcgm-exporter maps it, is held by that pod's instance")
    func gpuHeldByPod() {
        let readings = DCGMExporterText.parse(
            """
            DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",Hostname="n",namespace="ai",pod="gantry-ins-1-abcde",container="engine"} 70
            DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-b",Hostname="n",pod_namespace="ai",pod_name="other-pod"} 5
            DCGM_FI_DEV_GPU_UTIL{gpu="2",UUID="GPU-c",Hostname="n",namespace="",pod=""} 0
            """)
        #expect(readings.map(\.pod) == ["ai/gantry-ins-1-abcde", "ai/other-pod", nil])
        let engine = Pod(
            metadata: ObjectMeta(name: "gantry-ins-1-abcde", namespace: "ai", labels: [PodManifest.instanceLabel: "ins_1"]),
            spec: PodSpec(containers: []))
        let unrelated = Pod(
            metadata: ObjectMeta(name: "other-pod", namespace: "ai", labels: ["app": "x"]), spec: PodSpec(containers: []))
        let instances = KubernetesNodeSource.instancesByPod([engine, unrelated])
        #expect(instances == ["ai/gantry-ins-1-abcde": "ins_1"])
        // One label, two modules: the node source reads the label the pod manifest writes.
        #expect(KubernetesNodeSource.instanceLabel == PodManifest.instanceLabel)
        let gpus = (0..<3).map {
            GPUInfo(
                index: $0, uuid: "n/gpu\($0)", name: "NVIDIA-H100", memoryTotalMiB: 81920, memoryUsedMiB: nil,
                utilizationPercent: nil, temperatureCelsius: nil, powerWatts: nil)
        }
        let node = NodeInventory(
            name: "n", cpuCount: 8, memoryBytes: 1, labels: [:], gpus: gpus, gpuSource: "kubernetes", simulated: false,
            observedAt: Date())
        let merged = KubernetesNodeSource.withReadings(node, readings, instances: instances)
        #expect(merged.gpus.map(\.heldBy) == ["ins_1", nil, nil])
    }
}

import Foundation
import GantryCommands
import GantryCore
import GantryResources
import GantryTestSupport
import Hummingbird
import HummingbirdTesting
import Logging
import Prometheus
import Synchronization
import Testing

@Suite("Resources: GPU discovery and inventory")
struct ResourceTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/nvidia-smi").path

    @Test("8 x H100 fixture: every field parsed, [N/A] power becomes nil")
    func parsesH100() async throws {
        let gpus = try await FixtureDiscovery(path: Self.fixtures + "/8xH100.csv").discover()
        #expect(gpus.count == 8)
        #expect(gpus.map(\.index) == Array(0..<8))
        #expect(Set(gpus.map(\.uuid)).count == 8)
        let first = gpus[0]
        #expect(first.name == "NVIDIA H100 80GB HBM3")
        #expect(first.memoryTotalMiB == 81559 && first.memoryUsedMiB == 71234)
        #expect(first.utilizationPercent == 97 && first.temperatureCelsius == 64)
        #expect(first.powerWatts == 612.43)
        #expect(gpus[7].powerWatts == nil)
    }

    @Test("recorded output of a real H200 (driver 580.159.04) parses to what NVML reported there")
    func parsesRecordedH200() async throws {
        let gpus = try await FixtureDiscovery(path: Self.fixtures + "/1xH200.csv").discover()
        #expect(
            gpus == [
                GPUInfo(
                    index: 0, uuid: "GPU-7f118b06-f8bf-ab52-a00f-4ed1624cc058", name: "NVIDIA H200", memoryTotalMiB: 143771,
                    memoryUsedMiB: 0, utilizationPercent: 0, temperatureCelsius: 40, powerWatts: 98.69)
            ])
    }

    @Test("mixed 4 x A10G + 2 x L4 fixture, with [Not Supported] utilisation")
    func parsesMixed() async throws {
        let gpus = try await FixtureDiscovery(path: Self.fixtures + "/4xA10G-2xL4.csv").discover()
        #expect(gpus.filter { $0.name == "NVIDIA A10G" }.count == 4)
        #expect(gpus.filter { $0.name == "NVIDIA L4" }.count == 2)
        #expect(gpus[3].utilizationPercent == nil && gpus[3].powerWatts == nil)
        #expect(gpus[5].utilizationPercent == 100)
    }

    @Test("malformed nvidia-smi output is an error naming the line, not a silent zero")
    func rejectsMalformed() throws {
        #expect(throws: GantryError.self) { try NvidiaSMIParser.parse("0, GPU-x, NVIDIA A10G, 23028") }
        #expect(throws: GantryError.self) { try NvidiaSMIParser.parse("0, GPU-x, [N/A], 23028, 0, 0, 30, 50") }
        #expect(throws: GantryError.self) { try NvidiaSMIParser.parse("zero, GPU-x, NVIDIA A10G, 23028, 0, 0, 30, 50") }
        #expect(try NvidiaSMIParser.parse("\n\n").isEmpty)
        #expect(throws: GantryError.self) { try LocalNodeSource.discovery(for: "magic") }
    }

    @Test("nvidia-smi discovery runs the binary with the documented query")
    func runsNvidiaSMI() async throws {
        let directory = try TemporaryDirectory()
        let script = directory.path + "/nvidia-smi"
        // A stand-in for the driver's tool: checks its arguments, prints recorded output.
        try """
        #!/bin/sh
        [ "$1" = "\(NvidiaSMIQuery.arguments[0])" ] && [ "$2" = "--format=csv,noheader,nounits" ] || exit 9
        cat "\(Self.fixtures)/4xA10G-2xL4.csv"
        """.write(toFile: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script)
        let gpus = try await NvidiaSMIDiscovery(binary: script).discover()
        #expect(gpus.count == 6)
        await #expect(throws: ExternalCommand.Failure.self) { try await NvidiaSMIDiscovery(binary: "/bin/false").discover() }
    }

    @Test("this machine without a GPU source is a CPU-only node")
    func cpuOnlyNode() async throws {
        let nodes = try await LocalNodeSource(discovery: NoGPUDiscovery()).nodes()
        #expect(nodes.count == 1)
        #expect(nodes[0].gpus.isEmpty && nodes[0].gpuSource == "none" && !nodes[0].simulated)
        #expect(nodes[0].cpuCount == ProcessInfo.processInfo.activeProcessorCount)
    }

    @Test("API: /api/v1/nodes and /api/v1/gpus show the fixture node as simulated; GPU gauges are exported")
    func api() async throws {
        let test = try await TestServer.make(flags: [.gpuSource: "fixture:\(Self.fixtures)/8xH100.csv"])
        try await test.server.application.test(.router) { client in
            let nodes = try await client.execute(uri: "/api/v1/nodes", method: .get, headers: .bearer(test.adminKey))
            #expect(nodes.status == .ok)
            let node = try #require((nodes.json["data"] as? [[String: Any]])?.first)
            #expect(node["simulated"] as? Bool == true)
            #expect(node["gpu_source"] as? String == "fixture")
            #expect((node["gpus"] as? [Any])?.count == 8)
            let gpus = try await client.execute(uri: "/api/v1/gpus", method: .get, headers: .bearer(test.adminKey))
            let first = try #require((gpus.json["data"] as? [[String: Any]])?.first)
            #expect(first["memory_total_mib"] as? Int == 81559)
            #expect(first["node"] as? String == node["name"] as? String)
            let metrics = try await client.execute(uri: "/metrics", method: .get, headers: .bearer(test.adminKey))
            #expect(metrics.text.contains(#"gantry_gpu_memory_total_bytes{node=""#))
            #expect(
                metrics.text.contains(#"gpu="7",product="NVIDIA H100 80GB HBM3"} 85520809984.0"#), "81559 MiB in bytes")
            #expect(!metrics.text.contains(#"model="NVIDIA"#), "a GPU's product is not a `model` (a service)")
            #expect(metrics.text.contains("gantry_gpu_utilization_ratio"))

            let user = try await test.server.identity.ensureUser(name: "viewer", role: .user)
            let (_, key) = try await test.server.identity.issueKey(userID: user.id, name: "v", expiresAt: nil)
            #expect(try await client.execute(uri: "/api/v1/gpus", method: .get, headers: .bearer(key)).status == .forbidden)
        }
    }

    @Test("GPUs held by instances are series of their service; a released GPU's series ends; the history gets a sample")
    func attributesGPUsToServices() async throws {
        let held = Mutex([
            GPUHolder(
                service: "chat", version: "2", instance: "ins_a", node: "n1",
                gpuUUID: "GPU-0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a50"),
            GPUHolder(
                service: "chat", version: "2", instance: "ins_a", node: "n1",
                gpuUUID: "GPU-0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a51"),
            // [Not Supported] utilisation: memory only.
            GPUHolder(
                service: "embed", version: "1", instance: "ins_b", node: "n1",
                gpuUUID: "GPU-0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a53"),
            // A GPU on a node the inventory does not know is skipped.
            GPUHolder(service: "embed", version: "1", instance: "ins_c", node: "gone", gpuUUID: "GPU-x"),
        ])
        let registry = PrometheusCollectorRegistry()
        let history = ServiceMetricsHistory()
        let inventory = ResourceInventory(
            source: LocalNodeSource(discovery: FixtureDiscovery(path: Self.fixtures + "/4xA10G-2xL4.csv"), name: "n1"),
            interval: .seconds(60), metrics: registry, logger: Logger(label: "test"),
            holders: { held.withLock { $0 } }, history: history)
        func text() -> String {
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            return String(decoding: bytes, as: UTF8.self)
        }
        await inventory.refresh()
        var metrics = text()
        let chat0 = #"service="chat",version="2",instance="ins_a",node="n1",gpu="0""#
        let chat1 = #"service="chat",version="2",instance="ins_a",node="n1",gpu="1""#
        #expect(metrics.contains("gantry_service_gpu_utilization_ratio{\(chat0)} 0.81"))
        #expect(metrics.contains("gantry_service_gpu_utilization_ratio{\(chat1)} 0.0"))
        #expect(metrics.contains("gantry_service_gpu_memory_used_bytes{\(chat0)} \(18211.0 * 1_048_576)"))
        let embed = #"service="embed",version="1",instance="ins_b",node="n1",gpu="3""#
        #expect(metrics.contains("gantry_service_gpu_memory_used_bytes{\(embed)} 0.0"))
        #expect(!metrics.contains("gantry_service_gpu_utilization_ratio{\(embed)}"))
        #expect(!metrics.contains("ins_c"))
        let chat = try #require(history.minutes(of: "chat").last)
        #expect(chat.gpuSamples == 1 && abs((chat.meanGPUUtilization ?? 0) - 0.405) < 1e-9)
        #expect(chat.gpuMemoryUsedBytes == Double(18211 * 1_048_576))
        #expect(history.minutes(of: "embed").last?.gpuSamples == 0)

        // The instance lets go of GPU 1: its series ends, GPU 0's goes on.
        held.withLock { $0.remove(at: 1) }
        await inventory.refresh()
        metrics = text()
        #expect(!metrics.contains(chat1))
        #expect(metrics.contains("gantry_service_gpu_utilization_ratio{\(chat0)} 0.81"))
        #expect(history.minutes(of: "chat").last?.gpuSamples == 2)
    }

    @Test("an instance Kubernetes placed holds the GPUs its node reports it using")
    func attributesGPUsReportedInUse() async throws {
        struct Reported: NodeSource {
            func nodes() async throws -> [NodeInventory] {
                let gpus = (0..<3).map {
                    GPUInfo(
                        index: $0, uuid: "GPU-\($0)", name: "NVIDIA H100", memoryTotalMiB: 81920, memoryUsedMiB: 1000 * $0,
                        utilizationPercent: 30 * $0, temperatureCelsius: nil, powerWatts: nil,
                        heldBy: $0 == 0 ? nil : "ins_k")
                }
                return [
                    NodeInventory(
                        name: "gpu-node", cpuCount: 8, memoryBytes: 1, labels: [:], gpus: gpus, gpuSource: "kubernetes",
                        simulated: false, observedAt: Date())
                ]
            }
        }
        let registry = PrometheusCollectorRegistry()
        let history = ServiceMetricsHistory()
        let inventory = ResourceInventory(
            source: Reported(), interval: .seconds(60), metrics: registry, logger: Logger(label: "test"),
            holders: { [GPUHolder(service: "k8s", version: "3", instance: "ins_k", node: "", gpuUUID: "")] },
            history: history)
        await inventory.refresh()
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        let text = String(decoding: bytes, as: UTF8.self)
        for (gpu, value) in [(1, "0.3"), (2, "0.6")] {
            #expect(
                text.contains(
                    #"gantry_service_gpu_utilization_ratio{service="k8s",version="3",instance="ins_k",node="gpu-node",gpu="\#(gpu)"} \#(value)"#
                ))
        }
        #expect(!text.contains(#"gpu="0"} 0.0"#) || !text.contains(#"instance="ins_k",node="gpu-node",gpu="0""#))
        let minute = try #require(history.minutes(of: "k8s").last)
        #expect(abs((minute.meanGPUUtilization ?? 0) - 0.45) < 1e-9 && minute.gpuMemoryUsedBytes == 3000 * 1_048_576)
    }

    @Test("a failing source keeps the last good view")
    func keepsLastView() async throws {
        struct Flaky: NodeSource {
            let calls = Counter()
            func nodes() async throws -> [NodeInventory] {
                if await calls.next() > 1 { throw GantryError(.unavailable, "driver gone") }
                return try await LocalNodeSource(discovery: NoGPUDiscovery(), name: "n1").nodes()
            }
        }
        actor Counter {
            var value = 0
            func next() -> Int {
                value += 1
                return value
            }
        }
        let inventory = ResourceInventory(
            source: Flaky(), interval: .seconds(60), metrics: PrometheusCollectorRegistry(), logger: Logger(label: "test"))
        #expect(await inventory.nodes().map(\.name) == ["n1"])
        await inventory.refresh()
        #expect(await inventory.nodes().map(\.name) == ["n1"])
    }
}

@Suite("NVML")
struct NVMLTests {
    @Test("without an NVIDIA driver NVML is unavailable, says so, and auto discovery falls back")
    func unavailableHere() async throws {
        try #require(!FileManager.default.fileExists(atPath: "/dev/nvidiactl"), "this test describes a machine without a GPU")
        #expect(!NVMLDiscovery.isAvailable)
        await #expect(throws: GantryError(.unavailable, "NVML: libnvidia-ml.so.1 cannot be loaded (no NVIDIA driver here)")) {
            try await NVMLDiscovery().discover()
        }
        let auto = try LocalNodeSource.discovery(for: "auto")
        #expect(auto.sourceName == (ExternalCommand.exists("nvidia-smi") ? "nvidia-smi" : "none"))
        #expect(try LocalNodeSource.discovery(for: "nvml").sourceName == "nvml")
    }
}

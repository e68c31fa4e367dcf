import Foundation
import GantryCore
import GantryResources
import GantryStore
import GantryTestSupport
import Hummingbird
import HummingbirdTesting
import Logging
import Prometheus
import Testing

@Suite("Placement")
struct PlacementTests {
    func node(_ name: String, gpus: Int, model: String = "NVIDIA H100 80GB HBM3", usedMiB: Int = 0, cpus: Int = 32)
        -> NodeInventory
    {
        NodeInventory(
            name: name, cpuCount: cpus, memoryBytes: 1 << 36, labels: [:],
            gpus: (0..<gpus).map {
                GPUInfo(
                    index: $0, uuid: "\(name)-gpu\($0)", name: model, memoryTotalMiB: 81559, memoryUsedMiB: usedMiB,
                    utilizationPercent: 0, temperatureCelsius: 30, powerWatts: 70)
            }, gpuSource: "fixture", simulated: true, observedAt: Date())
    }

    @Test("binpack fills the busiest node that fits; spread takes the least busy")
    func strategies() throws {
        let nodes = [node("a", gpus: 8), node("b", gpus: 8)]
        let held: Set<String> = ["a/a-gpu0", "a/a-gpu1"]
        let binpack = try Placement.choose(
            ResourceRequest(gpus: 2), nodes: nodes, allocatedGPUs: held, allocatedCPU: [:], strategy: .binpack)
        #expect(binpack == .init(node: "a", gpuUUIDs: ["a-gpu2", "a-gpu3"]))
        let spread = try Placement.choose(
            ResourceRequest(gpus: 2), nodes: nodes, allocatedGPUs: held, allocatedCPU: [:], strategy: .spread)
        #expect(spread == .init(node: "b", gpuUUIDs: ["b-gpu0", "b-gpu1"]))
        // A request that only fits on the empty node goes there even under binpack.
        let large = try Placement.choose(
            ResourceRequest(gpus: 7), nodes: nodes, allocatedGPUs: held, allocatedCPU: [:], strategy: .binpack)
        #expect(large.node == "b")
    }

    @Test("a failed placement gives the reason for every node")
    func reasons() {
        let nodes = [node("a", gpus: 1), node("b", gpus: 2, model: "NVIDIA L4")]
        #expect(
            throws: GantryError.conflict(
                "needs 2 GPUs matching 'H100' with ≥ 40960 MiB free: node a has 1 such GPU, node b has 0 such GPUs")
        ) {
            try Placement.choose(
                ResourceRequest(gpus: 2, gpuName: "H100", minFreeMemoryMiB: 40960), nodes: nodes, allocatedGPUs: [],
                allocatedCPU: [:], strategy: .binpack)
        }
        #expect(throws: GantryError.self) {
            try Placement.choose(
                ResourceRequest(gpus: 0, cpuThreads: 40), nodes: nodes, allocatedGPUs: [], allocatedCPU: ["a": 10],
                strategy: .binpack)
        }
        #expect(throws: GantryError.notFound("node 'zz' does not exist")) {
            try Placement.choose(
                ResourceRequest(gpus: 1, node: "zz"), nodes: nodes, allocatedGPUs: [], allocatedCPU: [:], strategy: .binpack)
        }
    }

    @Test("free memory counts what the GPU already uses")
    func freeMemory() throws {
        let busy = node("busy", gpus: 2, usedMiB: 60000)
        let idle = node("idle", gpus: 2)
        let choice = try Placement.choose(
            ResourceRequest(gpus: 1, minFreeMemoryMiB: 40960), nodes: [busy, idle], allocatedGPUs: [], allocatedCPU: [:],
            strategy: .binpack)
        #expect(choice.node == "idle")
    }
}

@Suite("Allocation ledger", .serialized)
struct AllocationLedgerTests {
    enum Backend: String, CaseIterable, CustomTestStringConvertible {
        case sqlite, postgres
        var testDescription: String { rawValue }
    }

    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/nvidia-smi/8xH100.csv").path

    func withLedger(_ backend: Backend, _ body: (AllocationService, SQLStore) async throws -> Void) async throws {
        let directory = try TemporaryDirectory()
        let location: DatabaseLocation =
            backend == .sqlite
            ? .sqlite(path: directory.path + "/ledger.sqlite") : .postgres(url: try await PostgresTestDatabase.create())
        let store = try await SQLStore.open(location, logger: Logger(label: "test"))
        try await store.migrate(logger: Logger(label: "test"))
        let inventory = ResourceInventory(
            source: LocalNodeSource(discovery: FixtureDiscovery(path: Self.fixture), name: "h100-node"),
            interval: .seconds(60), metrics: PrometheusCollectorRegistry(), logger: Logger(label: "test"))
        do {
            try await body(AllocationService(inventory: inventory, ledger: store.repositories.allocations), store)
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    @Test(
        "100 simultaneous one-GPU allocations on 8 GPUs: 8 succeed, no GPU twice", .tags(.postgres), arguments: Backend.allCases)
    func concurrentAllocations(backend: Backend) async throws {
        try await withLedger(backend) { (service: AllocationService, _: SQLStore) async throws in
            let results = await withTaskGroup(of: Result<Allocation, any Error>.self) { group in
                for index in 0..<100 {
                    group.addTask {
                        do {
                            return .success(
                                try await service.allocate(owner: "owner-\(index)", request: ResourceRequest(gpus: 1)))
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let granted = results.compactMap { try? $0.get() }
            #expect(granted.count == 8)
            #expect(Set(granted.flatMap(\.gpuUUIDs)).count == 8, "no GPU handed out twice")
            for case .failure(let error) in results {
                #expect((error as? GantryError)?.kind == .conflict, "\(error)")
            }
            let summary = try await service.summary()
            #expect(summary.first?.gpusFree == 0)
        }
    }

    @Test("the database itself refuses a GPU held twice, under concurrency", .tags(.postgres), arguments: Backend.allCases)
    func databaseEnforcesUniqueness(backend: Backend) async throws {
        try await withLedger(backend) { (_: AllocationService, store: SQLStore) async throws in
            let ledger = store.repositories.allocations
            let outcomes = await withTaskGroup(of: Bool.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        let allocation = Allocation(
                            id: "alc_\(index)", owner: "o\(index)", node: "h100-node", gpuUUIDs: ["GPU-same"], cpuThreads: 0,
                            createdAt: Date())
                        return (try? await ledger.allocate(allocation, nodeCPUCount: 8)) != nil
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 1)
            #expect(try await ledger.listAllocations().count == 1, "a refused allocation leaves nothing behind")
        }
    }

    @Test(
        "bad requests: too many GPUs, zero or negative counts, unknown node, release twice or someone else's",
        .tags(.postgres), arguments: Backend.allCases)
    func badRequests(backend: Backend) async throws {
        try await withLedger(backend) { (service: AllocationService, _: SQLStore) async throws in
            await #expect(throws: GantryError.self) { try await service.allocate(owner: "o", request: ResourceRequest(gpus: 9)) }
            await #expect(throws: GantryError.self) { try await service.allocate(owner: "o", request: ResourceRequest(gpus: 0)) }
            await #expect(throws: GantryError.self) { try await service.allocate(owner: "o", request: ResourceRequest(gpus: -1)) }
            await #expect(throws: GantryError.notFound("node 'nowhere' does not exist")) {
                try await service.allocate(owner: "o", request: ResourceRequest(gpus: 1, node: "nowhere"))
            }
            let cpuCount = ProcessInfo.processInfo.activeProcessorCount
            await #expect(throws: GantryError.self) {
                try await service.allocate(owner: "o", request: ResourceRequest(gpus: 0, cpuThreads: cpuCount + 1))
            }
            let mine = try await service.allocate(owner: "me", request: ResourceRequest(gpus: 2, cpuThreads: 1))
            #expect(mine.gpuUUIDs.count == 2 && mine.cpuThreads == 1)
            await #expect(throws: GantryError(.forbidden, "allocation '\(mine.id)' belongs to another owner")) {
                try await service.release(id: mine.id, owner: "you")
            }
            try await service.release(id: mine.id, owner: "me")
            await #expect(throws: GantryError.self) { try await service.release(id: mine.id, owner: "me") }
            #expect(try await service.summary().first?.gpusFree == 8)
        }
    }

    @Test("allocations of a previous run's instances are released at start; others stay", arguments: [Backend.sqlite])
    func orphans(backend: Backend) async throws {
        try await withLedger(backend) { (service: AllocationService, _: SQLStore) async throws in
            _ = try await service.allocate(owner: "ins_gone", request: ResourceRequest(gpus: 1))
            _ = try await service.allocate(owner: "manual", request: ResourceRequest(gpus: 1))
            #expect(try await service.releaseOrphans { !$0.hasPrefix("ins_") } == 1)
            #expect(try await service.summary().first?.gpusFree == 7)
        }
    }
}

@Suite("Allocation API")
struct AllocationAPITests {
    @Test("create, list, summary and release over HTTP; problems for bad input")
    func api() async throws {
        let test = try await TestServer.make(flags: [.gpuSource: "fixture:\(AllocationLedgerTests.fixture)"])
        try await test.server.application.test(.router) { client in
            func post(_ body: String) async throws -> TestResponse {
                try await client.execute(
                    uri: "/api/v1/allocations", method: .post, headers: .bearer(test.adminKey), body: .json(body))
            }
            let created = try await post(#"{"owner":"job-1","gpus":2,"gpu_name":"h100"}"#)
            #expect(created.status == .created)
            #expect((created.json["gpu_uuids"] as? [String])?.count == 2)
            let id = try #require(created.json["id"] as? String)
            let tooMany = try await post(#"{"owner":"job-2","gpus":7}"#)
            #expect(tooMany.status == .conflict)
            #expect((tooMany.json["detail"] as? String)?.contains("has 6 such GPUs") == true)
            #expect(try await post(#"{"owner":"job-2","gpus":-2}"#).status == .badRequest)
            let summary = try await client.execute(
                uri: "/api/v1/resources/summary", method: .get, headers: .bearer(test.adminKey))
            #expect((summary.json["data"] as? [[String: Any]])?.first?["gpus_free"] as? Int == 6)
            let wrongOwner = try await client.execute(
                uri: "/api/v1/allocations/\(id)?owner=job-9", method: .delete, headers: .bearer(test.adminKey))
            #expect(wrongOwner.status == .forbidden)
            let released = try await client.execute(
                uri: "/api/v1/allocations/\(id)?owner=job-1", method: .delete, headers: .bearer(test.adminKey))
            #expect(released.status == .noContent)
            let again = try await client.execute(
                uri: "/api/v1/allocations/\(id)?owner=job-1", method: .delete, headers: .bearer(test.adminKey))
            #expect(again.status == .notFound)
        }
    }
}

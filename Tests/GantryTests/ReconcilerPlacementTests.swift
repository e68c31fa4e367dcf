import Foundation
import GantryBlobs
import GantryCore
import GantryOrchestrator
import GantryRegistry
import GantryResources
import GantryStore
import GantryTestSupport
import Logging
import Prometheus
import Testing

/// The orchestrator reserves resources through the ledger before starting an instance, says why
/// when nothing fits, and gives them back when instances go.
@Suite("Reconciler placement")
struct ReconcilerPlacementTests {
    /// A runtime that starts nothing: instances are "ready" at once. The point here is the
    /// bookkeeping around launches, not the engine (which the end-to-end tests run for real).
    actor InstantRuntime: EngineRuntime {
        var running: Set<String> = []
        nonisolated var supportedEngines: [String] { ["llama-cpp"] }
        func launch(_ spec: EngineLaunchSpec) async throws -> String {
            running.insert(spec.instanceID)
            return "http://127.0.0.1:1"
        }
        func health(instanceID: String) async -> EngineHealth { running.contains(instanceID) ? .ready : .failed("gone") }
        func stop(instanceID: String) async { running.remove(instanceID) }
        func crash(_ instanceID: String) { running.remove(instanceID) }
    }

    struct NoRoutes: RoutePublisher {
        func publish(_ entry: RouteEntry) async {}
        func withdraw(deployment: String) async {}
    }

    @Test("replicas beyond the node's CPU threads are not started, with the placement reason; deletion frees them")
    func reservesThreads() async throws {
        let directory = try TemporaryDirectory()
        let store = try await SQLStore.open(.sqlite(path: directory.path + "/r.sqlite"), logger: Logger(label: "test"))
        try await store.migrate(logger: Logger(label: "test"))
        let repositories = store.repositories
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let inventory = ResourceInventory(
            source: LocalNodeSource(discovery: NoGPUDiscovery(), name: "node-1"), interval: .seconds(60),
            metrics: PrometheusCollectorRegistry(), logger: Logger(label: "test"))
        let allocations = AllocationService(inventory: inventory, ledger: repositories.allocations)
        let runtime = InstantRuntime()
        // Each instance takes every core, so exactly one of two replicas fits.
        let artifacts = ArtifactCache(
            root: URL(fileURLWithPath: directory.path + "/cache"),
            objects: LocalDirectoryObjectStore(path: directory.path + "/blobs"),
            models: repositories.models, maxBytes: 1 << 30, logger: Logger(label: "test"))
        let reconciler = Reconciler(
            repositories: repositories, runtime: runtime, routes: NoRoutes(), artifacts: artifacts, interval: .seconds(60),
            logger: Logger(label: "test"), allocator: allocations, cpuThreadsPerInstance: cores)

        let artifact = directory.path + "/m.gguf"
        _ = FileManager.default.createFile(atPath: artifact, contents: Data("GGUF".utf8))
        let now = Date()
        try await repositories.models.createModel(Model(id: "m", name: "m", description: "", task: .chat, createdAt: now))
        try await repositories.models.createVersion(
            ModelVersion(
                id: "v", modelID: "m", version: "1", format: "gguf", contextLimit: 512, artifactURI: "file://" + artifact,
                status: .ready, createdAt: now))
        try await repositories.deployments.createDeployment(
            Deployment(
                id: "d", name: "chat", modelID: "m", versionID: "v", engine: "llama-cpp", replicas: 2, contextLimit: 512,
                status: .pending, statusMessage: "", createdAt: now, updatedAt: now))

        await reconciler.reconcileOnce()
        await reconciler.reconcileOnce()
        let deployment = try #require(try await repositories.deployments.deployment(named: "chat"))
        #expect(deployment.status == .degraded)
        #expect(deployment.statusMessage.contains("cannot place instance 2 of 2: needs \(cores) CPU thread"))
        #expect(deployment.statusMessage.contains("node node-1 has 0 free CPU threads"))
        let instances = try await repositories.instances.listInstances(deploymentID: "d")
        #expect(instances.count == 1)
        let held = try await repositories.allocations.listAllocations()
        #expect(held.map(\.owner) == instances.map(\.id), "the running instance owns the only allocation")

        // A crashed instance gives its threads back before its replacement takes them.
        await runtime.crash(instances[0].id)
        await reconciler.reconcileOnce()
        let replaced = try await repositories.instances.listInstances(deploymentID: "d")
        #expect(replaced.count == 1 && replaced[0].id != instances[0].id)
        #expect(try await repositories.allocations.listAllocations().map(\.owner) == replaced.map(\.id))

        try await repositories.deployments.updateStatus(deploymentID: "d", status: .deleting, message: "")
        await reconciler.reconcileOnce()
        #expect(try await repositories.allocations.listAllocations().isEmpty)
        #expect(try await allocations.summary().first?.cpuThreadsFree == cores)
        try await store.close()
    }
}

import Foundation
import GantryBlobs
import GantryCore
import GantryGateway
import GantryOrchestrator
import GantryRegistry
import GantryResources
import GantryServing
import GantryStore
import GantryTestSupport
import Logging
import Prometheus
import Testing

/// A fake runtime driver: its "engines" are records that turn ready after `readyAfterProbes`
/// probes. Tests crash them, give a revision an argument that makes it exit while starting, and
/// watch what the reconcile loop does. It is a fake on purpose: the orchestration logic is the
/// point here; real engine processes are tested end to end with llama.cpp.
actor FakeRuntime: EngineRuntime {
    struct Engine {
        var spec: EngineLaunchSpec
        var pid: Int32
        var probes = 0
        var alive = true
    }
    var engines: [String: Engine] = [:]
    var starts: [EngineLaunchSpec] = []
    var adoptable: [String: Int32] = [:]
    var readyAfterProbes = 1
    private var nextPID: Int32 = 1000

    nonisolated var supportedEngines: [String] { ["llama-cpp"] }

    func start(_ spec: EngineLaunchSpec) async throws -> StartedEngine {
        starts.append(spec)
        nextPID += 1
        engines[spec.instanceID] = Engine(spec: spec, pid: nextPID)
        return StartedEngine(endpoint: "http://127.0.0.1:1/\(spec.instanceID)", pid: nextPID)
    }

    func probe(instanceID: String) async -> EngineHealth {
        guard var engine = engines[instanceID], engine.alive else { return .exited("process exited with status 137") }
        if engine.spec.extraArguments.contains("--exit-at-start") { return .exited("process exited with status 1") }
        engine.probes += 1
        engines[instanceID] = engine
        return engine.probes >= readyAfterProbes ? .ready : .starting
    }

    func stop(instanceID: String) async { engines[instanceID] = nil }

    func adopt(instanceID: String, engine: String, pid: Int32?, endpoint: String) async -> Bool {
        guard let pid, adoptable[instanceID] == pid else { return false }
        let spec = EngineLaunchSpec(instanceID: instanceID, deploymentName: "", engine: engine, modelPath: "", contextLimit: 1)
        engines[instanceID] = Engine(spec: spec, pid: pid, probes: 100)
        return true
    }

    func stopStrays(keeping instanceIDs: Set<String>) async -> [String] { [] }
    func logs(instanceID: String, maxBytes: Int) async -> String? { nil }
    func engineMetrics(instanceID: String) async -> String? { nil }

    func kill(_ instanceID: String) { engines[instanceID]?.alive = false }
    func setAdoptable(_ list: [String: Int32]) { adoptable = list }
    func running() -> Set<String> { Set(engines.filter(\.value.alive).keys) }
}

/// A store, resources, an artifact cache and a reconcile loop over a fake runtime.
struct ReconcilerHarness {
    let directory: TemporaryDirectory
    let store: SQLStore
    let runtime: FakeRuntime
    let routes: RouteTable
    let allocations: AllocationService
    let reconciler: Reconciler
    let service: DeploymentService

    var repositories: Repositories { store.repositories }

    static func make(
        gpuFixture: String? = nil, cpuCount: Int = 16, runtime: FakeRuntime = FakeRuntime(),
        store existing: (SQLStore, TemporaryDirectory)? = nil
    ) async throws -> ReconcilerHarness {
        let directory = try existing?.1 ?? TemporaryDirectory()
        let store: SQLStore
        if let existing {
            store = existing.0
        } else {
            store = try await SQLStore.open(.sqlite(path: directory.path + "/r.sqlite"), logger: Logger(label: "test"))
            try await store.migrate(logger: Logger(label: "test"))
        }
        let discovery: any GPUDiscovery = gpuFixture.map { FixtureDiscovery(path: $0) } ?? NoGPUDiscovery()
        let inventory = ResourceInventory(
            source: LocalNodeSource(discovery: discovery, name: "node-1", cpuCount: cpuCount), interval: .seconds(60),
            metrics: PrometheusCollectorRegistry(), logger: Logger(label: "test"))
        await inventory.refresh()
        let allocations = AllocationService(inventory: inventory, ledger: store.repositories.allocations)
        let artifacts = ArtifactCache(
            root: URL(fileURLWithPath: directory.path + "/cache"),
            objects: LocalDirectoryObjectStore(path: directory.path + "/blobs"),
            models: store.repositories.models, maxBytes: 1 << 30, logger: Logger(label: "test"))
        let routes = RouteTable()
        let reconciler = Reconciler(
            repositories: store.repositories, runtime: runtime, routes: routes, artifacts: artifacts, allocator: allocations,
            timing: .init(interval: .seconds(60), restartDelay: .milliseconds(10)), defaultCPUThreads: 1,
            logger: Logger(label: "test"))
        let service = DeploymentService(
            repositories: store.repositories, supportedEngines: ["llama-cpp"], allocator: allocations, reconciler: reconciler)
        if existing == nil {
            let artifact = directory.path + "/m.gguf"
            _ = FileManager.default.createFile(atPath: artifact, contents: Data("GGUF".utf8))
            let now = Date()
            try await store.repositories.models.createModel(
                Model(id: "m", name: "m", description: "", task: .chat, createdAt: now))
            for version in ["1", "2"] {
                try await store.repositories.models.createVersion(
                    ModelVersion(
                        id: "v\(version)", modelID: "m", version: version, format: "gguf", contextLimit: 512,
                        artifactURI: "file://" + artifact, status: .ready, createdAt: now))
            }
        }
        return ReconcilerHarness(
            directory: directory, store: store, runtime: runtime, routes: routes, allocations: allocations,
            reconciler: reconciler, service: service)
    }

    func deployment(_ name: String = "chat") async throws -> Deployment {
        try #require(try await repositories.deployments.deployment(named: name))
    }

    func instances(_ name: String = "chat") async throws -> [EngineInstance] {
        try await repositories.instances.listInstances(deploymentID: try await deployment(name).id)
    }

    func targets(_ name: String = "chat") async -> Int {
        routes.entry(for: name)?.targets.count ?? 0
    }

    func events(_ name: String = "chat") async throws -> [DeploymentEvent] {
        try await repositories.deployments.events(deploymentID: try await deployment(name).id, limit: 1000)
    }

    /// Runs `body` and closes the store whatever happens (SQLite traps on an unclosed connection).
    func run(_ body: (ReconcilerHarness) async throws -> Void) async throws {
        do {
            try await body(self)
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    /// Passes until `condition` holds (at most `passes`).
    func pass(until condition: () async throws -> Bool, passes: Int = 50) async throws -> Bool {
        for _ in 0..<passes {
            await reconciler.reconcileOnce()
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}

@Suite("Reconciler with a fake runtime")
struct ReconcilerTests {
    @Test("replicas beyond the node's CPU threads are not started, with the placement reason; deletion frees them")
    func reservesThreads() async throws {
        try await ReconcilerHarness.make().run { h in
            let cores = 16
            _ = try await h.service.create(
                DeploymentRequest(name: "chat", model: "m", resources: ReplicaResources(cpuThreads: cores), replicas: 2))
            await h.reconciler.reconcileOnce()
            await h.reconciler.reconcileOnce()
            let deployment = try await h.deployment()
            #expect(deployment.status == .degraded)
            #expect(deployment.statusMessage.contains("cannot place instance 2 of 2: needs \(cores) CPU thread"))
            #expect(deployment.statusMessage.contains("node node-1 has 0 free CPU threads"))
            let instances = try await h.instances()
            #expect(instances.count == 1 && instances[0].state == .ready)
            #expect(try await h.repositories.allocations.listAllocations().map(\.owner) == instances.map(\.id))

            try await h.service.delete(name: "chat")
            await h.reconciler.reconcileOnce()
            #expect(try await h.repositories.allocations.listAllocations().isEmpty)
            #expect(try await h.allocations.summary().first?.cpuThreadsFree == cores)
        }
    }

    @Test("GPU deployments get whole GPUs pinned by UUID; impossible requests are refused at creation")
    func gpuPlacement() async throws {
        try await ReconcilerHarness.make(gpuFixture: ResourceTests.fixtures + "/8xH100.csv").run { h in
            _ = try await h.service.create(
                DeploymentRequest(name: "chat", model: "m", resources: ReplicaResources(gpus: 2, gpuName: "H100")))
            #expect(try await h.pass { try await h.instances().first?.state == .ready })
            let instance = try #require(try await h.instances().first)
            #expect(instance.gpuUUIDs.count == 2)
            let started = try #require(await h.runtime.starts.last)
            #expect(started.gpuUUIDs == instance.gpuUUIDs, "the engine is started on exactly the GPUs it holds")
            #expect(try await h.repositories.allocations.listAllocations().flatMap(\.gpuUUIDs) == instance.gpuUUIDs)

            // Seven more GPUs than the node has free: created (it could fit an empty node), but not placed.
            _ = try await h.service.create(DeploymentRequest(name: "big", model: "m", resources: ReplicaResources(gpus: 7)))
            await h.reconciler.reconcileOnce()
            let big = try await h.deployment("big")
            #expect(big.status == .failed)
            #expect(
                big.statusMessage.contains("needs 7 GPUs and 1 CPU thread: node node-1 has 6 such GPUs"), "\(big.statusMessage)")

            let refusals: [(DeploymentRequest, String)] = [
                (DeploymentRequest(name: "x", model: "m", resources: ReplicaResources(gpus: 9)), "no node could ever run this"),
                (
                    DeploymentRequest(name: "x", model: "m", resources: ReplicaResources(gpus: 1, gpuName: "A100")),
                    "matching 'A100'"
                ),
                (DeploymentRequest(name: "x", model: "nope"), "model 'nope' not found"),
                (DeploymentRequest(name: "x", model: "m", version: "7"), "version '7' of model 'm' not found"),
                (
                    DeploymentRequest(name: "x", model: "m", minReplicas: 3, maxReplicas: 2),
                    "min_replicas (3) is greater than max_replicas (2)"
                ),
                (DeploymentRequest(name: "x", model: "m", contextLimit: 4096), "above version 2's limit of 512 tokens"),
                (DeploymentRequest(name: "x", model: "m", engine: "vllm"), "engine 'vllm' is not available"),
                (DeploymentRequest(name: "x", model: "m", engineArgs: ["--port", "1"]), "'--port' is set by Gantry"),
                (DeploymentRequest(name: "x", model: "m", access: AccessPolicy(methods: [])), "access.methods"),
                (DeploymentRequest(name: "x", model: "m", limits: FrequencyLimits(tokensPerMinute: 0)), "tokens_per_minute"),
            ]
            for (request, message) in refusals {
                let error = await #expect(throws: GantryError.self) { try await h.service.create(request) }
                #expect(error?.message.contains(message) == true, "\(error?.message ?? "") should say \(message)")
            }
            let stray = try await h.repositories.deployments.deployment(named: "x")
            #expect(stray == nil)
        }
    }

    @Test("a killed engine restarts on the same instance and resources; repeated crashes end in a crash loop")
    func restartsAndCrashLoop() async throws {
        try await ReconcilerHarness.make().run { h in
            _ = try await h.service.create(DeploymentRequest(name: "chat", model: "m"))
            #expect(try await h.pass { try await h.instances().first?.state == .ready })
            let first = try #require(try await h.instances().first)
            let allocation = try await h.repositories.allocations.listAllocations()

            await h.runtime.kill(first.id)
            await h.reconciler.reconcileOnce()
            #expect(await h.targets() == 0, "a dead instance leaves routing at the next probe")
            #expect(
                try await h.pass {
                    let ready = try await h.instances().first?.state == .ready
                    let targets = await h.targets()
                    return ready && targets == 1
                })
            let restarted = try #require(try await h.instances().first)
            #expect(restarted.id == first.id && restarted.restarts == 1)
            #expect(try await h.repositories.allocations.listAllocations() == allocation, "it keeps its allocation")

            // Kill it every time it comes up: after five crashes in a row it is a crash loop.
            for _ in 0..<20 {
                if let instance = try await h.instances().first, instance.state == .ready || instance.state == .starting {
                    await h.runtime.kill(instance.id)
                }
                await h.reconciler.reconcileOnce()
                // At least the longest restart delay before the fifth crash (10 ms doubled twice),
                // so every pass finds the restart due: the loop is bounded by its passes.
                try await Task.sleep(for: .milliseconds(40))
            }
            let looped = try #require(try await h.instances().first)
            #expect(looped.state == .failed)
            #expect(looped.stateMessage.contains("crash loop: 5 crashes in a row"))
            let deployment = try await h.deployment()
            #expect(deployment.status == .failed && deployment.statusMessage.contains("crash loop"))
            #expect(try await h.events().contains { $0.kind == "instance_crash_loop" })
            #expect(try await h.repositories.allocations.listAllocations().isEmpty, "a crash-looped instance frees its resources")
        }
    }

    @Test("a rolling update surges one instance at a time and never drops below the wanted ready count")
    func rollingUpdate() async throws {
        try await ReconcilerHarness.make().run { h in
            _ = try await h.service.create(DeploymentRequest(name: "chat", model: "m", version: "1", replicas: 2))
            #expect(try await h.pass { await h.targets() == 2 })
            let old = Set(try await h.instances().map(\.id))
            let before = try await h.deployment().revision

            let updated = try await h.service.update(name: "chat", DeploymentRequest(version: "2"))
            #expect(updated.previousRevision == before && updated.revision.version == "2")
            var sawUpdating = false
            let done = try await h.pass {
                let instances = try await h.instances()
                #expect(instances.filter { $0.state.isActive }.count <= 3, "at most one instance above the wanted two")
                #expect(await h.targets() >= 2, "two instances serve throughout")
                if try await h.deployment().status == .updating { sawUpdating = true }
                return instances.count == 2 && instances.allSatisfy { !old.contains($0.id) && $0.state == .ready }
            }
            #expect(done)
            #expect(sawUpdating)
            #expect(await h.routes.entry(for: "chat")?.version == "2")
            let events = try await h.events().map(\.message)
            #expect(events.filter { $0.hasPrefix("draining: replaced by revision") }.count == 2)
        }
    }

    @Test("a new revision that cannot start is rolled back by itself while the old instances keep serving")
    func rollback() async throws {
        try await ReconcilerHarness.make().run { h in
            _ = try await h.service.create(DeploymentRequest(name: "chat", model: "m", version: "1", replicas: 2))
            #expect(try await h.pass { await h.targets() == 2 })
            let old = Set(try await h.instances().map(\.id))
            let good = try await h.deployment().revision

            _ = try await h.service.update(name: "chat", DeploymentRequest(version: "2", engineArgs: ["--exit-at-start"]))
            let rolledBack = try await h.pass {
                #expect(await h.targets() == 2)
                return try await h.deployment().revision == good
            }
            #expect(rolledBack)
            #expect(try await h.pass { try await h.deployment().status == .ready })
            #expect(Set(try await h.instances().map(\.id)) == old, "the old instances were never touched")
            #expect(try await h.deployment().previousRevision == nil)
            let rollback = try #require(try await h.events().first { $0.kind == "rolled_back" })
            #expect(rollback.message.contains("rolled back to version 1"))
        }
    }

    @Test(
        "a canary takes its share of requests beside the main revision; name@version pins; weight 0 or a failed start removes it")
    func canary() async throws {
        try await ReconcilerHarness.make().run { h in
            _ = try await h.service.create(DeploymentRequest(name: "chat", model: "m", version: "1"))
            #expect(try await h.pass { await h.targets() == 1 })
            let main = try #require(try await h.instances().first)
            _ = try await h.service.update(name: "chat", DeploymentRequest(canary: .init(version: "2", weight: 25)))
            #expect(try await h.pass { await h.targets() == 2 })
            let canary = try #require(try await h.instances().first { $0.id != main.id })
            var toCanary = 0
            for _ in 0..<400 {
                let target = try #require(try await h.routes.acquire(deployment: "chat", timeout: .seconds(1), maxQueued: 1))
                if target.instanceID == canary.id { toCanary += 1 }
                h.routes.finish(instanceID: target.instanceID)
            }
            #expect((60...140).contains(toCanary), "about a quarter of 400 requests go to the canary, not \(toCanary)")
            for (version, instance) in [("2", canary.id), ("1", main.id)] {
                let pinned = try #require(
                    try await h.routes.acquire(deployment: "chat", version: version, timeout: .seconds(1), maxQueued: 1))
                #expect(pinned.instanceID == instance)
                h.routes.finish(instanceID: pinned.instanceID)
            }
            await #expect(throws: GantryError.self) {
                try await h.routes.acquire(deployment: "chat", version: "7", timeout: .seconds(1), maxQueued: 1)
            }
            let deployment = try await h.deployment()
            #expect(deployment.status == .ready && deployment.revision.version == "1")
            #expect(deployment.canary?.revision.version == "2" && deployment.canary?.weight == 25)

            _ = try await h.service.update(name: "chat", DeploymentRequest(canary: .init(weight: 0)))
            let removed = try await h.pass {
                let ids = try await h.instances().map(\.id)
                let targets = await h.targets()
                return ids == [main.id] && targets == 1
            }
            #expect(removed)

            _ = try await h.service.update(
                name: "chat", DeploymentRequest(canary: .init(version: "2", weight: 50, engineArgs: ["--exit-at-start"])))
            #expect(try await h.pass { try await h.deployment().canary == nil })
            #expect(try await h.events().contains { $0.kind == "canary_removed" })
            #expect(try await h.pass { try await h.instances().map(\.id) == [main.id] })
            #expect(await h.targets() == 1)
        }
    }

    @Test("load scales a service up within min and max, idleness scales it back down, stably")
    func autoscaling() async throws {
        try await ReconcilerHarness.make().run { h in
            _ = try await h.service.create(
                DeploymentRequest(
                    name: "chat", model: "m", minReplicas: 1, maxReplicas: 3,
                    autoscaling: .init(targetInFlightPerReplica: 2, scaleUpWindowSeconds: 0, scaleDownWindowSeconds: 1)))
            #expect(try await h.pass { await h.targets() == 1 })

            // Five requests in flight at a target of two per replica: three replicas (the max).
            var held: [String] = []
            for _ in 0..<5 {
                held.append(
                    try #require(try await h.routes.acquire(deployment: "chat", timeout: .seconds(1), maxQueued: 1)).instanceID)
            }
            #expect(try await h.pass { try await h.deployment().replicas == 3 })
            #expect(try await h.pass { await h.targets() == 3 })
            #expect(try await h.events().contains { $0.message.contains("scaled from 1 to 3 replicas") })

            // Still loaded: no flapping down while the requests run.
            for _ in 0..<5 { await h.reconciler.reconcileOnce() }
            #expect(try await h.deployment().replicas == 3)

            for id in held { h.routes.finish(instanceID: id) }
            #expect(try await h.pass(until: { try await h.deployment().replicas == 1 }, passes: 200))
            #expect(try await h.pass { try await h.instances().count == 1 })
        }
    }

    @Test("an idle service with min 0 scales to zero; a request waits in the queue, starts an instance, then runs")
    func scaleFromZero() async throws {
        try await ReconcilerHarness.make().run { h in
            _ = try await h.service.create(
                DeploymentRequest(
                    name: "chat", model: "m", minReplicas: 0, maxReplicas: 1,
                    autoscaling: .init(scaleDownWindowSeconds: 1)))
            #expect(try await h.pass(until: { try await h.deployment().status == .idle }, passes: 200))
            #expect(try await h.instances().isEmpty)
            #expect(await h.routes.entry(for: "chat") != nil, "a service at zero keeps its route, so requests can wait")

            let request = Task { try await h.routes.acquire(deployment: "chat", timeout: .seconds(10), maxQueued: 4) }
            #expect(try await h.pass { try await h.deployment().replicas == 1 })
            #expect(try await h.pass { await h.targets() == 1 })
            let target = try #require(try await request.value)
            #expect(try await h.instances().map(\.id) == [target.instanceID])
            #expect(try await h.events().contains { $0.message.contains("scaled from 0 to 1 replicas: 1 request(s) waiting") })

            h.routes.finish(instanceID: target.instanceID)
        }
    }

    @Test("the gateway's queue for a model without ready instances is bounded and times out with a clear error")
    func boundedQueue() async throws {
        let routes = RouteTable()
        await routes.publish(RouteEntry(deployment: "chat", version: "1", contextLimit: 8, createdAt: Date(), targets: []))
        let waiting = Task { try await routes.acquire(deployment: "chat", timeout: .milliseconds(300), maxQueued: 1) }
        try await waitUntil("the first request is queued", within: .seconds(5), every: .milliseconds(5)) {
            await routes.takeLoad(deployment: "chat").queued == 1
        }
        let full = await #expect(throws: GantryError.self) {
            try await routes.acquire(deployment: "chat", timeout: .seconds(5), maxQueued: 1)
        }
        #expect(full?.message.contains("queue is full") == true)
        let timedOut = await #expect(throws: GantryError.self) { try await waiting.value }
        #expect(timedOut?.message.contains("had no ready instance within") == true)
        #expect(timedOut?.code == "model_not_ready")
        #expect(try await routes.acquire(deployment: "other", timeout: .seconds(1), maxQueued: 1) == nil)
    }

    @Test("a restarted Gantry adopts engines still running, restarts the rest on the same resources")
    func adoption() async throws {
        try await ReconcilerHarness.make().run { first in
            _ = try await first.service.create(DeploymentRequest(name: "chat", model: "m", replicas: 2))
            #expect(try await first.pass { await first.targets() == 2 })
            let instances = try await first.instances()
            let allocations = try await first.repositories.allocations.listAllocations()

            // A new process on the same store: one engine survived the crash, one did not.
            let runtime = FakeRuntime()
            await runtime.setAdoptable([instances[0].id: try #require(instances[0].pid)])
            let second = try await ReconcilerHarness.make(runtime: runtime, store: (first.store, first.directory))
            await second.reconciler.adoptOrCleanUp()
            #expect(try await second.pass { await second.targets() == 2 })
            let after = try await second.instances()
            #expect(after.map(\.id) == instances.map(\.id), "no instance was replaced")
            #expect(await runtime.starts.map(\.instanceID) == [instances[1].id], "only the dead engine was started again")
            #expect(try await second.repositories.allocations.listAllocations() == allocations, "no double allocation")
            #expect(try await second.events().contains { $0.kind == "instance_adopted" })
        }
    }
}

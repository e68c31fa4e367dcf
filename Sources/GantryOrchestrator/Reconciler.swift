import Foundation
public import GantryCore
public import Logging
public import ServiceLifecycle

/// The reconcile loop: makes running engine instances match the stored deployments.
///
/// Level-triggered and idempotent: each pass reads the desired state (deployments) and the
/// actual state (instance records and what the runtime reports), and takes the next steps to
/// close the gap. It runs every `interval`, more often while instances change state, and at once
/// when woken (a deployment changed, a request waits, the gateway lost an instance).
///
/// Instance life: `pending → placing → fetching → starting → ready → draining → stopped`.
/// A crashed instance is started again on the same resources after an exponential back-off;
/// after `crashLoopLimit` crashes without a stable run it is `failed` (a crash loop).
public actor Reconciler: Service {
    public struct Timing: Sendable {
        /// Between passes when nothing is changing; also the health probe interval.
        public var interval: Duration
        /// Between passes while instances start, drain or wait to restart.
        public var busyInterval: Duration
        /// How long an engine may take from spawn to healthy.
        public var startupTimeout: Duration
        /// How long a draining instance may keep requests before it is stopped anyway.
        public var drainTimeout: Duration
        /// Failed probes in a row before a ready instance is restarted (it leaves routing after one).
        public var unhealthyRestartAfter: Int
        /// Crashes without a stable run before an instance is declared a crash loop.
        public var crashLoopLimit: Int
        /// How long an instance must stay ready for its crash count to start again from zero.
        public var stableAfter: Duration
        /// How long a crash-looped instance stays failed before a fresh one replaces it.
        public var crashLoopCooldown: Duration
        /// The back-off before the second restart; it doubles with each crash, up to a minute.
        public var restartDelay: Duration

        public init(
            interval: Duration, busyInterval: Duration = .milliseconds(100), startupTimeout: Duration = .seconds(300),
            drainTimeout: Duration = .seconds(120), unhealthyRestartAfter: Int = 3, crashLoopLimit: Int = 5,
            stableAfter: Duration = .seconds(60), crashLoopCooldown: Duration = .seconds(300),
            restartDelay: Duration = .seconds(1)
        ) {
            self.interval = interval
            self.busyInterval = busyInterval
            self.startupTimeout = startupTimeout
            self.drainTimeout = drainTimeout
            self.unhealthyRestartAfter = unhealthyRestartAfter
            self.crashLoopLimit = crashLoopLimit
            self.stableAfter = stableAfter
            self.crashLoopCooldown = crashLoopCooldown
            self.restartDelay = restartDelay
        }
    }

    let repositories: Repositories
    let runtime: any EngineRuntime
    let routes: any RoutePublisher
    let timing: Timing
    let logger: Logger
    /// Reserves CPU threads and GPUs for each instance before it starts.
    let allocator: any ResourceAllocator
    /// CPU threads an instance gets when its deployment does not say.
    let defaultCPUThreads: Int
    /// Fetches a version's files onto this node before an engine starts.
    let artifacts: any ArtifactResolver
    private let wakeups: AsyncStream<Void>
    private nonisolated let wakeupContinuation: AsyncStream<Void>.Continuation

    /// What the loop remembers between passes; none of it must survive a restart.
    struct InstanceMemory {
        var startedAt: ContinuousClock.Instant?
        var readySince: ContinuousClock.Instant?
        var failedProbes = 0
        var healthy = true
        var consecutiveCrashes = 0
        var retryAt: ContinuousClock.Instant?
        var drainingSince: ContinuousClock.Instant?
    }
    var memory: [String: InstanceMemory] = [:]
    /// Placement or fetch failures per deployment, to back off instead of spinning.
    var backoff: [String: (count: Int, retryAt: ContinuousClock.Instant, reason: String)] = [:]
    /// Failed starts of the current revision during a rollout, per deployment.
    var rolloutFailures: [String: Int] = [:]
    /// Failed starts of the canary revision, per deployment.
    var canaryFailures: [String: Int] = [:]
    /// Autoscaling recommendations per deployment, newest last.
    var recommendations: [String: [(at: ContinuousClock.Instant, replicas: Int)]] = [:]
    var busy = false

    public init(
        repositories: Repositories, runtime: any EngineRuntime, routes: any RoutePublisher, artifacts: any ArtifactResolver,
        allocator: any ResourceAllocator, timing: Timing, defaultCPUThreads: Int, logger: Logger
    ) {
        self.repositories = repositories
        self.runtime = runtime
        self.routes = routes
        self.artifacts = artifacts
        self.allocator = allocator
        self.timing = timing
        self.defaultCPUThreads = defaultCPUThreads
        self.logger = logger
        (wakeups, wakeupContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Asks for a pass as soon as possible.
    public nonisolated func wake() {
        wakeupContinuation.yield()
    }

    public func run() async throws {
        await routes.onAttentionNeeded { [wakeupContinuation] in wakeupContinuation.yield() }
        await adoptOrCleanUp()
        let ticker = Task { [weak self, interval = timing.interval] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                self?.wake()
            }
        }
        defer { ticker.cancel() }
        wake()
        await cancelWhenGracefulShutdown {
            for await _ in self.wakeups {
                await self.reconcileOnce()
                // While instances change state, look again soon rather than at the next tick.
                if await self.busy {
                    let pause = self.timing.busyInterval
                    Task { [weak self] in
                        try? await Task.sleep(for: pause)
                        self?.wake()
                    }
                }
            }
        }
        for deployment in (try? await repositories.deployments.listDeployments()) ?? [] {
            await routes.withdraw(deployment: deployment.name)
        }
    }

    /// One pass over every deployment. Errors are recorded on the deployment, never thrown.
    public func reconcileOnce() async {
        let deployments: [Deployment]
        do {
            deployments = try await repositories.deployments.listDeployments()
        } catch {
            logger.error("reconcile: cannot list deployments", metadata: ["error": "\(error)"])
            return
        }
        let unreachable = await routes.takeUnreachableInstances()
        for id in unreachable { memory[id, default: InstanceMemory()].healthy = false }
        busy = false
        for deployment in deployments {
            if Task.isCancelled { return }
            do {
                if deployment.status == .deleting {
                    try await remove(deployment)
                } else {
                    try await converge(deployment)
                }
            } catch {
                logger.error("reconcile failed", metadata: ["deployment": "\(deployment.name)", "error": "\(error)"])
            }
        }
    }

    // MARK: - Adoption after a restart

    /// Instances recorded by an earlier run: engines still running are adopted, the rest start
    /// again on the resources they hold; engine processes no record owns are stopped. Runs once,
    /// before the first pass.
    public func adoptOrCleanUp() async {
        guard let recorded = try? await repositories.instances.listInstances(deploymentID: nil) else { return }
        let deployments = Dictionary(
            ((try? await repositories.deployments.listDeployments()) ?? []).map { ($0.id, $0) },
            uniquingKeysWith: { a, _ in a })
        var kept: Set<String> = []
        for var instance in recorded {
            guard let deployment = deployments[instance.deploymentID] else { continue }
            kept.insert(instance.id)
            let running = [.starting, .ready, .draining].contains(instance.state)
            if running, let pid = instance.pid,
                await runtime.adopt(instanceID: instance.id, engine: deployment.engine, pid: pid, endpoint: instance.endpoint)
            {
                memory[instance.id] = InstanceMemory(startedAt: .now, readySince: instance.state == .ready ? .now : nil)
                if instance.state == .draining { memory[instance.id]?.drainingSince = .now }
                await event(deployment, instance, "instance_adopted", "adopted running engine (pid \(pid)) after a restart")
            } else if instance.state.isActive, instance.state != .pending {
                instance.state = .pending
                instance.pid = nil
                instance.endpoint = ""
                try? await save(&instance, message: "its engine was gone after a restart; starting again")
                await event(deployment, instance, "instance_state", "engine gone after a restart; starting again")
            }
        }
        _ = await runtime.stopStrays(keeping: kept)
    }

    // MARK: - Deletion

    private func remove(_ deployment: Deployment) async throws {
        await routes.withdraw(deployment: deployment.name)
        for instance in try await repositories.instances.listInstances(deploymentID: deployment.id) {
            await runtime.stop(instanceID: instance.id)
            try await allocator.releaseAll(owner: instance.id)
            memory[instance.id] = nil
        }
        try await repositories.deployments.deleteDeployment(id: deployment.id)
        backoff[deployment.id] = nil
        rolloutFailures[deployment.id] = nil
        canaryFailures[deployment.id] = nil
        recommendations[deployment.id] = nil
        logger.info("deployment deleted", metadata: ["deployment": "\(deployment.name)"])
    }

    // MARK: - Convergence

    private func converge(_ original: Deployment) async throws {
        var deployment = original
        var instances = try await repositories.instances.listInstances(deploymentID: deployment.id)
        let load = await routes.takeLoad(deployment: deployment.name)

        // 1. Observe: probe every instance with a process, all at once.
        let health = await probe(instances.filter { [.starting, .ready, .draining].contains($0.state) })
        for index in instances.indices {
            try await advance(&instances[index], deployment: deployment, health: health[instances[index].id], load: load)
        }
        instances.removeAll { $0.state == .stopped }

        // 2. A roll-out whose new instances keep failing goes back to the previous revision.
        if try await rollBackIfFailing(&deployment, instances: instances) {
            instances = try await repositories.instances.listInstances(deploymentID: deployment.id)
        }

        // 3. Autoscale from the gateway's load.
        try await autoscale(&deployment, load: load, instances: instances)

        // 4. Start, drain and stop instances towards the wanted number and revision; the
        // canary's instances are kept apart.
        let canaryID = deployment.canary?.revision.id
        var mainInstances = instances.filter { $0.revisionID != canaryID }
        var canaryInstances = instances.filter { $0.revisionID == canaryID }
        try await rollOut(deployment, instances: &mainInstances, load: load)
        if try await maintainCanary(&deployment, instances: &canaryInstances) {
            mainInstances += canaryInstances
            canaryInstances = []
        }
        instances = mainInstances + canaryInstances

        // 5. Publish what is ready and record the status.
        await publish(deployment, instances: instances)
        try await recordStatus(deployment, instances: instances)
        if instances.contains(where: { $0.state != .ready && $0.state != .failed }) || load.queued > 0 {
            busy = true
        }
    }

    private func probe(_ instances: [EngineInstance]) async -> [String: EngineHealth] {
        await withTaskGroup(of: (String, EngineHealth).self) { group in
            for instance in instances {
                group.addTask { (instance.id, await self.runtime.probe(instanceID: instance.id)) }
            }
            var results: [String: EngineHealth] = [:]
            for await (id, health) in group { results[id] = health }
            return results
        }
    }

    /// Moves one instance along its life according to what the runtime reports.
    private func advance(
        _ instance: inout EngineInstance, deployment: Deployment, health: EngineHealth?, load: DeploymentLoad
    ) async throws {
        var remembered = memory[instance.id, default: InstanceMemory()]
        defer { memory[instance.id] = remembered }
        let now = ContinuousClock.now
        switch instance.state {
        case .starting:
            switch health {
            case .ready:
                let took = remembered.startedAt.map { now - $0 }
                remembered.readySince = now
                remembered.healthy = true
                remembered.failedProbes = 0
                try await save(&instance, .ready, message: "")
                if instance.revisionID == deployment.revision.id { rolloutFailures[deployment.id] = nil }
                let after = took.map { String(format: " after %.2f s", $0.inSeconds) } ?? ""
                await event(deployment, instance, "instance_state", "ready\(after) at \(instance.endpoint)")
                logger.info(
                    "instance ready", metadata: ["deployment": "\(deployment.name)", "instance_id": "\(instance.id)"])
            case .exited(let reason):
                try await crashed(&instance, deployment: deployment, reason: reason, memory: &remembered)
            default:
                if let started = remembered.startedAt, now - started > timing.startupTimeout {
                    await runtime.stop(instanceID: instance.id)
                    try await crashed(
                        &instance, deployment: deployment,
                        reason: "not healthy within \(timing.startupTimeout) of starting", memory: &remembered)
                } else if remembered.startedAt == nil {
                    remembered.startedAt = now
                }
            }
        case .ready:
            switch health {
            case .ready:
                remembered.healthy = true
                remembered.failedProbes = 0
                if let since = remembered.readySince, now - since > timing.stableAfter { remembered.consecutiveCrashes = 0 }
            case .exited(let reason):
                try await crashed(&instance, deployment: deployment, reason: reason, memory: &remembered)
            case .unhealthy, .starting:
                let why = if case .unhealthy(let text) = health { text } else { "the engine reports it is loading" }
                remembered.healthy = false
                remembered.failedProbes += 1
                await event(deployment, instance, "instance_unhealthy", "out of routing: \(why)")
                if remembered.failedProbes >= timing.unhealthyRestartAfter {
                    await runtime.stop(instanceID: instance.id)
                    try await crashed(
                        &instance, deployment: deployment,
                        reason: "unhealthy for \(remembered.failedProbes) probes: \(why)", memory: &remembered)
                }
            case nil:
                break
            }
        case .draining:
            let busyRequests = load.inFlightByInstance[instance.id] ?? 0
            let since = remembered.drainingSince ?? now
            remembered.drainingSince = since
            let exited = if case .exited = health { true } else { false }
            if busyRequests == 0 || now - since > timing.drainTimeout || exited {
                try await stopInstance(
                    &instance, deployment: deployment,
                    reason: busyRequests == 0 ? "drained" : "drain timeout with \(busyRequests) requests in flight")
            }
        case .pending, .placing, .fetching:
            // New instances are placed and started within one pass, so one without a node here
            // was cut off by a restart of Gantry: forget it, and the roll-out step makes another.
            if instance.node.isEmpty {
                try await stopInstance(&instance, deployment: deployment, reason: "interrupted before placement")
                break
            }
            // A restart after a crash, once its back-off has passed.
            if let retryAt = remembered.retryAt, now < retryAt { break }
            try await startProcess(&instance, deployment: deployment, memory: &remembered)
        case .failed, .stopped:
            break
        }
    }

    /// Records a crash; starts the instance again after a back-off, or declares a crash loop.
    private func crashed(
        _ instance: inout EngineInstance, deployment: Deployment, reason: String, memory remembered: inout InstanceMemory
    ) async throws {
        await runtime.stop(instanceID: instance.id)
        let wasStarting = instance.state == .starting
        remembered.consecutiveCrashes += 1
        remembered.readySince = nil
        remembered.healthy = false
        instance.restarts += 1
        instance.pid = nil
        if wasStarting, instance.revisionID == deployment.revision.id, deployment.previousRevision != nil {
            rolloutFailures[deployment.id, default: 0] += 1
        }
        if wasStarting, instance.revisionID == deployment.canary?.revision.id {
            canaryFailures[deployment.id, default: 0] += 1
        }
        if remembered.consecutiveCrashes >= timing.crashLoopLimit {
            try await save(
                &instance, .failed, message: "crash loop: \(remembered.consecutiveCrashes) crashes in a row; last: \(reason)")
            try await allocator.releaseAll(owner: instance.id)
            await event(deployment, instance, "instance_crash_loop", instance.stateMessage)
            return
        }
        // The first restart is immediate; then the delay doubles from `restartDelay`, up to a minute.
        let crashes = remembered.consecutiveCrashes
        let delay = crashes == 1 ? Duration.zero : min(.seconds(60), timing.restartDelay * (1 << min(crashes - 2, 16)))
        remembered.retryAt = .now + delay
        try await save(&instance, .pending, message: "restarting in \(delay) after: \(reason)")
        await event(deployment, instance, "instance_crashed", "\(reason); restart \(instance.restarts) in \(delay)")
        logger.warning("instance crashed", metadata: ["instance_id": "\(instance.id)", "reason": "\(reason)"])
        // A first crash restarts in this pass (a later one after its back-off, in a later pass).
        if delay == .zero { try await startProcess(&instance, deployment: deployment, memory: &remembered) }
    }

    private func stopInstance(_ instance: inout EngineInstance, deployment: Deployment, reason: String) async throws {
        await runtime.stop(instanceID: instance.id)
        try await allocator.releaseAll(owner: instance.id)
        // Its resources are free again: a placement that failed may succeed now.
        backoff[deployment.id] = nil
        try await repositories.instances.deleteInstance(id: instance.id)
        instance.state = .stopped
        memory[instance.id] = nil
        await event(deployment, instance, "instance_state", "stopped (\(reason))")
    }

    // MARK: - Creating and starting instances

    /// Places a new instance, fetches its model and starts its engine.
    private func createInstance(_ deployment: Deployment, ordinal: String, revision: DeploymentRevision? = nil) async throws
        -> EngineInstance?
    {
        if let failure = backoff[deployment.id], ContinuousClock.now < failure.retryAt { return nil }
        let now = Date()
        let revision = revision ?? deployment.revision
        var instance = EngineInstance(
            id: Identifier.make("ins"), deploymentID: deployment.id, revisionID: revision.id, node: "",
            state: .pending, stateMessage: "", createdAt: now, updatedAt: now)
        try await repositories.instances.createInstance(instance)
        await event(deployment, instance, "instance_state", "pending: \(ordinal)")

        try await save(&instance, .placing, message: "")
        var resources = revision.resources
        resources.cpuThreads = resources.cpuThreads ?? defaultCPUThreads
        do {
            let allocation = try await allocator.reserve(owner: instance.id, resources: resources)
            instance.node = allocation.node
            instance.gpuUUIDs = allocation.gpuUUIDs
        } catch let error as GantryError where error.kind == .conflict {
            try await repositories.instances.deleteInstance(id: instance.id)
            let reason = "cannot place \(ordinal): \(error.message)"
            recordBackoff(deployment, reason: reason)
            await event(deployment, instance, "placement_failed", reason)
            return nil
        }
        var remembered = InstanceMemory()
        try await startProcess(&instance, deployment: deployment, memory: &remembered)
        memory[instance.id] = remembered
        return instance
    }

    /// fetching → starting: makes sure the model files are here and spawns the engine.
    private func startProcess(
        _ instance: inout EngineInstance, deployment: Deployment, memory remembered: inout InstanceMemory
    ) async throws {
        try await save(&instance, .fetching, message: "")
        let revision = revision(of: instance, in: deployment)
        let modelPath: String
        do {
            guard let version = try await repositories.models.version(id: revision.versionID) else {
                throw GantryError.notFound("model version \(revision.version) no longer exists")
            }
            modelPath = try await artifacts.localPath(for: version)
        } catch {
            let reason = "cannot fetch the model files: \((error as? GantryError)?.message ?? "\(error)")"
            try await allocator.releaseAll(owner: instance.id)
            try await repositories.instances.deleteInstance(id: instance.id)
            instance.state = .stopped
            memory[instance.id] = nil
            recordBackoff(deployment, reason: reason)
            await event(deployment, instance, "fetch_failed", reason)
            return
        }
        let spec = EngineLaunchSpec(
            instanceID: instance.id, deploymentName: deployment.name, engine: revision.engine, modelPath: modelPath,
            contextLimit: revision.contextLimit, extraArguments: revision.engineArgs, gpuUUIDs: instance.gpuUUIDs,
            cpuThreads: revision.resources.cpuThreads ?? defaultCPUThreads)
        do {
            let started = try await runtime.start(spec)
            instance.endpoint = started.endpoint
            instance.pid = started.pid
            remembered.startedAt = .now
            remembered.retryAt = nil
            try await save(&instance, .starting, message: "")
            let gpus = instance.gpuUUIDs.isEmpty ? "" : " on GPUs \(instance.gpuUUIDs.joined(separator: ","))"
            await event(deployment, instance, "instance_state", "starting \(revision.engine) (pid \(started.pid))\(gpus)")
        } catch {
            try await crashed(
                &instance, deployment: deployment,
                reason: "cannot start the engine: \((error as? GantryError)?.message ?? "\(error)")",
                memory: &remembered)
        }
    }

    /// The revision an instance runs: the current one, the canary, or the previous during a rollout.
    private func revision(of instance: EngineInstance, in deployment: Deployment) -> DeploymentRevision {
        if let previous = deployment.previousRevision, previous.id == instance.revisionID { return previous }
        if let canary = deployment.canary, canary.revision.id == instance.revisionID { return canary.revision }
        return deployment.revision
    }

    /// Counts a failed placement or fetch and sets when to try again: 2, 4, 8 ... up to 60 seconds.
    private func recordBackoff(_ deployment: Deployment, reason: String) {
        let count = (backoff[deployment.id]?.count ?? 0) + 1
        backoff[deployment.id] = (count, .now + .seconds(min(60, 1 << min(count, 6))), reason)
    }

    // MARK: - Roll-out, scale and drain

    private func rollOut(_ deployment: Deployment, instances: inout [EngineInstance], load: DeploymentLoad) async throws {
        let active = instances.filter { $0.state.isActive && $0.state != .draining }
        // A crash-looped instance keeps its slot until it is replaced after a cool-down, so a
        // failing engine is not restarted endlessly under new names.
        let current = instances.filter {
            $0.revisionID == deployment.revision.id && ($0.state == .failed || ($0.state.isActive && $0.state != .draining))
        }
        let old = active.filter { $0.revisionID != deployment.revision.id }
        let isReady = { (instance: EngineInstance) in
            instance.state == .ready && self.memory[instance.id]?.healthy != false
        }

        // Old instances that never became ready serve nobody: stop them now.
        for var instance in old where instance.state != .ready {
            try await stopInstance(&instance, deployment: deployment, reason: "replaced by a new revision")
            instances.removeAll { $0.id == instance.id }
        }
        let oldReady = old.filter { $0.state == .ready }

        // Start new instances: all missing at once on a fresh deployment, one at a time (surge
        // one) while old instances still serve.
        let wanted = deployment.replicas
        var missing = wanted - current.count
        if !oldReady.isEmpty {
            let surgeRoom = wanted + 1 - current.count - oldReady.count
            let startingNew = current.contains { !isReady($0) }
            missing = startingNew ? 0 : min(missing, max(0, surgeRoom), 1)
        }
        var started = 0
        while missing > 0 {
            let ordinal = "instance \(current.count + started + 1) of \(wanted)"
            guard let instance = try await createInstance(deployment, ordinal: ordinal) else {
                if !oldReady.isEmpty {
                    // No room for one more instance (one GPU, one replica): replace in place. The
                    // gateway holds requests in its queue while no instance is ready.
                    if !instances.contains(where: { $0.state == .draining }), var victim = oldReady.first {
                        try await drain(&victim, deployment: deployment, reason: "no room for a new instance beside it")
                        replace(victim, in: &instances)
                    }
                    break
                }
                // Placement failed: scale only as far as placement allows.
                if deployment.replicas > deployment.scaling.minReplicas, current.count + started < deployment.replicas {
                    var scaled = deployment
                    scaled.replicas = max(deployment.scaling.minReplicas, current.count + started)
                    if scaled.replicas != deployment.replicas {
                        try await repositories.deployments.updateSpec(scaled)
                        await event(
                            deployment, nil, "scale_blocked",
                            "kept \(scaled.replicas) replicas: \(backoff[deployment.id]?.reason ?? "placement failed")")
                    }
                }
                break
            }
            if instance.state != .stopped { instances.append(instance) }
            started += 1
            missing -= 1
        }

        // Drain what is more than wanted, once enough of the current revision is ready.
        let currentReady = instances.filter { $0.revisionID == deployment.revision.id && isReady($0) }
        var surplus = currentReady.count + oldReady.count - wanted
        if !oldReady.isEmpty, currentReady.isEmpty { surplus = 0 }
        for var instance in oldReady where surplus > 0 {
            try await drain(&instance, deployment: deployment, reason: "replaced by revision \(deployment.revision.id)")
            replace(instance, in: &instances)
            surplus -= 1
        }
        // Scaling down: not-yet-ready instances first (they serve nobody), then the newest ready.
        let extra = instances.filter { $0.revisionID == deployment.revision.id && $0.state.isActive && $0.state != .draining }
        if extra.count > wanted {
            let order = extra.sorted { a, b in
                if isReady(a) != isReady(b) { return !isReady(a) }
                return a.createdAt > b.createdAt
            }
            for var instance in order.prefix(extra.count - wanted) {
                if isReady(instance) {
                    try await drain(&instance, deployment: deployment, reason: "scaled down to \(wanted)")
                    replace(instance, in: &instances)
                } else {
                    try await stopInstance(&instance, deployment: deployment, reason: "scaled down to \(wanted)")
                    instances.removeAll { $0.id == instance.id }
                }
            }
        }
        // A crash-looped instance is replaced after the cool-down.
        for var instance in instances where instance.state == .failed {
            if Date().timeIntervalSince(instance.updatedAt) < timing.crashLoopCooldown.inSeconds { continue }
            try await stopInstance(&instance, deployment: deployment, reason: "replacing a crash-looped instance")
            instances.removeAll { $0.id == instance.id }
        }
    }

    /// Keeps the canary's replicas running. A canary that fails to start twice, or crash-loops,
    /// is removed (the main revision is untouched); returns true then, and its instances are left
    /// to the roll-out step to drain as instances of another revision.
    private func maintainCanary(_ deployment: inout Deployment, instances: inout [EngineInstance]) async throws -> Bool {
        guard let canary = deployment.canary else { return false }
        if canaryFailures[deployment.id, default: 0] >= 2 || instances.contains(where: { $0.state == .failed }) {
            deployment.canary = nil
            try await repositories.deployments.updateSpec(deployment)
            canaryFailures[deployment.id] = nil
            for var instance in instances where instance.state != .ready {
                try await stopInstance(&instance, deployment: deployment, reason: "its canary was removed")
            }
            instances.removeAll { $0.state == .stopped }
            await event(
                deployment, nil, "canary_removed", "canary version \(canary.revision.version) removed: it failed to start")
            return true
        }
        let active = instances.filter { $0.state.isActive && $0.state != .draining }
        if active.count < canary.replicas {
            for ordinal in (active.count + 1)...canary.replicas {
                guard
                    let instance = try await createInstance(
                        deployment, ordinal: "canary instance \(ordinal) of \(canary.replicas)", revision: canary.revision)
                else { break }
                if instance.state != .stopped { instances.append(instance) }
            }
        }
        for var instance in active.sorted(by: { $0.createdAt > $1.createdAt }).prefix(max(0, active.count - canary.replicas)) {
            try await drain(&instance, deployment: deployment, reason: "canary scaled to \(canary.replicas)")
            replace(instance, in: &instances)
        }
        return false
    }

    private func drain(_ instance: inout EngineInstance, deployment: Deployment, reason: String) async throws {
        memory[instance.id, default: InstanceMemory()].drainingSince = .now
        try await save(&instance, .draining, message: reason)
        await event(deployment, instance, "instance_state", "draining: \(reason)")
    }

    private func replace(_ instance: EngineInstance, in instances: inout [EngineInstance]) {
        if let index = instances.firstIndex(where: { $0.id == instance.id }) { instances[index] = instance }
    }

    /// A rollout whose new revision failed to start twice goes back to the previous revision.
    private func rollBackIfFailing(_ deployment: inout Deployment, instances: [EngineInstance]) async throws -> Bool {
        guard let previous = deployment.previousRevision,
            instances.contains(where: { $0.revisionID == previous.id && $0.state.isActive })
        else { return false }
        let newFailed = instances.contains { $0.revisionID == deployment.revision.id && $0.state == .failed }
        guard rolloutFailures[deployment.id, default: 0] >= 2 || newFailed else { return false }
        let failed = deployment.revision
        deployment.revision = previous
        deployment.previousRevision = nil
        try await repositories.deployments.updateSpec(deployment)
        rolloutFailures[deployment.id] = nil
        for var instance in instances where instance.revisionID == failed.id {
            try await stopInstance(&instance, deployment: deployment, reason: "its revision was rolled back")
        }
        let message = "rolled back to version \(previous.version): the new revision (version \(failed.version)) failed to start"
        await event(deployment, nil, "rolled_back", message)
        logger.warning("rollout rolled back", metadata: ["deployment": "\(deployment.name)"])
        return true
    }

    /// Sets the wanted replicas from the gateway's load: up when the recommendation stayed above
    /// the current size for the up window, down when it stayed below for the down window.
    private func autoscale(_ deployment: inout Deployment, load: DeploymentLoad, instances: [EngineInstance]) async throws {
        let policy = deployment.scaling
        guard policy.autoscales else {
            if deployment.replicas != policy.minReplicas {
                deployment.replicas = policy.minReplicas
                try await repositories.deployments.updateSpec(deployment)
            }
            return
        }
        let now = ContinuousClock.now
        let demand = load.peakInFlight + load.queued
        let target = max(1, policy.targetInFlightPerReplica)
        let recommended = min(policy.maxReplicas, max(policy.minReplicas, (demand + target - 1) / target))
        var history = recommendations[deployment.id, default: []]
        history.append((now, recommended))
        let keep = Duration.seconds(max(policy.scaleUpWindowSeconds, policy.scaleDownWindowSeconds) + 60)
        history.removeAll { now - $0.at > keep }
        recommendations[deployment.id] = history

        let current = deployment.replicas
        var wanted = current
        if current == 0, load.queued > 0 {
            wanted = max(1, recommended)  // scale from zero: a request is waiting
        } else if recommended > current {
            // Up once the recommendation has stayed above the size for the whole up window.
            let window = Duration.seconds(policy.scaleUpWindowSeconds)
            if let oldest = history.first, now - oldest.at >= window {
                wanted = history.filter { now - $0.at <= window }.map(\.replicas).min() ?? current
            }
        } else if recommended < current {
            // Down to the highest recommendation of the down window, once a whole window was seen.
            let window = Duration.seconds(policy.scaleDownWindowSeconds)
            if let oldest = history.first, now - oldest.at >= window {
                wanted = history.filter { now - $0.at <= window }.map(\.replicas).max() ?? current
            }
        }
        guard wanted != current else { return }
        deployment.replicas = wanted
        try await repositories.deployments.updateSpec(deployment)
        let why =
            load.queued > 0 && current == 0
            ? "\(load.queued) request(s) waiting" : "peak \(demand) request(s) in flight for a target of \(target) per replica"
        await event(deployment, nil, "scaled", "scaled from \(current) to \(wanted) replicas: \(why)")
        logger.info(
            "deployment scaled", metadata: ["deployment": "\(deployment.name)", "from": "\(current)", "to": "\(wanted)"])
    }

    // MARK: - Publishing and status

    private func publish(_ deployment: Deployment, instances: [EngineInstance]) async {
        let canaryID = deployment.canary?.revision.id
        let targets = instances.filter { $0.state == .ready && memory[$0.id]?.healthy != false }
            .map { RouteTarget(instanceID: $0.id, endpoint: $0.endpoint, canary: $0.revisionID == canaryID) }
        await routes.publish(
            RouteEntry(
                deployment: deployment.name, version: deployment.revision.version, contextLimit: deployment.contextLimit,
                createdAt: deployment.createdAt, targets: targets, access: deployment.access, limits: deployment.limits,
                canaryVersion: deployment.canary?.revision.version, canaryWeight: deployment.canary?.weight ?? 0))
    }

    private func recordStatus(_ deployment: Deployment, instances all: [EngineInstance]) async throws {
        let wanted = deployment.replicas
        // The canary's instances serve beside the main ones; the status is about the main revision.
        let canaryID = deployment.canary?.revision.id
        let instances = all.filter { $0.revisionID != canaryID }
        let ready = instances.filter { $0.state == .ready && memory[$0.id]?.healthy != false }
        let current = ready.filter { $0.revisionID == deployment.revision.id }
        let updating = instances.contains { $0.revisionID != deployment.revision.id && $0.state.isActive }
        let crashLoop = instances.first { $0.state == .failed }
        let status: DeploymentStatus
        let message: String
        if wanted == 0, !instances.contains(where: { $0.state.isActive }) {
            (status, message) = (.idle, "scaled to zero; the next request starts an instance")
        } else if updating {
            (status, message) = (
                .updating, "rolling out version \(deployment.revision.version): \(current.count) of \(wanted) new instances ready"
            )
        } else if ready.count >= wanted, wanted > 0 {
            (status, message) = (.ready, "\(ready.count) of \(wanted) instances ready")
        } else if let problem = crashLoop?.stateMessage ?? backoff[deployment.id]?.reason {
            (status, message) = (ready.isEmpty ? .failed : .degraded, problem)
        } else if !ready.isEmpty {
            (status, message) = (.degraded, "\(ready.count) of \(wanted) instances ready")
        } else {
            (status, message) = (.starting, "starting \(wanted) instance\(wanted == 1 ? "" : "s")")
        }
        if ready.count >= wanted { backoff[deployment.id] = nil }
        // Re-read: the deployment may have been marked for deletion during this pass.
        guard let stored = try await repositories.deployments.deployment(named: deployment.name), stored.status != .deleting,
            stored.status != status || stored.statusMessage != message
        else { return }
        try await repositories.deployments.updateStatus(deploymentID: deployment.id, status: status, message: message)
    }

    // MARK: - Records

    private func save(_ instance: inout EngineInstance, _ state: InstanceState? = nil, message: String) async throws {
        if let state { instance.state = state }
        instance.stateMessage = message
        instance.updatedAt = Date()
        try await repositories.instances.updateInstance(instance)
    }

    private func event(_ deployment: Deployment, _ instance: EngineInstance?, _ kind: String, _ message: String) async {
        do {
            try await repositories.deployments.recordEvent(
                DeploymentEvent(deploymentID: deployment.id, instanceID: instance?.id, kind: kind, message: message))
        } catch {
            logger.warning("cannot record event", metadata: ["deployment": "\(deployment.name)", "error": "\(error)"])
        }
    }
}

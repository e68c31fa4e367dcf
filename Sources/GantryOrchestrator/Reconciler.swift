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
        /// How long an instance drains at least, whatever the load says: gateways in other
        /// processes learn of the drain through the route watch and report their requests on it
        /// about once a second, so "none in flight" means nothing until their reports caught up
        /// (nor, to a leader that just took over, before their first report reached it).
        public var drainGrace: Duration
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
            drainTimeout: Duration = .seconds(120), drainGrace: Duration = .zero, unhealthyRestartAfter: Int = 3,
            crashLoopLimit: Int = 5,
            stableAfter: Duration = .seconds(60), crashLoopCooldown: Duration = .seconds(300),
            restartDelay: Duration = .seconds(1)
        ) {
            self.interval = interval
            self.busyInterval = busyInterval
            self.startupTimeout = startupTimeout
            self.drainTimeout = drainTimeout
            self.drainGrace = drainGrace
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
    private nonisolated let wakeups = WakeSignal()

    /// What the loop remembers between passes; none of it must survive a restart.
    struct InstanceMemory {
        var startedAt: ContinuousClock.Instant?
        var readySince: ContinuousClock.Instant?
        var failedProbes = 0
        /// When the last failed probe was counted: failures count once per `interval`, so busy
        /// passes (every 100 ms while anything changes) cannot add up to a restart in 300 ms.
        var lastFailedProbeAt: ContinuousClock.Instant?
        var healthy = true
        var consecutiveCrashes = 0
        var retryAt: ContinuousClock.Instant?
        var drainingSince: ContinuousClock.Instant?
        /// Handed to a runtime that places instances itself: it is observed, not started again,
        /// while it waits for a node or fetches its model (`placing`, `fetching`).
        var launched = false
        /// The in-place restarts the runtime last reported (a kubelet restarting the container).
        var runtimeRestarts: Int?
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
    /// Whether this process led before: its routes may be stale when it leads again.
    var hasLed = false

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
    }

    /// Asks for a pass as soon as possible.
    public nonisolated func wake() {
        wakeups.wake()
    }

    public func run() async throws {
        await lead()
        await routes.withdrawAll()
    }

    /// The loop, for as long as this process leads the control replicas (until cancelled or a
    /// graceful shutdown). `onFirstPass` runs once the engines of an earlier leader or run are
    /// adopted and a first pass has published what is ready: from then on this process's route
    /// table is the platform's. The routes stay when it ends: after a step-down this process's own
    /// `/v1` keeps serving them, as a gateway serves its last table.
    public func lead(onFirstPass: @Sendable () async -> Void = {}) async {
        // A new term knows nothing of the last one's: another replica may have led meanwhile.
        memory = [:]
        backoff = [:]
        rolloutFailures = [:]
        canaryFailures = [:]
        recommendations = [:]
        await routes.onAttentionNeeded { [wakeups] in wakeups.wake() }
        await adoptOrCleanUp()
        await reconcileOnce()
        if hasLed, let deployments = try? await repositories.deployments.listDeployments() {
            // Led again after another replica did: what it deleted meanwhile is still here.
            await routes.withdrawAll(except: Set(deployments.map(\.name)))
        }
        hasLed = true
        await onFirstPass()
        let ticker = Task { [weak self, interval = timing.interval] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                self?.wake()
            }
        }
        defer { ticker.cancel() }
        wake()
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.wakeups.wait()
                guard !Task.isCancelled else { break }
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
            let engine = deployment.revision(runBy: instance).engine
            let handedOver = runtime.placesInstances && (instance.state == .placing || instance.state == .fetching)
            if instance.state.hasProcess || handedOver,
                await runtime.adopt(instanceID: instance.id, engine: engine, pid: instance.pid, endpoint: instance.endpoint)
            {
                memory[instance.id] = InstanceMemory(
                    startedAt: .now, readySince: instance.state == .ready ? .now : nil, launched: true)
                if instance.state == .draining { memory[instance.id]?.drainingSince = .now }
                let what = instance.pid.map { "pid \($0)" } ?? "its pod"
                await event(deployment, instance, "instance_adopted", "adopted running engine (\(what)) after a restart")
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

    func remove(_ deployment: Deployment) async throws {
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

    func converge(_ original: Deployment) async throws {
        var deployment = original
        var instances = try await repositories.instances.listInstances(deploymentID: deployment.id)
        let load = await routes.takeLoad(deployment: deployment.name)

        // 1. Observe: probe every instance with a process, all at once.
        let health = await probe(instances.filter { $0.state.hasProcess || memory[$0.id]?.launched == true })
        for index in instances.indices {
            try await advance(&instances[index], deployment: deployment, health: health[instances[index].id], load: load)
        }
        instances.removeAll { $0.state == .stopped }

        // 2. A roll-out whose new instances keep failing goes back to the previous revision.
        if try await rollBackIfFailing(&deployment, instances: instances) {
            instances = try await repositories.instances.listInstances(deploymentID: deployment.id)
        }

        // 3. Autoscale from the gateway's load.
        try await autoscale(&deployment, load: load)

        // 4. Start, drain and stop instances towards the wanted number and revision; the
        // canary's instances are kept apart.
        let canaryID = deployment.canary?.revision.id
        var mainInstances = instances.filter { $0.revisionID != canaryID }
        var canaryInstances = instances.filter { $0.revisionID == canaryID }
        try await rollOut(deployment, instances: &mainInstances)
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

    // MARK: - Records

    /// Ready and not reported unhealthy since its last good probe: what the gateway may use.
    func isServing(_ instance: EngineInstance) -> Bool {
        instance.state == .ready && memory[instance.id]?.healthy != false
    }

    func save(_ instance: inout EngineInstance, _ state: InstanceState? = nil, message: String) async throws {
        if let state { instance.state = state }
        instance.stateMessage = message
        instance.updatedAt = Date()
        try await repositories.instances.updateInstance(instance)
    }

    func event(_ deployment: Deployment, _ instance: EngineInstance?, _ kind: String, _ message: String) async {
        do {
            try await repositories.deployments.recordEvent(
                DeploymentEvent(deploymentID: deployment.id, instanceID: instance?.id, kind: kind, message: message))
        } catch {
            logger.warning("cannot record event", metadata: ["deployment": "\(deployment.name)", "error": "\(error)"])
        }
    }
}

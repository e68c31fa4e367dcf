import Foundation
public import GantryCore
public import Logging
public import ServiceLifecycle

/// The reconcile loop: makes running engine instances match the stored deployments.
///
/// It runs on a timer and whenever woken (a deployment was created or deleted). Each pass checks
/// every instance's health, replaces failed ones, starts missing replicas, stops the instances of
/// deleted deployments, publishes ready instances to the data plane and records status.
public actor Reconciler: Service {
    let repositories: Repositories
    let runtime: any EngineRuntime
    let routes: any RoutePublisher
    let interval: Duration
    let logger: Logger
    /// Reserves CPU threads (and later GPUs) for each instance before it starts.
    let allocator: (any ResourceAllocator)?
    let cpuThreadsPerInstance: Int
    /// Fetches a version's files onto this node before an engine starts.
    let artifacts: any ArtifactResolver
    private let wakeups: AsyncStream<Void>
    private nonisolated let wakeupContinuation: AsyncStream<Void>.Continuation
    /// Consecutive launch failures per deployment, to back off instead of spinning.
    private var failures: [String: (count: Int, retryAt: ContinuousClock.Instant)] = [:]

    public init(
        repositories: Repositories, runtime: any EngineRuntime, routes: any RoutePublisher, artifacts: any ArtifactResolver,
        interval: Duration, logger: Logger, allocator: (any ResourceAllocator)? = nil, cpuThreadsPerInstance: Int = 1
    ) {
        self.artifacts = artifacts
        self.allocator = allocator
        self.cpuThreadsPerInstance = cpuThreadsPerInstance
        self.repositories = repositories
        self.runtime = runtime
        self.routes = routes
        self.interval = interval
        self.logger = logger
        (wakeups, wakeupContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Asks for a pass as soon as possible.
    public nonisolated func wake() {
        wakeupContinuation.yield()
    }

    public func run() async throws {
        // Instances recorded by an earlier run of this node died with it.
        for instance in try await repositories.instances.listInstances(deploymentID: nil) {
            try await repositories.instances.deleteInstance(id: instance.id)
        }
        let ticker = Task { [interval, wakeupContinuation] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                wakeupContinuation.yield()
            }
        }
        defer { ticker.cancel() }
        wake()
        await cancelWhenGracefulShutdown {
            for await _ in self.wakeups {
                await self.reconcileOnce()
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

    private func remove(_ deployment: Deployment) async throws {
        await routes.withdraw(deployment: deployment.name)
        for instance in try await repositories.instances.listInstances(deploymentID: deployment.id) {
            await runtime.stop(instanceID: instance.id)
            try await allocator?.releaseAll(owner: instance.id)
        }
        try await repositories.deployments.deleteDeployment(id: deployment.id)
        failures[deployment.id] = nil
        logger.info("deployment deleted", metadata: ["deployment": "\(deployment.name)"])
    }

    private func converge(_ deployment: Deployment) async throws {
        guard let version = try await repositories.models.version(id: deployment.versionID) else {
            try await setStatus(deployment, .failed, "its model version no longer exists")
            return
        }
        // Drop instances that are no longer healthy.
        var ready: [EngineInstance] = []
        for instance in try await repositories.instances.listInstances(deploymentID: deployment.id) {
            switch await runtime.health(instanceID: instance.id) {
            case .ready, .starting:
                ready.append(instance)
            case .failed(let reason):
                logger.warning("instance failed", metadata: ["instance_id": "\(instance.id)", "reason": "\(reason)"])
                await runtime.stop(instanceID: instance.id)
                try await allocator?.releaseAll(owner: instance.id)
                try await repositories.instances.deleteInstance(id: instance.id)
                // Its resources are free again: a replacement may start now, whatever back-off an
                // earlier placement failure set.
                failures[deployment.id] = nil
            }
        }
        await publish(deployment, version: version, instances: ready)

        if ready.count < deployment.replicas {
            if let failure = failures[deployment.id], ContinuousClock.now < failure.retryAt { return }
            let modelPath: String
            do {
                modelPath = try await artifacts.localPath(for: version)
            } catch {
                recordFailure(of: deployment)
                let reason = (error as? GantryError)?.message ?? "\(error)"
                try await setStatus(deployment, ready.isEmpty ? .failed : .degraded, "cannot fetch the model files: \(reason)")
                return
            }
            let instanceID = Identifier.make("ins")
            do {
                try await allocator?.reserve(owner: instanceID, gpus: 0, cpuThreads: cpuThreadsPerInstance)
            } catch let error as GantryError where error.kind == .conflict {
                // Nothing fits now: say why, and look again after a back-off.
                recordFailure(of: deployment)
                let reason = "cannot place instance \(ready.count + 1) of \(deployment.replicas): \(error.message)"
                try await setStatus(deployment, ready.isEmpty ? .failed : .degraded, reason)
                return
            }
            try await setStatus(deployment, .starting, "starting instance \(ready.count + 1) of \(deployment.replicas)")
            let spec = EngineLaunchSpec(
                instanceID: instanceID, deploymentName: deployment.name, engine: deployment.engine, modelPath: modelPath,
                contextLimit: deployment.contextLimit, extraArguments: version.engineArgs)
            let started = ContinuousClock.now
            do {
                let endpoint = try await runtime.launch(spec)
                let now = Date()
                let instance = EngineInstance(
                    id: instanceID, deploymentID: deployment.id, endpoint: endpoint, status: .ready, createdAt: now,
                    updatedAt: now)
                try await repositories.instances.createInstance(instance)
                ready.append(instance)
                failures[deployment.id] = nil
                logger.info(
                    "instance ready",
                    metadata: [
                        "deployment": "\(deployment.name)", "instance_id": "\(instanceID)",
                        "startup_seconds": "\(ContinuousClock.now - started)",
                    ])
                await publish(deployment, version: version, instances: ready)
            } catch {
                try? await allocator?.releaseAll(owner: instanceID)
                let count = recordFailure(of: deployment)
                try await setStatus(deployment, .failed, "instance failed to start (attempt \(count)): \(error)")
                if ready.isEmpty { return }
            }
        }
        if ready.count >= deployment.replicas {
            try await setStatus(deployment, .ready, "\(ready.count) of \(deployment.replicas) instances ready")
        } else if !ready.isEmpty {
            try await setStatus(deployment, .degraded, "\(ready.count) of \(deployment.replicas) instances ready")
        }
    }

    /// Counts a failed attempt and sets when to try again: 2, 4, 8 ... up to 60 seconds.
    @discardableResult
    private func recordFailure(of deployment: Deployment) -> Int {
        let count = (failures[deployment.id]?.count ?? 0) + 1
        failures[deployment.id] = (count, ContinuousClock.now + .seconds(min(60, 1 << min(count, 6))))
        return count
    }

    private func publish(_ deployment: Deployment, version: ModelVersion, instances: [EngineInstance]) async {
        await routes.publish(
            RouteEntry(
                deployment: deployment.name, version: version.version, contextLimit: deployment.contextLimit,
                createdAt: deployment.createdAt,
                targets: instances.map { RouteTarget(instanceID: $0.id, endpoint: $0.endpoint) }))
    }

    private func setStatus(_ deployment: Deployment, _ status: DeploymentStatus, _ message: String) async throws {
        // Re-read: the deployment may have been marked for deletion while an instance started.
        guard let current = try await repositories.deployments.deployment(named: deployment.name),
            current.status != .deleting, current.status != status || current.statusMessage != message
        else { return }
        try await repositories.deployments.updateStatus(deploymentID: deployment.id, status: status, message: message)
    }
}

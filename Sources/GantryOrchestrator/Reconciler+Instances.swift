import Foundation
import GantryCore
import Logging

/// One instance's life: probing, placing, fetching, starting, crashing and restarting, stopping.
extension Reconciler {
    func probe(_ instances: [EngineInstance]) async -> [String: EngineObservation] {
        await withTaskGroup(of: (String, EngineObservation).self) { group in
            for instance in instances {
                group.addTask { (instance.id, await self.runtime.observe(instanceID: instance.id)) }
            }
            var results: [String: EngineObservation] = [:]
            for await (id, health) in group { results[id] = health }
            return results
        }
    }

    /// Moves one instance along its life according to what the runtime reports.
    func advance(
        _ instance: inout EngineInstance, deployment: Deployment, health observation: EngineObservation?,
        load: DeploymentLoad
    ) async throws {
        var remembered = memory[instance.id, default: InstanceMemory()]
        // A stopped instance is forgotten (stopInstance cleared its entry); anything else keeps it.
        defer { if instance.state != .stopped { memory[instance.id] = remembered } }
        let now = ContinuousClock.now
        if let observation { try await follow(observation, &instance, deployment: deployment, memory: &remembered) }
        let health = observation?.health
        // An instance handed to a runtime that places it is starting while it waits for a node or
        // fetches its model.
        let handedOver = remembered.launched && (instance.state == .placing || instance.state == .fetching)
        switch handedOver ? .starting : instance.state {
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
            case .unschedulable(let reason):
                // Waiting for capacity is not a slow start: the start-up clock begins once placed.
                remembered.startedAt = now
                if instance.state != .placing || instance.stateMessage != reason {
                    try await save(&instance, .placing, message: reason)
                    await event(deployment, instance, "scale_blocked", "waiting for the scheduler: \(reason)")
                }
                // The deployment's status shows the scheduler's reason; it blocks no new instance.
                backoff[deployment.id] = (backoff[deployment.id]?.count ?? 0, now, "cannot place an instance: \(reason)")
            case .fetching:
                // Model files take as long as they take to download: the start-up clock waits too.
                remembered.startedAt = now
                if instance.state != .fetching {
                    try await save(&instance, .fetching, message: "fetching the model files on \(instance.node)")
                    await event(
                        deployment, instance, "instance_state", "placed on \(instance.node); fetching the model files")
                }
            default:
                // Starting once a node holds it; an instance the scheduler has not seen yet stays placing.
                if instance.state == .placing || instance.state == .fetching, !instance.node.isEmpty {
                    try await save(&instance, .starting, message: "")
                    await event(deployment, instance, "instance_state", "engine starting on \(instance.node)")
                }
                if let started = remembered.startedAt, now - started > timing.startupTimeout {
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
                remembered.lastFailedProbeAt = nil
                if let since = remembered.readySince, now - since > timing.stableAfter { remembered.consecutiveCrashes = 0 }
            case .exited(let reason):
                try await crashed(&instance, deployment: deployment, reason: reason, memory: &remembered)
            case .unhealthy, .starting, .unschedulable, .fetching:
                let why = if case .unhealthy(let text) = health { text } else { "the engine reports it is loading" }
                remembered.healthy = false
                if let last = remembered.lastFailedProbeAt, now - last < timing.interval { break }
                remembered.lastFailedProbeAt = now
                remembered.failedProbes += 1
                await event(deployment, instance, "instance_unhealthy", "out of routing: \(why)")
                if remembered.failedProbes >= timing.unhealthyRestartAfter {
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
            if (busyRequests == 0 && now - since >= timing.drainGrace) || now - since > timing.drainTimeout || exited {
                try await stopInstance(
                    &instance, deployment: deployment,
                    reason: busyRequests == 0 ? "drained" : "drain timeout with \(busyRequests) requests in flight")
            }
        case .pending, .placing, .fetching:
            // New instances are placed and started within one pass, so one without a node here
            // was cut off by a restart of Gantry: forget it, and the roll-out step makes another.
            if instance.node.isEmpty, !runtime.placesInstances {
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

    /// Takes in what a runtime that places instances says of one: its node and endpoint once
    /// placed, and restarts it made in place.
    func follow(
        _ observation: EngineObservation, _ instance: inout EngineInstance, deployment: Deployment,
        memory remembered: inout InstanceMemory
    ) async throws {
        var changed = false
        if let node = observation.node, node != instance.node {
            instance.node = node
            changed = true
        }
        if let endpoint = observation.endpoint, endpoint != instance.endpoint {
            instance.endpoint = endpoint
            changed = true
        }
        if let restarts = observation.restarts {
            if let last = remembered.runtimeRestarts, restarts > last {
                instance.restarts += restarts - last
                changed = true
                await event(
                    deployment, instance, "instance_restarted",
                    "the engine restarted in place (restart \(restarts) of its container)")
            }
            remembered.runtimeRestarts = restarts
        }
        if changed { try await save(&instance, message: instance.stateMessage) }
    }

    /// Records a crash (stopping whatever is left of the process); starts the instance again after a
    /// back-off, or declares a crash loop.
    func crashed(
        _ instance: inout EngineInstance, deployment: Deployment, reason: String, memory remembered: inout InstanceMemory
    ) async throws {
        await runtime.stop(instanceID: instance.id)
        // A failed spawn (still `fetching`) is a failed start as much as an engine that died starting,
        // and so is a pod that failed before its node reported it started (an image that cannot
        // be pulled), still `placing`.
        let wasStarting = [.starting, .fetching, .placing].contains(instance.state)
        remembered.consecutiveCrashes += 1
        remembered.readySince = nil
        remembered.healthy = false
        instance.restarts += 1
        instance.pid = nil
        remembered.launched = false
        remembered.runtimeRestarts = nil
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

    func stopInstance(_ instance: inout EngineInstance, deployment: Deployment, reason: String) async throws {
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
    func createInstance(_ deployment: Deployment, ordinal: String, revision: DeploymentRevision? = nil) async throws
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
            // A runtime that places instances (kube-scheduler) is asked for the resources instead.
            if !runtime.placesInstances {
                let allocation = try await allocator.reserve(owner: instance.id, resources: resources)
                instance.node = allocation.node
                instance.gpuUUIDs = allocation.gpuUUIDs
            }
        } catch let error as GantryError where error.kind == .conflict {
            try await repositories.instances.deleteInstance(id: instance.id)
            let reason = "cannot place \(ordinal): \(error.message)"
            recordBackoff(deployment, reason: reason)
            await event(deployment, instance, "placement_failed", reason)
            return nil
        }
        var remembered = InstanceMemory()
        try await startProcess(&instance, deployment: deployment, memory: &remembered)
        if instance.state != .stopped { memory[instance.id] = remembered }
        return instance
    }

    /// fetching → starting: makes sure the model files are here and spawns the engine.
    func startProcess(
        _ instance: inout EngineInstance, deployment: Deployment, memory remembered: inout InstanceMemory
    ) async throws {
        try await save(&instance, .fetching, message: "")
        let revision = deployment.revision(runBy: instance)
        let modelPath: String
        let version: ModelVersion
        var entryFile: String?
        do {
            guard let found = try await repositories.models.version(id: revision.versionID) else {
                throw GantryError.notFound("model version \(revision.version) no longer exists")
            }
            version = found
            if runtime.placesInstances {
                // The runtime fetches the files on the node it picks, from the registry.
                let files = try await repositories.models.files(versionID: version.id)
                if files.isEmpty, let uri = version.artifactURI {
                    throw GantryError.invalid(
                        "version \(version.version) refers to \(uri), which nodes of a cluster cannot read; upload its files to the registry"
                    )
                }
                entryFile = try version.entryFile(among: files)
                modelPath = ""
            } else {
                modelPath = try await artifacts.localPath(for: version)
            }
        } catch {
            let reason = "cannot fetch the model files: \((error as? GantryError)?.message ?? "\(error)")"
            await event(deployment, instance, "fetch_failed", reason)
            // Stopping clears the back-off (freed resources may let a placement succeed); a fetch
            // that failed is no such case, so its count carries on and the delay grows.
            let failures = backoff[deployment.id]
            try await stopInstance(&instance, deployment: deployment, reason: "its model files could not be fetched")
            backoff[deployment.id] = failures
            recordBackoff(deployment, reason: reason)
            return
        }
        var spec = EngineLaunchSpec(
            instanceID: instance.id, deploymentName: deployment.name, engine: revision.engine, modelPath: modelPath,
            contextLimit: revision.contextLimit, extraArguments: revision.engineArgs, gpuUUIDs: instance.gpuUUIDs,
            cpuThreads: revision.resources.cpuThreads ?? defaultCPUThreads, modelVersion: version,
            gpuCount: revision.resources.gpus, gpuName: revision.resources.gpuName, revisionID: revision.id)
        spec.modelEntryFile = entryFile
        spec.node = revision.resources.node
        do {
            let started = try await runtime.start(spec)
            instance.endpoint = started.endpoint
            instance.pid = started.pid
            remembered.startedAt = .now
            remembered.retryAt = nil
            remembered.launched = runtime.placesInstances
            // Handed to a runtime that places it, the instance waits for a node first.
            try await save(&instance, runtime.placesInstances ? .placing : .starting, message: "")
            let gpus = instance.gpuUUIDs.isEmpty ? "" : " on GPUs \(instance.gpuUUIDs.joined(separator: ","))"
            await event(deployment, instance, "instance_state", "starting \(revision.engine) (\(started.handle))\(gpus)")
        } catch {
            try await crashed(
                &instance, deployment: deployment,
                reason: "cannot start the engine: \((error as? GantryError)?.message ?? "\(error)")",
                memory: &remembered)
        }
    }

    /// Counts a failed placement or fetch and sets when to try again: 2, 4, 8 ... up to 60 seconds.
    func recordBackoff(_ deployment: Deployment, reason: String) {
        let count = (backoff[deployment.id]?.count ?? 0) + 1
        backoff[deployment.id] = (count, .now + .seconds(min(60, 1 << min(count, 6))), reason)
    }
}

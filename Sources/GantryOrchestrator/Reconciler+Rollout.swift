import Foundation
import GantryCore
import Logging

/// How many instances of which revision: roll-outs and rollbacks, canaries, autoscaling, draining.
extension Reconciler {
    // MARK: - Roll-out, scale and drain

    func rollOut(_ deployment: Deployment, instances: inout [EngineInstance]) async throws {
        let active = instances.filter { $0.state.isActive && $0.state != .draining }
        // A crash-looped instance keeps its slot until it is replaced after a cool-down, so a
        // failing engine is not restarted endlessly under new names.
        let current = instances.filter {
            $0.revisionID == deployment.revision.id && ($0.state == .failed || ($0.state.isActive && $0.state != .draining))
        }
        let old = active.filter { $0.revisionID != deployment.revision.id }
        let isReady = isServing

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
                    let kept = max(deployment.scaling.minReplicas, current.count + started)
                    if kept != deployment.replicas {
                        try await repositories.deployments.updateReplicas(deploymentID: deployment.id, replicas: kept)
                        await event(
                            deployment, nil, "scale_blocked",
                            "kept \(kept) replicas: \(backoff[deployment.id]?.reason ?? "placement failed")")
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
    func maintainCanary(_ deployment: inout Deployment, instances: inout [EngineInstance]) async throws -> Bool {
        guard let canary = deployment.canary else { return false }
        if canaryFailures[deployment.id, default: 0] >= 2 || instances.contains(where: { $0.state == .failed }) {
            guard
                try await changeSpec(
                    &deployment,
                    { fresh in
                        // An admin may have replaced the canary during this pass: only this one goes.
                        guard fresh.canary?.revision.id == canary.revision.id else { return false }
                        fresh.canary = nil
                        return true
                    })
            else { return false }
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

    func drain(_ instance: inout EngineInstance, deployment: Deployment, reason: String) async throws {
        memory[instance.id, default: InstanceMemory()].drainingSince = .now
        try await save(&instance, .draining, message: reason)
        await event(deployment, instance, "instance_state", "draining: \(reason)")
    }

    func replace(_ instance: EngineInstance, in instances: inout [EngineInstance]) {
        if let index = instances.firstIndex(where: { $0.id == instance.id }) { instances[index] = instance }
    }

    /// A rollout whose new revision failed to start twice goes back to the previous revision.
    func rollBackIfFailing(_ deployment: inout Deployment, instances: [EngineInstance]) async throws -> Bool {
        guard let previous = deployment.previousRevision,
            instances.contains(where: { $0.revisionID == previous.id && $0.state.isActive })
        else { return false }
        let newFailed = instances.contains { $0.revisionID == deployment.revision.id && $0.state == .failed }
        guard rolloutFailures[deployment.id, default: 0] >= 2 || newFailed else { return false }
        let failed = deployment.revision
        guard
            try await changeSpec(
                &deployment,
                { fresh in
                    // An admin may have changed the revision during this pass: then theirs stands.
                    guard fresh.revision.id == failed.id else { return false }
                    fresh.revision = previous
                    fresh.previousRevision = nil
                    return true
                })
        else { return false }
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
    func autoscale(_ deployment: inout Deployment, load: DeploymentLoad) async throws {
        let policy = deployment.scaling
        guard policy.autoscales else {
            if deployment.replicas != policy.minReplicas {
                deployment.replicas = policy.minReplicas
                try await repositories.deployments.updateReplicas(deploymentID: deployment.id, replicas: policy.minReplicas)
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
                // Never below the current size: going down is the down window's decision.
                wanted = max(current, history.filter { now - $0.at <= window }.map(\.replicas).min() ?? current)
            }
        } else if recommended < current {
            // Down to the highest recommendation of the down window, once a whole window was seen.
            let window = Duration.seconds(policy.scaleDownWindowSeconds)
            if let oldest = history.first, now - oldest.at >= window {
                // Never above the current size: going up is the up window's decision.
                wanted = min(current, history.filter { now - $0.at <= window }.map(\.replicas).max() ?? current)
            }
        }
        guard wanted != current else { return }
        deployment.replicas = wanted
        try await repositories.deployments.updateReplicas(deploymentID: deployment.id, replicas: wanted)
        let why =
            load.queued > 0 && current == 0
            ? "\(load.queued) request(s) waiting" : "peak \(demand) request(s) in flight for a target of \(target) per replica"
        await event(deployment, nil, "scaled", "scaled from \(current) to \(wanted) replicas: \(why)")
        logger.info(
            "deployment scaled", metadata: ["deployment": "\(deployment.name)", "from": "\(current)", "to": "\(wanted)"])
    }

    /// Changes the spec as stored now, not as read at the start of this pass: an API call may
    /// have changed it since (a pass can take seconds), and writing back the pass's copy would
    /// undo that. `change` says whether it still applies; `deployment` becomes what was stored.
    /// Returns whether it changed.
    func changeSpec(_ deployment: inout Deployment, _ change: (inout Deployment) -> Bool) async throws -> Bool {
        guard var fresh = try await repositories.deployments.deployment(named: deployment.name), fresh.id == deployment.id
        else { return false }
        let changed = change(&fresh)
        if changed { try await repositories.deployments.updateSpec(fresh) }
        deployment = fresh
        return changed
    }
}

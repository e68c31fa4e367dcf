import Foundation
import GantryCore
import Logging

/// What the gateway and people see: the published routes and the deployment's status.
extension Reconciler {
    // MARK: - Publishing and status

    func publish(_ deployment: Deployment, instances: [EngineInstance]) async {
        let canaryID = deployment.canary?.revision.id
        let targets = instances.filter(isServing)
            .map {
                RouteTarget(
                    instanceID: $0.id, endpoint: $0.endpoint, canary: $0.revisionID == canaryID,
                    version: deployment.revision(runBy: $0).version, node: $0.node)
            }
        await routes.publish(
            RouteEntry(
                deployment: deployment.name, version: deployment.revision.version, contextLimit: deployment.contextLimit,
                engine: deployment.engine,
                createdAt: deployment.createdAt, targets: targets, access: deployment.access, limits: deployment.limits,
                timeouts: deployment.timeouts,
                canaryVersion: deployment.canary?.revision.version, canaryWeight: deployment.canary?.weight ?? 0))
    }

    func recordStatus(_ deployment: Deployment, instances all: [EngineInstance]) async throws {
        let wanted = deployment.replicas
        // The canary's instances serve beside the main ones; the status is about the main revision.
        let canaryID = deployment.canary?.revision.id
        let instances = all.filter { $0.revisionID != canaryID }
        let ready = instances.filter(isServing)
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
        // The store leaves a deployment marked for deletion alone, and writes only a change.
        try await repositories.deployments.updateStatus(deploymentID: deployment.id, status: status, message: message)
    }
}

public import Foundation

/// Where a deployment is in its life, as the reconcile loop last saw it.
public enum DeploymentStatus: String, Codable, Sendable {
    case pending
    case starting
    case ready
    case degraded
    case failed
    case deleting
}

/// A model service: the desired state the orchestrator reconciles into running engine instances.
public struct Deployment: Codable, Sendable, Equatable {
    public var id: String
    /// The name clients send as `model`.
    public var name: String
    public var modelID: String
    public var versionID: String
    public var engine: String
    public var replicas: Int
    public var contextLimit: Int
    public var status: DeploymentStatus
    /// Why the deployment is in its status, for people reading `GET /api/v1/deployments/{name}`.
    public var statusMessage: String
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, name: String, modelID: String, versionID: String, engine: String, replicas: Int,
        contextLimit: Int, status: DeploymentStatus, statusMessage: String, createdAt: Date, updatedAt: Date
    ) {
        self.id = id
        self.name = name
        self.modelID = modelID
        self.versionID = versionID
        self.engine = engine
        self.replicas = replicas
        self.contextLimit = contextLimit
        self.status = status
        self.statusMessage = statusMessage
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

public enum InstanceStatus: String, Codable, Sendable {
    case starting
    case ready
    case failed
    case stopped
}

/// One running engine process (or pod) serving a deployment.
public struct EngineInstance: Codable, Sendable, Equatable {
    public var id: String
    public var deploymentID: String
    /// Base URL of the engine's OpenAI-compatible server, e.g. `http://127.0.0.1:41234`.
    public var endpoint: String
    public var status: InstanceStatus
    public var createdAt: Date
    public var updatedAt: Date

    public init(id: String, deploymentID: String, endpoint: String, status: InstanceStatus, createdAt: Date, updatedAt: Date) {
        self.id = id
        self.deploymentID = deploymentID
        self.endpoint = endpoint
        self.status = status
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

public import Foundation

/// The life of one engine instance:
/// `pending → placing → fetching → starting → ready → draining → stopped`, or `failed`.
/// A crashed instance goes back to `pending` (with a back-off) and starts again on the same
/// resources; after repeated crashes it is `failed` (a crash loop).
public enum InstanceState: String, Codable, Sendable, CaseIterable {
    case pending
    case placing
    case fetching
    case starting
    case ready
    case draining
    case stopped
    case failed

    /// States in which the instance holds (or is about to hold) a process.
    public var isActive: Bool { self != .stopped && self != .failed }

    /// States in which an engine process should be running, so there is something to probe or adopt.
    public var hasProcess: Bool { self == .starting || self == .ready || self == .draining }
}

/// One engine process (or pod) serving a deployment, as recorded in the store.
public struct EngineInstance: Codable, Sendable, Equatable {
    public var id: String
    public var deploymentID: String
    /// The deployment revision it runs.
    public var revisionID: String
    public var node: String
    public var state: InstanceState
    public var stateMessage: String
    /// Base URL of the engine's OpenAI-compatible server, e.g. `http://127.0.0.1:41234`; empty until started.
    public var endpoint: String
    /// The engine's process id on its node, so a restarted Gantry can find it again.
    public var pid: Int32?
    /// GPUs it runs on (UUIDs, as `CUDA_VISIBLE_DEVICES` takes them).
    public var gpuUUIDs: [String]
    /// Times the process ended unexpectedly and was started again.
    public var restarts: Int
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, deploymentID: String, revisionID: String, node: String, state: InstanceState, stateMessage: String = "",
        endpoint: String = "", pid: Int32? = nil, gpuUUIDs: [String] = [], restarts: Int = 0, createdAt: Date,
        updatedAt: Date
    ) {
        self.id = id
        self.deploymentID = deploymentID
        self.revisionID = revisionID
        self.node = node
        self.state = state
        self.stateMessage = stateMessage
        self.endpoint = endpoint
        self.pid = pid
        self.gpuUUIDs = gpuUUIDs
        self.restarts = restarts
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// `gpuUUIDs` is `gpu_uuids` on the API: the snake-case conversion alone made it `gpu_uui_ds`.
    enum CodingKeys: String, CodingKey {
        case id, deploymentID, revisionID, node, state, stateMessage, endpoint, pid
        case gpuUUIDs = "gpu_uuids"
        case restarts, createdAt, updatedAt
    }
}

/// Something that happened to a deployment or one of its instances, kept for people debugging it.
public struct DeploymentEvent: Codable, Sendable, Equatable {
    public var deploymentID: String
    public var instanceID: String?
    /// A short machine-readable kind: `instance_state`, `instance_crashed`, `scaled`, `rolled_back`, ...
    public var kind: String
    public var message: String
    public var createdAt: Date

    public init(deploymentID: String, instanceID: String?, kind: String, message: String, createdAt: Date = Date()) {
        self.deploymentID = deploymentID
        self.instanceID = instanceID
        self.kind = kind
        self.message = message
        self.createdAt = createdAt
    }
}

public import Foundation

/// Where a deployment is in its life, as the reconcile loop last saw it.
public enum DeploymentStatus: String, Codable, Sendable {
    case pending
    case starting
    case ready
    /// Some, not all, of the wanted instances are ready.
    case degraded
    /// A new revision is rolling out.
    case updating
    /// Scaled to zero while idle; the next request starts an instance.
    case idle
    case failed
    case deleting
}

/// What one replica asks of a node.
public struct ReplicaResources: Codable, Sendable, Equatable {
    public var gpus: Int
    /// Only GPUs whose name contains this (case-insensitive), e.g. `H100`.
    public var gpuName: String?
    /// Only GPUs with at least this much memory free.
    public var minFreeMemoryMib: Int?
    /// CPU threads reserved (and given to the engine); nil takes the server's default.
    public var cpuThreads: Int?
    /// Only this node (by name); nil lets placement choose.
    public var node: String?

    public init(
        gpus: Int = 0, gpuName: String? = nil, minFreeMemoryMib: Int? = nil, cpuThreads: Int? = nil, node: String? = nil
    ) {
        self.gpus = gpus
        self.gpuName = gpuName
        self.minFreeMemoryMib = minFreeMemoryMib
        self.cpuThreads = cpuThreads
        self.node = node
    }
}

/// Everything an instance is built from. A change to any of it is a new revision, which the
/// reconcile loop rolls out instance by instance (and rolls back when the new one fails).
public struct DeploymentRevision: Codable, Sendable, Equatable {
    public var id: String
    public var versionID: String
    /// The version's name, shown to people and matched by `model: "name@version"`.
    public var version: String
    public var engine: String
    public var contextLimit: Int
    /// Arguments added after the ones Gantry sets (the version's defaults unless the deployment gives its own).
    public var engineArgs: [String]
    public var resources: ReplicaResources
    public var createdAt: Date

    public init(
        id: String, versionID: String, version: String, engine: String, contextLimit: Int, engineArgs: [String],
        resources: ReplicaResources, createdAt: Date
    ) {
        self.id = id
        self.versionID = versionID
        self.version = version
        self.engine = engine
        self.contextLimit = contextLimit
        self.engineArgs = engineArgs
        self.resources = resources
        self.createdAt = createdAt
    }

    /// Whether `other` would run the same engine process (ignoring its id and date).
    public func runsLike(_ other: DeploymentRevision) -> Bool {
        versionID == other.versionID && engine == other.engine && contextLimit == other.contextLimit
            && engineArgs == other.engineArgs && resources == other.resources
    }
}

/// How many replicas, and how load changes that number.
public struct ScalingPolicy: Codable, Sendable, Equatable {
    public var minReplicas: Int
    public var maxReplicas: Int
    /// In-flight requests (plus queued ones) one replica should carry; more means scale up.
    public var targetInFlightPerReplica: Int
    /// How long load must stay above the current size before scaling up (0: at once).
    public var scaleUpWindowSeconds: Int
    /// How long load must stay below the current size before scaling down; with
    /// `minReplicas` 0, also how long an idle service waits before scaling to zero.
    public var scaleDownWindowSeconds: Int

    public init(
        minReplicas: Int = 1, maxReplicas: Int = 1, targetInFlightPerReplica: Int = 4, scaleUpWindowSeconds: Int = 0,
        scaleDownWindowSeconds: Int = 300
    ) {
        self.minReplicas = minReplicas
        self.maxReplicas = maxReplicas
        self.targetInFlightPerReplica = targetInFlightPerReplica
        self.scaleUpWindowSeconds = scaleUpWindowSeconds
        self.scaleDownWindowSeconds = scaleDownWindowSeconds
    }

    public var autoscales: Bool { minReplicas != maxReplicas }
}

/// Ways a caller may prove who they are to a model service.
public enum AuthenticationMethod: String, Codable, Sendable, CaseIterable {
    case apiKey = "api_key"
    /// An access token issued by the OIDC provider (or a browser session from it).
    case oidc
}

/// Who may call a model service. Every list that is set must admit the caller.
public struct AccessPolicy: Codable, Sendable, Equatable {
    public var methods: [AuthenticationMethod]
    /// User names; nil admits every user.
    public var users: [String]?
    /// Roles (`admin`, `user`); nil admits every role.
    public var roles: [String]?
    /// API key ids; nil admits every key.
    public var keys: [String]?

    public init(
        methods: [AuthenticationMethod] = [.apiKey], users: [String]? = nil, roles: [String]? = nil, keys: [String]? = nil
    ) {
        self.methods = methods
        self.users = users
        self.roles = roles
        self.keys = keys
    }

    /// Whether `principal` may call the service; the reason when not.
    public func admits(_ principal: Principal) -> Bool {
        let method: AuthenticationMethod = principal.keyID != nil ? .apiKey : .oidc
        guard methods.contains(method) else { return false }
        if let users, !users.contains(principal.userName) { return false }
        if let roles, !roles.contains(principal.role.rawValue) { return false }
        if let keys, !(principal.keyID.map(keys.contains) ?? false) { return false }
        return true
    }
}

/// How long the gateway waits on a model service's engines; nil takes the server's default.
public struct ServiceTimeouts: Codable, Sendable, Equatable {
    /// Seconds from sending a request to the first byte of the engine's answer (the head).
    public var firstByteSeconds: Double?
    /// Seconds a streamed answer may go without a byte before it is cut with an error event.
    public var idleSeconds: Double?

    public init(firstByteSeconds: Double? = nil, idleSeconds: Double? = nil) {
        self.firstByteSeconds = firstByteSeconds
        self.idleSeconds = idleSeconds
    }
}

/// Frequency limits of a model service (enforced by the gateway); nil is unlimited.
public struct FrequencyLimits: Codable, Sendable, Equatable {
    public var requestsPerMinutePerKey: Int?
    public var tokensPerMinutePerKey: Int?
    public var requestsPerMinute: Int?
    public var tokensPerMinute: Int?
    public var concurrentRequests: Int?
    public var concurrentRequestsPerKey: Int?

    public init(
        requestsPerMinutePerKey: Int? = nil, tokensPerMinutePerKey: Int? = nil, requestsPerMinute: Int? = nil,
        tokensPerMinute: Int? = nil, concurrentRequests: Int? = nil, concurrentRequestsPerKey: Int? = nil
    ) {
        self.concurrentRequestsPerKey = concurrentRequestsPerKey
        self.requestsPerMinutePerKey = requestsPerMinutePerKey
        self.tokensPerMinutePerKey = tokensPerMinutePerKey
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.concurrentRequests = concurrentRequests
    }
}

/// A second revision serving a share of a service's traffic beside the main one, to try a new
/// version on some requests before rolling it out to all.
public struct CanaryRevision: Codable, Sendable, Equatable {
    public var revision: DeploymentRevision
    /// Percent of requests (1-99) sent to the canary while it has a ready instance.
    public var weight: Int
    public var replicas: Int

    public init(revision: DeploymentRevision, weight: Int, replicas: Int) {
        self.revision = revision
        self.weight = weight
        self.replicas = replicas
    }
}

/// A model service: the desired state the orchestrator reconciles into running engine instances.
public struct Deployment: Encodable, Sendable, Equatable {
    public var id: String
    /// The name clients send as `model`.
    public var name: String
    public var modelID: String
    /// What new instances run.
    public var revision: DeploymentRevision
    /// The revision before the last update, kept so a failed rollout can roll back to it.
    public var previousRevision: DeploymentRevision?
    /// A canary taking a share of the traffic, if any.
    public var canary: CanaryRevision?
    public var scaling: ScalingPolicy
    /// Replicas wanted now: set by the autoscaler between min and max.
    public var replicas: Int
    public var access: AccessPolicy
    public var limits: FrequencyLimits
    public var timeouts: ServiceTimeouts
    public var status: DeploymentStatus
    /// Why the deployment is in its status, for people reading `GET /api/v1/deployments/{name}`.
    public var statusMessage: String
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, name: String, modelID: String, revision: DeploymentRevision, previousRevision: DeploymentRevision? = nil,
        canary: CanaryRevision? = nil, scaling: ScalingPolicy, replicas: Int, access: AccessPolicy = AccessPolicy(),
        limits: FrequencyLimits = FrequencyLimits(), timeouts: ServiceTimeouts = ServiceTimeouts(),
        status: DeploymentStatus, statusMessage: String, createdAt: Date, updatedAt: Date
    ) {
        self.id = id
        self.name = name
        self.modelID = modelID
        self.revision = revision
        self.previousRevision = previousRevision
        self.canary = canary
        self.scaling = scaling
        self.replicas = replicas
        self.access = access
        self.limits = limits
        self.timeouts = timeouts
        self.status = status
        self.statusMessage = statusMessage
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    public var versionID: String { revision.versionID }
    public var engine: String { revision.engine }
    public var contextLimit: Int { revision.contextLimit }

    enum CodingKeys: String, CodingKey {
        case id, name, modelID, version, versionID, engine, contextLimit, revision, previousRevision, canary, scaling
        case replicas
        case access, limits, timeouts, status, statusMessage, createdAt, updatedAt
    }

    /// The current revision's version, engine and context limit are also written at the top, where
    /// people and scripts look for them first.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(name, forKey: .name)
        try container.encode(modelID, forKey: .modelID)
        try container.encode(revision.version, forKey: .version)
        try container.encode(versionID, forKey: .versionID)
        try container.encode(engine, forKey: .engine)
        try container.encode(contextLimit, forKey: .contextLimit)
        try container.encode(revision, forKey: .revision)
        try container.encodeIfPresent(previousRevision, forKey: .previousRevision)
        try container.encodeIfPresent(canary, forKey: .canary)
        try container.encode(scaling, forKey: .scaling)
        try container.encode(replicas, forKey: .replicas)
        try container.encode(access, forKey: .access)
        try container.encode(limits, forKey: .limits)
        try container.encode(timeouts, forKey: .timeouts)
        try container.encode(status, forKey: .status)
        try container.encode(statusMessage, forKey: .statusMessage)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(updatedAt, forKey: .updatedAt)
    }
}

extension FrequencyLimits {
    /// These limits, refused when one is below 1 (no request could ever pass it).
    public func validated() throws -> FrequencyLimits {
        try GantryError.requirePositive(
            [
                ("requests_per_minute_per_key", requestsPerMinutePerKey), ("tokens_per_minute_per_key", tokensPerMinutePerKey),
                ("requests_per_minute", requestsPerMinute), ("tokens_per_minute", tokensPerMinute),
                ("concurrent_requests", concurrentRequests), ("concurrent_requests_per_key", concurrentRequestsPerKey),
            ], in: "limits")
        return self
    }
}

extension ServiceTimeouts {
    /// These timeouts, refused outside 0.1-3600 seconds.
    public func validated() throws -> ServiceTimeouts {
        for (name, value) in [("first_byte_seconds", firstByteSeconds), ("idle_seconds", idleSeconds)] {
            if let value, !(0.1...3600).contains(value) {
                throw GantryError.invalid("timeouts.\(name) must be 0.1-3600 seconds", param: "timeouts.\(name)")
            }
        }
        return self
    }
}

extension Deployment {
    /// The revision an instance runs: the current one, the canary, or the previous during a rollout.
    public func revision(runBy instance: EngineInstance) -> DeploymentRevision {
        if let previous = previousRevision, previous.id == instance.revisionID { return previous }
        if let canary, canary.revision.id == instance.revisionID { return canary.revision }
        return revision
    }
}

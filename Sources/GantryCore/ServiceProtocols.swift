public import Foundation

/// How the gateway asks the authentication service who is calling.
/// In-process it is the auth service itself; split roles use an introspection client.
public protocol CredentialVerifier: Sendable {
    /// Returns the principal for a bearer credential (an API key, or a provider access token
    /// where accepted), or throws `GantryError` `.unauthorized`.
    func verify(bearer: String) async throws -> Principal
    /// Returns the principal for a browser session cookie, or throws `.unauthorized`.
    func verify(sessionToken: String) async throws -> Principal
}

/// A ready engine endpoint the gateway may send requests to.
public struct RouteTarget: Sendable, Equatable {
    public var instanceID: String
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    public var endpoint: String

    public init(instanceID: String, endpoint: String) {
        self.instanceID = instanceID
        self.endpoint = endpoint
    }
}

/// What the data plane needs to know to route `model: "<deployment>"`.
public struct RouteEntry: Sendable, Equatable {
    public var deployment: String
    /// The model version it serves, so `model: "name@version"` can be checked.
    public var version: String
    public var contextLimit: Int
    public var createdAt: Date
    /// Ready instances; empty while the deployment is starting or has no healthy instance.
    public var targets: [RouteTarget]

    public init(deployment: String, version: String, contextLimit: Int, createdAt: Date, targets: [RouteTarget]) {
        self.deployment = deployment
        self.version = version
        self.contextLimit = contextLimit
        self.createdAt = createdAt
        self.targets = targets
    }
}

/// How the orchestrator tells the serving data plane where a deployment's ready instances are.
public protocol RoutePublisher: Sendable {
    func publish(_ entry: RouteEntry) async
    func withdraw(deployment: String) async
}

/// What the orchestrator asks a runtime driver to start.
public struct EngineLaunchSpec: Sendable, Equatable {
    public var instanceID: String
    public var deploymentName: String
    /// Engine kind, e.g. `llama-cpp`.
    public var engine: String
    /// Local path of the model artifact.
    public var modelPath: String
    public var contextLimit: Int
    /// The model version's own engine arguments, added after the ones Gantry sets.
    public var extraArguments: [String]

    public init(
        instanceID: String, deploymentName: String, engine: String, modelPath: String, contextLimit: Int,
        extraArguments: [String] = []
    ) {
        self.instanceID = instanceID
        self.deploymentName = deploymentName
        self.engine = engine
        self.modelPath = modelPath
        self.contextLimit = contextLimit
        self.extraArguments = extraArguments
    }
}

public enum EngineHealth: Sendable, Equatable {
    case starting
    case ready
    /// The process is gone or answers with errors; the string says why.
    case failed(String)
}

/// A runtime driver: starts, watches and stops engine instances (local processes, Kubernetes).
public protocol EngineRuntime: Sendable {
    /// Starts an instance and returns its base URL once it is ready to serve, or throws.
    func launch(_ spec: EngineLaunchSpec) async throws -> String
    func health(instanceID: String) async -> EngineHealth
    func stop(instanceID: String) async
    /// Engine kinds this runtime can start.
    var supportedEngines: [String] { get }
}

/// Node-side artifact resolution: turns a model version into a local path an engine can load,
/// fetching and verifying its files first when they are not on this node yet.
public protocol ArtifactResolver: Sendable {
    /// For a gguf version the `.gguf` file to load (the first shard of a split model); for other
    /// formats the directory holding the version's files.
    func localPath(for version: ModelVersion) async throws -> String
}

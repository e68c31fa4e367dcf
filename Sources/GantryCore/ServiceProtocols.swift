public import Foundation

/// How the gateway asks the authentication service who is calling.
/// In-process it is the auth service itself; split roles use an introspection client.
public protocol CredentialVerifier: Sendable {
    /// Returns the principal for a bearer credential (an API key, or a provider access token
    /// where accepted), or throws `GantryError` `.unauthorized`.
    func verify(bearer: String) async throws -> Principal
    /// Returns the principal for a browser session cookie, or throws `.unauthorized`.
    func verify(sessionToken: String) async throws -> Principal
    /// The principal of a bearer credential verified moments ago, from memory only, or nil (the
    /// caller then uses `verify(bearer:)`): lets the data plane authenticate without suspending.
    func rememberedPrincipal(bearer: String) -> Principal?
}

extension CredentialVerifier {
    public func rememberedPrincipal(bearer: String) -> Principal? { nil }
}

/// A ready engine endpoint the gateway may send requests to.
public struct RouteTarget: Codable, Sendable, Equatable {
    public var instanceID: String
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    public var endpoint: String
    /// Whether it serves the deployment's canary revision rather than its main one.
    public var canary: Bool
    /// The model version this instance runs (during a rolling update, old and new instances
    /// serve side by side), and the node it runs on: the labels of its metrics.
    public var version: String
    public var node: String

    public init(instanceID: String, endpoint: String, canary: Bool = false, version: String = "", node: String = "") {
        self.instanceID = instanceID
        self.endpoint = endpoint
        self.canary = canary
        self.version = version
        self.node = node
    }

    enum CodingKeys: String, CodingKey {
        case instanceID, endpoint, canary, version, node
    }

    /// A gateway of an earlier release sends targets without a version or node.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        instanceID = try container.decode(String.self, forKey: .instanceID)
        endpoint = try container.decode(String.self, forKey: .endpoint)
        canary = try container.decodeIfPresent(Bool.self, forKey: .canary) ?? false
        version = try container.decodeIfPresent(String.self, forKey: .version) ?? ""
        node = try container.decodeIfPresent(String.self, forKey: .node) ?? ""
    }
}

/// What the data plane needs to know to route `model: "<deployment>"`.
public struct RouteEntry: Codable, Sendable, Equatable {
    public var deployment: String
    /// The model version new instances serve, so `model: "name@version"` can be checked.
    public var version: String
    public var contextLimit: Int
    /// The engine kind (`llama-cpp`, `vllm`, ...), for its tokenizer endpoint.
    public var engine: String
    public var createdAt: Date
    /// Ready, healthy instances; empty while the deployment starts or is scaled to zero, when
    /// the gateway holds requests in a bounded queue until one is ready.
    public var targets: [RouteTarget]
    public var access: AccessPolicy
    public var limits: FrequencyLimits
    public var timeouts: ServiceTimeouts
    /// The canary's version and its percent of requests, when the deployment has one.
    public var canaryVersion: String?
    public var canaryWeight: Int

    public init(
        deployment: String, version: String, contextLimit: Int, engine: String = "", createdAt: Date, targets: [RouteTarget],
        access: AccessPolicy = AccessPolicy(), limits: FrequencyLimits = FrequencyLimits(),
        timeouts: ServiceTimeouts = ServiceTimeouts(), canaryVersion: String? = nil, canaryWeight: Int = 0
    ) {
        self.timeouts = timeouts
        self.canaryVersion = canaryVersion
        self.canaryWeight = canaryWeight
        self.deployment = deployment
        self.version = version
        self.contextLimit = contextLimit
        self.engine = engine
        self.createdAt = createdAt
        self.targets = targets
        self.access = access
        self.limits = limits
    }
}

extension RouteEntry {
    /// Whether `principal` may call this deployment: its key's scope and the deployment's access
    /// policy both admit it.
    public func admits(_ principal: Principal) -> Bool {
        principal.mayUse(deployment: deployment) && access.admits(principal)
    }
}

/// Load the gateway saw for one deployment.
public struct DeploymentLoad: Sendable, Equatable {
    /// The most requests in flight at once since the last report.
    public var peakInFlight: Int
    /// Requests waiting for an instance now (scale from zero, or every instance gone).
    public var queued: Int
    /// Requests in flight now, per instance (draining instances included).
    public var inFlightByInstance: [String: Int]

    public init(peakInFlight: Int = 0, queued: Int = 0, inFlightByInstance: [String: Int] = [:]) {
        self.peakInFlight = peakInFlight
        self.queued = queued
        self.inFlightByInstance = inFlightByInstance
    }
}

/// The orchestrator's link to the serving data plane: it publishes where each deployment's
/// ready instances are, and reads back load and failures the gateway saw.
public protocol RoutePublisher: Sendable {
    func publish(_ entry: RouteEntry) async
    func withdraw(deployment: String) async
    /// Withdraws every deployment but those named in `kept`: all of them at shutdown, the ones
    /// deleted meanwhile when this process leads again after another replica did.
    func withdrawAll(except kept: Set<String>) async
    /// The deployment's load since the last call (which resets the peak).
    func takeLoad(deployment: String) async -> DeploymentLoad
    /// Instances the gateway failed to reach (connection refused or reset) since the last call.
    func takeUnreachableInstances() async -> Set<String>
    /// Called when the gateway needs the orchestrator soon: a request is queued for a
    /// deployment without instances, or an instance could not be reached.
    func onAttentionNeeded(_ handler: @escaping @Sendable () -> Void) async
}

extension RoutePublisher {
    public func withdrawAll() async { await withdrawAll(except: []) }
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
    /// The revision's own engine arguments, added after the ones Gantry sets.
    public var extraArguments: [String]
    /// GPUs reserved for it (UUIDs); empty runs on CPU and hides every GPU from the engine.
    public var gpuUUIDs: [String]
    public var cpuThreads: Int
    /// The version served, for runtimes that fetch its files on the node themselves (then
    /// `modelPath` is empty); also names the deployment's revision in labels.
    public var modelVersion: ModelVersion?
    /// GPUs wanted of a runtime that places instances itself (`gpuUUIDs` is empty then), and the
    /// GPU product asked for, if any.
    public var gpuCount: Int
    public var gpuName: String?
    /// The node a runtime that places instances itself must use, when the service names one.
    public var node: String?
    /// The deployment revision the instance runs.
    public var revisionID: String
    /// For runtimes that fetch the files themselves: the file the engine loads, relative to the
    /// version's directory (a gguf model's first shard); nil gives the engine the directory.
    public var modelEntryFile: String?

    public init(
        instanceID: String, deploymentName: String, engine: String, modelPath: String, contextLimit: Int,
        extraArguments: [String] = [], gpuUUIDs: [String] = [], cpuThreads: Int = 1, modelVersion: ModelVersion? = nil,
        gpuCount: Int? = nil, gpuName: String? = nil, revisionID: String = ""
    ) {
        self.modelVersion = modelVersion
        self.gpuCount = gpuCount ?? gpuUUIDs.count
        self.gpuName = gpuName
        self.revisionID = revisionID
        self.instanceID = instanceID
        self.deploymentName = deploymentName
        self.engine = engine
        self.modelPath = modelPath
        self.contextLimit = contextLimit
        self.extraArguments = extraArguments
        self.gpuUUIDs = gpuUUIDs
        self.cpuThreads = cpuThreads
    }
}

/// A started engine: where it listens and its process. A pod has no process id here, and no
/// endpoint until the scheduler places it (its observation gives it then).
public struct StartedEngine: Sendable, Equatable {
    public var endpoint: String
    public var pid: Int32?
    /// How people find it: `pid 1234`, `pod gantry/gantry-ins-...`.
    public var handle: String

    public init(endpoint: String, pid: Int32) {
        self.endpoint = endpoint
        self.pid = pid
        self.handle = "pid \(pid)"
    }

    public init(endpoint: String, handle: String) {
        self.endpoint = endpoint
        self.pid = nil
        self.handle = handle
    }
}

public enum EngineHealth: Sendable, Equatable {
    /// Running, still loading the model.
    case starting
    case ready
    /// Running but its health endpoint fails or does not answer; the string says how.
    case unhealthy(String)
    /// The process is gone; the string gives its exit status and last log lines.
    case exited(String)
    /// Not placed yet: the cluster's scheduler finds no node; the string is its reason, verbatim.
    case unschedulable(String)
    /// Placed; its model files are being fetched onto the node (a pod's init container).
    case fetching
}

/// What a runtime sees of an instance: its health, and where it runs once the runtime (not
/// Gantry) has placed it.
public struct EngineObservation: Sendable, Equatable {
    public var health: EngineHealth
    /// The node it was placed on; nil when the runtime does not place instances or has not yet.
    public var node: String?
    /// Its endpoint once known; nil leaves the recorded one.
    public var endpoint: String?
    /// Times its engine restarted in place (a kubelet restarting a container); nil when the
    /// runtime does not restart engines itself.
    public var restarts: Int?

    public init(health: EngineHealth, node: String? = nil, endpoint: String? = nil, restarts: Int? = nil) {
        self.health = health
        self.node = node
        self.endpoint = endpoint
        self.restarts = restarts
    }
}

/// A runtime driver: starts, watches and stops engine instances (local processes, or Kubernetes
/// pods).
public protocol EngineRuntime: Sendable {
    /// Engine kinds this runtime can start here.
    var supportedEngines: [String] { get }
    /// Whether the runtime places instances itself (Kubernetes: kube-scheduler) and fetches their
    /// model files on the node; then Gantry reserves nothing and resolves no local path, and the
    /// node comes from `observe`.
    var placesInstances: Bool { get }
    /// Health and placement of an instance; by default its probe alone.
    func observe(instanceID: String) async -> EngineObservation
    /// Spawns an instance and returns at once; `probe` says when it is ready.
    func start(_ spec: EngineLaunchSpec) async throws -> StartedEngine
    func probe(instanceID: String) async -> EngineHealth
    /// Stops the instance (gracefully, then forcibly); unknown ids are ignored.
    func stop(instanceID: String) async
    /// Takes over an instance a previous run of Gantry started, if its process still runs and is
    /// that instance's engine. Returns false otherwise.
    func adopt(instanceID: String, engine: String, pid: Int32?, endpoint: String) async -> Bool
    /// Stops engine processes this runtime once started that no recorded instance owns (left by
    /// a crash between spawn and record); returns their instance ids.
    func stopStrays(keeping instanceIDs: Set<String>) async -> [String]
    /// The end of an instance's log (at most `maxBytes`), or nil when it has none here.
    func logs(instanceID: String, maxBytes: Int) async -> String?
    /// The engine's own Prometheus metrics, scraped now; nil when it is not running here or
    /// does not answer.
    func engineMetrics(instanceID: String) async -> String?
}

extension EngineRuntime {
    public var placesInstances: Bool { false }

    public func observe(instanceID: String) async -> EngineObservation {
        EngineObservation(health: await probe(instanceID: instanceID))
    }
}

/// A short-lived token that opens one model version's files, and nothing else, for a node that
/// fetches them itself (a pod's init container).
public struct ModelFetchGrant: Sendable, Equatable {
    /// Where the version's manifest is; its files are under `<url>/files/<path>`.
    public var url: String
    public var token: String
    /// The header that carries `token`.
    public static let header = "x-gantry-fetch-token"

    public init(url: String, token: String) {
        self.url = url
        self.token = token
    }
}

/// Issues `ModelFetchGrant`s (the registry, which checks them when the files are fetched).
public protocol ModelFetchGrants: Sendable {
    func grant(versionID: String) -> ModelFetchGrant
}

/// Node-side artifact resolution: turns a model version into a local path an engine can load,
/// fetching and verifying its files first when they are not on this node yet.
public protocol ArtifactResolver: Sendable {
    /// For a gguf version the `.gguf` file to load (the first shard of a split model); for other
    /// formats the directory holding the version's files.
    func localPath(for version: ModelVersion) async throws -> String
}

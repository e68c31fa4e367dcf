public import Foundation

/// Storage boundaries. `GantryStore` implements each over SQLite and PostgreSQL; services depend
/// only on these protocols. Uniqueness violations surface as `GantryError` of kind `.conflict`.

public protocol ModelRepository: Sendable {
    func createModel(_ model: Model) async throws
    func model(named name: String) async throws -> Model?
    func model(id: String) async throws -> Model?
    /// One page of models matching `query`, ordered by name.
    func listModels(_ query: ModelQuery) async throws -> [Model]
    /// Replaces the mutable fields (description, task, owner, labels, updated_at).
    func updateModel(_ model: Model) async throws
    /// Removes the model with its versions, their file records and labels.
    func deleteModel(id: String) async throws

    func createVersion(_ version: ModelVersion) async throws
    func version(modelID: String, version: String) async throws -> ModelVersion?
    func version(id: String) async throws -> ModelVersion?
    /// Versions of a model, oldest first; `after` is the id of the last version of the previous page.
    func listVersions(modelID: String, after: String?, limit: Int?) async throws -> [ModelVersion]
    /// Replaces a version's fields, but only while its status is still `expectedStatus`; returns
    /// false (and changes nothing) when another writer changed the status first.
    func updateVersion(_ version: ModelVersion, expectedStatus: ModelVersionStatus) async throws -> Bool
    /// Removes the version and its file records.
    func deleteVersion(id: String) async throws

    func files(versionID: String) async throws -> [ModelFile]
    /// Records (or replaces) an uploaded file and moves the version to `uploading`, in one
    /// transaction that fails with `.conflict` when the version is ready by then. Returns the
    /// record it replaced, whose object the caller then removes.
    @discardableResult
    func recordFile(versionID: String, _ file: ModelFile) async throws -> ModelFile?
    /// Removes a file record, with the same ready check as `recordFile`; returns what it removed.
    func deleteFile(versionID: String, path: String) async throws -> ModelFile?
}

extension ModelRepository {
    /// Every version of a model, oldest first.
    public func listVersions(modelID: String) async throws -> [ModelVersion] {
        try await listVersions(modelID: modelID, after: nil, limit: nil)
    }

    /// Every model, by name.
    public func listModels() async throws -> [Model] {
        try await listModels(ModelQuery())
    }
}

/// Filters and paging for listing models.
public struct ModelQuery: Sendable, Equatable {
    public var task: ModelTask?
    public var owner: String?
    /// Only models carrying every one of these labels with exactly these values.
    public var labels: [String: String]
    public var namePrefix: String?
    /// Name of the last model of the previous page.
    public var after: String?
    public var limit: Int?

    public init(
        task: ModelTask? = nil, owner: String? = nil, labels: [String: String] = [:], namePrefix: String? = nil,
        after: String? = nil, limit: Int? = nil
    ) {
        self.task = task
        self.owner = owner
        self.labels = labels
        self.namePrefix = namePrefix
        self.after = after
        self.limit = limit
    }
}

public protocol DeploymentRepository: Sendable {
    func createDeployment(_ deployment: Deployment) async throws
    func deployment(named name: String) async throws -> Deployment?
    func listDeployments() async throws -> [Deployment]
    /// Stores the spec: revisions, scaling, replicas, access and limits (not the status).
    func updateSpec(_ deployment: Deployment) async throws
    /// Stores only the replica count (the autoscaler's decision), leaving the rest of the spec as
    /// an API call may have just changed it.
    func updateReplicas(deploymentID: String, replicas: Int) async throws
    /// Sets the status and its message, unless the deployment is being deleted (nothing brings one
    /// back) or they are already so (its `updated_at` stays).
    func updateStatus(deploymentID: String, status: DeploymentStatus, message: String) async throws
    /// Deletes the deployment with its instances and events.
    func deleteDeployment(id: String) async throws
    func recordEvent(_ event: DeploymentEvent) async throws
    /// The newest `limit` events, oldest first.
    func events(deploymentID: String, limit: Int) async throws -> [DeploymentEvent]
}

public protocol InstanceRepository: Sendable {
    func createInstance(_ instance: EngineInstance) async throws
    /// Stores every field of an existing instance.
    func updateInstance(_ instance: EngineInstance) async throws
    func instance(id: String) async throws -> EngineInstance?
    func listInstances(deploymentID: String?) async throws -> [EngineInstance]
    func deleteInstance(id: String) async throws
}

public protocol UserRepository: Sendable {
    func createUser(_ user: User) async throws
    func user(id: String) async throws -> User?
    func user(named name: String) async throws -> User?
    func user(issuer: String, subject: String) async throws -> User?
    func listUsers() async throws -> [User]
    func setDisabled(userID: String, disabled: Bool) async throws
    /// Stores a user's name, email and role (taken from the provider at each login, or set by an admin).
    func updateProfile(userID: String, name: String, email: String?, role: Role) async throws
    /// Replaces a user's limits and key cap (nil removes each).
    func updateLimits(userID: String, limits: UsageLimits?, maxKeys: Int?) async throws
}

public protocol SessionRepository: Sendable {
    func createSession(_ session: BrowserSession) async throws
    func session(tokenHash: String) async throws -> BrowserSession?
    func deleteSession(tokenHash: String) async throws
    /// Ends every browser session of a user (when disabled).
    func deleteSessions(userID: String) async throws
    func deleteExpiredSessions(before: Date) async throws
}

public protocol APIKeyRepository: Sendable {
    /// Stores a new key. With `maxActiveKeys`, refuses (conflict, `key_limit_reached`) when the
    /// owner already holds that many unrevoked, unexpired keys, checked and inserted atomically
    /// so concurrent creations cannot pass the cap together.
    func createKey(_ key: APIKeyRecord, maxActiveKeys: Int?) async throws
    func key(id: String) async throws -> APIKeyRecord?
    func listKeys(userID: String?) async throws -> [APIKeyRecord]
    func revokeKey(id: String, at: Date) async throws
    /// Replaces a key's limits and quota (nil removes them).
    func updateKeyLimits(id: String, limits: UsageLimits?) async throws
    func touchKey(id: String, at: Date) async throws
    func countKeys() async throws -> Int
}

/// Logins in progress (a browser's `state`, a device login's handle, a CLI's loopback request
/// and one-time code), kept in the store so that a login started on one control replica can
/// finish on another. Entries are small, short-lived and usable once; `key` is what the caller
/// chose to index them by (a digest: the store never holds a usable state or code).
public protocol PendingLoginRepository: Sendable {
    /// Stores `payload` under (`kind`, `key`) until `expiresAt`, replacing an entry with the same
    /// key. Refuses with `rateLimited` when `capacity` unexpired entries of `kind` exist already:
    /// starting a login needs no credential, so the table must be bounded. Expired entries are
    /// removed on the way.
    func insertPendingLogin(kind: String, key: String, payload: Data, expiresAt: Date, capacity: Int, now: Date)
        async throws
    /// Removes and returns the entry if it has not expired: one caller gets it, however many ask
    /// at once, on however many replicas.
    func takePendingLogin(kind: String, key: String, now: Date) async throws -> Data?
    /// The entry, left in place, if it has not expired.
    func pendingLogin(kind: String, key: String, now: Date) async throws -> Data?
    func deletePendingLogin(kind: String, key: String) async throws
}

/// Named leases with an expiry, for one holder at a time among processes sharing the store: the
/// control replicas elect their leader with one. The store's own clock decides expiry where it has
/// one (PostgreSQL), so replicas' clocks need not agree.
public protocol LeaseRepository: Sendable {
    /// Takes the lease `name` for `holder` for `duration`, or renews it when `holder` has it
    /// already; a lease held by another is taken only once it has expired. Answers the lease's
    /// term (it grows by one each time the holder changes) when `holder` has it now, nil when
    /// another does. One statement: of several replicas asking at once, one gets it.
    func acquireLease(name: String, holder: String, duration: Duration) async throws -> Int64?
    /// Gives the lease up at once when `holder` has it, so that another can take it without
    /// waiting for it to expire.
    func releaseLease(name: String, holder: String) async throws
}

/// Counters that processes sharing the store move to tell each other that something changed:
/// a change of credentials made through a standby control replica reaches the leader, whose
/// route watch tells the gateways.
public protocol ChangeCounterRepository: Sendable {
    /// Adds one to the counter `name` (created at one).
    func bumpChangeCounter(name: String) async throws
    /// The counter's value; 0 before its first bump.
    func changeCounter(name: String) async throws -> Int64
}

/// All repositories of one store, handed to the services that need them.
public struct Repositories: Sendable {
    public var models: any ModelRepository
    public var deployments: any DeploymentRepository
    public var instances: any InstanceRepository
    public var users: any UserRepository
    public var keys: any APIKeyRepository
    public var sessions: any SessionRepository
    public var allocations: any AllocationRepository
    public var usage: any UsageRepository
    public var pendingLogins: any PendingLoginRepository
    public var leases: any LeaseRepository
    public var changeCounters: any ChangeCounterRepository

    public init(
        models: any ModelRepository, deployments: any DeploymentRepository, instances: any InstanceRepository,
        users: any UserRepository, keys: any APIKeyRepository, sessions: any SessionRepository,
        allocations: any AllocationRepository, usage: any UsageRepository, pendingLogins: any PendingLoginRepository,
        leases: any LeaseRepository, changeCounters: any ChangeCounterRepository
    ) {
        self.models = models
        self.deployments = deployments
        self.instances = instances
        self.users = users
        self.keys = keys
        self.sessions = sessions
        self.allocations = allocations
        self.usage = usage
        self.pendingLogins = pendingLogins
        self.leases = leases
        self.changeCounters = changeCounters
    }
}

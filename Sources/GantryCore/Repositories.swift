public import Foundation

/// Storage boundaries. `GantryStore` implements each over SQLite and PostgreSQL; services depend
/// only on these protocols. Uniqueness violations surface as `GantryError` of kind `.conflict`.

public protocol ModelRepository: Sendable {
    func createModel(_ model: Model) async throws
    func model(named name: String) async throws -> Model?
    func model(id: String) async throws -> Model?
    func listModels() async throws -> [Model]
    func createVersion(_ version: ModelVersion) async throws
    func version(modelID: String, version: String) async throws -> ModelVersion?
    func version(id: String) async throws -> ModelVersion?
    func listVersions(modelID: String) async throws -> [ModelVersion]
}

public protocol DeploymentRepository: Sendable {
    func createDeployment(_ deployment: Deployment) async throws
    func deployment(named name: String) async throws -> Deployment?
    func listDeployments() async throws -> [Deployment]
    func updateStatus(deploymentID: String, status: DeploymentStatus, message: String) async throws
    func deleteDeployment(id: String) async throws
}

public protocol InstanceRepository: Sendable {
    func createInstance(_ instance: EngineInstance) async throws
    func updateStatus(instanceID: String, status: InstanceStatus) async throws
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
    func createKey(_ key: APIKeyRecord) async throws
    func key(id: String) async throws -> APIKeyRecord?
    func listKeys(userID: String?) async throws -> [APIKeyRecord]
    func revokeKey(id: String, at: Date) async throws
    func touchKey(id: String, at: Date) async throws
    func countKeys() async throws -> Int
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

    public init(
        models: any ModelRepository, deployments: any DeploymentRepository, instances: any InstanceRepository,
        users: any UserRepository, keys: any APIKeyRepository, sessions: any SessionRepository,
        allocations: any AllocationRepository
    ) {
        self.models = models
        self.deployments = deployments
        self.instances = instances
        self.users = users
        self.keys = keys
        self.sessions = sessions
        self.allocations = allocations
    }
}

import Foundation
public import GantryBlobs
public import GantryCore
public import Logging

/// The model registry: models, their versions and metadata, and the versions' files in the
/// object store. Everything is validated before it is stored.
public struct RegistryService: Sendable {
    let models: any ModelRepository
    let deployments: any DeploymentRepository
    let objects: any ObjectStore
    /// Largest file one upload may write.
    let maxFileBytes: Int64
    let leases = UploadLeases()
    let logger: Logger

    public init(
        models: any ModelRepository, deployments: any DeploymentRepository, objects: any ObjectStore, maxFileBytes: Int64,
        logger: Logger
    ) {
        self.models = models
        self.deployments = deployments
        self.objects = objects
        self.maxFileBytes = maxFileBytes
        self.logger = logger
    }

    // MARK: models

    public func createModel(_ request: NewModel, createdBy principal: Principal?) async throws -> Model {
        try ResourceName.validate(request.name, field: "name")
        let description = request.description ?? ""
        try ModelFieldRules.description(description)
        let labels = request.labels ?? [:]
        try ModelFieldRules.labels(labels)
        let owner = request.owner ?? principal?.userName ?? ""
        try Self.validateOwner(owner)
        let now = Date()
        let model = Model(
            id: Identifier.make("mdl"), name: request.name, description: description, task: request.task ?? .chat,
            owner: owner, labels: labels, createdAt: now, updatedAt: now)
        try await models.createModel(model)
        logger.info("model registered", metadata: ["model": "\(model.name)"])
        return model
    }

    public func model(named name: String) async throws -> Model {
        guard let model = try await models.model(named: name) else {
            throw GantryError.notFound("model '\(name)' not found", code: "model_not_found")
        }
        return model
    }

    /// The model with this name, or nil.
    public func modelIfExists(_ name: String) async throws -> Model? {
        try await models.model(named: name)
    }

    /// One page of models and the name to continue after, if there are more.
    public func listModels(_ query: ModelQuery) async throws -> (models: [Model], last: String?) {
        if let prefix = query.namePrefix, !prefix.isEmpty {
            // A prefix of a valid name is itself made of valid characters.
            try ResourceName.validate(prefix.hasSuffix("-") ? prefix + "a" : prefix, field: "name_prefix")
        }
        let limit = query.limit ?? 100
        var probe = query
        probe.limit = limit + 1
        let found = try await models.listModels(probe)
        let page = Array(found.prefix(limit))
        return (page, found.count > limit ? page.last?.name : nil)
    }

    public func updateModel(named name: String, _ changes: ModelChanges) async throws -> Model {
        var model = try await model(named: name)
        if let description = changes.description {
            try ModelFieldRules.description(description)
            model.description = description
        }
        if let labels = changes.labels {
            try ModelFieldRules.labels(labels)
            model.labels = labels
        }
        if let owner = changes.owner {
            try Self.validateOwner(owner)
            model.owner = owner
        }
        if let task = changes.task { model.task = task }
        model.updatedAt = Date()
        try await models.updateModel(model)
        return model
    }

    /// Deletes a model with all its versions and files; refused while any deployment uses it.
    public func deleteModel(named name: String) async throws {
        let model = try await model(named: name)
        let users = try await deployments.listDeployments().filter { $0.modelID == model.id }
        guard users.isEmpty else {
            throw GantryError.conflict(
                "model '\(name)' is used by deployment \(Self.names(users)); delete the deployment first")
        }
        try await models.deleteModel(id: model.id)
        await removeObjects(prefix: "models/\(model.id)/")
        logger.info("model deleted", metadata: ["model": "\(name)"])
    }

    // MARK: versions

    public func createVersion(modelName: String, _ request: NewVersion) async throws -> ModelVersion {
        let model = try await model(named: modelName)
        let now = Date()
        // The identifiers are filled in below; every other field is checked once, here.
        var version = ModelVersion(
            id: "", modelID: model.id, version: "", description: request.description ?? "", format: request.format,
            contextLimit: request.contextLimit, inputSchema: request.inputSchema, outputSchema: request.outputSchema,
            defaultEngine: request.defaultEngine, engineArgs: request.engineArgs ?? [], artifactURI: request.artifactUri,
            status: .pending, createdAt: now, updatedAt: now)
        try ModelFieldRules.versionMetadata(version)
        if let uri = request.artifactUri { version.status = try Self.validateArtifactReference(uri) }
        if let explicit = request.version { try ModelFieldRules.versionIdentifier(explicit) }

        // Automatic identifiers are the next integer; two creators racing for the same number
        // meet the unique key, and the loser takes the next one.
        for attempt in 1...5 {
            if let explicit = request.version {
                version.version = explicit
            } else {
                let numbers = try await models.listVersions(modelID: model.id).compactMap { Int($0.version) }
                version.version = String((numbers.max() ?? 0) + 1)
            }
            version.id = Identifier.make("ver")
            do {
                try await models.createVersion(version)
                logger.info("version registered", metadata: ["model": "\(model.name)", "version": "\(version.version)"])
                return version
            } catch let error as GantryError where error.kind == .conflict && request.version == nil && attempt < 5 {
                continue
            } catch let error as GantryError where error.kind == .conflict {
                throw GantryError.conflict("model '\(model.name)' already has a version '\(version.version)'")
            }
        }
        throw GantryError(.unavailable, "could not pick a version number; try again")
    }

    public func version(modelName: String, version name: String) async throws -> (Model, ModelVersion) {
        let model = try await model(named: modelName)
        guard let version = try await models.version(modelID: model.id, version: name) else {
            throw GantryError.notFound("version '\(name)' of model '\(modelName)' not found", code: "version_not_found")
        }
        return (model, version)
    }

    /// One page of a model's versions, oldest first, and the id to continue after.
    public func listVersions(modelName: String, after: String?, limit: Int) async throws -> (
        versions: [ModelVersion], last: String?
    ) {
        let model = try await model(named: modelName)
        let found = try await models.listVersions(modelID: model.id, after: after, limit: limit + 1)
        let page = Array(found.prefix(limit))
        return (page, found.count > limit ? page.last?.id : nil)
    }

    public func files(of version: ModelVersion) async throws -> [ModelFile] {
        try await models.files(versionID: version.id)
    }

    public func updateVersion(modelName: String, version name: String, _ changes: VersionChanges) async throws
        -> ModelVersion
    {
        var (_, version) = try await version(modelName: modelName, version: name)
        let original = version.status
        if original == .ready && changes.changesContent {
            throw GantryError.conflict(
                "version '\(name)' is ready and immutable; only 'deprecated' can change. Register a new version instead")
        }
        version.description = changes.description ?? version.description
        version.format = changes.format ?? version.format
        version.contextLimit = changes.contextLimit ?? version.contextLimit
        version.inputSchema = changes.inputSchema ?? version.inputSchema
        version.outputSchema = changes.outputSchema ?? version.outputSchema
        version.defaultEngine = changes.defaultEngine ?? version.defaultEngine
        version.engineArgs = changes.engineArgs ?? version.engineArgs
        try ModelFieldRules.versionMetadata(version)
        if let deprecated = changes.deprecated { version.deprecated = deprecated }
        version.updatedAt = Date()
        guard try await models.updateVersion(version, expectedStatus: original) else {
            throw GantryError.conflict("version '\(name)' changed status while being updated; read it again")
        }
        return version
    }

    /// Deletes a version and its files; refused while a deployment uses it.
    public func deleteVersion(modelName: String, version name: String) async throws {
        let (model, version) = try await version(modelName: modelName, version: name)
        let users = try await deployments.listDeployments().filter { $0.versionID == version.id }
        guard users.isEmpty else {
            throw GantryError.conflict(
                "version '\(name)' of model '\(model.name)' is used by deployment \(Self.names(users)); delete the deployment first"
            )
        }
        guard await leases.paths(versionID: version.id).isEmpty else {
            throw GantryError.conflict("files of version '\(name)' are being uploaded; try again when they finish")
        }
        try await models.deleteVersion(id: version.id)
        await removeObjects(prefix: version.storagePrefix)
        logger.info("version deleted", metadata: ["model": "\(model.name)", "version": "\(name)"])
    }

    // MARK: helpers

    /// Objects are removed after the rows that point at them, so nothing visible ever points at a
    /// missing object; a failure here leaves only unreachable objects, which is logged.
    func removeObjects(prefix: String) async {
        do {
            try await objects.deleteAll(prefix: prefix)
        } catch {
            logger.warning("could not remove objects", metadata: ["prefix": "\(prefix)", "error": "\(error)"])
        }
    }

    static func names(_ deployments: [Deployment]) -> String {
        deployments.map { "'\($0.name)'" }.sorted().joined(separator: ", ")
    }

    static func validateOwner(_ owner: String) throws {
        guard owner.count <= 128, !owner.contains(where: { $0.isNewline || $0 == "\0" }) else {
            throw GantryError.invalid("owner must be a user name of at most 128 characters", param: "owner")
        }
    }

    /// A `file://` artifact must exist now; `s3://` and `hf://` are checked by the node that fetches them.
    static func validateArtifactReference(_ uri: String) throws -> ModelVersionStatus {
        guard let url = URL(string: uri), let scheme = url.scheme else {
            throw GantryError.invalid("artifact_uri must be a URL (file://, s3:// or hf://)", param: "artifact_uri")
        }
        switch scheme {
        case "file":
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw GantryError.invalid("artifact_uri points to a file that does not exist: \(url.path)", param: "artifact_uri")
            }
            return .ready
        case "s3":
            guard let bucket = url.host, !bucket.isEmpty, url.path.count > 1 else {
                throw GantryError.invalid("artifact_uri must look like s3://bucket/key", param: "artifact_uri")
            }
            return .ready
        case "hf":
            // hf://org/repo@revision: the revision pins what "this version" means.
            guard let host = url.host, !host.isEmpty, uri.contains("@"), url.path.count > 1 else {
                throw GantryError.invalid("artifact_uri must look like hf://org/repo@revision", param: "artifact_uri")
            }
            return .ready
        default:
            throw GantryError.invalid("artifact_uri scheme '\(scheme)' is not supported (file, s3, hf)", param: "artifact_uri")
        }
    }
}

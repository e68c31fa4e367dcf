import Foundation
public import GantryCore
import Logging

/// Registers models and their versions, validating metadata before anything is stored.
public struct RegistryService: Sendable {
    let models: any ModelRepository

    public init(models: any ModelRepository) {
        self.models = models
    }

    public func createModel(name: String, description: String, task: ModelTask) async throws -> Model {
        try ResourceName.validate(name, field: "name")
        guard description.count <= 4096 else {
            throw GantryError.invalid("description is longer than 4096 characters", param: "description")
        }
        let model = Model(id: Identifier.make("mdl"), name: name, description: description, task: task, createdAt: Date())
        try await models.createModel(model)
        return model
    }

    public func model(named name: String) async throws -> Model {
        guard let model = try await models.model(named: name) else {
            throw GantryError.notFound("model '\(name)' not found", code: "model_not_found")
        }
        return model
    }

    /// Registers a version whose artifact is referenced, not uploaded. With no explicit version
    /// identifier the next integer is used.
    public func createVersion(
        modelName: String, version: String?, format: String, contextLimit: Int, artifactURI: String
    ) async throws -> ModelVersion {
        let model = try await model(named: modelName)
        guard ModelVersion.contextLimitRange.contains(contextLimit) else {
            throw GantryError.invalid(
                "context_limit must be between \(ModelVersion.contextLimitRange.lowerBound) and \(ModelVersion.contextLimitRange.upperBound)",
                param: "context_limit")
        }
        guard !format.isEmpty, format.count <= 32 else {
            throw GantryError.invalid("format must be 1-32 characters", param: "format")
        }
        let status = try Self.validateArtifact(artifactURI)
        let existing = try await models.listVersions(modelID: model.id)
        let identifier: String
        if let version {
            guard !version.isEmpty, version.count <= 64, !version.contains("@"), !version.contains("/") else {
                throw GantryError.invalid("version must be 1-64 characters without '@' or '/'", param: "version")
            }
            identifier = version
        } else {
            identifier = String((existing.compactMap { Int($0.version) }.max() ?? 0) + 1)
        }
        let record = ModelVersion(
            id: Identifier.make("ver"), modelID: model.id, version: identifier, format: format, contextLimit: contextLimit,
            artifactURI: artifactURI, status: status, createdAt: Date())
        try await models.createVersion(record)
        return record
    }

    /// A `file://` artifact must exist now; the others are checked by the node that fetches them.
    static func validateArtifact(_ uri: String) throws -> ModelVersionStatus {
        guard let url = URL(string: uri), let scheme = url.scheme else {
            throw GantryError.invalid("artifact_uri must be a URL (file://, s3:// or hf://)", param: "artifact_uri")
        }
        switch scheme {
        case "file":
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
                throw GantryError.invalid("artifact_uri points to a file that does not exist: \(url.path)", param: "artifact_uri")
            }
            return .ready
        case "s3", "hf":
            return .ready
        default:
            throw GantryError.invalid("artifact_uri scheme '\(scheme)' is not supported (file, s3, hf)", param: "artifact_uri")
        }
    }
}

extension RegistryService {
    /// The model with this name, or nil.
    public func modelIfExists(_ name: String) async throws -> Model? {
        try await models.model(named: name)
    }
}

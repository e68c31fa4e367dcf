public import Foundation

/// What a model is for; decides which `/v1` endpoint serves it.
public enum ModelTask: String, Codable, Sendable, CaseIterable {
    case chat
    case completion
    case embedding
}

/// A registered model: the stable name under which versions are kept.
public struct Model: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var description: String
    public var task: ModelTask
    public var createdAt: Date

    public init(id: String, name: String, description: String, task: ModelTask, createdAt: Date) {
        self.id = id
        self.name = name
        self.description = description
        self.task = task
        self.createdAt = createdAt
    }
}

/// Lifecycle of a version's artifact.
public enum ModelVersionStatus: String, Codable, Sendable {
    case pending
    case uploading
    case ready
    case failed
}

/// One immutable version of a model, with the metadata the orchestrator needs to run it.
public struct ModelVersion: Codable, Sendable, Equatable {
    public var id: String
    public var modelID: String
    public var version: String
    public var format: String
    /// The largest number of tokens (prompt plus completion) the version accepts.
    public var contextLimit: Int
    /// Where the artifact lives: `file://`, `s3://` or `hf://`.
    public var artifactURI: String
    public var status: ModelVersionStatus
    public var createdAt: Date

    public init(
        id: String, modelID: String, version: String, format: String, contextLimit: Int, artifactURI: String,
        status: ModelVersionStatus, createdAt: Date
    ) {
        self.id = id
        self.modelID = modelID
        self.version = version
        self.format = format
        self.contextLimit = contextLimit
        self.artifactURI = artifactURI
        self.status = status
        self.createdAt = createdAt
    }

    /// Context limits Gantry accepts: at least one token, at most 2^20 (no engine serves more today).
    public static let contextLimitRange = 1...1_048_576
}

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
    /// The user name of whoever is responsible for the model (the creator unless set).
    public var owner: String
    /// Free key/value labels for filtering (`team=search`).
    public var labels: [String: String]
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, name: String, description: String, task: ModelTask, owner: String = "", labels: [String: String] = [:],
        createdAt: Date, updatedAt: Date? = nil
    ) {
        self.id = id
        self.name = name
        self.description = description
        self.task = task
        self.owner = owner
        self.labels = labels
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
    }
}

/// Lifecycle of a version's artifact: `pending` (registered, no files yet) → `uploading` (files
/// arriving) → `ready` (complete and immutable) or `failed`.
public enum ModelVersionStatus: String, Codable, Sendable {
    case pending
    case uploading
    case ready
    case failed
}

/// One uploaded file of a version, as stored in the object store.
public struct ModelFile: Codable, Sendable, Equatable {
    /// Relative path inside the version (`model.gguf`, `tokenizer/config.json`).
    public var path: String
    public var size: Int64
    /// Lower-case hex SHA-256 of the file's bytes.
    public var sha256: String
    /// Where the bytes are in the object store. Each upload writes a key of its own, so a failed
    /// or concurrent upload never touches the object a committed file points at. Internal: not
    /// part of the API's JSON.
    public var objectKey: String
    public var createdAt: Date

    public init(path: String, size: Int64, sha256: String, objectKey: String, createdAt: Date) {
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.objectKey = objectKey
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case path, size, sha256, createdAt
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        path = try container.decode(String.self, forKey: .path)
        size = try container.decode(Int64.self, forKey: .size)
        sha256 = try container.decode(String.self, forKey: .sha256)
        createdAt = try container.decode(Date.self, forKey: .createdAt)
        objectKey = ""
    }
}

/// One version of a model, with the metadata the orchestrator needs to run it. Immutable once
/// ready, except for the deprecated flag.
public struct ModelVersion: Codable, Sendable, Equatable {
    public var id: String
    public var modelID: String
    public var version: String
    public var description: String
    /// File format of the artifact: gguf, safetensors, onnx, ...
    public var format: String
    /// The largest number of tokens (prompt plus completion) the version accepts.
    public var contextLimit: Int
    /// JSON Schema of the input the version accepts, if declared.
    public var inputSchema: JSONValue?
    /// JSON Schema of the output the version produces, if declared.
    public var outputSchema: JSONValue?
    /// Engine used when a deployment names none (`llama-cpp`).
    public var defaultEngine: String?
    /// Extra engine arguments a deployment starts the engine with.
    public var engineArgs: [String]
    /// A referenced artifact (`file://`, `s3://`, `hf://org/repo@revision`); nil when the files
    /// are uploaded into Gantry's object store.
    public var artifactURI: String?
    public var status: ModelVersionStatus
    /// Why the version failed, when it did.
    public var statusMessage: String
    public var deprecated: Bool
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, modelID: String, version: String, description: String = "", format: String, contextLimit: Int,
        inputSchema: JSONValue? = nil, outputSchema: JSONValue? = nil, defaultEngine: String? = nil,
        engineArgs: [String] = [], artifactURI: String?, status: ModelVersionStatus, statusMessage: String = "",
        deprecated: Bool = false, createdAt: Date, updatedAt: Date? = nil
    ) {
        self.id = id
        self.modelID = modelID
        self.version = version
        self.description = description
        self.format = format
        self.contextLimit = contextLimit
        self.inputSchema = inputSchema
        self.outputSchema = outputSchema
        self.defaultEngine = defaultEngine
        self.engineArgs = engineArgs
        self.artifactURI = artifactURI
        self.status = status
        self.statusMessage = statusMessage
        self.deprecated = deprecated
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
    }

    /// Context limits Gantry accepts: at least one token, at most 2^20 (no engine serves more today).
    public static let contextLimitRange = 1...1_048_576

    /// The object-store prefix under which an uploaded version's files live.
    public var storagePrefix: String { "models/\(modelID)/\(id)/" }
}

extension ModelVersion {
    /// The file an engine is given, relative to the version's directory: a gguf model's first
    /// `.gguf` file (llama.cpp finds the other shards of a split model next to it); nil for other
    /// formats, whose engines take the directory.
    public func entryFile(among files: [ModelFile]) throws -> String? {
        guard format == "gguf" else { return nil }
        let ggufs = files.map(\.path).filter { $0.hasSuffix(".gguf") }.sorted()
        guard let first = ggufs.first(where: { $0.contains("-00001-of-") }) ?? ggufs.first else {
            throw GantryError.conflict("version '\(version)' is gguf but has no .gguf file")
        }
        return first
    }
}

public import GantryCore

/// `POST /api/v1/models`.
public struct NewModel: Decodable, Sendable {
    public var name: String
    public var description: String?
    public var task: ModelTask?
    public var owner: String?
    public var labels: [String: String]?

    public init(
        name: String, description: String? = nil, task: ModelTask? = nil, owner: String? = nil, labels: [String: String]? = nil
    ) {
        self.name = name
        self.description = description
        self.task = task
        self.owner = owner
        self.labels = labels
    }
}

/// `PATCH /api/v1/models/{name}`: the mutable fields; absent ones stay as they are.
public struct ModelChanges: Decodable, Sendable {
    public var description: String?
    public var task: ModelTask?
    public var owner: String?
    /// Replaces all labels.
    public var labels: [String: String]?
}

/// `POST /api/v1/models/{name}/versions`.
public struct NewVersion: Decodable, Sendable {
    /// An explicit identifier; the next integer when absent.
    public var version: String?
    public var description: String?
    public var format: String
    public var contextLimit: Int
    public var inputSchema: JSONValue?
    public var outputSchema: JSONValue?
    public var defaultEngine: String?
    public var engineArgs: [String]?
    /// A referenced artifact; absent when the files will be uploaded.
    public var artifactUri: String?

    public init(
        version: String? = nil, description: String? = nil, format: String, contextLimit: Int, inputSchema: JSONValue? = nil,
        outputSchema: JSONValue? = nil, defaultEngine: String? = nil, engineArgs: [String]? = nil, artifactUri: String? = nil
    ) {
        self.version = version
        self.description = description
        self.format = format
        self.contextLimit = contextLimit
        self.inputSchema = inputSchema
        self.outputSchema = outputSchema
        self.defaultEngine = defaultEngine
        self.engineArgs = engineArgs
        self.artifactUri = artifactUri
    }
}

/// `PATCH /api/v1/models/{name}/versions/{version}`. Once a version is ready only `deprecated`
/// may change.
public struct VersionChanges: Decodable, Sendable {
    public var description: String?
    public var format: String?
    public var contextLimit: Int?
    public var inputSchema: JSONValue?
    public var outputSchema: JSONValue?
    public var defaultEngine: String?
    public var engineArgs: [String]?
    public var deprecated: Bool?

    public init(deprecated: Bool? = nil) {
        self.deprecated = deprecated
    }

    /// Whether anything other than `deprecated` is being changed.
    var changesContent: Bool {
        description != nil || format != nil || contextLimit != nil || inputSchema != nil || outputSchema != nil
            || defaultEngine != nil || engineArgs != nil
    }
}

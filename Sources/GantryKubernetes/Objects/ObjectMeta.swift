/// The parts of Kubernetes' `ObjectMeta` Gantry reads and writes. Timestamps stay RFC 3339
/// strings: they are shown and compared, never computed with.
public struct ObjectMeta: Codable, Sendable, Equatable {
    public var name: String?
    public var namespace: String?
    public var uid: String?
    public var resourceVersion: String?
    public var labels: [String: String]?
    public var annotations: [String: String]?
    public var creationTimestamp: String?
    public var deletionTimestamp: String?

    public init(
        name: String? = nil, namespace: String? = nil, labels: [String: String]? = nil,
        annotations: [String: String]? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.labels = labels
        self.annotations = annotations
    }
}

/// The metadata of a list: where a watch that follows the list starts.
public struct ListMeta: Codable, Sendable, Equatable {
    public var resourceVersion: String?
    public var `continue`: String?
}

/// A kind of object Gantry reads through the client, with where its collection lives.
public protocol KubernetesResource: Codable, Sendable {
    /// The collection's name in a URL: `pods`, `nodes`, `events`.
    static var plural: String { get }
    /// Whether objects live in a namespace (pods, events) or in the cluster (nodes).
    static var namespaced: Bool { get }
    var metadata: ObjectMeta { get }
}

/// `GET` of a collection: its items and the version to watch from.
public struct ObjectList<Object: KubernetesResource>: Decodable, Sendable {
    public var metadata: ListMeta
    public var items: [Object]

    enum CodingKeys: String, CodingKey { case metadata, items }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        metadata = try container.decodeIfPresent(ListMeta.self, forKey: .metadata) ?? ListMeta()
        // The API server writes `"items": null` for an empty list.
        items = try container.decodeIfPresent([Object].self, forKey: .items) ?? []
    }
}

/// `status.conditions[]` of a pod or node.
public struct Condition: Codable, Sendable, Equatable {
    public var type: String
    public var status: String
    public var reason: String?
    public var message: String?
    public var lastTransitionTime: String?

    public init(type: String, status: String, reason: String? = nil, message: String? = nil) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
    }
}

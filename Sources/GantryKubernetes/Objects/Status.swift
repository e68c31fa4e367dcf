/// The API server's `Status` body, sent with every refused request.
public struct Status: Codable, Sendable, Equatable {
    public struct Details: Codable, Sendable, Equatable {
        public var name: String?
        public var kind: String?
        public var group: String?
    }
    public var message: String?
    public var reason: String?
    public var code: Int?
    public var details: Details?
}

/// One line of a watch: ADDED, MODIFIED, DELETED, BOOKMARK, or ERROR (whose object is a Status,
/// 410 Gone when the version watched from is too old).
public enum WatchEvent<Object: KubernetesResource>: Sendable {
    case added(Object)
    case modified(Object)
    case deleted(Object)
    case bookmark(resourceVersion: String)
    case error(Status)
}

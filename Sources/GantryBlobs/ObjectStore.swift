public import NIOCore

/// What was written: the object's size and the SHA-256 of its bytes, computed while streaming.
public struct ObjectSummary: Sendable, Equatable {
    public var key: String
    public var size: Int64
    /// Lower-case hex.
    public var sha256: String

    public init(key: String, size: Int64, sha256: String) {
        self.key = key
        self.size = size
        self.sha256 = sha256
    }
}

/// An object as listed or looked up, without its bytes.
public struct ObjectInfo: Sendable, Equatable {
    public var key: String
    public var size: Int64

    public init(key: String, size: Int64) {
        self.key = key
        self.size = size
    }
}

/// A flat key → bytes store: a local directory by default, any S3-compatible service when scaled out.
///
/// Keys are `/`-separated relative paths that callers have already validated (no `..`, no empty
/// segments, no leading `/`). Every implementation streams in both directions with bounded
/// buffers, so a file of any size costs a constant amount of memory.
public protocol ObjectStore: Sendable {
    /// A short description for logs and errors ("local directory /var/lib/gantry/blobs", "s3 bucket b at http://...").
    var displayName: String { get }

    /// Streams `body` into the object `key` while computing its size and SHA-256.
    ///
    /// The object becomes visible under `key` only after the whole body was written and `approve`
    /// returned without throwing (callers check an expected digest there). On any failure — the
    /// body throwing (a client that went away), `limit` exceeded, `approve` throwing, the store
    /// failing — nothing is visible under `key`: an earlier object there stays as it was, and no
    /// partial data is left behind. A successful put replaces an existing object atomically.
    ///
    /// - Throws: `GantryError(.payloadTooLarge)` when the body exceeds `limit` bytes; whatever
    ///   `approve` or the body throws, unchanged.
    func put<Body: AsyncSequence & Sendable>(
        _ key: String, body: Body, limit: Int64?, approve: @Sendable (ObjectSummary) throws -> Void
    ) async throws -> ObjectSummary where Body.Element == ByteBuffer

    /// Streams the object's bytes to `consume`, chunk by chunk, in order.
    ///
    /// - Throws: `GantryError(.notFound)` when there is no object under `key`.
    func read(_ key: String, into consume: @Sendable (ByteBuffer) async throws -> Void) async throws

    /// Streams the bytes of `range` (offsets within the object, clamped to its end) to `consume`:
    /// ranged downloads and resumed ones, without reading the rest.
    ///
    /// - Throws: `GantryError(.notFound)` when there is no object under `key`.
    func read(_ key: String, range: Range<Int64>, into consume: @Sendable (ByteBuffer) async throws -> Void) async throws

    /// The object's size, or nil when there is none under `key`.
    func info(_ key: String) async throws -> ObjectInfo?

    /// Removes the object; removing one that does not exist is not an error.
    func delete(_ key: String) async throws

    /// Every object whose key starts with `prefix`, sorted by key.
    func list(prefix: String) async throws -> [ObjectInfo]
    /// Removes what puts of a process that died while writing left behind, where nobody sees it
    /// but the storage bill: a local store's staging files, an S3 bucket's open multipart uploads.
    /// Only what is older than `olderThan` goes: younger leftovers may be puts in progress, of
    /// this process or of another sharing the store (control replicas).
    func removeLeftovers(olderThan age: Duration) async throws
}

extension ObjectStore {
    /// Removes every object under `prefix` (a version's files when the version is deleted).
    public func deleteAll(prefix: String) async throws {
        for object in try await list(prefix: prefix) {
            try await delete(object.key)
        }
    }
}

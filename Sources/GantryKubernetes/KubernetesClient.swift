import AsyncHTTPClient
import Foundation
public import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL

/// A small typed client for exactly the Kubernetes API calls Gantry makes: list, get, watch,
/// server-side apply, delete and pod logs, over HTTPS with a bearer token or client certificate.
///
/// No Swift Kubernetes client is in the project's dependency set; this one stays small because
/// Gantry touches four kinds of object (Pods, Nodes, Events, pods/log).
public struct KubernetesClient: Sendable {
    public let config: KubeConfig
    let http: HTTPClient
    let logger: Logger
    /// The field manager of every apply, so the server tracks which fields are Gantry's.
    public static let fieldManager = "gantry"

    /// Bounds on what one answer may hold: a list of every pod of a large cluster fits.
    static let maxListBytes = 256 << 20
    static let maxWatchLineBytes = 16 << 20
    static let requestTimeout = TimeAmount.seconds(30)

    public init(config: KubeConfig, logger: Logger) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            if let pem = config.certificateAuthorityPEM {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(pem))
            }
            if case .clientCertificate(let certificate, let key) = config.credential {
                tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(certificate).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: key, format: .pem))
            }
        } catch {
            throw KubernetesError.configuration("the kubeconfig's certificates cannot be read: \(error)")
        }
        if config.skipsTLSVerification {
            tls.certificateVerification = .none
            logger.warning("the Kubernetes API server's certificate is not verified (insecure-skip-tls-verify)")
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout.connect = .seconds(10)
        self.config = config
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.logger = logger
    }

    public func shutdown() async throws {
        try await http.shutdown()
    }

    // MARK: - Calls

    public func list<Object: KubernetesResource>(
        _ type: Object.Type, namespace: String?, labelSelector: String? = nil, fieldSelector: String? = nil
    ) async throws -> ObjectList<Object> {
        let url =
            Self.path(Object.self, namespace: namespace) + Self.query(labelSelector: labelSelector, fieldSelector: fieldSelector)
        return try await send(.GET, url, as: ObjectList<Object>.self)
    }

    /// The object, or nil when it does not exist.
    public func get<Object: KubernetesResource>(_ type: Object.Type, name: String, namespace: String?) async throws
        -> Object?
    {
        do {
            return try await send(.GET, Self.path(Object.self, namespace: namespace, name: name), as: Object.self)
        } catch let error as KubernetesError where error.isNotFound {
            return nil
        }
    }

    /// Server-side apply: creates the object or updates the fields Gantry manages, taking them over
    /// from another manager (`force`), as a controller must. JSON is YAML, so the manifest goes as
    /// JSON under the apply content type.
    @discardableResult
    public func apply<Object: KubernetesResource>(_ object: Object, dryRun: Bool = false) async throws -> Object {
        guard let name = object.metadata.name else { throw KubernetesError.configuration("an applied object needs a name") }
        var query = "?fieldManager=\(Self.fieldManager)&force=true"
        if dryRun { query += "&dryRun=All" }
        let encoder = JSONEncoder()
        // YAML has no `\/` escape, and JSON is sent as YAML here.
        encoder.outputFormatting = .withoutEscapingSlashes
        let body = try encoder.encode(object)
        return try await send(
            .PATCH, Self.path(Object.self, namespace: object.metadata.namespace, name: name) + query, as: Object.self,
            body: body, contentType: "application/apply-patch+yaml")
    }

    /// Deletes an object; returns false when it was already gone. `gracePeriodSeconds` nil keeps
    /// the object's own (a pod's `terminationGracePeriodSeconds`).
    @discardableResult
    public func delete<Object: KubernetesResource>(
        _ type: Object.Type, name: String, namespace: String?, gracePeriodSeconds: Int? = nil
    ) async throws -> Bool {
        var url = Self.path(Object.self, namespace: namespace, name: name)
        if let gracePeriodSeconds { url += "?gracePeriodSeconds=\(gracePeriodSeconds)" }
        do {
            _ = try await send(.DELETE, url, as: Status.self)
            return true
        } catch let error as KubernetesError where error.isNotFound {
            return false
        }
    }

    /// The end of a container's log (pods/log), at most `limitBytes`.
    public func logs(pod: String, namespace: String, container: String, limitBytes: Int) async throws -> String {
        let url =
            Self.path(Pod.self, namespace: namespace, name: pod) + "/log?container=\(Self.encode(container))"
            + "&limitBytes=\(limitBytes)&tailLines=1000"
        let data = try await sendRaw(.GET, url, maxBytes: limitBytes + 4096)
        return String(decoding: data, as: UTF8.self)
    }

    /// A watch from `resourceVersion`: events until the server ends it (after `timeoutSeconds`),
    /// the connection breaks, or the consumer stops. An ERROR event with 410 means the version is
    /// too old: list again.
    public func watch<Object: KubernetesResource>(
        _ type: Object.Type, namespace: String?, labelSelector: String? = nil, fieldSelector: String? = nil,
        resourceVersion: String, timeoutSeconds: Int = 240
    ) -> AsyncThrowingStream<WatchEvent<Object>, any Error> {
        let url =
            Self.path(Object.self, namespace: namespace)
            + Self.query(labelSelector: labelSelector, fieldSelector: fieldSelector)
            + (labelSelector == nil && fieldSelector == nil ? "?" : "&")
            + "watch=true&allowWatchBookmarks=true&resourceVersion=\(Self.encode(resourceVersion))&timeoutSeconds=\(timeoutSeconds)"
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: WatchEvent<Object>.self)
        let task = Task {
            do {
                let response = try await execute(
                    .GET, url, body: nil, contentType: nil, timeout: .seconds(Int64(timeoutSeconds) + 30))
                guard response.status == .ok else {
                    let data = try await response.body.collect(upTo: 1 << 20)
                    throw refusal(.GET, url, response.status, Data(buffer: data))
                }
                var lines = LineSplitter(maxLineBytes: Self.maxWatchLineBytes)
                let decoder = JSONDecoder()
                for try await chunk in response.body {
                    for line in try lines.append(chunk) {
                        continuation.yield(try Self.decodeWatchLine(line, as: Object.self, decoder: decoder))
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    // MARK: - Plumbing

    func send<Answer: Decodable>(
        _ method: HTTPMethod, _ url: String, as: Answer.Type, body: Data? = nil, contentType: String? = nil
    ) async throws -> Answer {
        let data = try await sendRaw(method, url, body: body, contentType: contentType, maxBytes: Self.maxListBytes)
        do {
            return try JSONDecoder().decode(Answer.self, from: data)
        } catch {
            throw KubernetesError.unreachable(
                url: config.server + url, reason: "the answer is not the expected \(Answer.self): \(error)")
        }
    }

    func sendRaw(
        _ method: HTTPMethod, _ url: String, body: Data? = nil, contentType: String? = nil, maxBytes: Int
    ) async throws -> Data {
        let response = try await execute(method, url, body: body, contentType: contentType, timeout: Self.requestTimeout)
        let buffer: ByteBuffer
        do {
            buffer = try await response.body.collect(upTo: maxBytes)
        } catch {
            throw KubernetesError.unreachable(url: config.server + url, reason: "reading the answer failed: \(error)")
        }
        let data = Data(buffer: buffer)
        guard (200..<300).contains(response.status.code) else { throw refusal(method, url, response.status, data) }
        return data
    }

    func execute(
        _ method: HTTPMethod, _ url: String, body: Data?, contentType: String?, timeout: TimeAmount
    ) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: config.server + url)
        request.method = method
        request.headers.add(name: "Accept", value: "application/json")
        if let token = try bearerToken() { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: contentType ?? "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        do {
            return try await http.execute(request, timeout: timeout)
        } catch {
            throw KubernetesError.unreachable(url: config.server, reason: "\(error)")
        }
    }

    func bearerToken() throws -> String? {
        switch config.credential {
        case .token(let token): return token
        case .tokenFile(let path):
            let bytes = try KubeConfig.read(path)
            return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        case .none, .clientCertificate: return nil
        }
    }

    func refusal(_ method: HTTPMethod, _ url: String, _ status: HTTPResponseStatus, _ body: Data) -> KubernetesError {
        .refused(
            method: method.rawValue, url: config.server + url, code: Int(status.code),
            status: try? JSONDecoder().decode(Status.self, from: body))
    }

    static func decodeWatchLine<Object: KubernetesResource>(_ line: Data, as: Object.Type, decoder: JSONDecoder) throws
        -> WatchEvent<Object>
    {
        let type = try decoder.decode(WatchEnvelope.self, from: line).type
        switch type {
        case "ADDED": return .added(try decoder.decode(WatchObject<Object>.self, from: line).object)
        case "MODIFIED": return .modified(try decoder.decode(WatchObject<Object>.self, from: line).object)
        case "DELETED": return .deleted(try decoder.decode(WatchObject<Object>.self, from: line).object)
        case "BOOKMARK":
            return .bookmark(
                resourceVersion: try decoder.decode(WatchBookmark.self, from: line).object.metadata.resourceVersion ?? "")
        default: return .error((try? decoder.decode(WatchObject<Status>.self, from: line).object) ?? Status(message: type))
        }
    }

    static func path<Object: KubernetesResource>(_ type: Object.Type, namespace: String?, name: String? = nil) -> String {
        var path = "/api/v1"
        if Object.namespaced, let namespace { path += "/namespaces/\(encode(namespace))" }
        path += "/\(Object.plural)"
        if let name { path += "/\(encode(name))" }
        return path
    }

    static func query(labelSelector: String?, fieldSelector: String?) -> String {
        var parts: [String] = []
        if let labelSelector { parts.append("labelSelector=\(encode(labelSelector))") }
        if let fieldSelector { parts.append("fieldSelector=\(encode(fieldSelector))") }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    /// Percent-encodes everything but unreserved characters and the ones selectors use.
    static func encode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~/=,!()")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

/// The parts of a watch line, decoded one at a time: the type first, then the object as that type.
struct WatchEnvelope: Decodable {
    var type: String
}

struct WatchObject<Body: Decodable>: Decodable {
    var object: Body
}

struct WatchBookmark: Decodable {
    struct Meta: Decodable { var metadata: ListMeta }
    var object: Meta
}

extension Status {
    init(message: String) {
        self.message = message
    }
}

/// Splits a watch's body into lines (one JSON event each), holding at most one line's bytes.
struct LineSplitter {
    let maxLineBytes: Int
    private var pending = Data()

    init(maxLineBytes: Int) {
        self.maxLineBytes = maxLineBytes
    }

    mutating func append(_ chunk: ByteBuffer) throws -> [Data] {
        var lines: [Data] = []
        var bytes = chunk.readableBytesView[...]
        while let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) {
            pending.append(contentsOf: bytes[..<newline])
            if !pending.isEmpty { lines.append(pending) }
            pending = Data()
            bytes = bytes[bytes.index(after: newline)...]
        }
        pending.append(contentsOf: bytes)
        guard pending.count <= maxLineBytes else {
            throw KubernetesError.unreachable(url: "watch", reason: "a watch event is over \(maxLineBytes) bytes")
        }
        return lines
    }
}

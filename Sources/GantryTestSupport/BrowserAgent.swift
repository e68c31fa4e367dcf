public import AsyncHTTPClient
import Foundation
import NIOCore
import Synchronization

/// A minimal browser for tests: keeps cookies per origin and never follows redirects, so a test
/// can walk an OIDC login step by step (Gantry, the provider's login form, the callback).
public final class BrowserAgent: Sendable {
    public struct Page: Sendable {
        public var status: Int
        public var location: String?
        public var body: String
        public var setCookies: [String]
    }

    public let client: HTTPClient
    private let jar = Mutex<[String: [String: String]]>([:])

    public init() {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(30))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func shutdown() async throws {
        try await client.shutdown()
    }

    public func get(_ url: String, headers: [(String, String)] = []) async throws -> Page {
        try await send(url, post: false, body: nil, headers: headers)
    }

    public func postForm(_ url: String, _ fields: [(String, String)], headers: [(String, String)] = []) async throws -> Page {
        let body = fields.map { "\(Self.encode($0.0))=\(Self.encode($0.1))" }.joined(separator: "&")
        return try await send(
            url, post: true, body: body, headers: headers + [("content-type", "application/x-www-form-urlencoded")])
    }

    public func postJSON(_ url: String, _ json: String, headers: [(String, String)] = []) async throws -> Page {
        try await send(url, post: true, body: json, headers: headers + [("content-type", "application/json")])
    }

    /// The cookie this browser holds for an origin (`127.0.0.1:8080`), if any.
    public func cookie(_ name: String, origin: String) -> String? {
        jar.withLock { $0[origin]?[name] }
    }

    public func setCookie(_ name: String, _ value: String?, origin: String) {
        jar.withLock { $0[origin, default: [:]][name] = value }
    }

    func send(_ url: String, post: Bool, body: String?, headers: [(String, String)]) async throws -> Page {
        guard let parsed = URL(string: url), let host = parsed.host else { throw URLError(.badURL) }
        let origin = "\(host):\(parsed.port ?? 80)"
        var request = HTTPClientRequest(url: url)
        request.method = post ? .POST : .GET
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let cookies = jar.withLock { $0[origin] ?? [:] }
        if !cookies.isEmpty {
            request.headers.add(name: "cookie", value: cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; "))
        }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await client.execute(request, timeout: .seconds(30))
        let text = String(buffer: try await response.body.collect(upTo: 4 << 20))
        let setCookies = response.headers["set-cookie"]
        jar.withLock { jar in
            for header in setCookies {
                let pair = header.split(separator: ";", maxSplits: 1)[0]
                guard let equals = pair.firstIndex(of: "=") else { continue }
                let name = pair[..<equals].trimmingCharacters(in: .whitespaces)
                let value = String(pair[pair.index(after: equals)...])
                let expired = value.isEmpty || header.lowercased().contains("max-age=0")
                jar[origin, default: [:]][name] = expired ? nil : value
            }
        }
        return Page(
            status: Int(response.status.code), location: response.headers.first(name: "location"), body: text,
            setCookies: setCookies)
    }

    public static func encode(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }
}

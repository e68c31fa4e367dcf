import AsyncHTTPClient
import Foundation
import GantryCore
import NIOCore

/// The CLI's HTTP calls to a running Gantry: JSON in, JSON out, problem details turned into errors.
struct APIClient {
    let server: String
    let apiKey: String?

    func call(_ method: String, _ path: String, json: String? = nil) async throws -> (status: Int, body: Data) {
        var request = HTTPClientRequest(url: server + path)
        request.method = .init(rawValue: method)
        if let apiKey { request.headers.add(name: "authorization", value: "Bearer \(apiKey)") }
        if let json {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        } catch {
            throw GantryError(.unavailable, "cannot reach Gantry at \(server)")
        }
        return (Int(response.status.code), Data(buffer: try await response.body.collect(upTo: 8 << 20)))
    }

    /// Calls and decodes a 2xx answer; anything else becomes an error with the server's detail.
    func expect(_ method: String, _ path: String, json: String? = nil) async throws -> [String: Any] {
        let (status, body) = try await call(method, path, json: json)
        guard (200..<300).contains(status) else { throw Self.failure(status: status, body: body) }
        return (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
    }

    /// The server's error (problem details or the OpenAI envelope) as a `GantryError`.
    static func failure(status: Int, body: Data) -> GantryError {
        let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
        let detail =
            object["detail"] as? String ?? (object["error"] as? [String: Any])?["message"] as? String ?? "HTTP \(status)"
        return GantryError(.invalidRequest, detail, code: object["code"] as? String)
    }

    static func json(_ object: [String: Any]) -> String {
        String(
            decoding: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8),
            as: UTF8.self)
    }
}

extension APIClient {
    /// The server and key to use: `GANTRY_SERVER` and `GANTRY_API_KEY` when both are set (scripts,
    /// CI), else what `gantry login` stored.
    static func configured(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> APIClient {
        if let server = environment["GANTRY_SERVER"], let key = environment["GANTRY_API_KEY"], !server.isEmpty, !key.isEmpty {
            return APIClient(server: server, apiKey: key)
        }
        let credentials = try CLICredentials.load()
        return APIClient(server: credentials.server, apiKey: credentials.apiKey)
    }

    /// `/api/v1/models/...` with each path segment percent-encoded.
    static func modelPath(_ segments: String...) -> String {
        resourcePath("models", segments)
    }

    /// `/api/v1/<collection>/<segments>`, each segment percent-encoded.
    static func resourcePath(_ collection: String, _ segments: [String]) -> String {
        "/api/v1/\(collection)/" + segments.map(encodeSegment).joined(separator: "/")
    }

    static func encodeSegment(_ segment: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return segment.addingPercentEncoding(withAllowedCharacters: allowed) ?? segment
    }
}

import Foundation
import GantryCommands
import NIOHTTP1
import Testing

/// The OpenAPI document at `/api/v1/openapi.json` says what the server serves: every `/api`
/// operation and the `/v1` endpoints, no more and no fewer.
@Suite("OpenAPI document")
struct OpenAPITests {
    /// `METHOD /path` for every operation of an OpenAPI document.
    static func operations(_ document: [String: Any]) -> Set<String> {
        let paths = document["paths"] as? [String: [String: Any]] ?? [:]
        var operations: Set<String> = []
        for (path, items) in paths {
            for method in items.keys where ["get", "put", "post", "patch", "delete", "head"].contains(method) {
                operations.insert("\(method.uppercased()) \(path)")
            }
        }
        return operations
    }

    @Test("the document served lists exactly the /api and /v1 routes the server registers")
    func matchesTheRoutes() async throws {
        let test = try await TestServer.make()
        // Hummingbird's `**` (the rest of the path) is OpenAPI's `{path}`.
        let registered = Set(
            test.server.routes
                .filter { $0.contains(" /api/") || $0.contains(" /v1/") }
                .map { $0.replacingOccurrences(of: "/**", with: "/{path}") })
        try await DataPlaneTests().live(test) { base in
            let anonymous = try await DataPlaneTests.get(base, key: "", "/api/v1/openapi.json")
            #expect(anonymous.status == 401, "like every /api route, for callers with a credential")
            let served = try await DataPlaneTests.get(base, key: test.adminKey, "/api/v1/openapi.json")
            #expect(served.status == 200)
            #expect(served.headers.first(name: "content-type") == "application/json")
            let document = served.json
            #expect(document["openapi"] as? String == "3.1.0")
            let documented = Self.operations(document)
            #expect(registered.subtracting(documented).sorted() == [], "registered but not in the document")
            #expect(documented.subtracting(registered).sorted() == [], "in the document but not registered")
            #expect(documented.count >= 45)

            // Every operation names its path parameters, has an id, and answers errors in its
            // API's format.
            var ids: Set<String> = []
            for (path, items) in document["paths"] as? [String: [String: Any]] ?? [:] {
                let captures = Set(path.matches(of: /\{([^}]+)\}/).map { String($0.output.1) })
                for (method, value) in items {
                    let operation = value as? [String: Any] ?? [:]
                    let parameters = operation["parameters"] as? [[String: Any]] ?? []
                    let named = Set(parameters.filter { $0["in"] as? String == "path" }.compactMap { $0["name"] as? String })
                    #expect(named == captures, "\(method) \(path): path parameters \(named) for \(captures)")
                    let id = operation["operationId"] as? String ?? ""
                    #expect(!id.isEmpty && ids.insert(id).inserted, "\(method) \(path): operationId '\(id)' missing or twice")
                    let responses = operation["responses"] as? [String: Any] ?? [:]
                    let errorFormat = path.hasPrefix("/v1/") ? "OpenAIError" : "Problem"
                    let error = responses["401"] as? [String: Any]
                    #expect(error?["$ref"] as? String == "#/components/responses/\(errorFormat)", "\(method) \(path)")
                }
            }
        }
    }

    @Test("a registered path asked with another method: 405 with Allow, in the API's format; an unknown path 404")
    func methodNotAllowed() async throws {
        let test = try await TestServer.make()
        try await DataPlaneTests().live(test) { base in
            let key = test.adminKey
            let cases: [(HTTPMethod, String, String)] = [
                (.TRACE, "/api/v1/gpus", "GET"),
                (.PUT, "/api/v1/keys", "GET, POST"),
                (.POST, "/api/v1/keys/k_1", "DELETE, PATCH"),
                (.PATCH, "/api/v1/models/m/versions/1/files/a/b.gguf", "DELETE, GET, PUT"),
                (.DELETE, "/v1/models", "GET"),
            ]
            for (method, path, allow) in cases {
                let answer = try await DataPlaneTests.send(method, base + path, key: key)
                #expect(answer.status == 405, "\(method) \(path): \(answer.status)")
                #expect(answer.headers.first(name: "allow") == allow, "\(method) \(path)")
                if path.hasPrefix("/v1/") {
                    #expect(answer.errorCode == "method_not_allowed", "the OpenAI envelope: \(answer.text)")
                } else {
                    #expect(answer.headers.first(name: "content-type") == "application/problem+json")
                    #expect(answer.json["code"] as? String == "method_not_allowed")
                }
            }
            #expect(try await DataPlaneTests.get(base, key: key, "/api/v1/nothing-here").status == 404)
            // A handler's 404 (no such model) stays a 404: the path is routed, the model is missing.
            #expect(try await DataPlaneTests.get(base, key: key, "/api/v1/models/missing").status == 404)

            // HEAD answers wherever GET does: its status and headers, its length, no body.
            for path in ["/api/v1/gpus", "/v1/models", "/console/assets/console.css", "/healthz"] {
                let get = try await DataPlaneTests.send(.GET, base + path, key: key)
                let head = try await DataPlaneTests.send(.HEAD, base + path, key: key)
                #expect(head.status == get.status && get.status == 200, "HEAD \(path): \(head.status)")
                #expect(head.text.isEmpty, "HEAD \(path) has no body")
                #expect(head.headers.first(name: "content-length") == String(get.text.utf8.count), "HEAD \(path)")
                #expect(head.headers.first(name: "content-type") == get.headers.first(name: "content-type"))
            }
            #expect(try await DataPlaneTests.send(.HEAD, base + "/api/v1/models/missing", key: key).status == 404)
            let postOnly = try await DataPlaneTests.send(.HEAD, base + "/v1/chat/completions", key: key)
            #expect(postOnly.status == 405 && postOnly.headers.first(name: "allow") == "POST")
        }
    }
}

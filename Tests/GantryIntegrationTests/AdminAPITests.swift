import Foundation
import GantryCore
import GantryRegistry
import GantryTestSupport
import Hummingbird
import HummingbirdTesting
import Testing

/// The minimal admin and self-service API: models, versions, deployments, users and keys.
@Suite("Admin API")
struct AdminAPITests {
    @Test("register a model and a version; bad names, limits and artifacts are 400; duplicates 409")
    func registry() async throws {
        let test = try await TestServer.make()
        let artifact = test.directory.path + "/model.gguf"
        _ = FileManager.default.createFile(atPath: artifact, contents: Data("GGUF".utf8))
        try await test.server.application.test(.router) { client in
            func post(_ uri: String, _ body: String) async throws -> TestResponse {
                try await client.execute(uri: uri, method: .post, headers: .bearer(test.adminKey), body: .json(body))
            }
            #expect(try await post("/api/v1/models", #"{"name":"tiny","description":"a test model"}"#).status == .created)
            #expect(try await post("/api/v1/models", #"{"name":"tiny"}"#).status == .conflict)
            for bad in ["Bad_Name", "-x", "", String(repeating: "a", count: 64), "a;drop"] {
                let response = try await post("/api/v1/models", #"{"name":"\#(bad)"}"#)
                #expect(response.status == .badRequest, "\(bad)")
                #expect(response.headers[.contentType] == "application/problem+json")
            }
            #expect(try await post("/api/v1/models", #"{"name":"x","task":"dance"}"#).status == .badRequest)

            let version = try await post(
                "/api/v1/models/tiny/versions", #"{"format":"gguf","context_limit":2048,"artifact_uri":"file://\#(artifact)"}"#)
            #expect(version.status == .created)
            #expect(version.json["version"] as? String == "1")
            let second = try await post(
                "/api/v1/models/tiny/versions", #"{"format":"gguf","context_limit":1024,"artifact_uri":"file://\#(artifact)"}"#)
            #expect(second.json["version"] as? String == "2")
            let duplicate = try await post(
                "/api/v1/models/tiny/versions",
                #"{"version":"2","format":"gguf","context_limit":1024,"artifact_uri":"file://\#(artifact)"}"#)
            #expect(duplicate.status == .conflict)
            for limit in ["0", "-5", "99999999"] {
                let response = try await post(
                    "/api/v1/models/tiny/versions",
                    #"{"format":"gguf","context_limit":\#(limit),"artifact_uri":"file://\#(artifact)"}"#)
                #expect(response.status == .badRequest)
                #expect(response.json["param"] as? String == "context_limit")
            }
            let missingFile = try await post(
                "/api/v1/models/tiny/versions", #"{"format":"gguf","context_limit":64,"artifact_uri":"file:///no/such.gguf"}"#)
            #expect(missingFile.status == .badRequest)
            let unknownModel = try await post(
                "/api/v1/models/ghost/versions", #"{"format":"gguf","context_limit":64,"artifact_uri":"file://\#(artifact)"}"#)
            #expect(unknownModel.status == .notFound)

            let listed = try await client.execute(uri: "/api/v1/models/tiny", method: .get, headers: .bearer(test.adminKey))
            #expect((listed.json["versions"] as? [Any])?.count == 2)
        }
    }

    @Test("deployments: validation, defaults from the version, delete is accepted")
    func deployments() async throws {
        let test = try await TestServer.make()
        let artifact = test.directory.path + "/model.gguf"
        _ = FileManager.default.createFile(atPath: artifact, contents: Data("GGUF".utf8))
        _ = try await test.server.registry.createModel(NewModel(name: "tiny", description: "", task: .chat), createdBy: nil)
        _ = try await test.server.registry.createVersion(
            modelName: "tiny", NewVersion(format: "gguf", contextLimit: 1024, artifactUri: "file://" + artifact))
        try await test.server.application.test(.router) { client in
            func post(_ body: String) async throws -> TestResponse {
                try await client.execute(
                    uri: "/api/v1/deployments", method: .post, headers: .bearer(test.adminKey), body: .json(body))
            }
            let created = try await post(#"{"name":"tiny-chat","model":"tiny"}"#)
            #expect(created.status == .created)
            #expect(created.json["context_limit"] as? Int == 1024)
            #expect(created.json["status"] as? String == "pending")
            #expect(try await post(#"{"name":"tiny-chat","model":"tiny"}"#).status == .conflict)
            #expect(try await post(#"{"name":"x","model":"ghost"}"#).status == .notFound)
            #expect(try await post(#"{"name":"x","model":"tiny","version":"9"}"#).status == .notFound)
            #expect(try await post(#"{"name":"x","model":"tiny","engine":"vllm"}"#).status == .badRequest)
            #expect(try await post(#"{"name":"x","model":"tiny","replicas":0}"#).status == .badRequest)
            #expect(try await post(#"{"name":"x","model":"tiny","context_limit":4096}"#).status == .badRequest)
            #expect(try await post(#"{"name":"x"}"#).status == .badRequest)

            let deleted = try await client.execute(
                uri: "/api/v1/deployments/tiny-chat", method: .delete, headers: .bearer(test.adminKey))
            #expect(deleted.status == .accepted)
            let gone = try await client.execute(
                uri: "/api/v1/deployments/ghost", method: .delete, headers: .bearer(test.adminKey))
            #expect(gone.status == .notFound)
        }
    }

    @Test("users get keys shown once; only admins administer; revoked keys stop at once")
    func keysAndRoles() async throws {
        let test = try await TestServer.make()
        try await test.server.application.test(.router) { client in
            let user = try await client.execute(
                uri: "/api/v1/users", method: .post, headers: .bearer(test.adminKey), body: .json(#"{"name":"bob"}"#))
            #expect(user.status == .created)
            let issued = try await client.execute(
                uri: "/api/v1/keys", method: .post, headers: .bearer(test.adminKey),
                body: .json(#"{"name":"bob's","user":"bob"}"#))
            #expect(issued.status == .created)
            let bobKey = try #require(issued.json["key"] as? String)
            let keyID = try #require(issued.json["id"] as? String)
            #expect(issued.json["secret_hash"] == nil)

            // A user may read but not administer.
            #expect(try await client.execute(uri: "/api/v1/models", method: .get, headers: .bearer(bobKey)).status == .ok)
            let forbidden = try await client.execute(
                uri: "/api/v1/models", method: .post, headers: .bearer(bobKey), body: .json(#"{"name":"mine"}"#))
            #expect(forbidden.status == .forbidden)
            #expect(try await client.execute(uri: "/api/v1/nodes", method: .get, headers: .bearer(bobKey)).status == .forbidden)
            #expect(try await client.execute(uri: "/api/v1/nodes", method: .get, headers: .bearer(test.adminKey)).status == .ok)

            let listed = try await client.execute(uri: "/api/v1/keys", method: .get, headers: .bearer(bobKey))
            #expect(listed.status == .ok)
            #expect(!listed.text.contains(bobKey), "a listed key never shows its secret")
            #expect((listed.json["data"] as? [[String: Any]])?.count == 1)

            let revoked = try await client.execute(uri: "/api/v1/keys/\(keyID)", method: .delete, headers: .bearer(bobKey))
            #expect(revoked.status == .noContent)
            #expect(try await client.execute(uri: "/api/v1/keys", method: .get, headers: .bearer(bobKey)).status == .unauthorized)
        }
    }
}

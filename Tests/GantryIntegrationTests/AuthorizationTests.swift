import Foundation
import GantryAuth
import GantryCommands
import GantryCore
import GantryServing
import GantryTestSupport
import Hummingbird
import HummingbirdTesting
import Testing

/// Who may do what: key scopes, 401 versus 403, and the slowdown of repeated failed keys.
@Suite("Authorization")
struct AuthorizationTests {
    @Test("a key scoped to deployments reaches only those; others look like unknown models")
    func keyScopes() async throws {
        let test = try await TestServer.make()
        let user = try await test.server.identity.ensureUser(name: "scoped", role: .user)
        let (_, key) = try await test.server.identity.issueKey(userID: user.id, name: "one", expiresAt: nil, scope: ["allowed"])
        for name in ["allowed", "forbidden"] {
            await test.server.routeTable.publish(
                RouteEntry(deployment: name, version: "1", contextLimit: 64, createdAt: Date(), targets: []))
        }
        try await test.server.application.test(.router) { client in
            let models = try await client.execute(uri: "/v1/models", method: .get, headers: .bearer(key))
            #expect((models.json["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == ["allowed"])
            let denied = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: .bearer(key),
                body: .json(#"{"model":"forbidden","messages":[{"role":"user","content":"hi"}]}"#))
            #expect(denied.status == .notFound)
            #expect((denied.json["error"] as? [String: Any])?["code"] as? String == "model_not_found")
            // "allowed" has no ready instance: past the scope check, so 503 rather than 404.
            let allowed = try await client.execute(
                uri: "/v1/chat/completions", method: .post, headers: .bearer(key),
                body: .json(#"{"model":"allowed","messages":[{"role":"user","content":"hi"}]}"#))
            #expect(allowed.status == .serviceUnavailable)

            let badScope = try await client.execute(
                uri: "/api/v1/keys", method: .post, headers: .bearer(key), body: .json(#"{"name":"x","scope":["Bad Name"]}"#))
            #expect(badScope.status == .badRequest)
            let listed = try await client.execute(uri: "/api/v1/keys", method: .get, headers: .bearer(key))
            #expect(((listed.json["data"] as? [[String: Any]])?.first?["scope"] as? [String]) == ["allowed"])
        }
    }

    @Test("an address that presents too many invalid keys gets 429 with retry-after, even for a valid key")
    func failedAttemptsAreSlowedDown() async throws {
        let test = try await TestServer.make(flags: [.maxFailedAuth: "3"])
        try await test.server.application.test(.router) { client in
            for _ in 0..<3 {
                let response = try await client.execute(uri: "/v1/models", method: .get, headers: .bearer("gk_wrong"))
                #expect(response.status == .unauthorized)
            }
            let blocked = try await client.execute(uri: "/v1/models", method: .get, headers: .bearer("gk_wrong"))
            #expect(blocked.status == .tooManyRequests)
            #expect(Int(blocked.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect((blocked.json["error"] as? [String: Any])?["code"] as? String == "too_many_failed_attempts")
            let valid = try await client.execute(uri: "/v1/models", method: .get, headers: .bearer(test.adminKey))
            #expect(valid.status == .tooManyRequests, "guessing must not be able to tell valid keys apart while blocked")
            // Requests without a credential are not counted or blocked.
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
        }
    }

    @Test("a gateway's service credential is recognised before the per-address slowdown")
    func serviceCredentialIsNotSlowedDown() async throws {
        let secret = "introspection-secret-for-tests-0123456789"
        let test = try await TestServer.make(flags: [.maxFailedAuth: "3", .introspectionSecret: secret])
        try await test.server.application.test(.router) { client in
            // Bad keys proxied through a gateway arrive from the gateway's address, which gets blocked.
            for _ in 0..<4 { _ = try await client.execute(uri: "/api/v1/models", method: .get, headers: .bearer("gk_wrong")) }
            #expect(
                try await client.execute(uri: "/v1/models", method: .get, headers: .bearer(test.adminKey)).status
                    == .tooManyRequests)
            // The same gateway's introspection of a valid key still works.
            let introspected = try await client.execute(
                uri: "/auth/introspect", method: .post,
                headers: [.authorization: "Bearer \(secret)", .contentType: "application/x-www-form-urlencoded"],
                body: ByteBuffer(string: "token=\(test.adminKey)"))
            #expect(introspected.status == .ok)
            #expect(introspected.json["active"] as? Bool == true)
        }
    }

    @Test("OIDC routes answer 404 in the problem format when no provider is configured")
    func loginNotConfigured() async throws {
        let test = try await TestServer.make()
        try await test.server.application.test(.router) { client in
            let login = try await client.execute(uri: "/auth/login", method: .get)
            #expect(login.status == .notFound)
            #expect(login.headers[.contentType] == "application/problem+json")
            let page = try await client.execute(uri: "/", method: .get)
            #expect(page.status == .ok)
            #expect(page.text.contains("Single sign-on is not configured"))
        }
    }

    @Test("an admin cannot disable or demote themselves")
    func adminSelfProtection() async throws {
        let test = try await TestServer.make()
        let admin = try #require(try await test.server.store.repositories.users.user(named: "admin"))
        try await test.server.application.test(.router) { client in
            let response = try await client.execute(
                uri: "/api/v1/users/\(admin.id)", method: .patch, headers: .bearer(test.adminKey),
                body: .json(#"{"disabled":true}"#))
            #expect(response.status == .conflict)
            #expect(try await client.execute(uri: "/api/v1/models", method: .get, headers: .bearer(test.adminKey)).status == .ok)
        }
    }
}

/// The verifier a gateway in its own process uses: introspection over HTTP.
@Suite("Introspection client")
struct IntrospectionClientTests {
    @Test("verifies keys through POST /auth/introspect, sees revocations at once, keeps scopes")
    func introspectionClient() async throws {
        let secret = "introspection-secret-for-tests-0123456789"
        let port = try FreePort.find()
        try await TestServer.running(port: port, flags: [.introspectionSecret: secret]) { test, base in
            let user = try await test.server.identity.ensureUser(name: "carol", role: .user)
            let (record, key) = try await test.server.identity.issueKey(
                userID: user.id, name: "gw", expiresAt: nil, scope: ["chat"])
            let client = IntrospectionClient(control: try ControlEndpoints(base), serviceSecret: secret, httpClient: .shared)
            let principal = try await client.verify(bearer: key)
            #expect(principal.userName == "carol")
            #expect(principal.role == .user)
            #expect(principal.keyID == record.id)
            #expect(principal.allowedDeployments == ["chat"])
            // Revoked through the API: the control role forgets its remembered verification at once.
            #expect(try await LiveAPI(key: test.adminKey).send("DELETE", "\(base)/api/v1/keys/\(record.id)").status == 204)
            await #expect(throws: GantryError.self) { try await client.verify(bearer: key) }
            let wrongSecret = IntrospectionClient(
                control: try ControlEndpoints(base), serviceSecret: "not-the-secret", httpClient: .shared)
            await #expect(throws: GantryError(.unavailable, "the control role answered 401 to introspection")) {
                try await wrongSecret.verify(bearer: test.adminKey)
            }
        }
    }
}

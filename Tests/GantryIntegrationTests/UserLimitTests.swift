import AsyncHTTPClient
import Foundation
import GantryCore
import GantryGateway
import GantryServing
import GantryTestSupport
import NIOCore
import NIOHTTP1
import Testing

@testable import GantryAuth

/// Limits and quotas an admin sets on a user hold over every key of that user, so a user who may
/// create keys cannot escape them with a new one (issue 17, item 3).
@Suite("Limits and quotas per user, over all their keys")
struct UserLimitTests {
    let plane = DataPlaneTests()
    typealias Answer = DataPlaneTests.Answer

    static func setUser(_ base: String, admin: String, _ userID: String, _ body: String) async throws -> Answer {
        try await DataPlaneTests.send(.PATCH, base + "/api/v1/users/\(userID)", key: admin, body)
    }

    static func createKey(_ base: String, key: String, _ body: String) async throws -> Answer {
        try await DataPlaneTests.send(.POST, base + "/api/v1/keys", key: key, body)
    }

    /// Each answer of the fake engine uses 10 prompt and 5 completion tokens.
    static let chat = #"{"model":"fake","messages":[{"role":"user","content":"hi"}]}"#

    @Test("a key the user creates after spending the user's quota is refused too; lifting the quota frees every key")
    func quotaOverAllKeys() async throws {
        let test = try await TestServer.make()
        try await FakeEngine.withEngine(.normal(chunks: 1, delay: .zero)) { endpoint in
            await plane.publish(test, endpoint: endpoint)
            let (user, first) = try await plane.userKey(test)
            try await plane.live(test) { base in
                let set = try await Self.setUser(
                    base, admin: test.adminKey, user.id, #"{"limits":{"token_quota":20,"quota_period":"day"}}"#)
                #expect(set.status == 200, "\(set.text)")
                #expect((set.json["limits"] as? [String: Any])?["token_quota"] as? Int == 20)
                #expect(try await DataPlaneTests.post(base, key: first, Self.chat).status == 200)
                #expect(try await DataPlaneTests.post(base, key: first, Self.chat).status == 200)
                let spent = try await DataPlaneTests.post(base, key: first, Self.chat)
                #expect(spent.errorCode == "insufficient_quota", "\(spent.text)")
                #expect(spent.text.contains("your user"))

                // The user mints a fresh key: it starts with the user's spent quota, not a new one.
                let minted = try await Self.createKey(base, key: first, #"{"name":"escape"}"#)
                #expect(minted.status == 201, "\(minted.text)")
                let second = try #require(minted.json["key"] as? String)
                let refused = try await DataPlaneTests.post(base, key: second, Self.chat)
                #expect(refused.status == 429)
                #expect(refused.errorCode == "insufficient_quota")
                // A fresh ledger reads the user's use back from the stored records, all keys together.
                await test.server.usage.flush()
                let ledger = QuotaLedger(repository: test.server.store.repositories.usage)
                let scope = try #require(
                    QuotaScope(holder: .user(user.id), limits: UsageLimits(tokenQuota: 20, quotaPeriod: .day)))
                await #expect(throws: GantryError.self) { try await ledger.check([scope]) }

                let lifted = try await Self.setUser(base, admin: test.adminKey, user.id, #"{"limits":null}"#)
                #expect(lifted.status == 200)
                #expect(lifted.json["limits"] == nil)
                #expect(try await DataPlaneTests.post(base, key: second, Self.chat).status == 200)
                #expect(try await DataPlaneTests.post(base, key: first, Self.chat).status == 200)
            }
        }
    }

    @Test("requests per minute and concurrency set on a user count every key of the user")
    func frequencyOverAllKeys() async throws {
        let test = try await TestServer.make()
        let engine = FakeEngine.Recorder()
        // A 3 s stream: the request it must hold back comes while it runs even on a loaded machine
        // (0.5 s was seen to end first under the whole suite).
        try await FakeEngine.withEngine(.normal(chunks: 10, delay: .milliseconds(300)), recorder: engine) { endpoint in
            await plane.publish(test, endpoint: endpoint)
            let (user, first) = try await plane.userKey(test)
            let (_, second) = try await test.server.identity.issueKey(userID: user.id, name: "two", expiresAt: nil)
            let (_, other) = try await plane.userKey(test, name: "bob")
            try await plane.live(test) { base in
                let set = try await Self.setUser(
                    base, admin: test.adminKey, user.id, #"{"limits":{"requests_per_minute":3,"concurrent_requests":1}}"#)
                #expect(set.status == 200, "\(set.text)")
                // One stream holds the user's only concurrency slot (for its 3 s of events once the
                // engine has it), whichever key asks next.
                let holding = Task { try await DataPlaneTests.post(base, key: first, DataPlaneTests.streamChat) }
                try await waitUntil("the engine has the holding stream", within: .seconds(10), every: .milliseconds(10)) {
                    await engine.bodies.count == 1
                }
                let busy = try await DataPlaneTests.post(base, key: second, Self.chat)
                #expect(busy.status == 429)
                #expect(busy.text.contains("user") && busy.text.contains("concurrent"), "\(busy.text)")
                #expect(try await holding.value.status == 200)
                // Three requests a minute for the user, spread over two keys.
                #expect(try await DataPlaneTests.post(base, key: second, Self.chat).status == 200)
                let last = try await DataPlaneTests.post(base, key: first, Self.chat)
                #expect(last.status == 200)
                #expect(last.headers.first(name: "x-ratelimit-remaining-requests") == "0")
                let over = try await DataPlaneTests.post(base, key: second, Self.chat)
                #expect(over.status == 429)
                #expect(over.errorCode == "rate_limit_exceeded")
                #expect(over.text.contains("for user"), "\(over.text)")
                // Another user is not limited by this one's limits.
                #expect(try await DataPlaneTests.post(base, key: other, Self.chat).status == 200)
            }
        }
    }

    @Test("a browser session counts against the user's limits with the user's keys")
    func sessionsCount() async throws {
        let test = try await TestServer.make()
        try await FakeEngine.withEngine(.normal(chunks: 1, delay: .zero)) { endpoint in
            // A service that takes OIDC logins (a session) beside API keys.
            await test.server.routeTable.publish(
                RouteEntry(
                    deployment: "fake", version: "1", contextLimit: 512, createdAt: Date(),
                    targets: [RouteTarget(instanceID: "ins_fake", endpoint: endpoint)],
                    access: AccessPolicy(methods: [.apiKey, .oidc])))
            let (user, key) = try await plane.userKey(test)
            let token = RandomToken.make()
            try await test.server.store.repositories.sessions.createSession(
                BrowserSession(
                    tokenHash: RandomToken.sha256Hex(token), userID: user.id, csrfToken: "csrf-for-test", createdAt: Date(),
                    expiresAt: Date().addingTimeInterval(3600)))
            try await plane.live(test) { base in
                let set = try await Self.setUser(base, admin: test.adminKey, user.id, #"{"limits":{"requests_per_minute":2}}"#)
                #expect(set.status == 200)
                func bySession() async throws -> Answer {
                    try await DataPlaneTests.send(
                        .POST, base + "/v1/chat/completions", key: nil, Self.chat,
                        headers: [("cookie", "gantry_session=\(token)"), ("x-csrf-token", "csrf-for-test")])
                }
                #expect(try await bySession().status == 200)
                #expect(try await DataPlaneTests.post(base, key: key, Self.chat).status == 200)
                let over = try await bySession()
                #expect(over.status == 429, "\(over.text)")
                #expect(over.text.contains("for user"))
            }
        }
    }

    @Test("keys a user creates are no looser than the user's limits; admins cap how many keys a user holds")
    func keyCreationBounds() async throws {
        let test = try await TestServer.make()
        let (user, key) = try await plane.userKey(test)
        try await plane.live(test) { base in
            // A bad change is refused whole: the role in the same body is not applied either.
            let bad = try await Self.setUser(
                base, admin: test.adminKey, user.id, #"{"role":"admin","limits":{"token_quota":0}}"#)
            #expect(bad.status == 400)
            #expect(bad.headers.first(name: "content-type")?.hasPrefix("application/problem+json") == true)
            #expect(try await test.server.store.repositories.users.user(id: user.id)?.role == .user)
            #expect(try await Self.setUser(base, admin: test.adminKey, user.id, #"{"max_keys":-1}"#).status == 400)
            // Only admins set a user's limits.
            #expect(try await Self.setUser(base, admin: key, user.id, #"{"max_keys":100}"#).status == 403)

            let set = try await Self.setUser(
                base, admin: test.adminKey, user.id,
                #"{"limits":{"requests_per_minute":10,"token_quota":1000,"quota_period":"day"},"max_keys":2}"#)
            #expect(set.status == 200, "\(set.text)")
            #expect(set.json["max_keys"] as? Int == 2)

            for looser in [
                #"{"requests_per_minute":100}"#, #"{"token_quota":1001,"quota_period":"day"}"#,
            ] {
                let answer = try await Self.createKey(base, key: key, #"{"name":"loose","limits":\#(looser)}"#)
                #expect(answer.status == 400, "\(looser): \(answer.text)")
                #expect(answer.text.contains("looser"))
            }
            // The user already holds one key; a second within the limits is issued, a third is not.
            let within = try await Self.createKey(base, key: key, #"{"name":"ci","limits":{"requests_per_minute":5}}"#)
            #expect(within.status == 201, "\(within.text)")
            let third = try await Self.createKey(base, key: key, #"{"name":"more"}"#)
            #expect(third.status == 409)
            #expect(third.json["code"] as? String == "key_limit_reached", "\(third.text)")
            // An admin issuing a key for the user meets the same cap.
            let forUser = try await Self.createKey(base, key: test.adminKey, #"{"name":"more","user":"ann"}"#)
            #expect(forUser.status == 409)
            // Revoking one frees a place.
            let withinID = try #require(within.json["id"] as? String)
            #expect(try await DataPlaneTests.send(.DELETE, base + "/api/v1/keys/\(withinID)", key: key).status == 204)
            #expect(try await Self.createKey(base, key: key, #"{"name":"again"}"#).status == 201)

            // Absent fields are left alone; null removes one.
            #expect(try await Self.setUser(base, admin: test.adminKey, user.id, #"{"disabled":false}"#).status == 200)
            var stored = try #require(try await test.server.store.repositories.users.user(id: user.id))
            #expect(stored.maxKeys == 2 && stored.limits?.requestsPerMinute == 10)
            #expect(try await Self.setUser(base, admin: test.adminKey, user.id, #"{"max_keys":null}"#).status == 200)
            stored = try #require(try await test.server.store.repositories.users.user(id: user.id))
            #expect(stored.maxKeys == nil && stored.limits?.requestsPerMinute == 10)
            #expect(try await Self.createKey(base, key: key, #"{"name":"uncapped"}"#).status == 201)
        }
    }
}

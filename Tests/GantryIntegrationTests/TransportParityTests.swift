import Foundation
import GantryCommands
import GantryCore
import GantryGateway
import GantryServing
import GantryTestSupport
import Testing

/// Every `/v1` request is decided by one admission pipeline, whichever transport carries it
/// (`gateway.relay` off: the router; engine: the relay behind the codec; full: the relay's own
/// front). These tests send each class of refusal through all three and require the same bytes.
@Suite("One admission pipeline: the same answers on every transport")
struct TransportParityTests {
    let dataPlane = DataPlaneTests()

    /// One refusal: what to send (after `warmUp`, which must be admitted), on which key.
    struct Refusal: Sendable {
        var name: String
        var status: Int
        var caller: Caller
        var body: String
        var path = "/v1/chat/completions"
        /// Sent first on the same key and must answer 200 (it uses up a limit or the quota).
        var warmUp: String?
        /// Sends only the first bytes of the body (the answer must come before the rest).
        var truncateBodyAt: Int?
        /// Deployments no request of this case was admitted to: their load signal must stay 0.
        var untouched: [String] = []
    }

    enum Caller: Sendable {
        case none, bogus, revoked, plain, userLimited, keyLimited, quota
    }

    static func chat(_ model: String, content: String = "hi", maxTokens: Int = 16) -> String {
        #"{"model":"\#(model)","messages":[{"role":"user","content":"\#(content)"}],"max_tokens":\#(maxTokens)}"#
    }

    static let refusals: [Refusal] = [
        Refusal(name: "no key", status: 401, caller: .none, body: chat("fake")),
        Refusal(name: "bad key", status: 401, caller: .bogus, body: chat("fake")),
        Refusal(name: "revoked key", status: 401, caller: .revoked, body: chat("fake")),
        Refusal(name: "unknown model", status: 404, caller: .plain, body: chat("nothing")),
        Refusal(name: "not admitted", status: 404, caller: .plain, body: chat("private"), untouched: ["private"]),
        Refusal(name: "version not deployed", status: 404, caller: .plain, body: chat("fake@9")),
        Refusal(
            name: "max_tokens over the context", status: 400, caller: .plain, body: chat("bounded", maxTokens: 512),
            untouched: ["bounded"]),
        // The prompt's bound passes the limit: the engine's tokenizer counts it, on an instance
        // (the router drives that wait on every transport), and it does not fit.
        Refusal(
            name: "prompt over the context", status: 400, caller: .plain,
            body: #"{"model":"counted","prompt":"\#(String(repeating: "word ", count: 480))","max_tokens":16}"#,
            path: "/v1/completions", untouched: ["counted"]),
        Refusal(name: "over quota", status: 429, caller: .quota, body: chat("fake"), warmUp: chat("fake")),
        Refusal(name: "user limit", status: 429, caller: .userLimited, body: chat("fake"), warmUp: chat("fake")),
        Refusal(name: "key limit", status: 429, caller: .keyLimited, body: chat("fake"), warmUp: chat("fake")),
        Refusal(name: "key on the service", status: 429, caller: .plain, body: chat("per-key"), warmUp: chat("per-key")),
        Refusal(name: "service limit", status: 429, caller: .plain, body: chat("per-service"), warmUp: chat("per-service")),
        Refusal(name: "tokens per minute", status: 429, caller: .plain, body: chat("tpm", maxTokens: 400), untouched: ["tpm"]),
        Refusal(name: "bad body", status: 400, caller: .plain, body: #"{"model":"fake","messages":"#),
        Refusal(name: "unknown field type", status: 400, caller: .plain, body: #"{"model":"fake","messages":[],"n":"two"}"#),
        Refusal(
            name: "body too large", status: 413, caller: .plain,
            body: chat("fake", content: String(repeating: "x", count: 9000)), truncateBodyAt: 8300),
    ]

    /// Values that depend on the moment (the date, the request id, seconds until a window or a
    /// period ends) are blanked; everything else, order included, must be equal.
    static func normalized(_ raw: String) -> String {
        let timed: Set<String> = [
            "date", "x-request-id", "retry-after", "retry-after-ms", "x-ratelimit-reset-requests",
            "x-ratelimit-reset-tokens",
        ]
        guard let split = raw.range(of: "\r\n\r\n") else { return raw }
        let head = raw[..<split.lowerBound].components(separatedBy: "\r\n").map { line -> String in
            guard let colon = line.firstIndex(of: ":"), timed.contains(line[..<colon].lowercased()) else { return line }
            return line[..<colon] + ": <varies>"
        }
        return head.joined(separator: "\r\n") + String(raw[split.lowerBound...])
    }

    /// Every refusal's answer through one server running `mode`, by case name; and whether the
    /// deployments that only saw refusals kept a load signal of 0.
    func answers(mode: RelayMode) async throws -> [String: String] {
        let test = try await TestServer.make(flags: [.relay: mode.rawValue, .maxRequestBytes: "8192"])
        return try await FakeEngine.withEngine(.normal(chunks: 1, delay: .zero)) { endpoint in
            func publish(
                _ name: String, engine: String = "custom", access: AccessPolicy = AccessPolicy(),
                limits: FrequencyLimits = .init()
            )
                async
            {
                await test.server.routeTable.publish(
                    RouteEntry(
                        deployment: name, version: "1", contextLimit: 512, engine: engine, createdAt: Date(),
                        targets: [RouteTarget(instanceID: "ins_" + name, endpoint: endpoint)], access: access, limits: limits))
            }
            await publish("fake")
            await publish("private", access: AccessPolicy(users: ["somebody-else"]))
            await publish("bounded")
            await publish("counted", engine: "llama-cpp")
            await publish("per-key", limits: FrequencyLimits(requestsPerMinutePerKey: 1))
            await publish("per-service", limits: FrequencyLimits(requestsPerMinute: 1))
            await publish("tpm", limits: FrequencyLimits(tokensPerMinute: 300))
            let identity = test.server.identity
            let ann = try await identity.ensureUser(name: "ann", role: .user)
            var keys: [Caller: String] = [:]
            keys[.plain] = try await identity.issueKey(userID: ann.id, name: "plain", expiresAt: nil, limits: nil).1
            let (revoked, revokedKey) = try await identity.issueKey(userID: ann.id, name: "revoked", expiresAt: nil, limits: nil)
            try await test.server.store.repositories.keys.revokeKey(id: revoked.id, at: Date())
            keys[.revoked] = revokedKey
            keys[.keyLimited] =
                try await identity.issueKey(
                    userID: ann.id, name: "limited", expiresAt: nil, limits: UsageLimits(requestsPerMinute: 1)
                ).1
            keys[.quota] =
                try await identity.issueKey(
                    userID: ann.id, name: "quota", expiresAt: nil, limits: UsageLimits(tokenQuota: 1, quotaPeriod: .day)
                ).1
            let bob = try await identity.ensureUser(name: "bob", role: .user)
            try await test.server.store.repositories.users.updateLimits(
                userID: bob.id, limits: UsageLimits(requestsPerMinute: 1), maxKeys: nil)
            keys[.userLimited] = try await identity.issueKey(userID: bob.id, name: "bob", expiresAt: nil, limits: nil).1
            keys[.bogus] = "gantry_sk_0000000000000000000000000000"

            let callerKeys = keys
            let answers = Answers()
            try await dataPlane.live(test) { base in
                let port = try #require(Int(base.split(separator: ":").last ?? ""))
                for refusal in Self.refusals {
                    let connection = try RawHTTPConnection(port: port)
                    let key = callerKeys[refusal.caller]
                    if let warmUp = refusal.warmUp {
                        try connection.send(Self.request(warmUp, path: refusal.path, key: key))
                        let admitted = try await connection.answer()
                        #expect(admitted.status == 200, "\(mode) \(refusal.name): warm-up \(admitted.body)")
                    }
                    for deployment in refusal.untouched { _ = await test.server.routeTable.takeLoad(deployment: deployment) }
                    var request = Self.request(refusal.body, path: refusal.path, key: key)
                    if let cut = refusal.truncateBodyAt {
                        let kept = request.utf8.count - refusal.body.utf8.count + cut
                        request = String(decoding: Array(request.utf8.prefix(kept)), as: UTF8.self)
                    }
                    try connection.send(request)
                    let answer = try await connection.answer()
                    #expect(answer.status == refusal.status, "\(mode) \(refusal.name): \(answer.raw)")
                    await answers.add(refusal.name, Self.normalized(answer.raw))
                    for deployment in refusal.untouched {
                        let load = await test.server.routeTable.takeLoad(deployment: deployment)
                        #expect(
                            load.peakInFlight == 0 && load.queued == 0,
                            "\(mode) \(refusal.name): a refused request moved \(deployment)'s load signal (\(load))")
                    }
                }
            }
            return await answers.byName
        }
    }

    actor Answers {
        var byName: [String: String] = [:]
        func add(_ name: String, _ answer: String) { byName[name] = answer }
    }

    static func request(_ body: String, path: String, key: String?) -> String {
        var head = "POST \(path) HTTP/1.1\r\nHost: gantry\r\nContent-Type: application/json\r\n"
        if let key { head += "Authorization: Bearer \(key)\r\n" }
        return head + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
    }

    @Test("each refusal class gets byte-identical answers with gateway.relay off, engine and full")
    func sameAnswers() async throws {
        var byMode: [RelayMode: [String: String]] = [:]
        for mode in RelayMode.allCases { byMode[mode] = try await answers(mode: mode) }
        let reference = try #require(byMode[.off])
        #expect(reference.count == Self.refusals.count)
        for refusal in Self.refusals {
            let expected = try #require(reference[refusal.name], "no answer for \(refusal.name)")
            for mode in [RelayMode.engine, .full] {
                #expect(byMode[mode]?[refusal.name] == expected, "\(refusal.name): \(mode) differs from off")
            }
        }
    }
}

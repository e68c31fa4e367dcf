import AsyncHTTPClient
import Foundation
import GantryAuth
import GantryCommands
import GantryCore
import GantryGateway
import GantryServing
import GantryTestSupport
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import ServiceLifecycle
import Testing

/// The direct relay (requests served on the event loop that read them) against a fake engine,
/// named as such, on a live server: which requests it serves and which it leaves to the router,
/// that its answers carry what the router's do, failover, failures mid-stream, and order on a
/// connection that pipelines requests.
@Suite("Direct relay on the event loop")
struct DirectRelayTests {
    let dataPlane = DataPlaneTests()

    static func relayCount(_ metrics: String, _ path: String) -> Int {
        let prefix = #"gantry_inference_relay_total{path="\#(path)"} "#
        guard let line = metrics.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return 0 }
        return Int(line.dropFirst(prefix.count)) ?? 0
    }

    @Test("admitted requests are relayed directly, with the router's headers, metering and usage; refusals answered there too")
    func directAndRouted() async throws {
        let logs = CapturedLogs()
        let test = try await TestServer.make(flags: [.logLevel: "info"], logger: logs.logger())
        let recorder = FakeEngine.Recorder()
        try await FakeEngine.withEngine(.normal(chunks: 3, delay: .zero), recorder: recorder) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint, limits: FrequencyLimits(requestsPerMinute: 5))
            let (user, key) = try await dataPlane.userKey(test, limits: UsageLimits(tokenQuota: 1_000_000, quotaPeriod: .day))
            try await dataPlane.live(test) { base in
                // Five admitted: the first verifies the key (and reads its quota) before going on.
                let chat = try await DataPlaneTests.post(base, key: key, DataPlaneTests.chat)
                #expect(chat.status == 200)
                #expect((chat.json["usage"] as? [String: Any])?["completion_tokens"] as? Int == 20)
                #expect(chat.headers.first(name: "x-ratelimit-limit-requests") == "5")
                #expect(chat.headers.first(name: "x-ratelimit-remaining-requests") == "4")
                #expect(chat.headers.first(name: "x-request-id")?.isEmpty == false)
                #expect(chat.headers.first(name: "server") == "gantry")
                #expect(chat.headers.first(name: "date")?.hasSuffix("GMT") == true)

                let stream = try await DataPlaneTests.post(base, key: key, DataPlaneTests.streamChat)
                #expect(stream.status == 200)
                #expect(stream.headers.first(name: "content-type")?.hasPrefix("text/event-stream") == true)
                #expect(stream.headers.first(name: "cache-control") == "no-cache")
                #expect(stream.text.components(separatedBy: "data: {\"id\"").count == 4, "three content events")
                #expect(stream.text.hasSuffix("data: [DONE]\n\n"))
                #expect(!stream.text.contains(#""usage":{"#), "the usage chunk the gateway asked for is removed again")
                let lastBody = try #require(await recorder.bodies.last)
                #expect(lastBody.contains(#""stream_options":{"include_usage":true}"#), "the engine was asked for usage")

                let completion = try await DataPlaneTests.post(
                    base, key: key, #"{"model":"fake","prompt":"hi","max_tokens":4}"#, path: "/v1/completions")
                #expect(completion.status == 200)
                let embedding = try await DataPlaneTests.post(
                    base, key: key, #"{"model":"fake","input":"hi"}"#, path: "/v1/embeddings")
                #expect(embedding.status == 200)

                var withID = HTTPClientRequest(url: base + "/v1/chat/completions")
                withID.method = .POST
                withID.headers.add(name: "authorization", value: "Bearer \(key)")
                withID.headers.add(name: "x-request-id", value: "caller-chosen-id")
                withID.body = .bytes(ByteBuffer(string: DataPlaneTests.chat))
                let echoed = try await HTTPClient.shared.execute(withID, timeout: .seconds(30))
                #expect(echoed.status == .ok)
                #expect(echoed.headers.first(name: "x-request-id") == "caller-chosen-id")
                _ = try await echoed.body.collect(upTo: 1 << 20)

                // Refused by the rpm limit, an unknown model, a bad body: the relay answers from the admission
                // pipeline; no key: the router's authentication does.
                let limited = try await DataPlaneTests.post(base, key: key, DataPlaneTests.chat)
                #expect(limited.status == 429)
                #expect(limited.errorCode == "rate_limit_exceeded")
                let unknown = try await DataPlaneTests.post(
                    base, key: key, DataPlaneTests.chat.replacingOccurrences(of: "fake", with: "nothing"))
                #expect(unknown.status == 404)
                let broken = try await DataPlaneTests.post(base, key: key, #"{"model":"fake","messages":"#)
                #expect(broken.status == 400)
                #expect(broken.errorCode == "invalid_json")
                let anonymous = try await DataPlaneTests.post(base, key: "", DataPlaneTests.chat)
                #expect(anonymous.status == 401)

                let metrics = try await DataPlaneTests.get(base, key: test.adminKey, "/metrics").text
                #expect(Self.relayCount(metrics, "direct") == 5, "five requests relayed on the event loop")
                #expect(Self.relayCount(metrics, "router") == 0, "the 429, 404 and 400 were answered on the event loop")
                #expect(
                    metrics.contains(#"gantry_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 3"#))
                #expect(metrics.contains(#"gantry_inference_tokens_total{service="fake",version="1",direction="completion"}"#))
                #expect(metrics.contains(#"gantry_inference_in_flight{service="fake",version="1"} 0"#))
                #expect(test.server.routeTable.inFlight(instanceID: "ins_fake") == 0)

                // Every direct request has its usage record (written in batches off the path).
                await test.server.usage.flush()
                let records = try await test.server.store.repositories.usage.usage(UsageQuery(userID: user.id, limit: 100))
                #expect(records.filter { $0.status == 200 }.count == 5)

                // The relay's access lines name the key and user, as the router's do; never the secret.
                let keyID = try #require(APIKeyFormat.parse(key)?.id)
                let accessLines = logs.all.filter { $0.contains("info request") && $0.contains("/v1/chat/completions") }
                #expect(accessLines.contains { $0.contains(#""key_id": \#(keyID)"#) && $0.contains(#""user_id": \#(user.id)"#) })
                #expect(!logs.all.contains { $0.contains(key) })
                #expect(records.contains { $0.status == 429 && $0.errorType == "rate_limit_exceeded" })
                let streamed = try #require(records.first { $0.endpoint == "chat.completions" && $0.completionTokens == 20 })
                #expect(streamed.promptTokens == 10 && streamed.instanceID == "ins_fake" && streamed.version == "1")
            }
        }
    }

    @Test(
        "a refused connection is retried on another instance; refusing and 5xx instances leave rotation; one unreachable instance is a 502"
    )
    func failover() async throws {
        let test = try await TestServer.make()
        let failing = Router()
        failing.post("/v1/chat/completions") { _, _ in Response(status: .serviceUnavailable) }
        try await LocalTestServer.withServer(failing) { failingEndpoint in
            try await FakeEngine.withEngine(.normal(chunks: 1, delay: .zero)) { endpoint in
                let routes = test.server.routeTable
                await GatewayTests.publishRefusingBesideGood(routes, goodEndpoint: endpoint)
                await routes.publish(
                    RouteEntry(
                        deployment: "sick", version: "1", contextLimit: 512, createdAt: Date(),
                        targets: [RouteTarget(instanceID: "ins_sick", endpoint: failingEndpoint)]))
                await routes.publish(
                    RouteEntry(
                        deployment: "gone", version: "1", contextLimit: 512, createdAt: Date(),
                        targets: [RouteTarget(instanceID: "ins_gone", endpoint: "http://127.0.0.1:1")]))
                try await dataPlane.live(test) { base in
                    // Each request picks one of the two at random: go on until the refusing one was
                    // picked (and the request retried on the other); 40 misses in a row are 1 in 10^12.
                    for _ in 0..<40 where !routes.isEjected(instanceID: "ins_refusing") {
                        #expect(try await DataPlaneTests.post(base, key: test.adminKey, DataPlaneTests.chat).status == 200)
                    }
                    #expect(routes.isEjected(instanceID: "ins_refusing"))
                    #expect(!routes.isEjected(instanceID: "ins_good"))
                    let sick = try await DataPlaneTests.post(
                        base, key: test.adminKey, DataPlaneTests.chat.replacingOccurrences(of: "fake", with: "sick"))
                    #expect(sick.status == 503)
                    #expect(routes.isEjected(instanceID: "ins_sick"), "a 5xx takes the instance out of rotation")
                    let gone = try await DataPlaneTests.post(
                        base, key: test.adminKey, DataPlaneTests.chat.replacingOccurrences(of: "fake", with: "gone"))
                    #expect(gone.status == 502)
                    #expect(gone.errorCode == "engine_unavailable")
                    #expect((gone.json["error"] as? [String: Any])?["type"] as? String == "server_error")
                    let metrics = try await DataPlaneTests.get(base, key: test.adminKey, "/metrics").text
                    #expect(Self.relayCount(metrics, "direct") >= 3, "failover, the 5xx and the 502 happened on the direct path")
                    #expect(routes.inFlight(instanceID: "ins_good") == 0 && routes.inFlight(instanceID: "ins_refusing") == 0)
                }
            }
        }
    }

    @Test("an engine that dies mid-stream ends the stream with an error event; a slow head is a 504")
    func engineFailures() async throws {
        let test = try await TestServer.make()
        try await FakeEngine.withEngine(.dieMidStream(after: 2)) { dying in
            try await FakeEngine.withEngine(.slowHead(delay: .seconds(3))) { slow in
                await dataPlane.publish(test, endpoint: dying)
                await dataPlane.publish(
                    test, endpoint: slow, name: "slow", timeouts: ServiceTimeouts(firstByteSeconds: 0.5))
                try await dataPlane.live(test) { base in
                    let stream = try await DataPlaneTests.post(base, key: test.adminKey, DataPlaneTests.streamChat)
                    #expect(stream.status == 200)
                    #expect(stream.text.components(separatedBy: "data: {\"id\"").count == 3)
                    #expect(stream.text.contains(#"data: {"error":{"code":"engine_failed""#))
                    #expect(!stream.text.contains("[DONE]"))
                    let late = try await DataPlaneTests.post(
                        base, key: test.adminKey, DataPlaneTests.chat.replacingOccurrences(of: "fake", with: "slow"))
                    #expect(late.status == 504)
                    #expect(late.errorCode == "engine_timeout")
                    let metrics = try await DataPlaneTests.get(base, key: test.adminKey, "/metrics").text
                    #expect(Self.relayCount(metrics, "direct") == 2)
                    #expect(test.server.routeTable.inFlight(instanceID: "ins_fake") == 0)
                }
            }
        }
    }

    /// A request as bytes, with a body and the key.
    static func post(_ body: String, key: String, id: String, path: String = "/v1/chat/completions", extra: String = "")
        -> String
    {
        "POST \(path) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\nContent-Type: application/json\r\n"
            + "X-Request-Id: \(id)\r\n\(extra)Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    @Test("requests refused by a limit do not move the autoscaler's load signal")
    func refusalsLeaveTheLoadAlone() async throws {
        let test = try await TestServer.make()
        try await FakeEngine.withEngine(.normal(chunks: 1, delay: .zero)) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint, limits: FrequencyLimits(requestsPerMinutePerKey: 1))
            let (_, key) = try await dataPlane.userKey(test)
            try await dataPlane.live(test) { base in
                let connection = try RawHTTPConnection(port: try #require(Int(base.split(separator: ":").last ?? "")))
                try connection.send(Self.post(DataPlaneTests.chat, key: key, id: "ok"))
                #expect(try await connection.answer().status == 200)
                // The served request's peak is read (and reset) as the autoscaler does.
                #expect(await test.server.routeTable.takeLoad(deployment: "fake").peakInFlight == 1)
                for index in 0..<10 {
                    try connection.send(Self.post(DataPlaneTests.chat, key: key, id: "r\(index)"))
                    #expect(try await connection.answer().status == 429)
                }
                let load = await test.server.routeTable.takeLoad(deployment: "fake")
                #expect(load.peakInFlight == 0, "refused requests counted in flight: peak \(load.peakInFlight)")
            }
        }
    }

    @Test(
        "a request waiting for the limit ledger's first grant waits on the relay, and its connection stays there",
        .tags(.postgres))
    func sharedLimitsWaitOnTheRelay() async throws {
        // A control replica serves /v1 against its own ledger (in process); a new ledger warms up
        // for 1.5 s, so the first limited request waits for a grant. A wait used to hand the
        // connection to the router for good, and every later request on it paid for the codec.
        let database = try await PostgresTestDatabase.create()
        let port = try FreePort.find()
        let flags: [GantrySetting: String] = [
            .databaseURL: database, .introspectionSecret: "relay-wait-secret-for-tests-0123456789", .role: "control",
        ]
        try await TestServer.running(port: port, flags: flags) { test, base in
            try await waitUntil("the replica leads (and so holds the ledger)") { test.server.election.isLeader }
            try await FakeEngine.withEngine(.normal(chunks: 1, delay: .zero)) { endpoint in
                await dataPlane.publish(test, endpoint: endpoint)
                let (_, key) = try await dataPlane.userKey(test, limits: UsageLimits(requestsPerMinute: 1000))
                let connection = try RawHTTPConnection(port: port)
                let started = ContinuousClock.now
                for index in 0..<5 {
                    try connection.send(Self.post(DataPlaneTests.chat, key: key, id: "w\(index)"))
                    let answer = try await connection.answer()
                    #expect(answer.status == 200, "\(answer.body)")
                    // From the ledger's standing and this replica's grant: one gateway, so exact.
                    #expect(answer.fields["x-ratelimit-limit-requests"] == "1000")
                    #expect(answer.fields["x-ratelimit-remaining-requests"] == String(1000 - index - 1))
                    #expect(answer.fields["x-ratelimit-reset-requests"]?.hasSuffix("s") == true)
                    if index == 0 { print("the first limited request was answered after \(ContinuousClock.now - started)") }
                }
                let metrics = try await DataPlaneTests.get(base, key: test.adminKey, "/metrics").text
                #expect(Self.relayCount(metrics, "direct") == 5, "all five relayed on the event loop")
                #expect(Self.relayCount(metrics, "router") == 0, "the wait for the grant was the relay's own")
                // What an operator sees of it: the wait, the answered syncs, a ledger that answers.
                let sample = { (name: String) -> Double in
                    metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }
                        .flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
                }
                #expect(sample("gantry_shared_limits_waits_total") >= 1)
                #expect(sample(#"gantry_shared_limits_syncs_total{result="answered"}"#) >= 1)
                #expect(sample("gantry_shared_limits_ledger_reachable") == 1)
            }
        }
    }

    @Test("pipelined requests on one connection are answered in order, direct and routed alike")
    func pipelining() async throws {
        let test = try await TestServer.make()
        try await FakeEngine.withEngine(.normal(chunks: 1, delay: .milliseconds(20))) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint)
            try await dataPlane.live(test) { base in
                let port = try #require(Int(base.split(separator: ":").last ?? ""))
                let key = test.adminKey
                let chat = DataPlaneTests.chat
                let unknownModel = chat.replacingOccurrences(of: "fake", with: "nothing")
                let get = "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\nX-Request-Id: r3\r\n\r\n"
                // Two the front serves, one that hands the connection to the codec, a 404 from the
                // router, and one the relay behind the codec serves: all in one write.
                let burst =
                    Self.post(chat, key: key, id: "r1") + Self.post(chat, key: key, id: "r2") + get
                    + Self.post(unknownModel, key: key, id: "r4") + Self.post(chat, key: key, id: "r5")
                let first = try RawHTTPConnection(port: port)
                try first.send(burst)
                var answers: [RawHTTPConnection.Answer] = []
                for _ in 0..<5 { answers.append(try await first.answer()) }
                #expect(answers.map(\.id) == ["r1", "r2", "r3", "r4", "r5"])
                #expect(answers.map(\.status) == [200, 200, 200, 404, 200])
                // r5 came while the router still owed r4: it went to the router, to keep the order.
                var metrics = try await DataPlaneTests.get(base, key: key, "/metrics").text
                #expect(Self.relayCount(metrics, "direct") == 2)
                // Once the router owes nothing, the relay behind the codec serves the connection.
                try first.send(Self.post(chat, key: key, id: "r6"))
                #expect(try await first.answer().status == 200)
                metrics = try await DataPlaneTests.get(base, key: key, "/metrics").text
                #expect(Self.relayCount(metrics, "direct") == 3)

                // A request the front's exchange hands to the router (the router answers an unknown
                // model) reaches it unchanged, and the connection goes on behind the codec.
                let second = try RawHTTPConnection(port: port)
                try second.send(Self.post(unknownModel, key: key, id: "r7") + "POST /v1/chat")
                let handedOn = try await second.answer()
                #expect(handedOn.status == 404 && handedOn.id == "r7")
                #expect(handedOn.body.contains("nothing"), "the router read the body the front had read")
                // The rest of the next request, in a later read: the codec has it all.
                try second.send(String(Self.post(chat, key: key, id: "r8").dropFirst("POST /v1/chat".count)))
                let after = try await second.answer()
                #expect(after.status == 200 && after.id == "r8")
                metrics = try await DataPlaneTests.get(base, key: key, "/metrics").text
                #expect(Self.relayCount(metrics, "direct") == 4)
            }
        }
    }

    @Test("a POST whose head ends lines with a bare LF is answered, not held open")
    func bareLineFeeds() async throws {
        let test = try await TestServer.make()
        try await FakeEngine.withEngine(.normal(chunks: 1, delay: .zero)) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint)
            try await dataPlane.live(test) { base in
                let port = try #require(Int(base.split(separator: ":").last ?? ""))
                let body = DataPlaneTests.chat
                let connection = try RawHTTPConnection(port: port)
                try connection.send(
                    "POST /v1/chat/completions HTTP/1.1\nHost: x\nAuthorization: Bearer \(test.adminKey)\n"
                        + "Content-Length: \(body.utf8.count)\n\n\(body)")
                let answer = try await connection.answer()
                #expect(answer.status == 400)
            }
        }
    }

    @Test(
        "an engine connection that receives bytes while idle is closed, never reused: the next request gets its own answer",
        arguments: [
            // Part of an answer to nothing: kept, the next answer would be read as its body.
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{\"leaked\":",
            // A whole answer to nothing.
            UnsolicitedEngine.answer(99).replacingOccurrences(of: "answer-99", with: "leaked-99"),
        ])
    func idleEngineBytes(afterFirst: String) async throws {
        let test = try await TestServer.make()
        try await UnsolicitedEngine.with(afterFirst: afterFirst, delay: .milliseconds(100)) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint)
            try await dataPlane.live(test) { base in
                let first = try await DataPlaneTests.post(base, key: test.adminKey, DataPlaneTests.chat)
                #expect(first.status == 200 && first.text.contains("answer-1"))
                // The engine's unasked bytes arrive while the connection is idle (well within the
                // 3 s a connection may stay idle and still be reused). A fixed time: nothing shows
                // when the gateway has read them, and the point is that they came while it was idle.
                try await Task.sleep(for: .milliseconds(400))
                let second = try await DataPlaneTests.post(base, key: test.adminKey, DataPlaneTests.chat)
                #expect(second.status == 200)
                #expect(second.text.contains("answer-2"), "\(second.text)")
                #expect(!second.text.contains("leaked"))
            }
        }
    }

    @Test("clients waiting in blocking reads hold none of the threads the server needs to answer them")
    func waitingReadersDoNotStarveTheServer() async throws {
        let test = try await TestServer.make()
        try await FakeEngine.withEngine(.normal(chunks: 1, delay: .zero)) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint)
            // A key never used yet: the first request must verify it, a read of the database.
            let (_, key) = try await dataPlane.userKey(test)
            try await dataPlane.live(test) { base in
                let port = try #require(Int(base.split(separator: ":").last ?? ""))
                // More readers than NIO's shared blocking pool has threads, all waiting before any
                // request is sent. When test reads ran on that pool they took every thread the
                // server's database needed, and every read waited for its 10 s timeout.
                let count = NIOSingletons.blockingPoolThreadCountSuggestion + 1
                let connections = try (0..<count).map { _ in try RawHTTPConnection(port: port) }
                let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                    for connection in connections {
                        group.addTask { try await connection.answer().status }
                    }
                    try await waitUntil("every reader waits in a read", within: .seconds(10), every: .milliseconds(10)) {
                        connections.allSatisfy(\.isReading)
                    }
                    for (index, connection) in connections.enumerated() {
                        try connection.send(Self.post(DataPlaneTests.chat, key: key, id: "waiting-\(index)"))
                    }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(statuses == Array(repeating: 200, count: count))
            }
        }
    }

    @Test("requests whose heads the front leaves to the codec are served as before; split heads and Connection: close")
    func framing() async throws {
        let test = try await TestServer.make()
        try await FakeEngine.withEngine(.normal(chunks: 2, delay: .zero)) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint)
            try await dataPlane.live(test) { base in
                let port = try #require(Int(base.split(separator: ":").last ?? ""))
                let key = test.adminKey
                let chat = DataPlaneTests.chat

                // Cut inside the method, the head and the body: the front waits for each part.
                let split = try RawHTTPConnection(port: port)
                let whole = Self.post(chat, key: key, id: "split")
                try await split.send(whole, cutAt: [2, 40, whole.utf8.count - 5])
                let splitAnswer = try await split.answer()
                #expect(splitAnswer.status == 200 && splitAnswer.id == "split")
                #expect(splitAnswer.body.contains("hello from the fake engine"))

                // A chunked body and HTTP/1.0: the codec reads them; the relay behind it serves them.
                let chunked = try RawHTTPConnection(port: port)
                let size = String(chat.utf8.count, radix: 16)
                try chunked.send(
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(key)\r\n"
                        + "Transfer-Encoding: chunked\r\nX-Request-Id: chunked\r\n\r\n\(size)\r\n\(chat)\r\n0\r\n\r\n")
                let chunkedAnswer = try await chunked.answer()
                #expect(chunkedAnswer.status == 200 && chunkedAnswer.id == "chunked")
                let old = try RawHTTPConnection(port: port)
                try old.send(Self.post(chat, key: key, id: "old").replacingOccurrences(of: "HTTP/1.1", with: "HTTP/1.0"))
                #expect(try await old.answer().status == 200)

                // Two lengths: never served; the codec refuses the request and closes the connection.
                let doubled = try RawHTTPConnection(port: port)
                try doubled.send(Self.post(chat, key: key, id: "doubled", extra: "Content-Length: 3\r\n"))
                #expect(try await doubled.answer().status == 400)
                #expect(try await doubled.endsWithoutMore())

                // Connection: close: the answer, then the end of the connection.
                let closing = try RawHTTPConnection(port: port)
                try closing.send(Self.post(DataPlaneTests.streamChat, key: key, id: "last", extra: "Connection: close\r\n"))
                let last = try await closing.answer()
                #expect(last.status == 200 && last.body.hasSuffix("data: [DONE]\n\n"))
                #expect(try await closing.endsWithoutMore())

                let metrics = try await DataPlaneTests.get(base, key: key, "/metrics").text
                #expect(Self.relayCount(metrics, "direct") == 4)
            }
        }
    }

    @Test(
        "graceful shutdown lets a stream in flight end and answers a request pipelined behind it, then closes; idle connections close at once"
    )
    func gracefulShutdown() async throws {
        let port = try FreePort.find()
        let test = try await TestServer.make(flags: [.port: String(port), .host: "127.0.0.1"])
        try await FakeEngine.withEngine(.normal(chunks: 5, delay: .milliseconds(150))) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint)
            let group = ServiceGroup(services: [test.server.application], logger: Logger(label: "test"))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                let key = test.adminKey
                var ready = false
                for _ in 0..<100 where !ready {
                    ready = (try? await DataPlaneTests.get("http://127.0.0.1:\(port)", key: key, "/healthz").status) == 200
                    if !ready { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(ready)
                let idle = try RawHTTPConnection(port: port)
                try idle.send(Self.post(DataPlaneTests.chat, key: key, id: "before"))
                #expect(try await idle.answer().status == 200)

                let streaming = try RawHTTPConnection(port: port)
                try streaming.send(
                    Self.post(DataPlaneTests.streamChat, key: key, id: "during")
                        + Self.post(DataPlaneTests.chat, key: key, id: "pipelined"))
                try await streaming.waitFor("data: {")
                await group.triggerGracefulShutdown()
                let stream = try await streaming.answer()
                #expect(stream.status == 200)
                #expect(stream.body.components(separatedBy: "data: {\"id\"").count == 6, "all five events")
                #expect(stream.body.hasSuffix("data: [DONE]\n\n"))
                let pipelined = try await streaming.answer()
                #expect(pipelined.status == 200 && pipelined.id == "pipelined")
                #expect(try await streaming.endsWithoutMore())
                #expect(try await idle.endsWithoutMore())
                try await tasks.waitForAll()
            }
        }
    }
}

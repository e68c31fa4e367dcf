import AsyncHTTPClient
import Foundation
import GantryAuth
import GantryCommands
import GantryCore
import GantryServing
import GantryTestSupport
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

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

    @Test("admitted requests are relayed directly, with the router's headers, metering and usage; refusals go to the router")
    func directAndRouted() async throws {
        let logs = CapturedLogs()
        let test = try await TestServer.make(flags: [.logLevel: "info"], logger: logs.logger())
        let recorder = FakeEngine.Recorder()
        try await FakeEngine.withEngine(.normal(chunks: 3, delay: .zero), recorder: recorder) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint, limits: FrequencyLimits(requestsPerMinute: 5))
            let (user, key) = try await dataPlane.userKey(test, limits: KeyLimits(tokenQuota: 1_000_000, quotaPeriod: .day))
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

                // Refused by the rpm limit, an unknown model, a bad body, no key: the router answers.
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
                #expect(Self.relayCount(metrics, "router") >= 2, "the 429 and the 400 went through the router")
                #expect(
                    metrics.contains(#"gantry_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 3"#))
                #expect(metrics.contains(#"gantry_inference_tokens_total{model="fake",direction="completion"}"#))
                #expect(metrics.contains(#"gantry_inference_in_flight{model="fake"} 0"#))
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

    @Test("pipelined requests on one connection are answered in order, direct and routed alike")
    func pipelining() async throws {
        let test = try await TestServer.make()
        try await FakeEngine.withEngine(.normal(chunks: 1, delay: .milliseconds(20))) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint)
            try await dataPlane.live(test) { base in
                let port = try #require(Int(base.split(separator: ":").last ?? ""))
                let chat = DataPlaneTests.chat
                func post(_ body: String, id: String) -> String {
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(test.adminKey)\r\n"
                        + "Content-Type: application/json\r\nX-Request-Id: \(id)\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                }
                let get =
                    "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(test.adminKey)\r\nX-Request-Id: r2\r\n\r\n"
                // Direct, routed, routed (a 404), direct: all in one write.
                let burst =
                    post(chat, id: "r1") + get
                    + post(chat.replacingOccurrences(of: "fake", with: "nothing"), id: "r3") + post(chat, id: "r4")
                let answers = try Self.exchange(port: port, send: burst, responses: 4)
                #expect(answers.map(\.id) == ["r1", "r2", "r3", "r4"])
                #expect(answers.map(\.status) == [200, 200, 404, 200])
            }
        }
    }

    /// Writes `send` on one TCP connection and reads `responses` HTTP/1.1 answers (each with a
    /// content length or chunked), returning their status and request id.
    static func exchange(port: Int, send: String, responses: Int) throws -> [(status: Int, id: String)] {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketFD >= 0 else { throw GantryError(.internal, "no socket") }
        defer { close(socketFD) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socketFD, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw GantryError(.internal, "connect failed") }
        let bytes = Array(send.utf8)
        guard write(socketFD, bytes, bytes.count) == bytes.count else { throw GantryError(.internal, "short write") }
        var received = [UInt8]()
        var answers: [(Int, String)] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while answers.count < responses {
            if let (answer, used) = parseResponse(received) {
                answers.append(answer)
                received.removeFirst(used)
                continue
            }
            let count = read(socketFD, &buffer, buffer.count)
            guard count > 0 else { throw GantryError(.internal, "connection ended after \(answers.count) answers") }
            received += buffer[0..<count]
        }
        return answers
    }

    /// One whole response at the start of `bytes`, and how many bytes it took.
    static func parseResponse(_ bytes: [UInt8]) -> ((Int, String), Int)? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let headEnd = text.range(of: "\r\n\r\n") else { return nil }
        let headLines = text[..<headEnd.lowerBound].components(separatedBy: "\r\n")
        let status = Int(headLines[0].split(separator: " ")[1]) ?? 0
        var fields: [String: String] = [:]
        for line in headLines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let headBytes = text[..<headEnd.upperBound].utf8.count
        var end = headBytes
        if let length = fields["content-length"].flatMap(Int.init) {
            end += length
            guard bytes.count >= end else { return nil }
        } else if fields["transfer-encoding"] == "chunked" {
            // Chunks until the zero-length one.
            let rest = String(decoding: bytes[headBytes...], as: UTF8.self)
            guard let last = rest.range(of: "\r\n0\r\n\r\n") ?? (rest.hasPrefix("0\r\n\r\n") ? rest.range(of: "0\r\n\r\n") : nil)
            else { return nil }
            end += rest[..<last.upperBound].utf8.count
        }
        return ((status, fields["x-request-id"] ?? ""), end)
    }
}

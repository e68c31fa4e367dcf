import AsyncHTTPClient
import Foundation
import GantryCommands
import GantryCore
import GantryTestSupport
import NIOCore
import Testing

@testable import GantryGateway
@testable import GantryServing

/// The deadlines of a client connection as a state machine, told the time: no sleeping.
@Suite("Client connection deadlines")
struct ClientDeadlinesTests {
    let timeouts = ClientTimeouts(head: .seconds(10), body: .seconds(30), idle: .seconds(60))
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func at(_ seconds: Int64) -> NIODeadline { start + .seconds(seconds) }

    @Test("an idle connection expires after the idle timeout; a head's first byte starts the head deadline")
    func idleThenHead() {
        var deadlines = ClientDeadlines(timeouts: timeouts, now: start)
        #expect(deadlines.expired(now: at(59)) == nil)
        #expect(deadlines.expired(now: at(60)) == .idle)
        deadlines.bytesReceived(now: at(50))
        // Later bytes of the same head do not move the head's deadline.
        deadlines.bytesReceived(now: at(58))
        #expect(deadlines.expired(now: at(59)) == nil)
        #expect(deadlines.expired(now: at(60)) == .head)
        #expect(deadlines.mayAnswer)
    }

    @Test("a bounded body has a deadline from its head; an unbounded one only a limit on silence")
    func bodies() {
        var bounded = ClientDeadlines(timeouts: timeouts, now: start)
        bounded.bytesReceived(now: at(1))
        bounded.headReceived(now: at(2), boundedBody: true)
        bounded.bytesReceived(now: at(31))
        #expect(bounded.expired(now: at(31)) == nil)
        #expect(bounded.expired(now: at(32)) == .body, "bytes still arriving do not extend a /v1 body's deadline")
        #expect(bounded.mayAnswer)

        var upload = ClientDeadlines(timeouts: timeouts, now: start)
        upload.bytesReceived(now: at(1))
        upload.headReceived(now: at(1), boundedBody: false)
        for second in stride(from: Int64(30), through: 600, by: 30) {
            upload.bytesReceived(now: at(second))
            #expect(upload.expired(now: at(second + 59)) == nil, "an upload that keeps sending is never cut")
        }
        #expect(upload.expired(now: at(660)) == .body)
    }

    @Test("no deadline runs while an answer is produced; after it the idle one, or the head one if bytes wait")
    func answering() {
        var deadlines = ClientDeadlines(timeouts: timeouts, now: start)
        deadlines.bytesReceived(now: at(0))
        deadlines.headReceived(now: at(0), boundedBody: true)
        deadlines.bodyReceived()
        #expect(deadlines.expired(now: at(3600)) == nil, "a long stream is never cut")
        // A pipelined request's bytes arrive during the answer: its head is timed from the answer's end.
        deadlines.bytesReceived(now: at(100))
        #expect(deadlines.expired(now: at(3600)) == nil)
        deadlines.answerFinished(now: at(3600), bytesWaiting: true)
        #expect(deadlines.expired(now: at(3609)) == nil)
        #expect(deadlines.expired(now: at(3610)) == .head)

        // The next request's bytes arrive before the answer's end is recorded: still a head.
        var early = ClientDeadlines(timeouts: timeouts, now: start)
        early.headReceived(now: at(0), boundedBody: true)
        early.bodyReceived()
        early.bytesReceived(now: at(1))
        early.answerFinished(now: at(2), bytesWaiting: false)
        #expect(early.expired(now: at(12)) == .head)

        var quiet = ClientDeadlines(timeouts: timeouts, now: start)
        quiet.headReceived(now: at(0), boundedBody: true)
        quiet.bodyReceived()
        quiet.answerFinished(now: at(5), bytesWaiting: false)
        #expect(quiet.expired(now: at(64)) == nil)
        #expect(quiet.expired(now: at(65)) == .idle)
    }

    @Test("pipelined requests: idle only when every answer is written; a request handed on is counted once")
    func pipelinedAndHandedOn() {
        var deadlines = ClientDeadlines(timeouts: timeouts, now: start)
        deadlines.headReceived(now: at(0), boundedBody: true)
        deadlines.bodyReceived()
        deadlines.headReceived(now: at(0), boundedBody: true)
        deadlines.bodyReceived()
        deadlines.answerFinished(now: at(1), bytesWaiting: false)
        #expect(deadlines.expired(now: at(1000)) == nil, "the second request is still being answered")
        #expect(!deadlines.mayAnswer)
        deadlines.answerFinished(now: at(1000), bytesWaiting: false)
        #expect(deadlines.expired(now: at(1060)) == .idle)

        // The front counts a head, then hands the request to the codec, whose head counts it again.
        var handed = ClientDeadlines(timeouts: timeouts, now: start)
        handed.headReceived(now: at(0), boundedBody: true)
        handed.handedOn()
        handed.headReceived(now: at(0), boundedBody: false)
        handed.bodyReceived()
        handed.answerFinished(now: at(2), bytesWaiting: false)
        #expect(handed.inProgress == 0)
        #expect(handed.expired(now: at(62)) == .idle)

        // An answer before the body: the connection's last. Not when it answers an earlier
        // request while a later one's body arrives.
        var early = ClientDeadlines(timeouts: timeouts, now: start)
        early.headReceived(now: at(0), boundedBody: true)
        #expect(early.answeringBeforeBody)
        var pipelined = ClientDeadlines(timeouts: timeouts, now: start)
        pipelined.headReceived(now: at(0), boundedBody: false)
        pipelined.bodyReceived()
        pipelined.headReceived(now: at(0), boundedBody: true)
        #expect(!pipelined.answeringBeforeBody)
    }
}

/// Memory and time bounds per client connection against a live server (issue 17, item 4).
@Suite("Client connection bounds")
struct ClientBoundsTests {
    let dataPlane = DataPlaneTests()
    static let short: [GantrySetting: String] = [.headTimeout: "1", .bodyTimeout: "1", .idleTimeout: "2"]

    static func port(_ base: String) throws -> Int { try #require(Int(base.split(separator: ":").last ?? "")) }

    /// Waits until the server closes the connection and says how long that took.
    static func closed(_ connection: RawHTTPConnection) async throws -> (answer: String, after: Duration) {
        let started = ContinuousClock.now
        var answer = ""
        if let whole = try? await connection.answer() { answer = "\(whole.status)" }
        _ = try? await connection.endsWithoutMore()
        return (answer, ContinuousClock.now - started)
    }

    @Test(
        "half-sent heads and slow /v1 bodies get 408 and are closed at their deadline; idle connections are closed; with every gateway.relay",
        arguments: RelayMode.allCases)
    func deadlines(mode: RelayMode) async throws {
        let test = try await TestServer.make(flags: Self.short.merging([.relay: mode.rawValue]) { $1 })
        try await FakeEngine.withEngine(.normal(chunks: 1, delay: .zero)) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint)
            try await dataPlane.live(test) { base in
                let port = try Self.port(base)
                // A head that never ends, sent a byte at a time.
                let head = try RawHTTPConnection(port: port)
                try head.send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
                let trickle = Task {
                    for _ in 0..<20 {
                        try? head.send("X")
                        try? await Task.sleep(for: .milliseconds(200))
                    }
                }
                let headEnd = try await Self.closed(head)
                trickle.cancel()
                #expect(headEnd.answer == "408")
                #expect(headEnd.after < .seconds(3), "closed after \(headEnd.after)")

                // A /v1 body that stalls after its head.
                let body = try RawHTTPConnection(port: port)
                try body.send(
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(test.adminKey)\r\n"
                        + "Content-Length: 1000\r\n\r\n{\"model\":")
                let bodyEnd = try await Self.closed(body)
                #expect(bodyEnd.answer == "408")
                #expect(bodyEnd.after < .seconds(3), "closed after \(bodyEnd.after)")

                // The same stall on a connection the front handed to the codec (an /api request first).
                let handed = try RawHTTPConnection(port: port)
                try handed.send("GET /api/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(test.adminKey)\r\n\r\n")
                #expect(try await handed.answer().status == 200)
                try handed.send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
                let handedEnd = try await Self.closed(handed)
                #expect(handedEnd.answer == "408")
                #expect(handedEnd.after < .seconds(3.5), "closed after \(handedEnd.after)")

                // Served, then idle: closed after the idle timeout, without an answer.
                let idle = try RawHTTPConnection(port: port)
                try idle.send(DirectRelayTests.post(DataPlaneTests.chat, key: test.adminKey, id: "i1"))
                #expect(try await idle.answer().status == 200)
                let idleEnd = try await Self.closed(idle)
                #expect(idleEnd.answer == "")
                #expect(idleEnd.after > .seconds(1) && idleEnd.after < .seconds(4), "closed after \(idleEnd.after)")
            }
        }
    }

    @Test("an answer that takes longer than every client deadline is not cut")
    func longAnswers() async throws {
        let test = try await TestServer.make(flags: Self.short)
        try await FakeEngine.withEngine(.normal(chunks: 12, delay: .milliseconds(300))) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint)
            try await dataPlane.live(test) { base in
                let connection = try RawHTTPConnection(port: try Self.port(base))
                let started = ContinuousClock.now
                try connection.send(DirectRelayTests.post(DataPlaneTests.streamChat, key: test.adminKey, id: "s1"))
                let answer = try await connection.answer()
                #expect(answer.status == 200)
                #expect(answer.body.contains("[DONE]"))
                #expect(ContinuousClock.now - started > .seconds(3), "the stream outlasted the idle timeout")
            }
        }
    }

    @Test("the credential is checked from the head: a body is not read before its caller is known")
    func credentialBeforeBody() async throws {
        let test = try await TestServer.make()
        try await FakeEngine.withEngine(.normal(chunks: 1, delay: .zero)) { endpoint in
            await dataPlane.publish(test, endpoint: endpoint)
            let (_, fresh) = try await dataPlane.userKey(test)
            try await dataPlane.live(test) { base in
                let port = try Self.port(base)
                // A head announcing 4 MB and the first bytes of the body: without a credential, or
                // with one the server refuses, the answer comes now, not after 4 MB.
                for authorization in ["", "Authorization: Bearer gk_nobody_0000000000000000000000\r\n"] {
                    let connection = try RawHTTPConnection(port: port)
                    try connection.send(
                        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\(authorization)Content-Length: 4000000\r\n\r\n"
                            + String(repeating: " ", count: 1000))
                    let answer = try await connection.answer()
                    #expect(answer.status == 401, "\(authorization): \(answer.status)")
                    // The rest of the body is not read to be thrown away: the connection ends,
                    // and the answer says so.
                    #expect(answer.fields["connection"] == "close", "\(answer.fields)")
                    #expect(try await connection.endsWithoutMore())
                }
                // A key not verified yet is verified from the head, and its request is then served
                // directly once the body is whole.
                let body = DataPlaneTests.chat
                let head =
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(fresh)\r\n"
                    + "X-Request-Id: c1\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
                let connection = try RawHTTPConnection(port: port)
                try connection.send(head + String(body.prefix(10)))
                try await Task.sleep(for: .milliseconds(200))
                try connection.send(String(body.dropFirst(10)))
                let served = try await connection.answer()
                #expect(served.status == 200 && served.id == "c1")
                let metrics = try await DataPlaneTests.get(base, key: test.adminKey, "/metrics").text
                #expect(DirectRelayTests.relayCount(metrics, "direct") >= 1)
            }
        }
    }

    @Test(
        "an answer given before its request's body arrived announces the close that follows, on every path; a whole request keeps the connection"
    )
    func earlyAnswersAnnounceTheClose() async throws {
        let flags: [GantrySetting: String] = [.introspectionSecret: "introspection-secret-for-tests-0123456789"]
        let port = try FreePort.find()
        try await TestServer.running(port: port, flags: flags) { test, _ in
            let body = "token=gk_abcdefghijklmnopqrstuvwxyz"
            // Refused from the head (no credential, or a session without its CSRF token), before
            // the body: clients such as async-http-client would otherwise send their next request
            // on this connection and see it closed under them.
            for (path, type) in [
                ("/auth/introspect", "application/x-www-form-urlencoded"), ("/api/v1/keys", "application/json"),
                ("/me/keys", "application/x-www-form-urlencoded"), ("/v1/chat/completions", "application/json"),
            ] {
                let connection = try RawHTTPConnection(port: port)
                try connection.send(
                    "POST \(path) HTTP/1.1\r\nHost: x\r\nContent-Type: \(type)\r\nContent-Length: \(body.utf8.count)\r\n\r\n")
                let answer = try await connection.answer()
                #expect(answer.status == 401, "\(path): \(answer.status)")
                #expect(answer.fields["connection"] == "close", "\(path): \(answer.fields)")
                try? connection.send(body + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try await connection.endsWithoutMore(), "\(path): answered after announcing the close")
            }
            // The same refusal once the whole body is there: the connection stays open and serves on.
            let connection = try RawHTTPConnection(port: port)
            try connection.send(
                "POST /auth/introspect HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
            let refused = try await connection.answer()
            #expect(refused.status == 401 && refused.fields["connection"] == nil, "\(refused.fields)")
            try connection.send("GET /api/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(test.adminKey)\r\n\r\n")
            #expect(try await connection.answer().status == 200)
        }
    }
}

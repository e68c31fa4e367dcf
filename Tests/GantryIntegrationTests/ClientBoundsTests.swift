import AsyncHTTPClient
import Foundation
import GantryCommands
import GantryCore
import GantryTestSupport
import NIOCore
import Testing

@testable import GantryGateway
@testable import GantryServing

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
                // A head that never ends, sent a byte at a time (a fixed pace: the slow client is
                // the subject, and the server's deadline must cut it off).
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
                // The rest of the body comes later on purpose (a fixed time), so the server has the
                // head, and verifies the key from it, before the body is whole.
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

import NIOCore
import NIOEmbedded
import Testing

@testable import GantryGateway

/// The relay's own decoder for engine answers: framing by length, by chunks and by close, in any
/// split of the bytes, and a failed connection for anything it cannot frame.
@Suite("Engine response decoder")
struct EngineResponseDecoderTests {
    /// What a stream of bytes decodes to, with body parts joined per answer.
    enum Part: Equatable {
        case head(EngineResponseHead)
        case body(String)
        case end
    }

    /// Feeds `bytes` in pieces of `step` bytes (0: all at once), then closes the input.
    static func decode(_ bytes: String, step: Int = 0, oneAnswerAtATime: Bool = false) throws -> [Part] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(EngineResponseDecoder(oneAnswerAtATime: oneAnswerAtATime)))
        let all = Array(bytes.utf8)
        let size = step == 0 ? max(all.count, 1) : step
        var parts: [Part] = []
        func drain() throws {
            while let part = try channel.readInbound(as: EngineResponsePart.self) {
                switch part {
                case .head(let head): parts.append(.head(head))
                case .body(let body):
                    if case .body(let earlier) = parts.last {
                        parts[parts.count - 1] = .body(earlier + String(buffer: body))
                    } else {
                        parts.append(.body(String(buffer: body)))
                    }
                case .end: parts.append(.end)
                }
            }
        }
        for start in stride(from: 0, to: all.count, by: size) {
            try channel.writeInbound(ByteBuffer(bytes: all[start..<min(start + size, all.count)]))
            try drain()
        }
        _ = try channel.finish()
        try drain()
        return parts
    }

    static func head(_ status: Int, _ contentType: String? = nil, keepAlive: Bool = true) -> Part {
        .head(EngineResponseHead(status: status, contentType: contentType, keepAlive: keepAlive))
    }

    static let cases: [(String, [Part])] = [
        (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello"
                + "HTTP/1.1 201 Created\r\ncontent-length:  0 \r\n\r\n",
            [head(200, "application/json"), .body("hello"), .end, head(201), .end]
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n"
                + "5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n",
            [head(200, "text/event-stream"), .body("hello0123456789"), .end]
        ),
        (
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            [head(400, keepAlive: false), .body("{}"), .end]
        ),
        ("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", [head(204), .end]),
        (
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
            [head(200, "text/plain", keepAlive: false), .body("until the end"), .end]
        ),
        ("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx", [head(200), .body("x"), .end]),
        // Cut mid-body: no end, so the exchange fails when the connection closes.
        ("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", [head(200), .body("abc")]),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", [head(200), .body("ab")]),
    ]

    @Test("answers decode the same whole and split at every byte", arguments: 0..<cases.count)
    func framing(index: Int) throws {
        let (bytes, expected) = Self.cases[index]
        #expect(try Self.decode(bytes) == expected)
        #expect(try Self.decode(bytes, step: 1) == expected)
        #expect(try Self.decode(bytes, step: 7) == expected)
    }

    @Test(
        "what cannot be framed fails the connection",
        arguments: [
            "HTTP/2 200\r\n\r\n",
            "HTTP/1.1 2x0 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            // Two lengths, even equal; both framings (NIO's decoder refuses them too).
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nok",
            // Malformed field lines.
            "HTTP/1.1 200 OK\r\n: empty name\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-A: a\u{1}b\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n",
        ])
    func malformed(bytes: String) {
        #expect(throws: (any Error).self) { try Self.decode(bytes) }
    }

    @Test(
        "bytes the engine sends after its answer, in the same read, fail the connection once the answer is passed on",
        arguments: [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nother",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello!",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 2",
            "HTTP/1.1 204 No Content\r\n\r\nx",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n",
        ])
    func bytesAfterTheAnswer(bytes: String) throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(EngineResponseDecoder()))
        #expect(throws: EngineResponseError.self) { try channel.writeInbound(ByteBuffer(string: bytes)) }
        var parts: [EngineResponsePart] = []
        while let part = try channel.readInbound(as: EngineResponsePart.self) { parts.append(part) }
        #expect(parts.last == .end, "the answer itself was passed on whole")
        #expect(parts.filter { $0 == .end }.count == 1, "nothing after it was")
        _ = try? channel.finish()
        // One answer per read, as the relay receives them, is fine.
        #expect(
            try Self.decode("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", oneAnswerAtATime: true)
                == [Self.head(200), .body("hello"), .end])
    }

    @Test("a head over 64 KiB fails the connection instead of growing the buffer")
    func oversizedHead() {
        let bytes = "HTTP/1.1 200 OK\r\nx-filler: " + String(repeating: "a", count: 70 * 1024)
        #expect(throws: EngineResponseError.self) { try Self.decode(bytes, step: 4096) }
    }
}

import NIOCore
import Testing

@testable import GantryGateway

/// What the relay's front reads itself and what it leaves to Hummingbird's codec: it must take
/// the common request in any spelling the codec accepts, wait for a head that is not whole, and
/// refuse (hand on) everything else, so that it never accepts what the codec would reject.
@Suite("Direct relay front: request heads")
struct DirectRequestHeadTests {
    static let maxBody = 1000

    static func parse(_ text: String, maxBody: Int = maxBody) -> DirectRequestHead.Parsed {
        DirectRequestHead.parse(ByteBuffer(string: text), maxBodyBytes: maxBody)
    }

    static func head(_ text: String) -> DirectRequestHead? {
        if case .head(let head) = parse(text) { return head }
        return nil
    }

    static let plain = "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer k\r\nContent-Length: 12\r\n\r\n"

    @Test("the common request, in the spellings the codec accepts")
    func accepted() throws {
        let head = try #require(Self.head(Self.plain + "{\"model\":1}x"))
        #expect(head.endpoint == .chatCompletions)
        #expect(head.path == "/v1/chat/completions")
        #expect(head.authorization == "Bearer k")
        #expect(head.contentLength == 12)
        #expect(head.length == Self.plain.utf8.count, "the head ends after its blank line; the body is not read")
        #expect(head.requestID == nil && !head.closeAfter)

        // Names in any case, spaces and tabs around values, other fields skipped, a query string.
        let mixed = try #require(
            Self.head(
                "POST /v1/embeddings?x=1 HTTP/1.1\r\nhOsT:g\r\nCONTENT-LENGTH:\t7 \r\nx-Request-ID:  abc\r\n"
                    + "User-Agent: openai/1.0 (é)\r\nConnection: keep-alive, Close\r\n\r\n"))
        #expect(mixed.endpoint == .embeddings)
        #expect(mixed.contentLength == 7)
        #expect(mixed.requestID == "abc")
        #expect(mixed.closeAfter)
        #expect(mixed.authorization == nil, "no key: the exchange hands it to the router, which answers 401")
        #expect(Self.head("POST /v1/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 0\r\n\r\n")?.endpoint == .completions)
    }

    @Test("a head that is not whole yet is waited for")
    func needMore() {
        for cut in [
            "", "P", "POST", "POST /v1/chat", "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\n", String(Self.plain.dropLast()),
        ] {
            #expect(Self.parse(cut) == .needMore, "\(cut.debugDescription)")
        }
    }

    @Test("a head with a bare LF or CR goes to the codec at once, whole or not")
    func bareLineEnds() {
        let cases = [
            "POST /v1/chat/completions HTTP/1.1\nHost: g\nContent-Length: 2\n\n{}",
            "POST /v1/chat/completions HTTP/1.1\nHost: g\n",
            "POST /v1/chat/completions HTTP/1.1\r\nHost: g\nContent-Length: 2\r\n\r\n{}",
            "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\n\n\r\n",
            "POST /v1/chat/completions HTTP/1.1\rHost: g\r\n",
            "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\r\n",
        ]
        for text in cases {
            #expect(Self.parse(text) == .notDirect, "\(text.debugDescription)")
        }
        // A CR at the end of what has arrived may still get its LF.
        #expect(Self.parse("POST /v1/chat/completions HTTP/1.1\r") == .needMore)
    }

    @Test("everything else goes to the codec")
    func notDirect() {
        let line = "POST /v1/chat/completions HTTP/1.1\r\n"
        let cases: [(String, String)] = [
            ("another method", "GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\n"),
            ("another method, seen at once", "GE"),
            ("lower-case method", "post /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\n\r\n"),
            ("another path", "POST /api/v1/models HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\n\r\n"),
            ("a longer path", "POST /v1/chat/completions/x HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\n\r\n"),
            ("HTTP/1.0", "POST /v1/chat/completions HTTP/1.0\r\nHost: g\r\nContent-Length: 1\r\n\r\n"),
            ("a space in the target", "POST /v1/chat/completions x HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\n\r\n"),
            ("chunked body", line + "Host: g\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ("both framings", line + "Host: g\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ("Expect", line + "Host: g\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"),
            ("Upgrade", line + "Host: g\r\nUpgrade: h2c\r\nContent-Length: 1\r\n\r\n"),
            ("Connection: upgrade", line + "Host: g\r\nConnection: Upgrade\r\nContent-Length: 1\r\n\r\n"),
            ("two lengths", line + "Host: g\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            ("a signed length", line + "Host: g\r\nContent-Length: +1\r\n\r\n"),
            ("an empty length", line + "Host: g\r\nContent-Length: \r\n\r\n"),
            ("a length over the limit", line + "Host: g\r\nContent-Length: 1001\r\n\r\n"),
            ("a length of eleven digits", line + "Host: g\r\nContent-Length: 00000000001\r\n\r\n"),
            ("no length", line + "Host: g\r\n\r\n"),
            ("no host", line + "Content-Length: 1\r\n\r\n"),
            ("two hosts", line + "Host: g\r\nHost: h\r\nContent-Length: 1\r\n\r\n"),
            ("two keys", line + "Host: g\r\nAuthorization: a\r\nAuthorization: b\r\nContent-Length: 1\r\n\r\n"),
            ("a folded line", line + "Host: g\r\nX-A: a\r\n b\r\nContent-Length: 1\r\n\r\n"),
            ("a space before the colon", line + "Host: g\r\nContent-Length : 1\r\n\r\n"),
            ("no colon", line + "Host: g\r\nContent-Length 1\r\n\r\n"),
            ("an empty name", line + "Host: g\r\n: x\r\nContent-Length: 1\r\n\r\n"),
            ("a bare LF", line + "Host: g\nContent-Length: 1\r\n\r\n"),
            ("a bare CR", line + "Host: g\rX: y\r\nContent-Length: 1\r\n\r\n"),
            ("a control character", line + "Host: g\r\nX-A: a\u{1}b\r\nContent-Length: 1\r\n\r\n"),
            ("DEL", line + "Host: g\r\nX-A: a\u{7F}\r\nContent-Length: 1\r\n\r\n"),
            (
                "a head over 8 KiB",
                line + "Host: g\r\nX-A: " + String(repeating: "a", count: 8200) + "\r\nContent-Length: 1\r\n\r\n"
            ),
            ("8 KiB and no end yet", line + "Host: g\r\nX-A: " + String(repeating: "a", count: 8200)),
        ]
        for (name, text) in cases {
            #expect(Self.parse(text) == .notDirect, "\(name)")
        }
    }
}

@Suite("Direct relay front: received bytes")
struct UnservedBytesTests {
    @Test("a keep-alive connection's buffer holds what is not served yet, not every byte it sent")
    func servedBytesAreDropped() {
        let request = ByteBuffer(repeating: UInt8(ascii: "a"), count: 1 << 20)
        var received = ByteBuffer()
        var served = 0
        // 300 requests of 1 MiB, each arriving with the first bytes of the next behind it.
        for round in 0..<300 {
            var piece = request
            piece.writeString("next-\(round)")
            received.appendUnserved(&piece)
            if round > 0 { _ = received.readSlice(length: "next-\(round - 1)".utf8.count) }
            guard let slice = received.readSlice(length: request.readableBytes) else { break }
            served += slice.readableBytes
        }
        #expect(served == 300 << 20)
        #expect(received.capacity < 4 << 20, "capacity \(received.capacity)")
        #expect(received.readableBytesView.elementsEqual("next-299".utf8), "the unserved rest is kept, in order")
    }

    @Test("bytes arriving in pieces are appended in order, with or without reads between them")
    func appendsInOrder() {
        var received = ByteBuffer()
        var expected: [UInt8] = []
        var read: [UInt8] = []
        for index in 0..<200 {
            var piece = ByteBuffer(bytes: (0..<(index % 17 + 1)).map { UInt8(truncatingIfNeeded: $0 + index) })
            expected += piece.readableBytesView
            received.appendUnserved(&piece)
            if index % 3 == 0, let slice = received.readSlice(length: min(received.readableBytes, 5)) {
                read += slice.readableBytesView
            }
        }
        read += received.readableBytesView
        #expect(read == expected)
    }
}

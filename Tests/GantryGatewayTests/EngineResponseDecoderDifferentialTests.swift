import NIOCore
import NIOEmbedded
import NIOHTTP1
import PropertyBased
import Testing

@testable import GantryGateway

/// The relay reads engine answers with its own decoder (`EngineResponseDecoder`) where the
/// router's path uses NIOHTTP1's `HTTPResponseDecoder` (llhttp, through async-http-client).
/// Random answers, most of them mutated into the shapes response splitting and desync use, go
/// into both, fed in random pieces and then closed:
/// - whatever the relay's decoder passes on (a head, body bytes, the end), NIO's reads the same:
///   the same status and content type, body bytes that agree as far as both went, and when the
///   relay's decoder ends the answer, NIO's ends it at the same byte;
/// - an answer the relay's decoder keeps alive is one NIO's keeps alive too.
/// The relay's decoder may refuse more than NIO's (the request then fails as an engine failure),
/// never less.
@Suite("Engine response decoder: differential against NIO's HTTP/1.1 decoder")
struct EngineResponseDecoderDifferentialTests {
    enum Mutation: CaseIterable {
        case sameLengthTwice, twoLengths, lengthAndChunked, chunkedNotLast, otherCoding, obsFold, bareLF
        case spaceBeforeColon, nonASCIIValue, oddLength, oddChunkSize, chunkExtension, trailers, noChunkCRLF
        case connectionClose, connectionKeepAlive, http10, interim, oddStatus, noReason, insertByte, deleteByte
        case truncate, nameCase, noContentStatus, emptyName, noColon
    }

    enum Framing: CaseIterable { case length, chunked, close }

    /// The answer before it becomes bytes.
    struct Draft {
        var version = "HTTP/1.1"
        var status = "200"
        var reason = " OK"
        var fields: [(name: String, value: String)] = [("Content-Type", "application/json")]
        var rawLines: [String] = []
        var body: [UInt8] = []
        var framing = Framing.length
        var chunkSizes: [Int] = []
        var chunkSizeText: (Int) -> String = { String($0, radix: 16) }
        var chunkExtension = ""
        var trailers = ""
        var chunkEnd = "\r\n"
        var interim = ""
        var lineEnd = "\r\n"

        func bytes() -> [UInt8] {
            var head = interim + version + " " + status + reason + lineEnd
            for field in fields { head += field.name + ":" + field.value + lineEnd }
            for line in rawLines { head += line + lineEnd }
            head += "\r\n"
            var out = Array(head.utf8)
            switch framing {
            case .length, .close:
                out += body
            case .chunked:
                var rest = body[...]
                for size in chunkSizes where !rest.isEmpty {
                    let chunk = rest.prefix(max(1, size))
                    rest = rest.dropFirst(chunk.count)
                    out += Array((chunkSizeText(chunk.count) + chunkExtension + "\r\n").utf8) + chunk + Array(chunkEnd.utf8)
                }
                if !rest.isEmpty {
                    out += Array((chunkSizeText(rest.count) + "\r\n").utf8) + rest + Array(chunkEnd.utf8)
                }
                out += Array(("0\r\n" + trailers + "\r\n").utf8)
            }
            return out
        }
    }

    static func answer(mutations: [Int], numbers: [Int]) -> [UInt8] {
        var numbers = numbers.makeIterator()
        func next(_ bound: Int) -> Int { (numbers.next() ?? 5) % max(1, bound) }
        var draft = Draft()
        draft.framing = Framing.allCases[next(3)]
        draft.body = (0..<next(200)).map { UInt8(97 + $0 % 26) }
        draft.chunkSizes = (0..<4).map { _ in 1 + next(80) }
        switch draft.framing {
        case .length: draft.fields.append(("Content-Length", String(draft.body.count)))
        case .chunked: draft.fields.append(("Transfer-Encoding", "chunked"))
        case .close: break
        }
        var byteEdits: [(insert: Bool, at: Int, byte: UInt8)] = []
        var cut = 0
        for index in mutations {
            switch Mutation.allCases[index % Mutation.allCases.count] {
            case .sameLengthTwice: draft.fields.append(("Content-Length", String(draft.body.count)))
            case .twoLengths: draft.fields.append(("Content-Length", String(next(draft.body.count + 5))))
            case .lengthAndChunked:
                draft.fields.append(
                    draft.framing == .chunked ? ("Content-Length", String(next(50))) : ("Transfer-Encoding", "chunked"))
            case .chunkedNotLast:
                draft.fields.append(("Transfer-Encoding", ["chunked, gzip", "gzip, chunked", "chunked, chunked"][next(3)]))
            case .otherCoding: draft.fields.append(("Transfer-Encoding", ["gzip", "identity", "xchunked", "chunked2"][next(4)]))
            case .obsFold: draft.rawLines.append([" folded", "\tfolded"][next(2)])
            case .bareLF: draft.lineEnd = "\n"
            case .spaceBeforeColon:
                let at = next(draft.fields.count)
                draft.fields[at].name += [" ", "\t"][next(2)]
            case .nonASCIIValue:
                let at = next(draft.fields.count)
                draft.fields[at].value += ["\u{e9}", "\u{1}", "\u{7f}"][next(3)]
            case .oddLength:
                if let at = draft.fields.firstIndex(where: { $0.name == "Content-Length" }) {
                    draft.fields[at].value =
                        ["+\(draft.body.count)", "0\(draft.body.count)", "1 2", "-1", "", " \(draft.body.count) ", "0x10"][
                            next(7)]
                }
            case .oddChunkSize:
                let style = next(5)
                draft.chunkSizeText = { size in
                    [
                        String(size, radix: 16, uppercase: true), "00" + String(size, radix: 16), "0x" + String(size, radix: 16),
                        " " + String(size, radix: 16), String(size, radix: 16) + "g",
                    ][style]
                }
            case .chunkExtension: draft.chunkExtension = [";a=b", "; a=b", " ;a", ";a=\"b;c\""][next(4)]
            case .trailers: draft.trailers = ["X-Trailer: 1\r\n", "X-Trailer: 1\r\nY: 2\r\n", "bad trailer\r\n"][next(3)]
            case .noChunkCRLF: draft.chunkEnd = ["", "\n", "XX"][next(3)]
            case .connectionClose:
                draft.fields.append(("Connection", ["close", "Close", "keep-alive, close", "closed"][next(4)]))
            case .connectionKeepAlive: draft.fields.append(("Connection", ["keep-alive", "Keep-Alive", "upgrade"][next(3)]))
            case .http10: draft.version = ["HTTP/1.0", "HTTP/2.0", "HTTP/1.2", "http/1.1"][next(4)]
            case .interim:
                draft.interim = ["HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"][next(2)]
            case .oddStatus: draft.status = ["2000", "20", "abc", "099", "600", "204", "304", "404", "500"][next(9)]
            case .noReason: draft.reason = ["", " ", " Very Fine"][next(3)]
            case .insertByte: byteEdits.append((true, next(400), UInt8(next(256))))
            case .deleteByte: byteEdits.append((false, next(400), 0))
            case .truncate: cut = 1 + next(20)
            case .nameCase:
                let at = next(draft.fields.count)
                draft.fields[at].name = [draft.fields[at].name.uppercased(), draft.fields[at].name.lowercased()][next(2)]
            case .noContentStatus: draft.status = ["204", "304"][next(2)]
            case .emptyName: draft.rawLines.append(": x")
            case .noColon: draft.rawLines.append("X-No-Colon value")
            }
        }
        var bytes = draft.bytes()
        for edit in byteEdits where !bytes.isEmpty {
            let at = edit.at % bytes.count
            if edit.insert { bytes.insert(edit.byte, at: at) } else { bytes.remove(at: at) }
        }
        return Array(bytes.dropLast(min(cut, bytes.count)))
    }

    /// What a decoder made of the bytes of one answer, up to the end of the first.
    struct Reading: CustomStringConvertible {
        var status: Int?
        var contentType: String?
        var keepAlive = false
        var body: [UInt8] = []
        var ended = false
        var failed = false

        var description: String {
            "status \(status.map(String.init) ?? "none") type \(contentType ?? "none") keepAlive \(keepAlive) "
                + "body \(body.count) bytes ended \(ended) failed \(failed)"
        }
    }

    /// Feeds `bytes` in pieces of `step`, then closes the input.
    static func feed(_ channel: EmbeddedChannel, _ bytes: [UInt8], step: Int, drain: () throws -> Void) -> Bool {
        var offset = 0
        do {
            while offset < bytes.count {
                let end = min(bytes.count, offset + step)
                try channel.writeInbound(ByteBuffer(bytes: bytes[offset..<end]))
                try drain()
                offset = end
            }
            _ = try channel.finish()
            try drain()
            return false
        } catch {
            try? drain()
            return true
        }
    }

    static func relayDecoder(_ bytes: [UInt8], step: Int) -> Reading {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(EngineResponseDecoder()))
        var reading = Reading()
        reading.failed = feed(channel, bytes, step: step) {
            while let part = try channel.readInbound(as: EngineResponsePart.self), !reading.ended {
                switch part {
                case .head(let head):
                    reading.status = head.status
                    reading.contentType = head.contentType
                    reading.keepAlive = head.keepAlive
                case .body(let chunk): reading.body += chunk.readableBytesView
                case .end: reading.ended = true
                }
            }
        }
        return reading
    }

    static func nioDecoder(_ bytes: [UInt8], step: Int) -> Reading {
        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)))
        // The decoder learns each answer's request from the requests written (a HEAD's answer has
        // no body): the relay sends POSTs.
        try? channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/")))
        var reading = Reading()
        reading.failed = feed(channel, bytes, step: step) {
            while let part = try channel.readInbound(as: HTTPClientResponsePart.self), !reading.ended {
                switch part {
                case .head(let head):
                    reading.status = Int(head.status.code)
                    reading.contentType = head.headers.first(name: "content-type")
                    reading.keepAlive = head.isKeepAlive
                case .body(let chunk): reading.body += chunk.readableBytesView
                case .end: reading.ended = true
                }
            }
        }
        return reading
    }

    @Test("what the relay's decoder passes on, NIO's decoder reads the same; never does it read further")
    func sameReading() async {
        await propertyCheck(
            count: 4000, input: Gen.int(in: 0...(Mutation.allCases.count - 1)).array(of: 0...3),
            Gen.int(in: 0...65_535).array(of: 12)
        ) { mutations, numbers in
            let bytes = Self.answer(mutations: mutations, numbers: numbers)
            let step = 1 + (numbers.last ?? 0) % 97
            let mine = Self.relayDecoder(bytes, step: step)
            let theirs = Self.nioDecoder(bytes, step: step)
            let shown = "\(String(decoding: bytes.prefix(400), as: UTF8.self).debugDescription) in pieces of \(step)"
            guard let status = mine.status else { return }
            #expect(theirs.status == status, "relay: \(mine); NIO: \(theirs); \(shown)")
            // NIO keeps whitespace that ends a field's value; RFC 9110 5.5 says it is not part of
            // the value, and the relay drops it.
            let theirType = theirs.contentType.map { String($0.reversed().drop { $0 == " " || $0 == "\t" }.reversed()) }
            #expect(theirType == mine.contentType, "relay: \(mine); NIO: \(theirs); \(shown)")
            if mine.ended {
                #expect(theirs.ended && theirs.body == mine.body, "relay: \(mine); NIO: \(theirs); \(shown)")
                if mine.keepAlive { #expect(theirs.keepAlive, "relay: \(mine); NIO: \(theirs); \(shown)") }
            } else {
                let agree = theirs.body.starts(with: mine.body) || (theirs.failed && mine.body.starts(with: theirs.body))
                #expect(agree, "body bytes: relay: \(mine); NIO: \(theirs); \(shown)")
            }
        }
    }
}

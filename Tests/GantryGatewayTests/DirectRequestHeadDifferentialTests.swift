import NIOCore
import NIOEmbedded
import NIOHTTP1
import PropertyBased
import Testing

@testable import GantryGateway

/// The relay's front reads request heads with its own parser (`DirectRequestHead`), ahead of the
/// codec Hummingbird runs (NIOHTTP1's `HTTPRequestDecoder`, llhttp). Random heads, most of them
/// mutated into the shapes request smuggling uses, go into both:
/// - whenever the front accepts a head, the codec accepts it too and reads the same method,
///   target, `Content-Length`, `Host` and `Authorization`;
/// - whenever the codec refuses a head, the front hands it on (`notDirect`), so the codec gives
///   its own answer.
@Suite("Direct relay front: differential against NIO's HTTP/1.1 decoder")
struct DirectRequestHeadDifferentialTests {
    /// One head to build: the mutations to apply (indices into `Mutation.allCases`) and the
    /// random numbers they draw positions and bytes from.
    struct Recipe: Sendable, CustomStringConvertible {
        var mutations: [Int]
        var numbers: [Int]
        var description: String {
            "mutations \(mutations.map { Mutation.allCases[$0 % Mutation.allCases.count] }) numbers \(numbers)"
        }
    }

    enum Mutation: CaseIterable {
        case sameLengthTwice, twoLengths, chunked, chunkedListed, obsFold, bareLF, bareCR, spaceBeforeColon
        case nonASCIIValue, nonASCIIName, oversized, http10, otherMethod, noHost, twoHosts, controlInValue
        case tabsInValue, oddLength, emptyName, noColon, oddTarget, connection, expect, upgrade
        case insertByte, deleteByte, nameCase, twoAuthorizations, spaceAfterLine, nulInTarget
    }

    /// The request line and fields, before they become bytes.
    struct Draft {
        var method = "POST"
        var target = "/v1/chat/completions"
        var version = "HTTP/1.1"
        var fields: [(name: String, value: String)] = [
            ("Host", "gantry"), ("Authorization", "Bearer sk-abc"), ("Content-Type", "application/json"),
            ("Content-Length", "12"),
        ]
        /// Lines written as they are, not as `name:value`, by their place among the fields.
        var rawLines: [Int: String] = [:]
        /// Line ends by line (0: the request line, then each field); CRLF unless changed.
        var lineEnds: [Int: String] = [:]

        func bytes() -> [UInt8] {
            var text = "\(method) \(target) \(version)" + (lineEnds[0] ?? "\r\n")
            for (index, field) in fields.enumerated() {
                text += rawLines[index] ?? (field.name + ":" + field.value)
                text += lineEnds[index + 1] ?? "\r\n"
            }
            return Array(text.utf8) + [13, 10]
        }

        mutating func appendRaw(_ line: String, at index: Int? = nil) {
            let at = index ?? fields.count
            fields.insert(("", ""), at: at)
            rawLines = Dictionary(uniqueKeysWithValues: rawLines.map { ($0.key >= at ? $0.key + 1 : $0.key, $0.value) })
            rawLines[at] = line
        }
    }

    static func head(_ recipe: Recipe) -> [UInt8] {
        var draft = Draft()
        var numbers = recipe.numbers.makeIterator()
        func next(_ bound: Int) -> Int { (numbers.next() ?? 7) % max(1, bound) }
        var byteEdits: [(insert: Bool, at: Int, byte: UInt8)] = []
        for index in recipe.mutations {
            switch Mutation.allCases[index % Mutation.allCases.count] {
            case .sameLengthTwice: draft.fields.append(("Content-Length", "12"))
            case .twoLengths: draft.fields.append(("Content-Length", "5"))
            case .chunked: draft.fields.append(("Transfer-Encoding", "chunked"))
            case .chunkedListed: draft.fields.append(("transfer-encoding", "gzip, chunked"))
            case .obsFold: draft.appendRaw([" folded", "\tfolded"][next(2)], at: next(draft.fields.count + 1))
            case .bareLF: draft.lineEnds[next(draft.fields.count + 1)] = "\n"
            case .bareCR: draft.lineEnds[next(draft.fields.count + 1)] = "\r"
            case .spaceBeforeColon:
                let at = next(draft.fields.count)
                draft.fields[at].name += [" ", "\t"][next(2)]
            case .nonASCIIValue:
                let at = next(draft.fields.count)
                draft.fields[at].value += ["\u{e9}", "\u{2603}", "\u{80}"][next(3)]
            case .nonASCIIName:
                let at = next(draft.fields.count)
                draft.fields[at].name += "\u{e9}"
            case .oversized: draft.fields.append(("X-Pad", String(repeating: "p", count: 8000 + next(3000))))
            case .http10: draft.version = ["HTTP/1.0", "HTTP/2.0", "http/1.1", "HTTP/1.1 "][next(4)]
            case .otherMethod: draft.method = ["GET", "post", "PUT", "POSTX", " POST"][next(5)]
            case .noHost: draft.fields.removeAll { $0.name == "Host" }
            case .twoHosts: draft.fields.append(("Host", ["gantry", "other"][next(2)]))
            case .controlInValue:
                let at = next(draft.fields.count)
                draft.fields[at].value += ["\u{1}", "\u{7f}", "\u{0}"][next(3)]
            case .tabsInValue:
                let at = next(draft.fields.count)
                draft.fields[at].value = "\t" + draft.fields[at].value + " \t"
            case .oddLength:
                let at = draft.fields.firstIndex { $0.name == "Content-Length" } ?? 0
                draft.fields[at].value = [" +12", "012", "1 2", "12a", "-1", " 99999999999", "0x0c", "", " 12 "][next(9)]
            case .emptyName: draft.appendRaw(": x")
            case .noColon: draft.appendRaw("X-No-Colon value")
            case .oddTarget:
                draft.target =
                    [
                        "/v1/chat/completions?x=1", "http://gantry/v1/chat/completions", "/v1/chat/completions#f",
                        "/v1//chat/completions", "/v1/chat/completions extra", "/v1/embeddings", "*", "/v1/chat/completions%20",
                    ][next(8)]
            case .connection: draft.fields.append(("Connection", ["close", "keep-alive", "Upgrade", "close, te"][next(4)]))
            case .expect: draft.fields.append(("Expect", "100-continue"))
            case .upgrade: draft.fields.append(("Upgrade", "h2c"))
            case .insertByte: byteEdits.append((true, next(400), UInt8(next(256))))
            case .deleteByte: byteEdits.append((false, next(400), 0))
            case .nameCase:
                let at = next(draft.fields.count)
                draft.fields[at].name = [draft.fields[at].name.uppercased(), draft.fields[at].name.lowercased()][next(2)]
            case .twoAuthorizations: draft.fields.append(("Authorization", "Bearer other"))
            case .spaceAfterLine: draft.lineEnds[0] = " \r\n"
            case .nulInTarget: draft.target += "\u{0}"
            }
        }
        var bytes = draft.bytes()
        for edit in byteEdits where !bytes.isEmpty {
            let at = edit.at % bytes.count
            if edit.insert { bytes.insert(edit.byte, at: at) } else { bytes.remove(at: at) }
        }
        return bytes
    }

    static func trimmed(_ value: String) -> String {
        String(value.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }

    /// What NIO's decoder makes of `bytes`: the head, nil when it wants more, or refused.
    enum CodecResult {
        case head(HTTPRequestHead)
        case needMore
        case refused
    }

    static func codec(_ bytes: [UInt8]) -> CodecResult {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
        defer { _ = try? channel.finish() }
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
            if case .head(let head)? = try channel.readInbound(as: HTTPServerRequestPart.self) { return .head(head) }
            return .needMore
        } catch {
            return .refused
        }
    }

    @Test("what the front accepts, the codec reads the same; what the codec refuses, the front hands on")
    func sameReading() async {
        await propertyCheck(
            count: 4000, input: Gen.int(in: 0...(Mutation.allCases.count - 1)).array(of: 0...4),
            Gen.int(in: 0...65_535).array(of: 8)
        ) { mutations, numbers in
            let bytes = Self.head(Recipe(mutations: mutations, numbers: numbers))
            let front = DirectRequestHead.parse(ByteBuffer(bytes: bytes), maxBodyBytes: 1 << 20)
            let codec = Self.codec(bytes)
            let shown = String(decoding: bytes.prefix(600), as: UTF8.self).debugDescription
            switch (front, codec) {
            case (.head(let mine), .head(let theirs)):
                #expect(theirs.method == .POST, "\(shown)")
                #expect(theirs.version == .http1_1, "\(shown)")
                #expect(theirs.uri == mine.path, "\(shown)")
                #expect(theirs.headers["content-length"].compactMap { Int(Self.trimmed($0)) } == [mine.contentLength], "\(shown)")
                #expect(theirs.headers["host"].count == 1, "\(shown)")
                #expect(theirs.headers["authorization"].count <= 1, "\(shown)")
                // RFC 9110 5.5: a field's value has no leading or trailing whitespace; llhttp
                // leaves trailing whitespace in, HTTPTypes (what the router reads) takes it out.
                #expect(theirs.headers["authorization"].first.map(Self.trimmed) == mine.authorization, "\(shown)")
                #expect(theirs.headers["transfer-encoding"].isEmpty, "\(shown)")
            case (.head, _):
                Issue.record("the front accepted a head the codec \(codec): \(shown)")
            case (_, .refused):
                #expect(front == .notDirect, "the codec refuses it, the front \(front): \(shown)")
            case (.needMore, .head):
                Issue.record("the front waits for a head the codec has read: \(shown)")
            case (.needMore, .needMore), (.notDirect, .head), (.notDirect, .needMore):
                break
            }
        }
    }
}

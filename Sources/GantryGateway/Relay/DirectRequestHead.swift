import NIOCore

/// The head of a request the relay's front reads itself, ahead of Hummingbird's HTTP/1.1 codec:
/// `POST` to a relayed endpoint over HTTP/1.1, with a `Content-Length` body and nothing else that
/// needs HTTP machinery. Anything else (another method or path, HTTP/1.0, `Transfer-Encoding`,
/// `Expect`, `Upgrade`, folded or malformed lines, a head over `maxBytes`, a body over the
/// gateway's limit) is `notDirect`: the connection then goes to the codec unchanged, which
/// answers it (or rejects it) as it always did. The parse is strict on purpose, so it never
/// accepts what the codec would refuse.
struct DirectRequestHead: Equatable {
    var endpoint: InferenceEndpoint
    var path: String
    var authorization: String?
    var requestID: String?
    var contentLength: Int
    /// The client asked for the connection to close after this answer.
    var closeAfter: Bool
    /// Bytes of the head, up to and including its blank line.
    var length: Int

    enum Parsed: Equatable {
        /// The head is not whole yet.
        case needMore
        case notDirect
        case head(DirectRequestHead)
    }

    static let maxBytes = 8 * 1024

    static func parse(_ buffer: ByteBuffer, maxBodyBytes: Int) -> Parsed {
        buffer.withUnsafeReadableBytes { parse($0, maxBodyBytes: maxBodyBytes) }
    }

    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")
    private static let methodAndSlash = Array("POST /".utf8)
    private static let version = Array(" HTTP/1.1".utf8)

    static func parse(_ bytes: UnsafeRawBufferPointer, maxBodyBytes: Int) -> Parsed {
        // The method shows first: another one is the codec's at once, without waiting for the head.
        for index in 0..<min(bytes.count, methodAndSlash.count) where bytes[index] != methodAndSlash[index] {
            return .notDirect
        }
        let whole = HTTPHeadBytes.blankLine(in: bytes, limit: maxBytes) != nil
        // A head with a bare LF (or CR) never gets the CRLF CRLF looked for: waiting for more
        // held such a connection forever, unanswered. The codec decides what those mean.
        if !whole, bytes.count >= maxBytes || hasBareLineEnd(bytes) { return .notDirect }
        // A head not whole yet is read as far as it goes: a line the codec would refuse hands the
        // connection on now (the codec answers 400 at once), not when the rest arrives.
        let partial: Parsed = whole ? .notDirect : .needMore

        // The request line: POST, the target, HTTP/1.1.
        guard let lineEnd = endOfLine(bytes, from: 0) else {
            return isTargetSoFar(bytes) ? partial : .notDirect
        }
        guard lineEnd > methodAndSlash.count + version.count else { return .notDirect }
        let targetEnd = lineEnd - version.count
        for index in 0..<version.count where bytes[targetEnd + index] != version[index] { return .notDirect }
        let targetStart = methodAndSlash.count - 1
        for index in targetStart..<targetEnd where !(0x21...0x7E).contains(bytes[index]) { return .notDirect }
        let path = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[targetStart..<targetEnd]), as: UTF8.self)
        guard let endpoint = InferenceEndpoint(path: path) else { return .notDirect }

        var head = DirectRequestHead(
            endpoint: endpoint, path: path, authorization: nil, requestID: nil, contentLength: -1, closeAfter: false,
            length: 0)
        var sawHost = false
        var start = lineEnd + 2
        while true {
            guard let end = endOfLine(bytes, from: start) else {
                return HeaderLine.isNameSoFar(bytes, from: start) ? partial : .notDirect
            }
            if end == start {  // the blank line
                head.length = end + 2
                break
            }
            guard let field = HeaderLine(bytes, start: start, end: end) else { return .notDirect }
            start = end + 2
            switch field.known {
            case nil:
                continue
            case .contentLength:
                guard head.contentLength < 0, field.isPlainLength,
                    let value = HTTPHeadBytes.decimal(field.value, maxDigits: 10), value <= maxBodyBytes
                else { return .notDirect }
                head.contentLength = value
            case .host:
                guard !sawHost else { return .notDirect }
                sawHost = true
            case .authorization:
                guard head.authorization == nil else { return .notDirect }
                head.authorization = field.text
            case .requestID:
                guard head.requestID == nil else { return .notDirect }
                head.requestID = field.text
            case .connection:
                for token in field.value.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
                    let token = HTTPHeadBytes.trimmed(token)
                    if HTTPHeadBytes.equalsIgnoringCase(token, "close") { head.closeAfter = true }
                    if HTTPHeadBytes.equalsIgnoringCase(token, "upgrade") { return .notDirect }
                }
            case .transferEncoding, .expect, .upgrade:
                return .notDirect
            }
        }
        guard sawHost, head.contentLength >= 0 else { return .notDirect }
        return .head(head)
    }

    /// Whether the request line received so far (no line end yet) can still be one the front
    /// reads: the target's characters, up to the space before the version.
    private static func isTargetSoFar(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = methodAndSlash.count
        while index < bytes.count, bytes[index] != UInt8(ascii: " ") {
            guard (0x21...0x7E).contains(bytes[index]) else { return false }
            index += 1
        }
        return true
    }

    /// Whether a LF without a CR before it, or a CR followed by anything but LF, comes first in
    /// `bytes` (up to ``maxBytes``). A CR at the very end may still be followed by its LF.
    static func hasBareLineEnd(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let end = min(bytes.count, maxBytes)
        var index = 0
        while index < end {
            switch bytes[index] {
            case lf: return true
            case cr:
                guard index + 1 < end else { return false }
                if bytes[index + 1] != lf { return true }
                index += 2
            default: index += 1
            }
        }
        return false
    }

    /// The index of the CR of the CRLF ending the line at `start`; nil for a bare CR or LF
    /// (the codec decides what those mean) or no line end at all.
    private static func endOfLine(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        var index = start
        while index + 1 < bytes.count {
            switch bytes[index] {
            case cr: return bytes[index + 1] == lf ? index : nil
            case lf: return nil
            default: index += 1
            }
        }
        return nil
    }
}

/// One `name: value` line of a head, checked as the codec would: a token name, a value without
/// control characters, no folding.
private struct HeaderLine {
    enum Known {
        case contentLength, host, authorization, requestID, connection, transferEncoding, expect, upgrade
    }

    /// Without the spaces and tabs around it.
    let value: HTTPHeadBytes.Bytes
    let known: Known?
    /// Only spaces follow the value (llhttp refuses a `Content-Length` with a tab after its
    /// digits: found by the differential test against NIO's decoder).
    let isPlainLength: Bool

    init?(_ bytes: UnsafeRawBufferPointer, start: Int, end: Int) {
        var colon = start
        while colon < end, bytes[colon] != UInt8(ascii: ":") {
            guard HTTPHeadBytes.isTokenCharacter(bytes[colon]) else { return nil }  // also refuses folding's leading space
            colon += 1
        }
        guard colon < end, colon > start else { return nil }
        value = HTTPHeadBytes.trimmed(bytes[(colon + 1)..<end])
        isPlainLength = bytes[value.endIndex..<end].allSatisfy { $0 == UInt8(ascii: " ") }
        guard HTTPHeadBytes.isFieldValue(value) else { return nil }
        known = Self.known(bytes[start..<colon])
    }

    var text: String { String(decoding: value, as: UTF8.self) }

    /// Whether a header line received so far (no line end yet) can still be a field: token
    /// characters up to its colon, if it has one yet.
    static func isNameSoFar(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Bool {
        var index = start
        while index < bytes.count, bytes[index] != UInt8(ascii: ":") {
            // A CR is the line end arriving.
            guard HTTPHeadBytes.isTokenCharacter(bytes[index]) || (bytes[index] == UInt8(ascii: "\r") && index == bytes.count - 1)
            else { return false }
            index += 1
        }
        return true
    }

    private static let names: [(name: StaticString, known: Known)] = [
        ("content-length", .contentLength), ("host", .host), ("authorization", .authorization),
        ("x-request-id", .requestID), ("connection", .connection), ("transfer-encoding", .transferEncoding),
        ("expect", .expect), ("upgrade", .upgrade),
    ]

    private static func known(_ name: HTTPHeadBytes.Bytes) -> Known? {
        names.first { HTTPHeadBytes.equalsIgnoringCase(name, $0.name) }?.known
    }
}

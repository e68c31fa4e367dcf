import NIOCore

/// What the relay needs of an engine's response head; the rest of its fields are not relayed.
struct EngineResponseHead: Equatable {
    var status: Int
    var contentType: String?
    /// Whether the connection may carry another request after this answer.
    var keepAlive: Bool
}

enum EngineResponsePart: Equatable {
    case head(EngineResponseHead)
    case body(ByteBuffer)
    case end
}

struct EngineResponseError: Error, CustomStringConvertible {
    var description: String
}

/// A lean HTTP/1.1 response decoder for the relay's engine connections: finds the end of the
/// head, reads the four fields the relay uses (status, content-type, content-length or chunked,
/// connection) and passes body bytes on as slices of what was read. NIO's general decoder
/// (llhttp, then a dictionary of every header) was about a twentieth of the gateway's CPU at
/// full load, for answers whose heads the relay mostly discards.
struct EngineResponseDecoder: ByteToMessageDecoder {
    typealias InboundOut = EngineResponsePart

    /// A head or a chunk-size line longer than this is not an engine's: the connection fails.
    static let maxHeadBytes = 64 * 1024
    static let maxLineBytes = 4 * 1024

    private enum State {
        case head
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
    }

    private var state = State.head
    /// Whether bytes read after an answer ends, in the same read, fail the connection. The relay
    /// sends one request at a time and the next only after the answer ended, so such bytes were
    /// sent before the engine saw any next request: kept, they would be read as the next
    /// request's answer and could give one client another's. Off only to test pipelined framing.
    private let oneAnswerAtATime: Bool

    init(oneAnswerAtATime: Bool = true) {
        self.oneAnswerAtATime = oneAnswerAtATime
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        switch state {
        case .head:
            guard let headEnd = buffer.withUnsafeReadableBytes({ HTTPHeadBytes.blankLine(in: $0) }) else {
                if buffer.readableBytes > Self.maxHeadBytes {
                    throw EngineResponseError(description: "the engine's response head is over 64 KiB")
                }
                return .needMoreData
            }
            let headBytes = buffer.readSlice(length: headEnd + 4)!
            let parsed = try Self.parseHead(headBytes)
            // An interim answer (100 Continue) is followed by the real one.
            if parsed.status >= 100, parsed.status < 200 { return .continue }
            context.fireChannelRead(wrapInboundOut(.head(parsed.head)))
            if parsed.status == 204 || parsed.status == 304 {
                try finishMessage(context, rest: buffer)
            } else if parsed.chunked {
                state = .chunkSize
            } else if let length = parsed.contentLength {
                if length == 0 { try finishMessage(context, rest: buffer) } else { state = .fixed(remaining: length) }
            } else {
                state = .untilClose
            }
            return .continue

        case .fixed(let remaining):
            guard buffer.readableBytes > 0 else { return .needMoreData }
            let slice = buffer.readSlice(length: min(remaining, buffer.readableBytes))!
            context.fireChannelRead(wrapInboundOut(.body(slice)))
            if remaining == slice.readableBytes {
                try finishMessage(context, rest: buffer)
            } else {
                state = .fixed(remaining: remaining - slice.readableBytes)
            }
            return .continue

        case .chunkSize:
            guard let line = try Self.readLine(&buffer) else { return .needMoreData }
            let size = try Self.chunkSize(line)
            state = size == 0 ? .trailers : .chunkData(remaining: size)
            return .continue

        case .chunkData(let remaining):
            guard buffer.readableBytes > 0 else { return .needMoreData }
            let slice = buffer.readSlice(length: min(remaining, buffer.readableBytes))!
            context.fireChannelRead(wrapInboundOut(.body(slice)))
            state = remaining == slice.readableBytes ? .chunkDataEnd : .chunkData(remaining: remaining - slice.readableBytes)
            return .continue

        case .chunkDataEnd:
            guard let line = try Self.readLine(&buffer) else { return .needMoreData }
            guard line.readableBytes == 0 else { throw EngineResponseError(description: "a chunk does not end in CRLF") }
            state = .chunkSize
            return .continue

        case .trailers:
            // Trailer fields are not relayed; the empty line ends the answer.
            guard let line = try Self.readLine(&buffer) else { return .needMoreData }
            if line.readableBytes == 0 {
                try finishMessage(context, rest: buffer)
            } else if !Self.isFieldLine(line) {
                throw EngineResponseError(description: "a malformed trailer line")
            }
            return .continue

        case .untilClose:
            guard buffer.readableBytes > 0 else { return .needMoreData }
            context.fireChannelRead(wrapInboundOut(.body(buffer.readSlice(length: buffer.readableBytes)!)))
            return .continue
        }
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        while try decode(context: context, buffer: &buffer) == .continue {}
        switch state {
        case .untilClose:
            // The answer without a length ends where the connection does.
            try finishMessage(context, rest: buffer)
        case .head where buffer.readableBytes == 0:
            break
        default:
            // A cut answer: the exchange hears the connection close and fails the request.
            state = .head
        }
        return .needMoreData
    }

    /// Ends the answer; with ``oneAnswerAtATime``, bytes after it in this read fail the connection
    /// (after the answer was passed on, so the request it answered still completes).
    private mutating func finishMessage(_ context: ChannelHandlerContext, rest: ByteBuffer) throws {
        state = .head
        context.fireChannelRead(wrapInboundOut(.end))
        if oneAnswerAtATime, rest.readableBytes > 0 {
            throw EngineResponseError(description: "the engine sent \(rest.readableBytes) bytes after its answer")
        }
    }

    // MARK: Parsing

    struct ParsedHead {
        var head: EngineResponseHead
        var status: Int { head.status }
        var chunked: Bool
        var contentLength: Int?
    }

    static func parseHead(_ bytes: ByteBuffer) throws -> ParsedHead {
        try bytes.withUnsafeReadableBytes { raw -> ParsedHead in
            var lines = Lines(raw)
            guard let statusLine = lines.next() else { throw EngineResponseError(description: "an empty response head") }
            // "HTTP/1.1 200 OK": the version, a space, three digits.
            guard statusLine.count >= 12, statusLine.starts(with: "HTTP/1.".utf8), statusLine[statusLine.startIndex + 8] == 32
            else { throw EngineResponseError(description: "not an HTTP/1.x status line") }
            let minor = statusLine[statusLine.startIndex + 7]
            // HTTP/1.0 or 1.1 only, exactly three digits, then a space or the line's end; no control
            // bytes in the reason.
            guard minor == UInt8(ascii: "0") || minor == UInt8(ascii: "1"),
                statusLine.count == 12 || statusLine[statusLine.startIndex + 12] == 32,
                HTTPHeadBytes.isFieldValue(statusLine[(statusLine.startIndex + 12)...])
            else { throw EngineResponseError(description: "a malformed status line") }
            var status = 0
            for byte in statusLine[(statusLine.startIndex + 9)..<(statusLine.startIndex + 12)] {
                guard (48...57).contains(byte) else { throw EngineResponseError(description: "a malformed status code") }
                status = status * 10 + Int(byte - 48)
            }
            var head = EngineResponseHead(status: status, contentType: nil, keepAlive: minor == UInt8(ascii: "1"))
            var chunked = false
            var transferEncoding = false
            // `close` wins over `keep-alive`, wherever each is listed.
            var closes = false
            var contentLength: Int?
            while let line = lines.next(), !line.isEmpty {
                // As strict as NIO's decoder (the differential test holds it to that): a colon, a
                // token name, no space before the colon, no folding, no control bytes in the value.
                guard let (name, value) = HTTPHeadBytes.field(line) else {
                    throw EngineResponseError(description: "a malformed header line")
                }
                if HTTPHeadBytes.equalsIgnoringCase(name, "content-length") {
                    // A second length, even an equal one, is refused, as NIO's decoder refuses it.
                    guard let length = HTTPHeadBytes.decimal(value, maxDigits: 18), contentLength == nil else {
                        throw EngineResponseError(description: "a malformed or conflicting content-length")
                    }
                    contentLength = length
                } else if HTTPHeadBytes.equalsIgnoringCase(name, "transfer-encoding") {
                    transferEncoding = true
                    // Chunked when the last coding of the list, and of the last line, is exactly
                    // `chunked` ("xchunked" is not: found by the differential test).
                    let last = value.lastIndex(of: UInt8(ascii: ",")).map { value.index(after: $0) } ?? value.startIndex
                    chunked = HTTPHeadBytes.equalsIgnoringCase(HTTPHeadBytes.trimmed(value[last...]), "chunked")
                } else if HTTPHeadBytes.equalsIgnoringCase(name, "connection") {
                    for token in value.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: true) {
                        let token = HTTPHeadBytes.trimmed(token)
                        if HTTPHeadBytes.equalsIgnoringCase(token, "close") { closes = true }
                        if HTTPHeadBytes.equalsIgnoringCase(token, "keep-alive") { head.keepAlive = true }
                    }
                } else if HTTPHeadBytes.equalsIgnoringCase(name, "content-type") {
                    head.contentType = String(decoding: value, as: UTF8.self)
                }
            }
            // Both framings at once is how responses are smuggled (RFC 9112 6.3 lets a recipient
            // refuse it; NIO's decoder does): refused. A transfer coding that does not end in
            // chunked runs to the connection's close.
            if transferEncoding, contentLength != nil {
                throw EngineResponseError(description: "both transfer-encoding and content-length")
            }
            if closes || (!chunked && contentLength == nil) { head.keepAlive = false }
            return ParsedHead(head: head, chunked: chunked, contentLength: contentLength)
        }
    }

    /// Whether a line is a well-formed `name: value` field (trailers are checked, then dropped).
    static func isFieldLine(_ line: ByteBuffer) -> Bool {
        line.withUnsafeReadableBytes { HTTPHeadBytes.field($0[...]) != nil }
    }

    /// A line without its CRLF, or nil until the buffer holds one.
    static func readLine(_ buffer: inout ByteBuffer) throws -> ByteBuffer? {
        let end = buffer.withUnsafeReadableBytes { raw -> Int? in
            var index = 1
            while index < raw.count {
                if raw[index] == 10, raw[index - 1] == 13 { return index - 1 }
                index += 1
            }
            return nil
        }
        guard let end else {
            if buffer.readableBytes > maxLineBytes { throw EngineResponseError(description: "a chunk line over 4 KiB") }
            return nil
        }
        let line = buffer.readSlice(length: end)!
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }

    /// A chunk-size line: hexadecimal digits, then optional extensions after ";", nothing else.
    static func chunkSize(_ line: ByteBuffer) throws -> Int {
        var size = 0
        var digits = 0
        for byte in line.readableBytesView {
            let digit: Int
            switch byte {
            case 48...57: digit = Int(byte - 48)
            case 97...102: digit = Int(byte - 87)
            case 65...70: digit = Int(byte - 55)
            case UInt8(ascii: ";"):
                // Extensions are skipped, but only in their plain form (NIO's decoder refuses
                // "1; a=b" and "1 ;a", and names or values that are not tokens: "1;/a", `1;a"b"`).
                guard digits > 0, isChunkExtensions(line.readableBytesView.dropFirst(digits)) else {
                    throw EngineResponseError(description: "a malformed chunk size")
                }
                return size
            default: throw EngineResponseError(description: "a malformed chunk size")
            }
            digits += 1
            guard digits <= 15 else { throw EngineResponseError(description: "a chunk size out of range") }
            size = size * 16 + digit
        }
        guard digits > 0 else { throw EngineResponseError(description: "a malformed chunk size") }
        return size
    }

    /// `;name[=value]` repeated, with no whitespace: a name is a token, a value a token or a
    /// quoted string (RFC 9112 7.1.1). Anything else is refused, stricter than needed rather than
    /// looser than NIO's decoder.
    static func isChunkExtensions(_ bytes: ByteBufferView.SubSequence) -> Bool {
        var index = bytes.startIndex
        func token() -> Bool {
            let start = index
            while index < bytes.endIndex, HTTPHeadBytes.isTokenCharacter(bytes[index]) { index += 1 }
            return index > start
        }
        while index < bytes.endIndex {
            guard bytes[index] == UInt8(ascii: ";") else { return false }
            index += 1
            guard token() else { return false }
            guard index < bytes.endIndex, bytes[index] == UInt8(ascii: "=") else { continue }
            index += 1
            if index < bytes.endIndex, bytes[index] == UInt8(ascii: "\"") {
                index += 1
                var closed = false
                while index < bytes.endIndex {
                    let byte = bytes[index]
                    index += 1
                    if byte == UInt8(ascii: "\"") {
                        closed = true
                        break
                    }
                    // Tab, space and visible bytes only; a backslash quotes the next of those.
                    if byte == UInt8(ascii: "\\") {
                        guard index < bytes.endIndex, bytes[index] == 9 || (0x20...0x7E).contains(bytes[index]) else {
                            return false
                        }
                        index += 1
                    } else if !(byte == 9 || (0x20...0x7E).contains(byte)) {
                        return false
                    }
                }
                guard closed else { return false }
            } else if !token() {
                return false
            }
        }
        return true
    }

    /// The CRLF-separated lines of a head.
    struct Lines {
        let raw: UnsafeRawBufferPointer
        var position = 0

        init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }

        mutating func next() -> UnsafeRawBufferPointer.SubSequence? {
            guard position < raw.count else { return nil }
            var index = position
            while index + 1 < raw.count, !(raw[index] == 13 && raw[index + 1] == 10) { index += 1 }
            guard index + 1 < raw.count else { return nil }
            let line = raw[position..<index]
            position = index + 2
            return line
        }
    }
}

import Foundation
import NIOCore

/// Tokens an engine reported in an answer's `usage` object.
public struct TokenUsage: Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int

    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }

    /// Reads the `"usage":{...}` object of a JSON answer without decoding the rest: only the
    /// object's bytes are parsed. Nil when there is none.
    static func find(in bytes: UnsafeRawBufferPointer) -> TokenUsage? {
        // From the end: engines (and OpenAI) put `usage` after `choices`, and a forward search
        // for a key that starts with `"` stops at every string of the answer on the way. A JSON
        // string cannot hold these bytes (its quotes are escaped), so the match is a key.
        guard let start = ByteSearch.findLast(Self.key, in: bytes) else { return nil }
        var index = start + Self.key.count
        while index < bytes.count, bytes[index] == UInt8(ascii: " ") { index += 1 }
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
        // The object's end: braces balanced outside strings.
        var depth = 0
        var inString = false
        var escaped = false
        var end = index
        while end < bytes.count {
            let byte = bytes[end]
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else if byte == UInt8(ascii: "{") {
                depth += 1
            } else if byte == UInt8(ascii: "}") {
                depth -= 1
                if depth == 0 { break }
            }
            end += 1
        }
        guard end < bytes.count else { return nil }
        let object = UnsafeRawBufferPointer(rebasing: bytes[index...end])
        return TokenUsage(
            promptTokens: integer(after: Self.promptKey, in: object) ?? 0,
            completionTokens: integer(after: Self.completionKey, in: object) ?? 0)
    }

    /// The non-negative integer value of `"key":` in a JSON object's bytes (nested objects such
    /// as `prompt_tokens_details` hold other keys, so the first match is the object's own).
    static func integer(after key: [UInt8], in object: UnsafeRawBufferPointer) -> Int? {
        guard let found = ByteSearch.find(key, in: object) else { return nil }
        var index = found + key.count
        while index < object.count, object[index] == UInt8(ascii: " ") || object[index] == UInt8(ascii: ":") { index += 1 }
        var value = 0
        var digits = 0
        while index < object.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(object[index]), digits < 18 {
            value = value * 10 + Int(object[index] - UInt8(ascii: "0"))
            digits += 1
            index += 1
        }
        return digits > 0 ? value : nil
    }

    static let promptKey = Array(#""prompt_tokens""#.utf8)
    static let completionKey = Array(#""completion_tokens""#.utf8)

    static func find(in buffer: ByteBuffer) -> TokenUsage? {
        buffer.withUnsafeReadableBytes { find(in: $0) }
    }

    static let key = Array(#""usage":"#.utf8)
}

/// Substring search over raw bytes (`memmem`).
enum ByteSearch {
    /// The first occurrence. memchr (vectorised) looks for the needle's least common byte, then
    /// memcmp checks the whole needle there (Glibc's module does not export memmem). Looking for
    /// the first byte instead, `"` of a JSON key, stopped at every string of an SSE chunk.
    static func find(_ needle: [UInt8], in haystack: UnsafeRawBufferPointer) -> Int? {
        guard let base = haystack.baseAddress, !needle.isEmpty, haystack.count >= needle.count else { return nil }
        let anchor = anchorIndex(of: needle)
        let anchorByte = Int32(needle[anchor])
        // The anchor of the last possible start.
        let lastAnchor = haystack.count - needle.count + anchor
        var from = anchor
        return needle.withUnsafeBytes { pattern -> Int? in
            while from <= lastAnchor {
                guard let hit = memchr(base + from, anchorByte, lastAnchor - from + 1) else { return nil }
                let at = base.distance(to: UnsafeRawPointer(hit))
                if memcmp(base + (at - anchor), pattern.baseAddress!, needle.count) == 0 { return at - anchor }
                from = at + 1
            }
            return nil
        }
    }

    /// Bytes by how often they appear in JSON answers and English text, most often first.
    private static let commonBytes = Array(#""e tao:insr,hldcu{}mfp0123456789gwyb_vk[].xjqz"#.utf8)
    private static let rank: [UInt8] = {
        var rank = [UInt8](repeating: UInt8.max, count: 256)
        for (index, byte) in commonBytes.enumerated() { rank[Int(byte)] = UInt8(index) }
        return rank
    }()

    /// The position in `needle` of its least common byte (the first of equals).
    static func anchorIndex(of needle: [UInt8]) -> Int {
        var best = 0
        for index in needle.indices where rank[Int(needle[index])] > rank[Int(needle[best])] { best = index }
        return best
    }

    /// The last occurrence: a backward scan for the needle's last byte, then a compare.
    static func findLast(_ needle: [UInt8], in haystack: UnsafeRawBufferPointer) -> Int? {
        guard let base = haystack.baseAddress, let final = needle.last, haystack.count >= needle.count else { return nil }
        return needle.withUnsafeBytes { pattern -> Int? in
            var end = haystack.count - 1
            while end >= needle.count - 1 {
                if haystack[end] == final {
                    let start = end - (needle.count - 1)
                    if memcmp(base + start, pattern.baseAddress!, needle.count) == 0 { return start }
                }
                end -= 1
            }
            return nil
        }
    }

    static func contains(_ needle: [UInt8], in buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { find(needle, in: $0) != nil }
    }
}

/// Watches a server-sent event stream as it is relayed: finds the engine's usage chunk (an event
/// with `"usage":{`) and, when the caller did not ask for usage, removes that chunk if it carries
/// no choices. Bytes go on at once; only an event split across reads is held until it is whole.
struct StreamMeter {
    let stripUsage: Bool
    private(set) var usage: TokenUsage?
    /// The start of an event whose end has not arrived yet.
    private var partial: ByteBuffer?

    init(stripUsage: Bool) {
        self.stripUsage = stripUsage
    }

    static let usageObject = Array(#""usage":{"#.utf8)
    static let noChoices = Array(#""choices":[]"#.utf8)
    /// Bytes held while waiting for an event's end; past this they go on unexamined (an engine
    /// that never ends events must still stream, and the hold must not grow without bound).
    static let maxHeld = 64 * 1024

    /// Where the first event at or after `start` ends (just past its blank line: `\n\n`, or
    /// `\r\n\r\n` from servers that write CRLF), in one pass: the first blank line to start at a
    /// position also ends first, since the two cannot overlap.
    static func nextEventEnd(in raw: UnsafeRawBufferPointer, from start: Int = 0) -> Int? {
        let newline = UInt8(ascii: "\n")
        let carriageReturn = UInt8(ascii: "\r")
        var index = start
        while index + 1 < raw.count {
            if raw[index] == newline, raw[index + 1] == newline { return index + 2 }
            if raw[index] == carriageReturn, index + 3 < raw.count, raw[index + 1] == newline,
                raw[index + 2] == carriageReturn, raw[index + 3] == newline
            {
                return index + 4
            }
            index += 1
        }
        return nil
    }

    /// Where the last complete event in `raw` ends: just past the last blank line, found from
    /// the end (where it usually is) rather than by walking every event from the start.
    static func lastEventEnd(in raw: UnsafeRawBufferPointer) -> Int? {
        let newline = UInt8(ascii: "\n")
        var index = raw.count - 1
        while index >= 1 {
            if raw[index] == newline {
                if raw[index - 1] == newline { return index + 1 }
                if index >= 3, raw[index - 1] == UInt8(ascii: "\r"), raw[index - 2] == newline,
                    raw[index - 3] == UInt8(ascii: "\r")
                {
                    return index + 1
                }
            }
            index -= 1
        }
        return nil
    }

    /// Takes the next bytes from the engine and returns what to send to the caller now.
    mutating func relay(_ chunk: ByteBuffer) -> ByteBuffer {
        var bytes: ByteBuffer
        if var held = partial {
            held.writeImmutableBuffer(chunk)
            bytes = held
            partial = nil
        } else {
            bytes = chunk
        }
        // Everything up to the last complete event goes now; the rest waits for its end.
        let lastEnd = bytes.withUnsafeReadableBytes { Self.lastEventEnd(in: $0) }
        guard let lastEnd else {
            if bytes.readableBytes > Self.maxHeld { return bytes }
            partial = bytes
            return ByteBuffer()
        }
        if lastEnd < bytes.readableBytes {
            partial = bytes.getSlice(at: bytes.readerIndex + lastEnd, length: bytes.readableBytes - lastEnd)
            bytes = bytes.getSlice(at: bytes.readerIndex, length: lastEnd)!
        }
        // The common event has no usage: pass the bytes on untouched.
        guard ByteSearch.contains(Self.usageObject, in: bytes) else { return bytes }
        return filterEvents(bytes)
    }

    /// What is left when the engine's stream ends (an event without its final blank line).
    mutating func finish() -> ByteBuffer {
        defer { partial = nil }
        guard let partial else { return ByteBuffer() }
        if let found = TokenUsage.find(in: partial) { usage = found }
        return partial
    }

    /// Reads the usage of each event that carries one and drops it when it is the usage-only
    /// chunk the gateway asked for. Only those events are cut out: the bytes around them are
    /// copied as they are, not walked event by event.
    private mutating func filterEvents(_ bytes: ByteBuffer) -> ByteBuffer {
        var output = ByteBuffer()
        output.reserveCapacity(bytes.readableBytes)
        var rest = bytes
        while let at = rest.withUnsafeReadableBytes({ ByteSearch.find(Self.usageObject, in: $0) }) {
            // The event holding it: from the end of the event before it to its own end.
            let (start, end) = rest.withUnsafeReadableBytes { raw in
                (
                    Self.lastEventEnd(in: UnsafeRawBufferPointer(rebasing: raw[..<at])) ?? 0,
                    Self.nextEventEnd(in: raw, from: at) ?? raw.count
                )
            }
            output.writeImmutableBuffer(rest.readSlice(length: start)!)
            let event = rest.readSlice(length: end - start)!
            if let found = TokenUsage.find(in: event) { usage = found }
            if !(stripUsage && ByteSearch.contains(Self.noChoices, in: event)) { output.writeImmutableBuffer(event) }
        }
        output.writeImmutableBuffer(rest)
        return output
    }
}

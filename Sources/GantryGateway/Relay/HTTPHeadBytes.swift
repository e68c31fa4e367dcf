/// Byte-level pieces of HTTP/1.1 heads that both of the relay's own readers use: the request
/// heads its front reads (`DirectRequestHead`) and engines' response heads
/// (`EngineResponseDecoder`).
enum HTTPHeadBytes {
    typealias Bytes = UnsafeRawBufferPointer.SubSequence

    /// Where the blank line (CR LF CR LF) that ends a head starts, if it ends within the first
    /// `limit` bytes.
    static func blankLine(in raw: UnsafeRawBufferPointer, limit: Int = .max) -> Int? {
        let end = min(raw.count, limit)
        var index = 3
        while index < end {
            // Step by the last byte of the pattern: most bytes are not "\n".
            if raw[index] == 10, raw[index - 1] == 13, raw[index - 2] == 10, raw[index - 3] == 13 { return index - 3 }
            index += raw[index] == 10 ? 1 : (raw[index] == 13 ? 1 : 2)
        }
        return nil
    }

    /// Without the spaces and tabs around it.
    static func trimmed(_ bytes: Bytes) -> Bytes {
        var start = bytes.startIndex
        var end = bytes.endIndex
        while start < end, bytes[start] == 32 || bytes[start] == 9 { start += 1 }
        while end > start, bytes[end - 1] == 32 || bytes[end - 1] == 9 { end -= 1 }
        return bytes[start..<end]
    }

    /// Decimal digits only, at least one and at most `maxDigits`.
    static func decimal(_ bytes: Bytes, maxDigits: Int) -> Int? {
        guard !bytes.isEmpty, bytes.count <= maxDigits else { return nil }
        var value = 0
        for byte in bytes {
            guard (48...57).contains(byte) else { return nil }
            value = value * 10 + Int(byte - 48)
        }
        return value
    }

    private static func lower(_ byte: UInt8) -> UInt8 { (65...90).contains(byte) ? byte | 0x20 : byte }

    static func equalsIgnoringCase(_ bytes: Bytes, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        let expected = UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        return zip(bytes, expected).allSatisfy { lower($0) == $1 }
    }

    /// RFC 9110's tchar: what a field name is made of.
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// A `name: value` line split at its colon, with the value trimmed; nil unless the name is one
    /// or more token characters (so no space before the colon, and no folding) and the value a
    /// field value.
    static func field(_ line: Bytes) -> (name: Bytes, value: Bytes)? {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        let name = line[line.startIndex..<colon]
        let value = trimmed(line[(colon + 1)...])
        guard !name.isEmpty, name.allSatisfy(isTokenCharacter), isFieldValue(value) else { return nil }
        return (name, value)
    }

    /// A field value as llhttp takes it: no control characters but the tab.
    static func isFieldValue(_ bytes: Bytes) -> Bool {
        !bytes.contains { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }
    }
}

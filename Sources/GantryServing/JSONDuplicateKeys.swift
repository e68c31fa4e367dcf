import NIOCore

/// Finds an object key given twice in one object, at any depth, comparing keys as a JSON parser
/// reads them (escapes resolved: `"max_tokens"` and `"max\u005ftokens"` are the same key).
///
/// Why: parsers disagree on duplicates. llama.cpp's and vLLM's keep the last value, the gateway's
/// scanner refused to guess, and `JSONDecoder` keeps one of them; a body with `max_tokens` twice
/// was metered for one value and generated for the other. The gateway refuses such bodies
/// instead (400 `duplicate_key`), so every reader sees one value.
enum JSONDuplicateKeys {
    /// The first duplicated key, or nil when there is none or the bytes are not JSON this reader
    /// understands (then the decoder's own error is the answer).
    static func first(in buffer: ByteBuffer) -> String? {
        buffer.withUnsafeReadableBytes { raw in
            var reader = Reader(bytes: raw)
            reader.skipSpace()
            guard case .some(let found) = reader.value(depth: 0) else { return nil }
            return found
        }
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var index = 0
        /// Foundation's JSONDecoder refuses deeper documents anyway.
        static let maxDepth = 512

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipSpace() {
            while let byte = peek, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            index += 1
            return true
        }

        /// One value: `.some(key)` at the first duplicate, `.some(nil)` when read without one,
        /// nil when the bytes are not JSON.
        mutating func value(depth: Int) -> String?? {
            guard depth < Self.maxDepth, let byte = peek else { return nil }
            switch byte {
            case UInt8(ascii: "{"):
                index += 1
                var keys = Set<String>()
                skipSpace()
                if take(UInt8(ascii: "}")) { return .some(nil) }
                repeat {
                    skipSpace()
                    guard let key = string() else { return nil }
                    if !keys.insert(key).inserted { return .some(key) }
                    skipSpace()
                    guard take(UInt8(ascii: ":")) else { return nil }
                    skipSpace()
                    guard let inner = value(depth: depth + 1) else { return nil }
                    if inner != nil { return inner }
                    skipSpace()
                } while take(UInt8(ascii: ","))
                return take(UInt8(ascii: "}")) ? .some(nil) : nil
            case UInt8(ascii: "["):
                index += 1
                skipSpace()
                if take(UInt8(ascii: "]")) { return .some(nil) }
                repeat {
                    skipSpace()
                    guard let inner = value(depth: depth + 1) else { return nil }
                    if inner != nil { return inner }
                    skipSpace()
                } while take(UInt8(ascii: ","))
                return take(UInt8(ascii: "]")) ? .some(nil) : nil
            case UInt8(ascii: "\""):
                return string() == nil ? nil : .some(nil)
            default:
                // Numbers and literals: their exact form is the decoder's to check.
                let start = index
                while let next = peek, !",]} \n\r\t".utf8.contains(next) { index += 1 }
                return index > start ? .some(nil) : nil
            }
        }

        /// A string, decoded.
        mutating func string() -> String? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            var scalars = String.UnicodeScalarView()
            var start = index
            func flush(_ reader: Reader, _ end: Int) -> Bool {
                guard end > start else { return true }
                guard let text = String(validating: UnsafeRawBufferPointer(rebasing: reader.bytes[start..<end]), as: UTF8.self)
                else { return false }
                scalars.append(contentsOf: text.unicodeScalars)
                return true
            }
            while let byte = peek {
                switch byte {
                case UInt8(ascii: "\""):
                    guard flush(self, index) else { return nil }
                    index += 1
                    return String(scalars)
                case UInt8(ascii: "\\"):
                    guard flush(self, index) else { return nil }
                    index += 1
                    guard let escape = peek else { return nil }
                    index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"):
                        scalars.append(Unicode.Scalar(escape))
                    case UInt8(ascii: "b"): scalars.append("\u{08}")
                    case UInt8(ascii: "f"): scalars.append("\u{0C}")
                    case UInt8(ascii: "n"): scalars.append("\n")
                    case UInt8(ascii: "r"): scalars.append("\r")
                    case UInt8(ascii: "t"): scalars.append("\t")
                    case UInt8(ascii: "u"):
                        guard var unit = hexUnit() else { return nil }
                        if (0xD800...0xDBFF).contains(unit) {
                            guard take(UInt8(ascii: "\\")), take(UInt8(ascii: "u")), let low = hexUnit(),
                                (0xDC00...0xDFFF).contains(low)
                            else { return nil }
                            unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let scalar = Unicode.Scalar(unit) else { return nil }
                        scalars.append(scalar)
                    default:
                        return nil
                    }
                    start = index
                default:
                    guard byte >= 0x20 else { return nil }
                    index += 1
                }
            }
            return nil
        }

        mutating func hexUnit() -> UInt32? {
            guard index + 4 <= bytes.count else { return nil }
            var value: UInt32 = 0
            for _ in 0..<4 {
                guard let digit = Self.hex(bytes[index]) else { return nil }
                value = value << 4 | UInt32(digit)
                index += 1
            }
            return value
        }

        static func hex(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
    }
}

import NIOCore

/// The keys of a JSON body as a JSON parser reads them (escapes resolved: `"max_tokens"` and
/// `"max\u005ftokens"` are the same key): the top-level ones, and the first key given twice in
/// one object at any depth. For the bodies the one-pass scanner leaves to `JSONDecoder`, which
/// reports neither.
///
/// Why duplicates matter: parsers disagree on them. llama.cpp's and vLLM's keep the last value,
/// `JSONDecoder` keeps one of them; a body with `max_tokens` twice was metered for one value and
/// generated for the other. The gateway refuses such bodies (400 `duplicate_key`).
struct JSONKeys {
    var topLevel: [String] = []
    var duplicate: String?

    /// Nil when the bytes are not one JSON value this reader understands.
    static func read(_ buffer: ByteBuffer) -> JSONKeys? {
        buffer.withUnsafeReadableBytes { raw in
            var reader = Reader(bytes: raw)
            reader.skipSpace()
            let parsed = reader.value(depth: 0)
            if let duplicate = reader.keys.duplicate { return JSONKeys(duplicate: duplicate) }
            reader.skipSpace()
            return parsed && reader.index == raw.count ? reader.keys : nil
        }
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var index = 0
        var keys = JSONKeys()
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

        /// Reads one value; false when the bytes are not JSON, or at the first duplicate key.
        mutating func value(depth: Int) -> Bool {
            guard depth < Self.maxDepth, let byte = peek else { return false }
            switch byte {
            case UInt8(ascii: "{"):
                index += 1
                var seen = Set<String>()
                return items(closedBy: UInt8(ascii: "}")) { reader in
                    guard let key = reader.key() else { return false }
                    guard seen.insert(key).inserted else {
                        reader.keys.duplicate = key
                        return false
                    }
                    if depth == 0 { reader.keys.topLevel.append(key) }
                    reader.skipSpace()
                    guard reader.take(UInt8(ascii: ":")) else { return false }
                    reader.skipSpace()
                    return reader.value(depth: depth + 1)
                }
            case UInt8(ascii: "["):
                index += 1
                return items(closedBy: UInt8(ascii: "]")) { $0.value(depth: depth + 1) }
            case UInt8(ascii: "\""):
                return skipString()
            default:
                // Numbers and literals: their exact form is the decoder's to check.
                let start = index
                while let next = peek, !",]} \n\r\t".utf8.contains(next) { index += 1 }
                return index > start
            }
        }

        /// The comma-separated items of an object or list whose opening bracket was read.
        mutating func items(closedBy close: UInt8, _ item: (inout Reader) -> Bool) -> Bool {
            skipSpace()
            if take(close) { return true }
            repeat {
                skipSpace()
                guard item(&self) else { return false }
                skipSpace()
            } while take(UInt8(ascii: ","))
            return take(close)
        }

        /// A string that is not a key: only its end matters here.
        mutating func skipString() -> Bool {
            guard take(UInt8(ascii: "\"")) else { return false }
            while let byte = peek {
                index += 1
                if byte == UInt8(ascii: "\"") { return true }
                if byte == UInt8(ascii: "\\") { index += 1 }
            }
            return false
        }

        /// A key, decoded.
        mutating func key() -> String? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            var scalars = String.UnicodeScalarView()
            var start = index
            // Appends the raw bytes since `start`, which must be valid UTF-8.
            func flush(_ reader: Reader) -> Bool {
                guard reader.index > start else { return true }
                let raw = UnsafeRawBufferPointer(rebasing: reader.bytes[start..<reader.index])
                guard let text = String(validating: raw, as: UTF8.self) else { return false }
                scalars.append(contentsOf: text.unicodeScalars)
                return true
            }
            while let byte = peek {
                switch byte {
                case UInt8(ascii: "\""):
                    guard flush(self) else { return nil }
                    index += 1
                    return String(scalars)
                case UInt8(ascii: "\\"):
                    guard flush(self), let scalar = escape() else { return nil }
                    scalars.append(scalar)
                    start = index
                default:
                    guard byte >= 0x20 else { return nil }
                    index += 1
                }
            }
            return nil
        }

        /// The character an escape (at its backslash) stands for.
        mutating func escape() -> Unicode.Scalar? {
            index += 1
            guard let escape = peek else { return nil }
            index += 1
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): return Unicode.Scalar(escape)
            case UInt8(ascii: "b"): return "\u{08}"
            case UInt8(ascii: "f"): return "\u{0C}"
            case UInt8(ascii: "n"): return "\n"
            case UInt8(ascii: "r"): return "\r"
            case UInt8(ascii: "t"): return "\t"
            case UInt8(ascii: "u"):
                guard var unit = hexUnit() else { return nil }
                if (0xD800...0xDBFF).contains(unit) {
                    guard take(UInt8(ascii: "\\")), take(UInt8(ascii: "u")), let low = hexUnit(), (0xDC00...0xDFFF).contains(low)
                    else { return nil }
                    unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                }
                return Unicode.Scalar(unit)
            default:
                return nil
            }
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

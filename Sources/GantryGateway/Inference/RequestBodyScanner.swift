import NIOCore

/// Reads the fields the data plane needs from a request body in one pass over its bytes, with
/// the same results as decoding `InferenceRequest.Fields` with `JSONDecoder` (measured: the
/// decoder was the largest single cost of a relayed request).
///
/// It is strict and gives up (nil) on anything it is not sure of: invalid JSON, a field of the
/// wrong type, a duplicate field, an escaped key or model name, a lone surrogate, invalid UTF-8,
/// a number that is not a plain integer where one is expected, deep nesting. The caller then
/// decodes with `JSONDecoder`, which produces the exact error or result.
struct RequestBodyScanner {
    private let bytes: UnsafeRawBufferPointer
    private var index = 0
    /// A key the scanner saw twice in one object: the body is refused, not decoded.
    private var duplicate: String?
    static let maxDepth = 64

    private init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    enum Scan {
        case fields(InferenceRequest.Fields)
        /// A key given twice in one object (a plain, unescaped key; escaped ones are `unsure`).
        case duplicate(String)
        /// Left to the decoder.
        case unsure
    }

    static func scan(_ buffer: ByteBuffer) -> Scan {
        buffer.withUnsafeReadableBytes { raw in
            var scanner = RequestBodyScanner(raw)
            if let fields = scanner.topLevel() { return .fields(fields) }
            return scanner.duplicate.map { .duplicate($0) } ?? .unsure
        }
    }

    static func fields(of buffer: ByteBuffer) -> InferenceRequest.Fields? {
        if case .fields(let fields) = scan(buffer) { return fields }
        return nil
    }

    private mutating func topLevel() -> InferenceRequest.Fields? {
        var fields = InferenceRequest.Fields()
        var seen = Set<String>()
        skipSpace()
        guard take(UInt8(ascii: "{")) else { return nil }
        skipSpace()
        if !take(UInt8(ascii: "}")) {
            repeat {
                guard let key = memberKey() else { return nil }
                guard readField(key, into: &fields, seen: &seen) else { return nil }
                skipSpace()
            } while take(UInt8(ascii: ","))
            guard take(UInt8(ascii: "}")) else { return nil }
        }
        skipSpace()
        return index == bytes.count ? fields : nil
    }

    /// The top-level fields `Fields` holds (made once, not per field read).
    static let knownFields: Set<String> = [
        "model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", "messages", "tools", "prompt", "input",
    ]

    /// One top-level field: the ones `Fields` holds are typed, the rest only validated.
    private mutating func readField(_ key: String, into fields: inout InferenceRequest.Fields, seen: inout Set<String>) -> Bool {
        guard seen.insert(key).inserted else {
            duplicate = key
            return false
        }
        fields.noteTopLevelKey(key)
        if Self.knownFields.contains(key) {
            if takeNull() { return true }  // an explicit null decodes as absent
        }
        switch key {
        case "model":
            guard let model = plainString() else { return false }
            fields.model = model
        case "stream":
            guard let value = boolean() else { return false }
            fields.stream = value
        case "stream_options":
            guard let includeUsage = streamOptions() else { return false }
            fields.stream_options = InferenceRequest.StreamOptions(include_usage: includeUsage)
        case "max_tokens", "max_completion_tokens", "n":
            guard let value = integer() else { return false }
            let field: WritableKeyPath<InferenceRequest.Fields, Int?> =
                key == "n" ? \.n : key == "max_tokens" ? \.max_tokens : \.max_completion_tokens
            fields[keyPath: field] = value
        case "messages":
            guard peek == UInt8(ascii: "["), let items = arrayItems() else { return false }
            fields.messages = items.map { InferenceRequest.ChatMessage(weight: $0) }
        case "tools":
            // A list of objects (`InferenceRequest.ToolList`).
            guard let weight = listOfObjects(depth: 1) else { return false }
            fields.tools = InferenceRequest.ToolList(weight: weight)
        case "prompt":
            guard let weight = weight(depth: 1) else { return false }
            fields.prompt = weight
        case "input":
            guard let weight = weight(depth: 1) else { return false }
            fields.input = weight
        default:
            return weight(depth: 1) != nil
        }
        return true
    }

    /// `{"include_usage": bool|null, ...}`: the flag, nil-as-false kept apart by `Bool??`.
    private mutating func streamOptions() -> Bool?? {
        guard take(UInt8(ascii: "{")) else { return nil }
        var includeUsage: Bool?
        var seenFlag = false
        skipSpace()
        if take(UInt8(ascii: "}")) { return .some(nil) }
        repeat {
            guard let key = memberKey() else { return nil }
            if key == "include_usage" {
                guard !seenFlag else {
                    duplicate = key
                    return nil
                }
                seenFlag = true
                if !takeNull() {
                    guard let value = boolean() else { return nil }
                    includeUsage = value
                }
            } else if weight(depth: 2) == nil {
                return nil
            }
            skipSpace()
        } while take(UInt8(ascii: ","))
        guard take(UInt8(ascii: "}")) else { return nil }
        return .some(includeUsage)
    }

    /// The elements of an array, each weighed as `TextWeight` decodes it.
    private mutating func arrayItems() -> [TextWeight]? {
        guard take(UInt8(ascii: "[")) else { return nil }
        var items: [TextWeight] = []
        skipSpace()
        if take(UInt8(ascii: "]")) { return items }
        repeat {
            skipSpace()
            guard let item = message() else { return nil }
            items.append(item)
            skipSpace()
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "]")) ? items : nil
    }

    /// One chat message, weighed as `TextWeight` does, when the schema allows it
    /// (`InferenceRequest.ChatMessage`): an object with a known `role` and a `content` that is a
    /// string, null or a list of objects. Anything else is the decoder's to name.
    private mutating func message() -> TextWeight? {
        guard take(UInt8(ascii: "{")) else { return nil }
        var total = 0
        var keys = Set<String>()
        skipSpace()
        if take(UInt8(ascii: "}")) { return nil }  // no role
        repeat {
            guard let key = memberKey() else { return nil }
            guard keys.insert(key).inserted else {
                duplicate = key
                return nil
            }
            switch key {
            case "role":
                guard let role = plainString(), InferenceRequest.ChatMessage.roles.contains(role) else { return nil }
                total += role.utf8.count
            case "content" where peek == UInt8(ascii: "["):
                guard let weight = listOfObjects(depth: 3) else { return nil }
                total += weight.bytes
            case "content":
                guard peek == UInt8(ascii: "\"") || peek == UInt8(ascii: "n"), let weight = weight(depth: 3) else { return nil }
                total += weight.bytes
            default:
                guard let weight = weight(depth: 3) else { return nil }
                total += weight.bytes
            }
            skipSpace()
        } while take(UInt8(ascii: ","))
        guard take(UInt8(ascii: "}")), keys.contains("role") else { return nil }
        return TextWeight(bytes: total, parts: 1)
    }

    /// A list whose items are all objects, weighed as `TextWeight` weighs a list.
    private mutating func listOfObjects(depth: Int) -> TextWeight? {
        peek == UInt8(ascii: "[") ? list(depth: depth, objectsOnly: true) : nil
    }

    /// The list at `index` (its `[`), weighed: the sum of its items, one part each. With
    /// `objectsOnly`, an item that is not an object makes it nil.
    private mutating func list(depth: Int, objectsOnly: Bool) -> TextWeight? {
        index += 1
        var total = 0
        var parts = 0
        var texts = 0
        skipSpace()
        if take(UInt8(ascii: "]")) { return TextWeight(bytes: 0, parts: 0, kind: .list(texts: 0)) }
        repeat {
            skipSpace()
            if objectsOnly, peek != UInt8(ascii: "{") { return nil }
            guard let item = weight(depth: depth + 1) else { return nil }
            total += item.bytes
            parts += 1
            if item.isTextOrList { texts += 1 }
            skipSpace()
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "]")) ? TextWeight(bytes: total, parts: parts, kind: .list(texts: texts)) : nil
    }

    /// Any JSON value weighed as `TextWeight` does: decoded UTF-8 bytes of every string, one per
    /// number or boolean; parts are an array's elements, 1 for anything else, 0 for null.
    private mutating func weight(depth: Int) -> TextWeight? {
        guard depth <= Self.maxDepth, let byte = peek else { return nil }
        switch byte {
        case UInt8(ascii: "\""):
            guard let length = stringLength() else { return nil }
            return TextWeight(bytes: length, parts: 1, kind: .text)
        case UInt8(ascii: "["):
            return list(depth: depth, objectsOnly: false)
        case UInt8(ascii: "{"):
            index += 1
            var total = 0
            var keys = Set<String>()
            skipSpace()
            if take(UInt8(ascii: "}")) { return TextWeight(bytes: 0, parts: 1) }
            repeat {
                // Keys are not weighed, but a duplicate is refused.
                guard let key = memberKey() else { return nil }
                guard keys.insert(key).inserted else {
                    duplicate = key
                    return nil
                }
                guard let item = weight(depth: depth + 1) else { return nil }
                total += item.bytes
                skipSpace()
            } while take(UInt8(ascii: ","))
            return take(UInt8(ascii: "}")) ? TextWeight(bytes: total, parts: 1) : nil
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            return boolean() != nil ? TextWeight(bytes: 1, parts: 1) : nil
        case UInt8(ascii: "n"):
            return takeNull() ? TextWeight(bytes: 0, parts: 0) : nil
        default:
            return number() ? TextWeight(bytes: 1, parts: 1) : nil
        }
    }

    // MARK: - Tokens

    /// `"key" :` of an object member, with the space around it.
    private mutating func memberKey() -> String? {
        skipSpace()
        guard let key = plainString() else { return nil }
        skipSpace()
        guard take(UInt8(ascii: ":")) else { return nil }
        skipSpace()
        return key
    }

    private var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard peek == byte else { return false }
        index += 1
        return true
    }

    private mutating func skipSpace() {
        while let byte = peek,
            byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\t")
        {
            index += 1
        }
    }

    private mutating func literal(_ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        for offset in 0..<count where bytes[index + offset] != text.utf8Start[offset] { return false }
        index += count
        return true
    }

    private mutating func takeNull() -> Bool { literal("null") }

    private mutating func boolean() -> Bool? {
        if literal("true") { return true }
        if literal("false") { return false }
        return nil
    }

    /// A plain integer (`-?digits`, no fraction or exponent) that fits comfortably in an Int.
    private mutating func integer() -> Int? {
        let start = index
        let negative = take(UInt8(ascii: "-"))
        var value = 0
        var digits = 0
        while let byte = peek, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
            guard digits < 18 else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
            digits += 1
            index += 1
        }
        guard digits > 0, !(digits > 1 && bytes[start + (negative ? 1 : 0)] == UInt8(ascii: "0")) else { return nil }
        if let byte = peek, byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") { return nil }
        return negative ? -value : value
    }

    /// Any JSON number, validated.
    private mutating func number() -> Bool {
        _ = take(UInt8(ascii: "-"))
        func digits(_ scanner: inout RequestBodyScanner) -> Int {
            var count = 0
            while let byte = scanner.peek, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                scanner.index += 1
                count += 1
            }
            return count
        }
        let start = index
        let whole = digits(&self)
        guard whole > 0, !(whole > 1 && bytes[start] == UInt8(ascii: "0")) else { return false }
        if take(UInt8(ascii: ".")) { guard digits(&self) > 0 else { return false } }
        if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
            if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
            guard digits(&self) > 0 else { return false }
        }
        return true
    }

    /// A string without escapes, decoded; nil for anything else.
    private mutating func plainString() -> String? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = index
        var ascii = true
        while let byte = peek, byte != UInt8(ascii: "\"") {
            guard byte >= 0x20, byte != UInt8(ascii: "\\") else { return nil }
            if byte >= 0x80 { ascii = false }
            index += 1
        }
        guard take(UInt8(ascii: "\"")) else { return nil }
        let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<(index - 1)])
        return ascii ? String(decoding: raw, as: UTF8.self) : String(validating: raw, as: UTF8.self)
    }

    /// The UTF-8 length of a string once its escapes are decoded.
    private mutating func stringLength() -> Int? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        var length = 0
        var nonASCIIStart: Int?
        while true {
            guard let byte = peek else { return nil }
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                if let start = nonASCIIStart {
                    // Validated once per string that needs it: invalid UTF-8 is the decoder's error.
                    guard String(validating: UnsafeRawBufferPointer(rebasing: bytes[start..<(index - 1)]), as: UTF8.self) != nil
                    else { return nil }
                }
                return length
            case UInt8(ascii: "\\"):
                guard let escape = peek else { return nil }
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    length += 1
                case UInt8(ascii: "u"):
                    guard let unit = hexUnit() else { return nil }
                    if (0xD800...0xDBFF).contains(unit) {
                        guard literal("\\u"), let low = hexUnit(), (0xDC00...0xDFFF).contains(low) else { return nil }
                        length += 4
                    } else if (0xDC00...0xDFFF).contains(unit) {
                        return nil
                    } else {
                        length += unit < 0x80 ? 1 : unit < 0x800 ? 2 : 3
                    }
                default:
                    return nil
                }
            default:
                guard byte >= 0x20 else { return nil }
                if byte >= 0x80, nonASCIIStart == nil { nonASCIIStart = index - 1 }
                length += 1
            }
        }
    }

    private mutating func hexUnit() -> Int? {
        guard index + 4 <= bytes.count else { return nil }
        var value = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: Int
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = Int(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = Int(byte - UInt8(ascii: "A")) + 10
            default: return nil
            }
            value = value * 16 + digit
            index += 1
        }
        return value
    }
}

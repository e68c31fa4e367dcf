public import Foundation
import GantryCore
public import NIOCore

/// The `/v1` endpoints the gateway forwards.
public enum InferenceEndpoint: String, Sendable {
    case chatCompletions = "chat.completions"
    case completions
    case embeddings

    public var path: String {
        switch self {
        case .chatCompletions: return "/v1/chat/completions"
        case .completions: return "/v1/completions"
        case .embeddings: return "/v1/embeddings"
        }
    }

    /// The endpoint served at `path` (a query string ignored).
    init?(path: String) {
        switch path.firstIndex(of: "?").map({ path[..<$0] }) ?? path[...] {
        case "/v1/chat/completions": self = .chatCompletions
        case "/v1/completions": self = .completions
        case "/v1/embeddings": self = .embeddings
        default: return nil
        }
    }

    /// The body field that holds the prompt.
    var promptField: String {
        switch self {
        case .chatCompletions: return "messages"
        case .completions: return "prompt"
        case .embeddings: return "input"
        }
    }
}

/// The fields of an OpenAI request body the data plane must read before forwarding it.
/// The body itself is forwarded unchanged, except for `stream_options` (see `upstreamBody`).
public struct InferenceRequest: Sendable, Equatable {
    public var endpoint: InferenceEndpoint
    /// The deployment name, without any `@version` suffix.
    public var deployment: String
    /// The version pinned with `name@version`, if any.
    public var pinnedVersion: String?
    public var stream: Bool
    /// Whether the caller asked for the usage chunk at the end of a stream.
    public var includeUsage: Bool
    /// Whether the body has a `stream_options` key at all (null included): then the gateway's
    /// own must replace it, not be spliced in beside it.
    var hasStreamOptions: Bool
    public var maxTokens: Int?
    /// Sequences the engine generates: `n` for each prompt (a completions request may hold a
    /// list of prompts); every one may use `maxTokens`.
    public var choices: Int
    /// Prompts the engine completes (1 except for a completions request with a list of them).
    public var prompts: Int = 1
    /// UTF-8 bytes of all prompt text (message contents, tool definitions, prompt strings), plus
    /// one per token id given as a number, and the number of messages or prompts.
    public var promptBytes: Int
    public var promptParts: Int

    /// Every choice's completion shares the context; the request may produce at most this many tokens.
    public var completionBudget: Int? { maxTokens.map { $0 * choices } }

    /// An upper bound of the prompt's tokens without a tokenizer: byte-level BPE tokenizers (GPT-2,
    /// Llama 3, Qwen, SmolLM) never make more tokens than bytes, and each message adds at most a
    /// few template tokens. A chat template may add a default system prompt, hence the margin.
    /// When the bound says a request may not fit, the engine's tokenizer decides.
    public var promptTokenBound: Int { promptBytes + 8 * promptParts + 64 }

    /// Whether the prompt might not fit beside the completion: then only the engine's tokenizer
    /// can say (the bound is never below the real count).
    public func mayExceedContext(_ limit: Int) -> Bool {
        endpoint != .embeddings && promptTokenBound + (maxTokens ?? 1) > limit
    }

    /// Tokens reserved in the frequency limits at admission: the prompt's cheap upper bound (no
    /// prompt can exceed the context) and the most the completion may use; no sequence can
    /// exceed the context limit.
    public func reservation(contextLimit limit: Int) -> Int {
        switch endpoint {
        case .embeddings:
            return promptTokenBound
        case .chatCompletions, .completions:
            // Every sequence, its prompt included, fits the context; the prompts, read once each,
            // fit their bound and a context each.
            let contextCap = limit * choices
            return min(contextCap, min(promptTokenBound, limit * prompts) + (completionBudget ?? contextCap))
        }
    }

    /// The reservation as a usage: the prompt's bound and the rest for the completions. What is
    /// charged when the engine's own count never arrives.
    public func usageEstimate(contextLimit limit: Int) -> TokenUsage {
        let total = reservation(contextLimit: limit)
        let prompt = min(promptTokenBound, limit * prompts, total)
        return TokenUsage(promptTokens: prompt, completionTokens: total - prompt)
    }

    struct Fields: Decodable {
        var model: String?
        var stream: Bool?
        var stream_options: StreamOptions?
        var max_tokens: Int?
        var max_completion_tokens: Int?
        var n: Int?
        var messages: [ChatMessage]?
        var tools: ToolList?
        var prompt: TextWeight?
        var input: TextWeight?
        /// Whether the body has a top-level `stream_options` key, even with null as its value.
        var streamOptionsKey = false
        /// The first engine-specific field the gateway refuses (``refusedFields``).
        var refusedField: String?

        enum CodingKeys: String, CodingKey {
            case model, stream, stream_options, max_tokens, max_completion_tokens, n, messages, tools, prompt, input
        }

        /// What the key itself says, whatever its value: called for every top-level key.
        mutating func noteTopLevelKey(_ key: String) {
            if key == "stream_options" { streamOptionsKey = true }
            if refusedField == nil, InferenceRequest.refusedFields.contains(key) { refusedField = key }
        }
    }

    /// A chat message as the OpenAI schema allows it, weighed as `TextWeight` weighs it: an object
    /// with a known `role` and a `content` that is a string, null or a list of content parts
    /// (objects). Engines answer other shapes with a 500 (llama.cpp) or read them their own way;
    /// the gateway answers 400 naming the message.
    struct ChatMessage: Decodable, Sendable {
        static let roles: Set<String> = ["system", "developer", "user", "assistant", "tool", "function"]
        var weight: TextWeight

        init(weight: TextWeight) { self.weight = weight }

        init(from decoder: any Decoder) throws {
            let name = "messages[\(decoder.codingPath.last?.intValue ?? 0)]"
            guard let object = try? decoder.container(keyedBy: TextWeight.AnyKey.self) else {
                throw GantryError.invalid("\(name) must be an object", param: name, code: "invalid_type")
            }
            let roleKey = TextWeight.AnyKey(stringValue: "role")
            guard let role = try? object.decode(String.self, forKey: roleKey), Self.roles.contains(role) else {
                throw GantryError.invalid(
                    "\(name).role must be one of \(Self.roles.sorted().joined(separator: ", "))", param: "\(name).role",
                    code: "invalid_value")
            }
            let contentKey = TextWeight.AnyKey(stringValue: "content")
            if object.contains(contentKey), !(try object.decodeNil(forKey: contentKey)),
                (try? object.decode(String.self, forKey: contentKey)) == nil
            {
                guard var parts = try? object.nestedUnkeyedContainer(forKey: contentKey) else {
                    throw GantryError.invalid(
                        "\(name).content must be a string or a list of content parts", param: "\(name).content",
                        code: "invalid_type")
                }
                while !parts.isAtEnd {
                    guard (try? parts.nestedContainer(keyedBy: TextWeight.AnyKey.self)) != nil else {
                        throw GantryError.invalid(
                            "\(name).content must be a string or a list of content parts", param: "\(name).content",
                            code: "invalid_type")
                    }
                }
            }
            weight = try TextWeight(from: decoder)
        }
    }

    /// `tools`: a list of tool objects.
    struct ToolList: Decodable, Sendable {
        var weight: TextWeight

        init(weight: TextWeight) { self.weight = weight }

        init(from decoder: any Decoder) throws {
            let invalid = GantryError.invalid("tools must be a list of tool objects", param: "tools", code: "invalid_type")
            guard var list = try? decoder.unkeyedContainer() else { throw invalid }
            while !list.isAtEnd {
                guard (try? list.nestedContainer(keyedBy: TextWeight.AnyKey.self)) != nil else { throw invalid }
            }
            weight = try TextWeight(from: decoder)
        }
    }

    /// Engines' own fields for how much to generate or how many sequences to run, beside the
    /// OpenAI ones the gateway reserves for (`max_tokens`, `max_completion_tokens`, `n`). An
    /// engine honours them over or beside the OpenAI fields (llama.cpp's `n_predict` wins over
    /// `max_tokens`, measured on llama-server 0.3.36; vLLM and TGI run `best_of` sequences;
    /// SGLang's and TGI's native `max_new_tokens`), so a request could generate more than was
    /// reserved and charged. They are refused (400 `unsupported_parameter`) for every engine.
    static let refusedFields: Set<String> = ["n_predict", "max_new_tokens", "best_of"]

    struct StreamOptions: Decodable {
        var include_usage: Bool?
    }

    public static let maxChoices = 16

    /// Parses a JSON body; every problem is a 400 in the OpenAI envelope naming the field. The
    /// one-pass scanner reads the common body; `JSONDecoder` the rest, and says what is wrong.
    public static func parse(_ body: ByteBuffer, endpoint: InferenceEndpoint = .chatCompletions) throws -> InferenceRequest {
        switch RequestBodyScanner.scan(body) {
        case .fields(let fields): return try make(fields, endpoint: endpoint)
        case .duplicate(let key): throw duplicateKey(key)
        case .unsure: return try decode(body, endpoint: endpoint)
        }
    }

    /// Parses a JSON body with `JSONDecoder` alone (and the duplicate-key check).
    public static func parse(_ body: Data, endpoint: InferenceEndpoint = .chatCompletions) throws -> InferenceRequest {
        try decode(ByteBuffer(data: body), endpoint: endpoint)
    }

    /// A key given twice in one object, at any depth: engines keep the last value, other
    /// readers the first, so the body is refused rather than read one way and run another.
    static func duplicateKey(_ key: String) -> GantryError {
        GantryError.invalid(
            "the request body gives the key '\(key.prefix(64))' twice in one object", param: String(key.prefix(64)),
            code: "duplicate_key")
    }

    private static func decode(_ buffer: ByteBuffer, endpoint: InferenceEndpoint) throws -> InferenceRequest {
        // One walk for the keys (escapes resolved), one decode for the values.
        let keys = JSONKeys.read(buffer)
        if let key = keys?.duplicate { throw duplicateKey(key) }
        var fields: Fields
        do {
            fields = try JSONDecoder().decode(Fields.self, from: Data(buffer: buffer))
        } catch let error as GantryError {
            throw error
        } catch let DecodingError.typeMismatch(_, context) where !context.codingPath.isEmpty {
            let name = context.codingPath[0].stringValue
            throw GantryError.invalid("\(name) has the wrong type", param: name, code: "invalid_type")
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            let name = context.codingPath[0].stringValue
            throw GantryError.invalid("\(name) has an invalid value", param: name, code: "invalid_value")
        } catch {
            throw GantryError.invalid("request body is not a JSON object", code: "invalid_json")
        }
        // A body the decoder took but the key reader did not is refused too: its keys were not
        // all seen, so a refused field could hide in it.
        guard let keys else { throw GantryError.invalid("request body is not a JSON object", code: "invalid_json") }
        for key in keys.topLevel { fields.noteTopLevelKey(key) }
        return try make(fields, endpoint: endpoint)
    }

    private static func make(_ fields: Fields, endpoint: InferenceEndpoint) throws -> InferenceRequest {
        if let refused = fields.refusedField {
            throw GantryError.invalid(
                "\(refused) is not accepted: use max_tokens (or max_completion_tokens) and n", param: refused,
                code: "unsupported_parameter")
        }
        guard let model = fields.model, !model.isEmpty else {
            throw GantryError.invalid("you must provide a model parameter", param: "model", code: "missing_required_parameter")
        }
        var deployment = model
        var pinnedVersion: String?
        if let at = model.firstIndex(of: "@") {
            deployment = String(model[..<at])
            pinnedVersion = String(model[model.index(after: at)...])
        }
        for (name, value) in [("max_tokens", fields.max_tokens), ("max_completion_tokens", fields.max_completion_tokens)] {
            if let value, value < 1 {
                throw GantryError.invalid("\(name) must be at least 1", param: name, code: "invalid_value")
            }
        }
        if let n = fields.n, !(1...maxChoices).contains(n) {
            throw GantryError.invalid("n must be between 1 and \(maxChoices)", param: "n", code: "invalid_value")
        }
        let prompt: TextWeight?
        switch endpoint {
        case .chatCompletions:
            guard let messages = fields.messages, !messages.isEmpty else {
                throw GantryError.invalid(
                    "messages must be a non-empty array", param: "messages", code: "missing_required_parameter")
            }
            prompt = TextWeight(bytes: messages.reduce(0) { $0 + $1.weight.bytes }, parts: messages.count)
        case .completions: prompt = fields.prompt
        case .embeddings: prompt = fields.input
        }
        guard let prompt, prompt.parts > 0 || endpoint == .completions else {
            throw GantryError.invalid(
                "\(endpoint.promptField) is required", param: endpoint.promptField, code: "missing_required_parameter")
        }
        let stream = endpoint != .embeddings && (fields.stream ?? false)
        // A list of prompts (strings or token lists) is one completion per prompt; a list of
        // numbers is one prompt of token ids.
        let prompts = endpoint == .completions ? max(1, prompt.prompts) : 1
        return InferenceRequest(
            endpoint: endpoint, deployment: deployment, pinnedVersion: pinnedVersion, stream: stream,
            includeUsage: fields.stream_options?.include_usage ?? false, hasStreamOptions: fields.streamOptionsKey,
            maxTokens: fields.max_completion_tokens ?? fields.max_tokens, choices: (fields.n ?? 1) * prompts,
            prompts: prompts, promptBytes: prompt.bytes + (fields.tools?.weight.bytes ?? 0), promptParts: max(1, prompt.parts))
    }

    /// The body sent to the engine. A stream always asks for the usage chunk, so every stream is
    /// metered from the engine's own count; the gateway removes that chunk again when the caller
    /// did not ask for it. Without `stream_options` in the body (the common case) the field is
    /// spliced in after the opening brace, without re-encoding the body.
    public func upstreamBody(_ body: ByteBuffer) throws -> ByteBuffer {
        guard stream, !includeUsage else { return body }
        if !hasStreamOptions {
            let view = body.readableBytesView
            guard let brace = view.firstIndex(of: UInt8(ascii: "{")) else { return body }
            var spliced = ByteBuffer()
            spliced.reserveCapacity(body.readableBytes + 40)
            spliced.writeBytes(view[view.startIndex...brace])
            spliced.writeString(#""stream_options":{"include_usage":true},"#)
            spliced.writeBytes(view[(brace + 1)...])
            return spliced
        }
        guard var object = try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else { return body }
        var options = object["stream_options"] as? [String: Any] ?? [:]
        options["include_usage"] = true
        object["stream_options"] = options
        return ByteBuffer(data: try JSONSerialization.data(withJSONObject: object))
    }
}

/// How much prompt text a JSON value holds: the UTF-8 bytes of every string in it (a message's
/// content, a content part's text, a tool's definition) and one per number (a token id).
struct TextWeight: Decodable, Sendable {
    enum Kind: Equatable, Sendable {
        case text
        /// A list, with how many of its items are texts or lists themselves.
        case list(texts: Int)
        case other
    }

    var bytes: Int
    /// Top-level items: prompts in a list, or 1 for a single string.
    var parts: Int
    var kind: Kind

    init(bytes: Int, parts: Int, kind: Kind = .other) {
        self.bytes = bytes
        self.parts = parts
        self.kind = kind
    }

    var isTextOrList: Bool { kind != .other }

    /// Prompts, read as a completions `prompt`: a text is one, a list of texts or of token lists
    /// one per item, a list of token ids (numbers) one.
    var prompts: Int {
        switch kind {
        case .text: return 1
        case .list(let texts): return max(1, texts)
        case .other: return 1
        }
    }

    /// Strings first: they are most of a body's values, and each failed attempt costs a thrown error.
    init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer()
        if value.decodeNil() {
            self.init(bytes: 0, parts: 0)
        } else if let text = try? value.decode(String.self) {
            self.init(bytes: text.utf8.count, parts: 1, kind: .text)
        } else if var list = try? decoder.unkeyedContainer() {
            var bytes = 0
            var parts = 0
            var texts = 0
            while !list.isAtEnd {
                let item = try list.decode(TextWeight.self)
                bytes += item.bytes
                parts += 1
                if item.isTextOrList { texts += 1 }
            }
            self.init(bytes: bytes, parts: parts, kind: .list(texts: texts))
        } else if let object = try? decoder.container(keyedBy: AnyKey.self) {
            var bytes = 0
            for key in object.allKeys { bytes += try object.decode(TextWeight.self, forKey: key).bytes }
            self.init(bytes: bytes, parts: 1)
        } else if (try? value.decode(Double.self)) != nil || (try? value.decode(Bool.self)) != nil {
            self.init(bytes: 1, parts: 1)
        } else {
            throw DecodingError.dataCorruptedError(in: value, debugDescription: "not JSON")
        }
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

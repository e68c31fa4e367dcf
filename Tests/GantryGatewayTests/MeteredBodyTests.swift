import Foundation
import GantryCore
import NIOCore
import Testing

@testable import GantryGateway

/// What the gateway reserves and meters must cover what an engine runs for the same body. Bodies
/// are built as lists of top-level (key, JSON value) pairs, so what each engine reads (the last
/// value of a repeated key, as llama.cpp and vLLM do) is known without a parser.
@Suite("Metered bodies: the engine runs what was reserved")
struct MeteredBodyTests {
    typealias Pair = (key: String, value: String)

    static func body(_ pairs: [Pair]) -> String {
        "{" + pairs.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
    }

    /// The last value given for `key`, as an integer, as llama.cpp and vLLM read it.
    static func lastInt(_ key: String, _ pairs: [Pair]) -> Int? {
        pairs.last { $0.key == key }.flatMap { Int($0.value) }
    }

    /// Completions the engine runs for a completions `prompt` value.
    static func prompts(_ value: String?) -> Int {
        guard let value, value.hasPrefix("[") else { return 1 }
        guard let list = try? JSONSerialization.jsonObject(with: Data(value.utf8)) as? [Any] else { return 1 }
        let texts = list.filter { $0 is String || $0 is [Any] }.count
        return max(1, texts)
    }

    /// The most tokens (prompt and completions) each engine may process for the body, when each
    /// of its prompts is `promptTokens` long: every sequence generates up to the engine's length
    /// field, and never past the context.
    static func engineTotals(_ pairs: [Pair], contextLimit: Int, endpoint: InferenceEndpoint, promptTokens: Int)
        -> [String: Int]
    {
        let prompts = endpoint == .completions ? prompts(pairs.last { $0.key == "prompt" }?.value) : 1
        let n = lastInt("n", pairs) ?? 1
        let openAILength = lastInt("max_completion_tokens", pairs) ?? lastInt("max_tokens", pairs)
        func total(_ length: Int?, sequences: Int) -> Int {
            let completion = min(length ?? contextLimit, contextLimit - promptTokens)
            return prompts * (promptTokens + sequences * completion)
        }
        return [
            // llama-server 0.3.36, measured: n_predict over max_completion_tokens over max_tokens.
            "llama.cpp": total(lastInt("n_predict", pairs) ?? openAILength, sequences: n),
            // vLLM: max_completion_tokens or max_tokens, best_of sequences when larger than n.
            "vllm": total(openAILength, sequences: max(n, lastInt("best_of", pairs) ?? n)),
            // SGLang's and TGI's native length field beside the OpenAI one.
            "sglang": total(lastInt("max_new_tokens", pairs) ?? openAILength, sequences: n),
        ]
    }

    /// Random bodies from every field the engines read for length and count, with repeats.
    static func randomPairs(_ generator: inout some RandomNumberGenerator, endpoint: InferenceEndpoint) -> [Pair] {
        var pairs: [Pair] = [("model", #""m""#)]
        switch endpoint {
        case .completions:
            let prompt = [
                #""once""#, #"["a","b","c"]"#, #"[1,2,3,4]"#, #"[[1,2],[3]]"#, #"["a",[1,2],7]"#, "[]", "null",
            ]
            pairs.append(("prompt", prompt.randomElement(using: &generator)!))
        default:
            pairs.append(("messages", #"[{"role":"user","content":"hi"}]"#))
        }
        let lengths = ["1", "7", "64", "300", "5000", "null", "0", "-2"]
        let fields = ["max_tokens", "max_completion_tokens", "n", "n_predict", "max_new_tokens", "best_of", "stream"]
        for _ in 0..<Int.random(in: 0...6, using: &generator) {
            let key = fields.randomElement(using: &generator)!
            switch key {
            case "n", "best_of": pairs.append((key, ["1", "2", "4", "16", "17", "null"].randomElement(using: &generator)!))
            case "stream": pairs.append((key, ["true", "false"].randomElement(using: &generator)!))
            default: pairs.append((key, lengths.randomElement(using: &generator)!))
            }
        }
        if Bool.random(using: &generator), let repeated = pairs.randomElement(using: &generator) {
            // The same key again, spelled plainly or with an escape, with another value.
            let key = Bool.random(using: &generator) ? repeated.key : repeated.key.replacingOccurrences(of: "_", with: "\\u005f")
            pairs.insert((key, lengths.randomElement(using: &generator)!), at: Int.random(in: 1...pairs.count, using: &generator))
        }
        return pairs.shuffled(using: &generator)
    }

    @Test(
        "for random bodies, no engine may generate more than the gateway reserved",
        arguments: [InferenceEndpoint.chatCompletions, .completions])
    func reservationCoversEngines(endpoint: InferenceEndpoint) throws {
        var generator = SeededGenerator(seed: endpoint == .completions ? 17 : 42)
        var accepted = 0
        var refused = 0
        for _ in 0..<3_000 {
            let pairs = Self.randomPairs(&generator, endpoint: endpoint)
            let text = Self.body(pairs)
            let limit = [256, 2048].randomElement(using: &generator)!
            guard let request = try? InferenceRequest.parse(ByteBuffer(string: text), endpoint: endpoint) else {
                refused += 1
                continue
            }
            accepted += 1
            let reserved = request.reservation(contextLimit: limit)
            // Each prompt as long as the gateway's bound allows (shared out among the prompts),
            // and shorter: the engine's worst case is somewhere between.
            let longest = min(request.promptTokenBound / request.prompts, limit)
            for promptTokens in Set([0, 1, longest / 2, longest]) {
                let totals = Self.engineTotals(pairs, contextLimit: limit, endpoint: endpoint, promptTokens: promptTokens)
                for (engine, total) in totals {
                    #expect(total <= reserved, "\(engine) may process \(total) tokens, \(reserved) reserved: \(text)")
                }
            }
            // Both of the gateway's readers agree on every body.
            #expect((try? InferenceRequest.parse(Data(text.utf8), endpoint: endpoint)) == request, "\(text)")
        }
        #expect(accepted > 300 && refused > 300, "accepted \(accepted), refused \(refused)")
    }

    @Test("a key given twice in one object is refused at any depth, however it is spelled")
    func duplicateKeys() {
        let bodies = [
            #"{"model":"m","max_tokens":3,"max_tokens":300,"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"model":"m","max_tokens":3,"max\u005ftokens":300,"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"model":"m","temperature":1,"temperature":2,"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}"#,
            #"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a","\u0074ext":"b"}]}]}"#,
            #"{"model":"m","stream":true,"stream_options":{"include_usage":true,"include_usage":false},"messages":[]}"#,
            #"{"model":"m","tools":[{"type":"function","function":{"name":"f","name":"g"}}],"messages":[]}"#,
        ]
        for body in bodies {
            for parse in [
                { try InferenceRequest.parse(ByteBuffer(string: body)) }, { try InferenceRequest.parse(Data(body.utf8)) },
            ] {
                #expect(throws: GantryError.self, "\(body)") { _ = try parse() }
                let code = (try? parse()).map { _ in "accepted" } ?? (Self.error { _ = try parse() })?.code
                #expect(code == "duplicate_key", "\(body)")
            }
        }
        // The same key in different objects is fine.
        #expect(
            (try? InferenceRequest.parse(
                ByteBuffer(string: #"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}"#)))
                != nil)
    }

    static func error(_ body: () throws -> Void) -> GantryError? {
        do {
            try body()
            return nil
        } catch let error as GantryError {
            return error
        } catch {
            return nil
        }
    }

    @Test("engines' own length and sequence fields are refused with 400")
    func refusedFields() {
        for field in ["n_predict", "max_new_tokens", "best_of"] {
            for value in ["5", "null", #""x""#] {
                let body = #"{"model":"m","max_tokens":3,"\#(field)":\#(value),"messages":[{"role":"user","content":"hi"}]}"#
                let error = Self.error { _ = try InferenceRequest.parse(ByteBuffer(string: body)) }
                #expect(error?.code == "unsupported_parameter" && error?.param == field, "\(body)")
            }
        }
    }

    @Test("a stream with stream_options null, empty or without the flag still gets exactly one usage request upstream")
    func streamOptionsAlwaysAskForUsage() throws {
        for options in ["null", "{}", #"{"include_usage":null}"#, #"{"include_usage":false}"#, #"{"other":1}"#, nil] {
            let field = options.map { #","stream_options":\#($0)"# } ?? ""
            let body = #"{"model":"m","stream":true\#(field),"messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#
            let request = try InferenceRequest.parse(ByteBuffer(string: body))
            let upstream = String(buffer: try request.upstreamBody(ByteBuffer(string: body)))
            #expect(upstream.components(separatedBy: "\"stream_options\"").count == 2, "one stream_options in \(upstream)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(upstream.utf8)) as? [String: Any])
            #expect((object["stream_options"] as? [String: Any])?["include_usage"] as? Bool == true, "\(upstream)")
            #expect(
                (try? InferenceRequest.parse(ByteBuffer(string: upstream))) != nil, "the upstream body is one the gateway reads")
        }
    }

    @Test("a completions request with a list of prompts reserves for a completion of each")
    func promptLists() throws {
        func parse(_ prompt: String, n: Int = 1) throws -> InferenceRequest {
            try InferenceRequest.parse(
                ByteBuffer(string: #"{"model":"m","prompt":\#(prompt),"max_tokens":10,"n":\#(n)}"#), endpoint: .completions)
        }
        #expect(try parse(#""one""#).choices == 1)
        #expect(try parse(#"["a","b","c"]"#).choices == 3)
        #expect(try parse(#"["a","b","c"]"#, n: 2).choices == 6)
        #expect(try parse(#"[[1,2],[3,4]]"#).choices == 2)
        #expect(try parse(#"[1,2,3,4,5]"#).choices == 1, "token ids are one prompt")
        #expect(try parse(#"["a","b","c"]"#, n: 2).reservation(contextLimit: 2048) >= 60)
    }
}

/// A small deterministic generator (SplitMix64), so a failing body can be found again.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

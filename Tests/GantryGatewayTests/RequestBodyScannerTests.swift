import Foundation
import GantryCore
import NIOCore
import Testing

@testable import GantryGateway

/// The one-pass body scanner must read exactly what `JSONDecoder` reads, and leave to it
/// everything it is not sure of.
@Suite("Request body scanner")
struct RequestBodyScannerTests {
    /// Bodies the scanner reads itself: each result must equal the decoder's.
    static let common: [(String, InferenceEndpoint)] = [
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#, .chatCompletions),
        (#" { "model" : "m@2" , "stream" : true , "max_tokens" : 16 , "n" : 3 , "messages" : [ ] } "#, .chatCompletions),
        (
            #"{"model":"m","stream":true,"stream_options":{"include_usage":true,"other":[1,2]},"messages":[{"role":"user","content":"x"}]}"#,
            .chatCompletions
        ),
        (
            #"{"model":"m","stream":false,"stream_options":{"include_usage":null},"messages":[{"role":"user","content":"x"}]}"#,
            .chatCompletions
        ),
        (#"{"model":"m","stream_options":{},"messages":[{"role":"user","content":"x"}]}"#, .chatCompletions),
        (#"{"model":"m","stream_options":null,"max_tokens":null,"messages":[{"role":"user","content":"x"}]}"#, .chatCompletions),
        (
            #"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"caf\u00e9 \ud83d\ude00 \"q\" \n"},{"type":"image_url","image_url":{"url":"data:x"}}]},{"role":"assistant","content":null},{"role":"tool","content":"42","weight":1.5e3,"ok":false}]}"#,
            .chatCompletions
        ),
        (
            #"{"model":"m","messages":[{"role":"user","content":"héllo wörld – ✓"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"max_completion_tokens":7}"#,
            .chatCompletions
        ),
        (
            #"{"model":"m","prompt":"once upon","max_tokens":5,"unknown":{"deep":[[[{"a":-0.5}]]]},"temperature":0.7}"#,
            .completions
        ),
        (#"{"model":"m","prompt":["a","bb",[1,2,3]]}"#, .completions),
        (#"{"model":"m","prompt":[15339,1917]}"#, .completions),
        (#"{"model":"m","input":["one","two"]}"#, .embeddings),
        (#"{"model":"m","input":"x","stream":true}"#, .embeddings),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":-3}"#, .chatCompletions),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":0}"#, .chatCompletions),
        (#"{"model":"","messages":[{"role":"user","content":"hi"}]}"#, .chatCompletions),
        (#"{"messages":[{"role":"user","content":"hi"}]}"#, .chatCompletions),
        (#"{"model":"m","messages":null}"#, .chatCompletions),
        (#"{"model":"m","prompt":null}"#, .completions),
    ]

    /// Bodies it leaves to the decoder (invalid, wrong types, escapes in names, duplicates...).
    static let leftToDecoder: [(String, InferenceEndpoint)] = [
        (#"{"model":"m","messages":"#, .chatCompletions),
        (#"{"model":"m","messages":[]} trailing"#, .chatCompletions),
        (#"["model"]"#, .chatCompletions),
        (#"{"model":7,"messages":[]}"#, .chatCompletions),
        (#"{"model":"m","stream":"yes","messages":[]}"#, .chatCompletions),
        (#"{"model":"m","max_tokens":"20","messages":[]}"#, .chatCompletions),
        (#"{"model":"m","max_tokens":2.0,"messages":[]}"#, .chatCompletions),
        (#"{"model":"m","n":1e1,"messages":[]}"#, .chatCompletions),
        (#"{"model":"m","messages":{"role":"user"}}"#, .chatCompletions),
        (#"{"model":"m","stream_options":true,"messages":[]}"#, .chatCompletions),
        (#"{"model":"m\u0041","messages":[]}"#, .chatCompletions),
        (#"{"model":"m","model":"n","messages":[]}"#, .chatCompletions),
        (#"{"model":"m","messages":[{"content":"a","content":"b"}]}"#, .chatCompletions),
        (#"{"model":"m","messages":[{"content":"\ud800"}]}"#, .chatCompletions),
        ("{\"model\":\"m\",\"messages\":[{\"content\":\"tab\tinside\"}]}", .chatCompletions),
        (#"{"model":"m","messages":[01]}"#, .chatCompletions),
        // Shapes the OpenAI schema does not allow in what the gateway forwards: the decoder names them.
        (#"{"model":"m","messages":[null]}"#, .chatCompletions),
        (#"{"model":"m","messages":["hi"]}"#, .chatCompletions),
        (#"{"model":"m","messages":[{"content":"hi"}]}"#, .chatCompletions),
        (#"{"model":"m","messages":[{"role":"wizard","content":"hi"}]}"#, .chatCompletions),
        (#"{"model":"m","messages":[{"role":7,"content":"hi"}]}"#, .chatCompletions),
        (#"{"model":"m","messages":[{"role":"user","content":42}]}"#, .chatCompletions),
        (#"{"model":"m","messages":[{"role":"user","content":{"text":"hi"}}]}"#, .chatCompletions),
        (#"{"model":"m","messages":[{"role":"user","content":["hi"]}]}"#, .chatCompletions),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":"x"}"#, .chatCompletions),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":{"type":"function"}}"#, .chatCompletions),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[1]}"#, .chatCompletions),
        (#"{"model":"m","max_tokens":007,"messages":[]}"#, .chatCompletions),
    ]

    static func outcome(_ parse: () throws -> InferenceRequest) -> String {
        do {
            return "\(try parse())"
        } catch let error as GantryError {
            return "error \(error.code ?? "") \(error.param ?? "") \(error.message)"
        } catch {
            return "error \(error)"
        }
    }

    @Test("common bodies are read in one pass, with the decoder's result or error")
    func sameAsDecoder() throws {
        for (body, endpoint) in Self.common {
            let buffer = ByteBuffer(string: body)
            #expect(RequestBodyScanner.fields(of: buffer) != nil, "the scanner reads \(body)")
            let scanned = Self.outcome { try InferenceRequest.parse(buffer, endpoint: endpoint) }
            let decoded = Self.outcome { try InferenceRequest.parse(Data(body.utf8), endpoint: endpoint) }
            #expect(scanned == decoded, "\(body)")
        }
        // The weights themselves: decoded bytes of strings (escapes count as what they decode to).
        let parsed = try InferenceRequest.parse(ByteBuffer(string: Self.common[6].0))
        #expect(
            parsed.promptBytes == "café 😀 \"q\" \n".utf8.count + "text".utf8.count + "data:x".utf8.count + "image_url".utf8.count
                + "user".utf8.count + "assistant".utf8.count + "tool".utf8.count + "42".utf8.count + 2)
        #expect(parsed.promptParts == 3)
    }

    @Test("invalid or doubtful bodies go to the decoder, which names the problem")
    func doubtfulBodies() {
        for (body, endpoint) in Self.leftToDecoder {
            let buffer = ByteBuffer(string: body)
            #expect(RequestBodyScanner.fields(of: buffer) == nil, "the scanner leaves \(body)")
            let scanned = Self.outcome { try InferenceRequest.parse(buffer, endpoint: endpoint) }
            let decoded = Self.outcome { try InferenceRequest.parse(Data(body.utf8), endpoint: endpoint) }
            #expect(scanned == decoded)
        }
        let invalid = Self.outcome { try InferenceRequest.parse(ByteBuffer(string: #"{"model":"m","stream":"yes"}"#)) }
        #expect(invalid.hasPrefix("error invalid_type stream"))
        let role = Self.outcome {
            try InferenceRequest.parse(
                ByteBuffer(string: #"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"wizard","content":"b"}]}"#))
        }
        #expect(role.hasPrefix("error invalid_value messages[1].role"), "\(role)")
        let tools = Self.outcome {
            try InferenceRequest.parse(
                ByteBuffer(string: #"{"model":"m","messages":[{"role":"user","content":"a"}],"tools":"x"}"#))
        }
        #expect(tools.hasPrefix("error invalid_type tools"), "\(tools)")
    }
}

import NIOCore
import Testing

@testable import GantryGateway

/// Usage read from a whole (non-streamed) answer without decoding it.
@Suite("Token usage in answers")
struct TokenUsageTests {
    static func find(_ json: String) -> TokenUsage? { TokenUsage.find(in: ByteBuffer(string: json)) }

    @Test("the answer's own usage object, wherever the answer puts it")
    func found() {
        let content = #"say \"usage\": {\"prompt_tokens\": 999} and \"completion_tokens\":7"#
        #expect(
            Self.find(
                #"{"id":"x","choices":[{"message":{"content":"\#(content)"}}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":3}}}"#
            ) == TokenUsage(promptTokens: 12, completionTokens: 5))
        #expect(
            Self.find(#"{"usage": {"completion_tokens": 8, "prompt_tokens": 2}, "choices":[{"text":"\"usage\":{}"}]}"#)
                == TokenUsage(promptTokens: 2, completionTokens: 8))
        #expect(
            Self.find(#"{"data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":4,"total_tokens":4}}"#)
                == TokenUsage(promptTokens: 4, completionTokens: 0))
    }

    @Test("no usage object, or one cut short, is no usage")
    func absent() {
        #expect(Self.find(#"{"choices":[{"text":"usage: none"}]}"#) == nil)
        #expect(Self.find(#"{"usage":null}"#) == nil)
        #expect(Self.find(#"{"usage":{"prompt_tokens":4"#) == nil)
        #expect(Self.find("") == nil)
    }

    @Test("the backward search finds the last occurrence, at the edges too")
    func backwardSearch() {
        let needle = Array("abc".utf8)
        func last(_ text: String) -> Int? { Array(text.utf8).withUnsafeBytes { ByteSearch.findLast(needle, in: $0) } }
        #expect(last("abc") == 0)
        #expect(last("xxabcxabc") == 6)
        #expect(last("abcab") == 0)
        #expect(last("ab") == nil)
        #expect(last("") == nil)
    }
}

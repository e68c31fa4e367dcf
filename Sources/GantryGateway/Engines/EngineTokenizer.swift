import AsyncHTTPClient
import Foundation
import GantryCore
import NIOCore

/// Counts a prompt's tokens exactly with the engine's own tokenizer, for the requests whose
/// cheap upper bound says they might not fit the context. llama.cpp's server renders the chat
/// template (`/apply-template`) and tokenizes (`/tokenize`); for engines without such endpoints
/// the count is unknown and the engine's own context error (mapped to the same 400) decides.
struct EngineTokenizer: Sendable {
    let client: HTTPClient
    static let timeout: TimeAmount = .seconds(10)

    /// The prompt's token count, or nil when this engine cannot say.
    func countPromptTokens(engine: String, baseURL: String, endpoint: InferenceEndpoint, body: ByteBuffer) async throws -> Int? {
        guard engine == EngineName.llamaCpp else { return nil }
        switch endpoint {
        case .chatCompletions:
            let rendered = try await post(baseURL + "/apply-template", body: body)
            guard let prompt = rendered["prompt"] as? String else { return nil }
            return try await tokenize(baseURL, prompt)
        case .completions:
            guard let object = try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else { return nil }
            switch object["prompt"] {
            case let text as String: return try await tokenize(baseURL, text)
            case let texts as [String]:
                // Each prompt is its own sequence; the longest decides whether they fit.
                var longest = 0
                for text in texts { longest = max(longest, try await tokenize(baseURL, text) ?? 0) }
                return longest
            case let tokens as [Any] where tokens.allSatisfy({ $0 is NSNumber }): return tokens.count
            default: return nil
            }
        case .embeddings:
            return nil
        }
    }

    private func tokenize(_ baseURL: String, _ text: String) async throws -> Int? {
        let body = try JSONSerialization.data(withJSONObject: ["content": text, "add_special": true])
        let answer = try await post(baseURL + "/tokenize", body: ByteBuffer(data: body))
        return (answer["tokens"] as? [Any])?.count
    }

    private func post(_ url: String, body: ByteBuffer) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(body)
        let response = try await client.execute(request, timeout: Self.timeout)
        let payload = try await response.body.collect(upTo: 16 << 20)
        guard response.status == .ok else { return [:] }
        return (try? JSONSerialization.jsonObject(with: Data(buffer: payload)) as? [String: Any]) ?? [:]
    }
}

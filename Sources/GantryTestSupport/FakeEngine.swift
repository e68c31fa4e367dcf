import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A fast, fake OpenAI-compatible engine for tests of the data plane: answers chat completions,
/// completions and embeddings with fixed replies, streamed or not, reports usage as a real engine
/// would (the prompt as 10 tokens, the completion as `max_tokens`, default 5), and can be told to
/// fail in the ways engines fail. It records what it received. It is a fake on purpose; the real
/// engine is tested end to end with llama.cpp.
public enum FakeEngine {
    public enum Behaviour: Sendable {
        /// Answers normally; streams `chunks` content events, `delay` apart.
        case normal(chunks: Int, delay: Duration)
        /// Sends `after` events and then drops the connection.
        case dieMidStream(after: Int)
        /// Sends the response head only after `delay`.
        case slowHead(delay: Duration)
        /// Sends `after` events and then nothing for `for`, holding the connection open.
        case stallMidStream(after: Int, for: Duration)
        /// Answers 400 the way llama.cpp does when a prompt does not fit its context.
        case contextOverflow
    }

    /// What the engine saw.
    public actor Recorder {
        public private(set) var bodies: [String] = []
        /// Streams whose client (the gateway) went away before the stream ended.
        public private(set) var abandonedStreams = 0

        public init() {}

        func received(_ body: String) { bodies.append(body) }
        func abandoned() { abandonedStreams += 1 }
    }

    static let promptTokens = 10

    /// Runs a fake engine on 127.0.0.1 (free port) for the duration of `body`.
    public static func withEngine<T: Sendable>(
        _ behaviour: Behaviour, recorder: Recorder = Recorder(), _ body: @Sendable (_ baseURL: String) async throws -> T
    ) async throws -> T {
        let router = Router()
        router.get("/health") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#))) }
        for path in ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"] {
            router.post(RouterPath(path)) { request, _ in
                var request = request
                let text = String(buffer: try await request.collectBody(upTo: 1 << 20))
                await recorder.received(text)
                let fields = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
                return try await Self.answer(path: path, fields: fields, behaviour: behaviour, recorder: recorder)
            }
        }
        // llama-server's tokenizer endpoint, FAKE: one token per four characters of the text.
        router.post("/tokenize") { request, _ in
            var request = request
            let body = try await request.collectBody(upTo: 1 << 20)
            let fields = (try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any]) ?? [:]
            let count = (((fields["content"] as? String)?.count ?? 0) + 3) / 4
            return json(#"{"tokens":[\#((0..<count).map { _ in "1" }.joined(separator: ","))]}"#)
        }
        return try await LocalTestServer.withServer(router) { base in try await body(base) }
    }

    static func answer(path: String, fields: [String: Any], behaviour: Behaviour, recorder: Recorder) async throws -> Response {
        let completionTokens = (fields["max_tokens"] as? Int) ?? 5
        let usage =
            #"{"prompt_tokens":\#(promptTokens),"completion_tokens":\#(completionTokens),"total_tokens":\#(promptTokens + completionTokens)}"#
        switch behaviour {
        case .contextOverflow:
            return json(
                #"{"error":{"code":400,"message":"request (900 tokens) exceeds the available context size (512 tokens), try increasing it","type":"exceed_context_size_error"}}"#,
                status: .badRequest)
        case .slowHead(let delay):
            try await Task.sleep(for: delay)
        default:
            break
        }
        if path == "/v1/embeddings" {
            return json(
                #"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}],"model":"fake","usage":{"prompt_tokens":\#(promptTokens),"total_tokens":\#(promptTokens)}}"#
            )
        }
        guard fields["stream"] as? Bool == true else {
            let choice =
                path == "/v1/completions"
                ? #"{"index":0,"text":"hello from the fake engine","finish_reason":"stop"}"#
                : #"{"index":0,"message":{"role":"assistant","content":"hello from the fake engine"},"finish_reason":"stop"}"#
            return json(
                #"{"id":"chatcmpl-fake","object":"chat.completion","created":0,"model":"fake","choices":[\#(choice)],"usage":\#(usage)}"#
            )
        }
        let includeUsage = (fields["stream_options"] as? [String: Any])?["include_usage"] as? Bool == true
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream"],
            body: ResponseBody { writer in
                do {
                    switch behaviour {
                    case .normal(let chunks, let delay):
                        for index in 0..<chunks {
                            try await writer.write(ByteBuffer(string: event(index)))
                            try await Task.sleep(for: delay)
                        }
                    case .dieMidStream(let after):
                        for index in 0..<after {
                            try await writer.write(ByteBuffer(string: event(index)))
                        }
                        // Let the events reach the client, then throw: Hummingbird closes the
                        // connection, the same thing a crashed engine does to its client.
                        try await Task.sleep(for: .milliseconds(100))
                        throw CancellationError()
                    case .stallMidStream(let after, let stall):
                        for index in 0..<after {
                            try await writer.write(ByteBuffer(string: event(index)))
                        }
                        try await Task.sleep(for: stall)
                    case .slowHead, .contextOverflow:
                        try await writer.write(ByteBuffer(string: event(0)))
                    }
                    if includeUsage {
                        try await writer.write(
                            ByteBuffer(
                                string:
                                    "data: {\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":\(usage)}\n\n"
                            ))
                    }
                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                    try await writer.finish(nil)
                } catch let error as CancellationError {
                    throw error
                } catch {
                    // A write failed: the client closed the connection.
                    await recorder.abandoned()
                    throw error
                }
            })
    }

    static func json(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func event(_ index: Int) -> String {
        "data: {\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t\(index) \"}}]}\n\n"
    }
}

/// A one-shot value that async code can wait for.
actor PortPromise {
    private var port: Int?
    private var waiters: [CheckedContinuation<Int, Never>] = []

    func fulfil(_ value: Int) {
        port = value
        for waiter in waiters { waiter.resume(returning: value) }
        waiters.removeAll()
    }

    func value() async -> Int {
        if let port { return port }
        return await withCheckedContinuation { waiters.append($0) }
    }
}

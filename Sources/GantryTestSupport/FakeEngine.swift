import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A fast, fake OpenAI-compatible engine for tests of the data plane: answers
/// `/v1/chat/completions` with a fixed reply, streamed or not, and can be told to fail mid-stream.
/// It is a fake on purpose; the real engine is tested end to end with llama.cpp.
public enum FakeEngine {
    public enum Behaviour: Sendable {
        /// Answers normally; streams `chunks` content events, `delay` apart.
        case normal(chunks: Int, delay: Duration)
        /// Sends `after` events and then drops the connection.
        case dieMidStream(after: Int)
    }

    /// Runs a fake engine on 127.0.0.1 (free port) for the duration of `body`.
    public static func withEngine<T: Sendable>(
        _ behaviour: Behaviour, _ body: @Sendable (_ baseURL: String) async throws -> T
    ) async throws -> T {
        let router = Router()
        router.get("/health") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#))) }
        router.post("/v1/chat/completions") { request, _ in
            var request = request
            let body = try await request.collectBody(upTo: 1 << 20)
            let stream = String(buffer: body).contains(#""stream":true"#)
            return Self.answer(stream: stream, behaviour: behaviour)
        }
        return try await LocalTestServer.withServer(router) { base in try await body(base) }
    }

    static func answer(stream: Bool, behaviour: Behaviour) -> Response {
        guard stream else {
            let json =
                #"{"id":"chatcmpl-fake","object":"chat.completion","created":0,"model":"fake","choices":[{"index":0,"message":{"role":"assistant","content":"hello from the fake engine"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#
            return Response(
                status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json)))
        }
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream"],
            body: ResponseBody { writer in
                switch behaviour {
                case .normal(let chunks, let delay):
                    for index in 0..<chunks {
                        try await writer.write(ByteBuffer(string: event(index)))
                        try await Task.sleep(for: delay)
                    }
                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                    try await writer.finish(nil)
                case .dieMidStream(let after):
                    for index in 0..<after {
                        try await writer.write(ByteBuffer(string: event(index)))
                    }
                    // Let the events reach the client, then throw: Hummingbird closes the
                    // connection, the same thing a crashed engine does to its client.
                    try await Task.sleep(for: .milliseconds(100))
                    throw CancellationError()
                }
            })
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

// gantry-fake-engine: the HTTP handler of the FAKE OpenAI engine (canned answers, no model).
// SwiftNIO directly, one handler per connection, everything on the connection's event loop.
import NIOCore
import NIOHTTP1
import Synchronization

/// Held streams running now, and the most at once since the last reset (`GET /stats`,
/// `POST /stats/reset`): a test measures the concurrency admitted in front of one replica.
final class RunningStreams: Sendable {
    private let counts = Mutex((running: 0, peak: 0))

    func started() {
        counts.withLock {
            $0.running += 1
            $0.peak = max($0.peak, $0.running)
        }
    }

    func ended() { counts.withLock { $0.running -= 1 } }

    func snapshot() -> (running: Int, peak: Int) { counts.withLock { $0 } }

    func reset() { counts.withLock { $0.peak = $0.running } }

    static let shared = RunningStreams()
}

final class FakeEngineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Request bodies above this are answered 413 (a fake engine needs none this large).
    static let maxBodyBytes = 8 << 20

    private let responses: FakeResponses
    private let eventDelay: TimeAmount
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var bodyBytes = 0
    private var active = true
    /// A held stream of this connection is counted in `RunningStreams`.
    private var holdingStream = false

    init(responses: FakeResponses, eventDelayMs: Int) {
        self.responses = responses
        self.eventDelay = .milliseconds(Int64(eventDelayMs))
    }

    func channelInactive(context: ChannelHandlerContext) {
        active = false
        endHeldStream()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        active = false
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body = nil
            bodyBytes = 0
        case .body(var part):
            bodyBytes += part.readableBytes
            guard bodyBytes <= Self.maxBodyBytes else { return }  // answered at .end
            if body == nil { body = part } else { body!.writeBuffer(&part) }
        case .end:
            guard let requestHead = head else { return }
            head = nil
            respond(context: context, head: requestHead)
            body = nil
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead) {
        var keepAlive = head.isKeepAlive
        if head.version.major == 1 && head.version.minor == 0 { keepAlive = false }  // keep it simple: close
        let path = head.uri.utf8.contains(UInt8(ascii: "?")) ? Substring(head.uri.prefix { $0 != "?" }) : Substring(head.uri)
        if bodyBytes > Self.maxBodyBytes {
            return sendJSON(context: context, status: .payloadTooLarge, body: responses.tooLarge, keepAlive: false)
        }
        let body = self.body ?? ByteBuffer()
        switch (head.method, path) {
        case (.GET, "/health"):
            sendJSON(context: context, status: .ok, body: responses.health, keepAlive: keepAlive)
        case (.GET, "/stats"):
            let stats = RunningStreams.shared.snapshot()
            sendJSON(
                context: context, status: .ok,
                body: ByteBuffer(string: #"{"running":\#(stats.running),"peak":\#(stats.peak)}"#), keepAlive: keepAlive)
        case (.POST, "/stats/reset"):
            RunningStreams.shared.reset()
            sendJSON(context: context, status: .ok, body: ByteBuffer(string: "{}"), keepAlive: keepAlive)
        case (.GET, "/v1/models"):
            sendJSON(context: context, status: .ok, body: responses.models, keepAlive: keepAlive)
        case (.POST, "/v1/chat/completions"):
            generate(context: context, body: body, chat: true, keepAlive: keepAlive)
        case (.POST, "/v1/completions"):
            generate(context: context, body: body, chat: false, keepAlive: keepAlive)
        case (.POST, "/v1/embeddings"):
            embeddings(context: context, body: body, keepAlive: keepAlive)
        case (.POST, "/tokenize"):
            tokenize(context: context, body: body, keepAlive: keepAlive)
        default:
            sendJSON(context: context, status: .notFound, body: responses.notFound, keepAlive: keepAlive)
        }
    }

    private func promptTokens(_ body: ByteBuffer) -> Int { max(1, body.readableBytes / 4) }

    private func generate(context: ChannelHandlerContext, body: ByteBuffer, chat: Bool, keepAlive: Bool) {
        let (stream, includeUsage, maxTokens) = body.withUnsafeReadableBytes { bytes in
            (
                BodyScan.isTrue(BodyScan.stream, in: bytes),
                BodyScan.isTrue(BodyScan.includeUsage, in: bytes),
                BodyScan.integer(BodyScan.maxTokens, in: bytes) ?? BodyScan.integer(BodyScan.maxCompletionTokens, in: bytes)
            )
        }
        let prompt = promptTokens(body)
        guard stream else {
            let completion = min(maxTokens ?? 16, 16)
            let answer = FakeResponses.assemble(
                chat ? responses.chatParts : responses.completionParts, [prompt, completion, prompt + completion],
                allocator: context.channel.allocator)
            return sendJSON(context: context, status: .ok, body: answer, keepAlive: keepAlive)
        }
        var headers = HTTPHeaders()
        headers.reserveCapacity(4)
        headers.add(name: "content-type", value: "text/event-stream")
        headers.add(name: "cache-control", value: "no-cache")
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        // One streamed token per content chunk.
        let events = responses.streamEvents
        let usage: ByteBuffer? =
            includeUsage
            ? FakeResponses.assemble(
                chat ? responses.chatUsageParts : responses.completionUsageParts, [prompt, events, prompt + events],
                allocator: context.channel.allocator) : nil
        let chunk = chat ? responses.chatChunk : responses.completionChunk
        let last = chat ? responses.chatLastChunk : responses.completionLastChunk
        if eventDelay.nanoseconds == 0 {
            // The whole stream at once, in one buffer: one HTTP chunk, one write.
            var all = context.channel.allocator.buffer(
                capacity: chunk.readableBytes * events + (usage?.readableBytes ?? 0) + responses.done.readableBytes)
            for index in 0..<events { all.writeImmutableBuffer(index == events - 1 ? last : chunk) }
            if let usage { all.writeImmutableBuffer(usage) }
            all.writeImmutableBuffer(responses.done)
            context.write(wrapOutboundOut(.body(.byteBuffer(all))), promise: nil)
            end(context: context, keepAlive: keepAlive)
        } else {
            context.flush()
            holdingStream = true
            RunningStreams.shared.started()
            sendEvent(context: context, index: 0, events: events, chunk: chunk, last: last, usage: usage, keepAlive: keepAlive)
        }
    }

    /// Held streams: one event per delay, scheduled on the connection's own loop.
    private func sendEvent(
        context: ChannelHandlerContext, index: Int, events: Int, chunk: ByteBuffer, last: ByteBuffer, usage: ByteBuffer?,
        keepAlive: Bool
    ) {
        guard active else { return }
        guard index < events else { return finishStream(context: context, usage: usage, keepAlive: keepAlive) }
        context.eventLoop.assumeIsolated().scheduleTask(in: eventDelay) { [self] in
            guard active else { return }
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(index == events - 1 ? last : chunk))), promise: nil)
            sendEvent(
                context: context, index: index + 1, events: events, chunk: chunk, last: last, usage: usage, keepAlive: keepAlive)
        }
    }

    private func endHeldStream() {
        guard holdingStream else { return }
        holdingStream = false
        RunningStreams.shared.ended()
    }

    private func finishStream(context: ChannelHandlerContext, usage: ByteBuffer?, keepAlive: Bool) {
        endHeldStream()
        if let usage { context.write(wrapOutboundOut(.body(.byteBuffer(usage))), promise: nil) }
        context.write(wrapOutboundOut(.body(.byteBuffer(responses.done))), promise: nil)
        end(context: context, keepAlive: keepAlive)
    }

    private func embeddings(context: ChannelHandlerContext, body: ByteBuffer, keepAlive: Bool) {
        let inputs = body.withUnsafeReadableBytes { BodyScan.inputCount(in: $0) }
        let prompt = promptTokens(body)
        var out = context.channel.allocator.buffer(capacity: 160 + inputs * 120)
        out.writeString(#"{"object":"list","data":["#)
        for index in 0..<inputs {
            if index > 0 { out.writeString(",") }
            out.writeString(
                #"{"object":"embedding","index":\#(index),"embedding":[0.125,-0.25,0.5,0.0625,-0.125,0.25,-0.5,0.75]}"#)
        }
        out.writeString(#"],"model":"\#(responses.model)","usage":{"prompt_tokens":\#(prompt),"total_tokens":\#(prompt)}}"#)
        sendJSON(context: context, status: .ok, body: out, keepAlive: keepAlive)
    }

    private func tokenize(context: ChannelHandlerContext, body: ByteBuffer, keepAlive: Bool) {
        let bytes = body.withUnsafeReadableBytes { BodyScan.stringLength(BodyScan.content, in: $0) }
        let count = (bytes + 3) / 4
        var out = context.channel.allocator.buffer(capacity: 16 + count * 6)
        out.writeString(#"{"tokens":["#)
        for index in 0..<count {
            if index > 0 { out.writeString(",") }
            out.writeString(String(1000 + index % 30000))
        }
        out.writeString("]}")
        sendJSON(context: context, status: .ok, body: out, keepAlive: keepAlive)
    }

    private func sendJSON(context: ChannelHandlerContext, status: HTTPResponseStatus, body: ByteBuffer, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.reserveCapacity(3)
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(body.readableBytes))
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        end(context: context, keepAlive: keepAlive)
    }

    private func end(context: ChannelHandlerContext, keepAlive: Bool) {
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let promise = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
            promise.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}

extension BodyScan {
    static let input = Array(#""input""#.utf8)

    /// Number of inputs of an embeddings request: 1 for a string or a list of token ids, the
    /// element count for a list of strings or of token lists.
    static func inputCount(in bytes: UnsafeRawBufferPointer) -> Int {
        guard var position = valueStart(input, in: bytes), position < bytes.count, bytes[position] == UInt8(ascii: "[") else {
            return 1
        }
        position += 1
        while position < bytes.count,
            bytes[position] == 0x20 || bytes[position] == 0x0A || bytes[position] == 0x0D || bytes[position] == 0x09
        {
            position += 1
        }
        guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") || bytes[position] == UInt8(ascii: "[") else {
            return 1
        }
        var depth = 1, count = 1, inString = false, escaped = false
        while position < bytes.count, depth > 0 {
            let byte = bytes[position]
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else if byte == UInt8(ascii: "[") {
                depth += 1
            } else if byte == UInt8(ascii: "]") {
                depth -= 1
            } else if byte == UInt8(ascii: ","), depth == 1 {
                count += 1
            }
            position += 1
        }
        return min(count, 4096)
    }

    /// Byte length of the JSON string value of `key` as written (escapes counted as written).
    static func stringLength(_ key: [UInt8], in bytes: UnsafeRawBufferPointer) -> Int {
        guard var position = valueStart(key, in: bytes), position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
            return 0
        }
        position += 1
        let start = position
        var escaped = false
        while position < bytes.count {
            let byte = bytes[position]
            if escaped {
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "\"") {
                break
            }
            position += 1
        }
        return position - start
    }
}

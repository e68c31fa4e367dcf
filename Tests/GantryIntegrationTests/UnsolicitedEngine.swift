import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A FAKE engine, raw HTTP/1.1 over NIO, that misbehaves on purpose: each answer is a small chat
/// completion naming the request it answers, and `afterFirst` bytes follow the first answer
/// `delay` later, unasked, while the gateway holds the connection idle.
enum UnsolicitedEngine {
    /// Requests answered so far, across connections.
    final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }

    static func answer(_ number: Int) -> String {
        let body =
            #"{"id":"answer-\#(number)","object":"chat.completion","choices":[{"index":0,"message":"#
            + #"{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"#
            + #""usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#
        return "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let afterFirst: String
        let delay: TimeAmount
        let counter: Counter
        private var pending: [UInt8] = []

        init(afterFirst: String, delay: TimeAmount, counter: Counter) {
            self.afterFirst = afterFirst
            self.delay = delay
            self.counter = counter
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            pending += unwrapInboundIn(data).readableBytesView
            // One whole request: a head, then as many body bytes as it says.
            while let headEnd = Self.find(Array("\r\n\r\n".utf8), in: pending) {
                let head = String(decoding: pending[..<headEnd], as: UTF8.self).lowercased()
                let lengthLine = head.components(separatedBy: "\r\n").first { $0.hasPrefix("content-length:") }
                let length = lengthLine.flatMap {
                    Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
                }
                let bodyStart = headEnd + 4
                guard pending.count >= bodyStart + (length ?? 0) else { return }
                pending.removeFirst(bodyStart + (length ?? 0))
                let number = counter.value.add(1, ordering: .sequentiallyConsistent).newValue
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: UnsolicitedEngine.answer(number))), promise: nil)
                if number == 1 {
                    let extra = ByteBuffer(string: afterFirst)
                    let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                    context.eventLoop.scheduleTask(in: delay) {
                        loopBound.value.writeAndFlush(NIOAny(extra), promise: nil)
                    }
                }
            }
        }

        static func find(_ needle: [UInt8], in bytes: [UInt8]) -> Int? {
            guard bytes.count >= needle.count else { return nil }
            return (0...(bytes.count - needle.count)).first { Array(bytes[$0..<($0 + needle.count)]) == needle }
        }
    }

    /// Runs the engine on 127.0.0.1, port 0, while `body` runs; `body` gets its base URL.
    static func with<T: Sendable>(
        afterFirst: String, delay: TimeAmount, _ body: (String) async throws -> T
    ) async throws -> T {
        let counter = Counter()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        Handler(afterFirst: afterFirst, delay: delay, counter: counter))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        do {
            let result = try await body("http://127.0.0.1:\(channel.localAddress!.port!)")
            try await channel.close()
            return result
        } catch {
            try? await channel.close()
            throw error
        }
    }
}

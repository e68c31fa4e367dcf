// gantry-fake-engine: a FAKE OpenAI-compatible engine for benchmarks (see FakeEngineOptions.usage).
// It answers with canned content at a rate far above any gateway in front of it, so that a
// benchmark through a proxy measures the proxy. Never use it as a model.
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes to stderr with write(2) (glibc's `stderr` is a shared mutable global to Swift 6).
private func writeToStderr(_ text: String) {
    var text = text
    text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}

enum FileHandleStderr {
    static func write(_ text: String) { writeToStderr(text) }
}

guard let options = FakeEngineOptions.parse(Array(CommandLine.arguments.dropFirst())) else { exit(0) }
let responses = FakeResponses(model: options.modelName, streamEvents: options.streamEvents)
let group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads)
let eventDelayMs = options.eventDelayMs
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 4096)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelOption(.maxMessagesPerRead, value: 16)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(FakeEngineHandler(responses: responses, eventDelayMs: eventDelayMs))
        }
    }
if options.startupDelayMs > 0 { usleep(UInt32(min(options.startupDelayMs, 600_000)) * 1000) }
do {
    let channel = try bootstrap.bind(host: options.host, port: options.port).wait()
    let port = channel.localAddress?.port ?? options.port
    FileHandleStderr.write(
        "gantry-fake-engine (a fake engine, canned answers) listening on http://\(options.host):\(port), "
            + "\(options.threads) thread(s), \(options.streamEvents) stream events, \(options.eventDelayMs) ms apart\n")
    try channel.closeFuture.wait()
} catch {
    FileHandleStderr.write("gantry-fake-engine: \(error)\n")
    exit(1)
}

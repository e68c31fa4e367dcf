import Foundation
import NIOCore
import NIOPosix

/// Keep-alive HTTP/1.1 connections to engines, opened on one event loop and used only there,
/// so a request and its engine connection never leave the thread that read the request.
final class EnginePool {
    /// Connections per engine endpoint from one event loop: one per request in flight (HTTP/1.1);
    /// bench/gateway.sh holds 1,000 streams at once.
    static let maxOpenPerEndpoint = 4096
    /// Idle connections kept per endpoint; more are closed when their request ends.
    static let maxIdlePerEndpoint = 256
    static let connectTimeout = TimeAmount.seconds(2)

    struct Full: Error {}
    struct BadEndpoint: Error {}

    let eventLoop: any EventLoop
    private var idle: [String: IdleConnections<EngineConnection>] = [:]
    private let idleLimit: TimeAmount
    private var open: [String: Int] = [:]
    private var addresses: [String: SocketAddress] = [:]

    private var date: (second: Int, text: String) = (0, "")
    private let dateFormatter: DateFormatter = {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter
    }()

    /// Exchanges waiting on an engine, checked against their deadlines every `sweepInterval`.
    private let waiting: DeadlineSweep<DirectExchange>
    static let sweepInterval = TimeAmount.milliseconds(100)

    init(eventLoop: any EventLoop, idleLimit: TimeAmount = IdleConnections<EngineConnection>.defaultLimit) {
        self.eventLoop = eventLoop
        self.idleLimit = idleLimit
        waiting = DeadlineSweep(
            eventLoop: eventLoop, interval: Self.sweepInterval, passed: { $0.deadlinePassed($1) },
            expired: { exchange, _ in exchange.timedOut() })
    }

    /// The `date` header's value, formatted once a second.
    func httpDate() -> String {
        let now = Date()
        let second = Int(now.timeIntervalSince1970)
        if second != date.second { date = (second, dateFormatter.string(from: now)) }
        return date.text
    }

    /// Watches `exchange`'s deadline until `unwatch`.
    func watch(_ exchange: DirectExchange) {
        waiting.add(exchange)
    }

    func unwatch(_ exchange: DirectExchange) {
        waiting.remove(exchange)
    }

    /// An idle connection to `endpoint` at once, or a new one when it is connected.
    func connection(to endpoint: String, _ done: @escaping (Result<EngineConnection, any Error>) -> Void) {
        let now = NIODeadline.now()
        // Mutated in place in the dictionary: a copy out and back would copy the list each time.
        while let (fresh, stale) = idle[endpoint]?.take(now: now) {
            if idle[endpoint]?.isEmpty == true { idle[endpoint] = nil }
            for connection in stale { connection.channel.close(promise: nil) }
            guard let fresh else { break }
            if fresh.channel.isActive { return done(.success(fresh)) }
        }
        guard open[endpoint, default: 0] < Self.maxOpenPerEndpoint else { return done(.failure(Full())) }
        guard let address = address(of: endpoint) else { return done(.failure(BadEndpoint())) }
        open[endpoint, default: 0] += 1
        ClientBootstrap(group: eventLoop)
            .connectTimeout(Self.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Requests go out as bytes (`EngineConnection.send`); answers come in through a
                    // decoder that reads only what the relay uses.
                    try channel.pipeline.syncOperations.addHandler(EngineIdleBytesGuard())
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(EngineResponseDecoder()))
                    try channel.pipeline.syncOperations.addHandler(EngineResponseHandler())
                }
            }
            .connect(to: address)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    let connection = EngineConnection(channel: channel, endpoint: endpoint)
                    do {
                        try channel.pipeline.syncOperations.handler(type: EngineResponseHandler.self).connection = connection
                        try channel.pipeline.syncOperations.handler(type: EngineIdleBytesGuard.self).connection = connection
                    } catch {
                        channel.close(promise: nil)
                        self.open[endpoint, default: 1] -= 1
                        return done(.failure(error))
                    }
                    channel.closeFuture.assumeIsolated().whenComplete { _ in self.closed(connection) }
                    done(.success(connection))
                case .failure(let error):
                    self.open[endpoint, default: 1] -= 1
                    done(.failure(error))
                }
            }
    }

    /// A connection whose answer was read to its end, for the next request.
    func release(_ connection: EngineConnection) {
        connection.exchange = nil
        guard connection.channel.isActive else { return }
        let now = NIODeadline.now()
        let endpoint = connection.endpoint
        // Those left idle too long go now, not only when the engine is next used.
        for stale in idle[endpoint]?.removeStale(now: now) ?? [] { stale.channel.close(promise: nil) }
        if idle[endpoint]?.count ?? 0 < Self.maxIdlePerEndpoint {
            idle[endpoint, default: IdleConnections(limit: idleLimit)].add(connection, now: now)
        } else {
            connection.channel.close(promise: nil)
        }
        if idle[endpoint]?.isEmpty == true { idle[endpoint] = nil }
    }

    private func closed(_ connection: EngineConnection) {
        open[connection.endpoint, default: 1] -= 1
        if open[connection.endpoint] == 0 { open[connection.endpoint] = nil }
        idle[connection.endpoint]?.remove(connection)
        if idle[connection.endpoint]?.isEmpty == true { idle[connection.endpoint] = nil }
    }

    /// `http://host:port` as a socket address, resolved once (engines listen on IP literals).
    private func address(of endpoint: String) -> SocketAddress? {
        if let known = addresses[endpoint] { return known }
        guard let url = URL(string: endpoint), url.scheme == "http", let host = url.host, let port = url.port,
            let address = try? SocketAddress.makeAddressResolvingHost(host, port: port)
        else { return nil }
        if addresses.count > 10_000 { addresses.removeAll() }
        addresses[endpoint] = address
        return address
    }
}

/// One engine connection; the exchange using it hears of its answer.
final class EngineConnection {
    let channel: any Channel
    let endpoint: String
    /// `host:port`, for the `host` header.
    let hostHeader: String
    var exchange: DirectExchange?

    init(channel: any Channel, endpoint: String) {
        self.channel = channel
        self.endpoint = endpoint
        self.hostHeader = endpoint.hasPrefix("http://") ? String(endpoint.dropFirst("http://".count)) : endpoint
    }

    /// A POST of a JSON body. Every value in the head is the gateway's own (a fixed path, the
    /// engine's address, a generated request id), so it is written out directly.
    func send(path: String, requestID: String, body: ByteBuffer) {
        var head = channel.allocator.buffer(capacity: 160 + path.utf8.count + hostHeader.utf8.count)
        head.writeString("POST ")
        head.writeString(path)
        head.writeString(" HTTP/1.1\r\nhost: ")
        head.writeString(hostHeader)
        head.writeString("\r\ncontent-type: application/json\r\ncontent-length: ")
        head.writeString(String(body.readableBytes))
        head.writeString("\r\nx-request-id: ")
        head.writeString(requestID)
        head.writeString("\r\n\r\n")
        channel.write(head, promise: nil)
        channel.writeAndFlush(body, promise: nil)
    }

    /// Backpressure: stop reading the engine while the client cannot take more.
    func pauseReading() {
        try? channel.syncOptions?.setOption(.autoRead, value: false)
    }

    func resumeReading() {
        try? channel.syncOptions?.setOption(.autoRead, value: true)
    }
}

/// Passes an engine's answer to the exchange of its connection.
final class EngineResponseHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = EngineResponsePart

    var connection: EngineConnection?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // No exchange: the connection is being closed (bytes on an idle one never get here:
        // EngineIdleBytesGuard and the decoder close it first).
        guard let exchange = connection?.exchange else { return }
        switch unwrapInboundIn(data) {
        case .head(let head): exchange.engineHead(head)
        case .body(let chunk): exchange.engineBody(chunk)
        case .end: exchange.engineEnd()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection?.exchange?.engineReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection?.exchange?.engineFailed(timedOut: false, reason: "the engine closed the connection")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection?.exchange?.engineFailed(timedOut: false, reason: "\(error)")
        context.close(promise: nil)
    }
}

/// Closes an engine connection that receives bytes while no request is out on it (idle in the
/// pool): whatever they are, the next request on the connection would read them as the start of
/// its answer, so one client could receive what the engine meant for another. Bytes that arrive
/// in the same read as an answer's end are the decoder's to refuse (`oneAnswerAtATime`); between
/// the two, nothing an engine sends unasked reaches the next request.
final class EngineIdleBytesGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    var connection: EngineConnection?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard connection?.exchange != nil else { return context.close(promise: nil) }
        context.fireChannelRead(data)
    }
}

import GantryHTTP
import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// One client connection's side of the direct relay once `DirectRelayFront` has handed the
/// connection to Hummingbird's codec. It sits between the connection state handler and the
/// router's channel: requests it does not serve pass through untouched.
///
/// Its decisions (which request is served here, what waits, when reading is held, when the
/// connection closes) are `HandlerStateMachine`'s; this class keeps the parts and does them.
final class DirectRelayHandler: ChannelDuplexHandler, RemovableChannelHandler, DirectClient {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let relay: DirectRelay
    let pool: EnginePool
    /// The connection's deadlines, shared with the front: this side reports heads, body ends and
    /// answers once the codec reads the connection.
    let deadlines: ClientConnectionDeadlines
    /// What to do with each part and answer; this class keeps the parts and does it.
    private var machine: HandlerStateMachine
    static let maxHeldBytes = 64 * 1024
    /// The request being collected: its head, endpoint and body so far.
    private var collecting: (head: HTTPRequest, endpoint: InferenceEndpoint, body: ByteBuffer)?
    /// The endpoint of the head just found servable, for its `collect`.
    private var directEndpoint: InferenceEndpoint?
    /// Parts that arrived during an exchange, in order.
    private var held: [HTTPRequestPart] = []
    private(set) var context: ChannelHandlerContext?
    private var exchange: DirectExchange?
    /// The running exchange's request, for the router if the exchange hands it back.
    private var exchangeRequest: (head: HTTPRequest, body: ByteBuffer)?

    init(relay: DirectRelay, pool: EnginePool, deadlines: ClientConnectionDeadlines) {
        self.relay = relay
        self.pool = pool
        self.deadlines = deadlines
        machine = HandlerStateMachine(maxRequestBytes: relay.configuration.maxRequestBytes, maxHeldBytes: Self.maxHeldBytes)
    }

    var clientGone: Bool { machine.clientGone }

    /// The front's exchange handed its request to the router: the next request goes there directly.
    func routeNextToRouter() {
        machine.nextRequestGoesToRouter()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Hummingbird's connection-state handler, in front of this one, does not pass
        // `channelInactive` on; the close future is what says the client left.
        context.channel.closeFuture.assumeIsolated().whenComplete { _ in self.clientLeft() }
    }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        // As the parts arrive on the wire, whether served now or held.
        switch part {
        case .head(let head):
            deadlines.state.headReceived(now: .now(), boundedBody: head.path?.hasPrefix("/v1/") ?? false)
        case .end: deadlines.state.bodyReceived()
        case .body: break
        }
        receive(part, context: context)
    }

    private func receive(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch machine.partArrived(describe(part)) {
        case .forward:
            context.fireChannelRead(wrapInboundOut(part))
        case .hold:
            held.append(part)
        case .collect:
            switch part {
            case .head(let head):
                guard let endpoint = directEndpoint.take() else { return }
                let expected = head.headerFields[.contentLength].flatMap(Int.init) ?? 0
                let capacity = min(max(expected, 0), relay.configuration.maxRequestBytes)
                collecting = (head, endpoint, context.channel.allocator.buffer(capacity: capacity))
            case .body(let chunk):
                collecting!.body.writeImmutableBuffer(chunk)
            case .end:
                break
            }
        case .passCollected:
            guard let (head, _, body) = collecting.take() else { return }
            pass(head, body: body, end: false, context: context)
            context.fireChannelRead(wrapInboundOut(part))
        case .startExchange:
            guard let (head, endpoint, body) = collecting.take() else { return }
            let exchange = DirectExchange(
                client: self, endpoint: endpoint, authorization: head.headerFields[.authorization],
                requestID: RequestID.of(head.headerFields), body: body)
            self.exchange = exchange
            exchangeRequest = (head, body)
            exchange.begin()
        }
    }

    /// The part as the state machine needs it. Whether a head could be served directly is asked
    /// only when it could be (the caller lookup is not free): only a caller verified recently has
    /// its body collected here; the router checks any other before it reads a byte of the body.
    private func describe(_ part: HTTPRequestPart) -> HandlerStateMachine.Part {
        switch part {
        case .head(let head):
            guard machine.mayServeNext, relay.mode != .off,
                let endpoint = DirectRelay.endpoint(method: head.method, path: head.path),
                case .remembered = relay.caller(authorization: head.headerFields[.authorization], address: clientAddress)
            else { return .head(direct: false) }
            directEndpoint = endpoint
            return .head(direct: true)
        case .body(let chunk): return .body(bytes: chunk.readableBytes)
        case .end: return .end
        }
    }

    /// Hands a request the relay collected to the router.
    private func pass(_ head: HTTPRequest, body: ByteBuffer, end: Bool, context: ChannelHandlerContext) {
        context.fireChannelRead(wrapInboundOut(.head(head)))
        if body.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(.body(body))) }
        if end { context.fireChannelRead(wrapInboundOut(.end(nil))) }
    }

    func handToRouter() {
        exchange = nil
        let request = exchangeRequest.take()
        guard machine.exchangeHandedToRouter(), let context, let (head, body) = request else { return }
        pass(head, body: body, end: true, context: context)
        resume(context: context)
    }

    func exchangeFinished() {
        exchange = nil
        deadlines.state.answerFinished(now: .now(), bytesWaiting: false)
        let closeAfter = exchangeRequest.take()?.head.headerFields[.connection]?.lowercased() == "close"
        let action = machine.exchangeFinished(closeAfter: closeAfter)
        guard let context else { return }
        switch action {
        case .none: break
        case .close: context.close(promise: nil)
        case .resume: resume(context: context)
        }
    }

    /// Serves what arrived during the exchange, then lets reading go on.
    private func resume(context: ChannelHandlerContext) {
        // The router's channel takes what was read when the read completes.
        defer { if machine.routerOwes > 0 { context.fireChannelReadComplete() } }
        while !held.isEmpty, !machine.isServing {
            let part = held.removeFirst()
            machine.releaseHeld(describeHeld(part))
            receive(part, context: context)
        }
        if machine.resumed() { context.read() }
    }

    /// A held part's size, as it was counted when held.
    private func describeHeld(_ part: HTTPRequestPart) -> HandlerStateMachine.Part {
        switch part {
        case .head: .head(direct: false)
        case .body(let chunk): .body(bytes: chunk.readableBytes)
        case .end: .end
        }
    }

    func read(context: ChannelHandlerContext) {
        if machine.readRequested() { context.read() }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // Only the router's writes pass here; the exchange writes from this handler's context.
        switch unwrapOutboundIn(data) {
        case .head(var response):
            guard machine.routerAnswerHead(beforeBody: deadlines.state.answeringBeforeBody) else {
                return context.write(data, promise: promise)
            }
            response.headerFields[.connection] = "close"
            return context.write(wrapOutboundOut(.head(response)), promise: promise)
        case .body:
            return context.write(data, promise: promise)
        case .end:
            break
        }
        let closeAfter = machine.routerAnswerEnded(beforeBody: deadlines.state.answeringBeforeBody)
        deadlines.state.answerFinished(now: .now(), bytesWaiting: false)
        guard closeAfter else { return context.write(data, promise: promise) }
        let written = promise ?? context.eventLoop.makePromise()
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        context.write(data, promise: written)
    }

    private func clientLeft() {
        if machine.clientLeft() { exchange?.clientClosed() }
        exchange = nil
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { exchange?.clientWritable() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: - DirectClient

    /// Formatted once per connection (it was about 1 % of the gateway's CPU per request).
    private(set) lazy var clientAddress: String = context?.channel.remoteAddress?.ipAddress ?? "unknown"
    var clientWritable: Bool { context?.channel.isWritable ?? false }

    func writeHead(_ response: HTTPResponse) {
        context?.write(wrapOutboundOut(.head(response)), promise: nil)
    }

    func writeBody(_ chunk: ByteBuffer) {
        context?.write(wrapOutboundOut(.body(chunk)), promise: nil)
    }

    func writeEnd() {
        context?.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func flush() {
        context?.flush()
    }
}

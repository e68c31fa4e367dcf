import GantryHTTP
import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// One client connection's side of the direct relay once `DirectRelayFront` has handed the
/// connection to Hummingbird's codec. It sits between the connection state handler and the
/// router's channel: requests it does not serve pass through untouched.
///
/// Order on the connection is kept: a request is served directly only when the router owes no
/// answer on this connection, and while a direct exchange runs, further (pipelined) request
/// parts are held. Reading goes on meanwhile (a client that leaves must be seen at once, to
/// cancel the engine's request) until the held parts pass `maxHeldBytes`.
final class DirectRelayHandler: ChannelDuplexHandler, RemovableChannelHandler, DirectClient {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    enum State {
        case idle
        /// Reading the body of a request the relay may serve.
        case collecting(HTTPRequest, InferenceEndpoint, ByteBuffer)
        /// Passing a request's parts to the router.
        case passingOn
        /// A direct exchange is running.
        case busy
    }

    let relay: DirectRelay
    let pool: EnginePool
    /// The connection's deadlines, shared with the front: this side reports heads, body ends and
    /// answers once the codec reads the connection.
    let deadlines: ClientConnectionDeadlines
    private var state = State.idle
    /// Requests given to the router whose answer has not been written yet.
    private var routerOwes = 0
    private var held: [HTTPRequestPart] = []
    private var heldBytes = 0
    static let maxHeldBytes = 64 * 1024
    private var readHeld = false
    private(set) var context: ChannelHandlerContext?
    private var exchange: DirectExchange?
    /// The running exchange's request, for the router if the exchange hands it back.
    private var exchangeRequest: (head: HTTPRequest, body: ByteBuffer)?
    private(set) var clientGone = false
    /// The next request is one the front's exchange handed to the router: it goes there directly.
    var routeNextToRouter = false
    /// The router's answer being written announced `connection: close` (it came before the body).
    private var closingAfterAnswer = false

    init(relay: DirectRelay, pool: EnginePool, deadlines: ClientConnectionDeadlines) {
        self.relay = relay
        self.pool = pool
        self.deadlines = deadlines
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
        switch state {
        case .busy:
            if case .body(let chunk) = part { heldBytes += chunk.readableBytes }
            heldBytes += 64
            held.append(part)
        case .passingOn:
            if case .end = part { state = .idle }
            context.fireChannelRead(wrapInboundOut(part))
        case .collecting(let head, let endpoint, var body):
            switch part {
            case .body(let chunk):
                state = .busy  // drops the state's reference so the append does not copy
                if body.readableBytes + chunk.readableBytes > relay.configuration.maxRequestBytes {
                    // The router answers 413 (and reads the rest of the body).
                    state = .passingOn
                    pass(head, body: body, end: false, context: context)
                    context.fireChannelRead(wrapInboundOut(part))
                } else {
                    body.writeImmutableBuffer(chunk)
                    state = .collecting(head, endpoint, body)
                }
            case .end:
                state = .busy
                let exchange = DirectExchange(
                    client: self, endpoint: endpoint, authorization: head.headerFields[.authorization],
                    requestID: RequestID.of(head.headerFields), body: body)
                self.exchange = exchange
                exchangeRequest = (head, body)
                exchange.begin()
            case .head:
                // A new head before the end: not HTTP; let the router deal with it.
                state = .passingOn
                pass(head, body: body, end: false, context: context)
                context.fireChannelRead(wrapInboundOut(part))
            }
        case .idle:
            guard case .head(let head) = part else {
                context.fireChannelRead(wrapInboundOut(part))
                return
            }
            // Only a caller verified recently has its body collected here; the router checks any
            // other before it reads a byte of the body.
            if relay.mode != .off, routerOwes == 0, !routeNextToRouter,
                let endpoint = DirectRelay.endpoint(method: head.method, path: head.path),
                case .remembered = relay.caller(authorization: head.headerFields[.authorization], address: clientAddress)
            {
                let expected = head.headerFields[.contentLength].flatMap(Int.init) ?? 0
                let capacity = min(max(expected, 0), relay.configuration.maxRequestBytes)
                state = .collecting(head, endpoint, context.channel.allocator.buffer(capacity: capacity))
            } else {
                routeNextToRouter = false
                routerOwes += 1
                state = .passingOn
                context.fireChannelRead(wrapInboundOut(part))
            }
        }
    }

    /// Hands a request the relay collected to the router.
    private func pass(_ head: HTTPRequest, body: ByteBuffer, end: Bool, context: ChannelHandlerContext) {
        routerOwes += 1
        context.fireChannelRead(wrapInboundOut(.head(head)))
        if body.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(.body(body))) }
        if end { context.fireChannelRead(wrapInboundOut(.end(nil))) }
    }

    func handToRouter() {
        exchange = nil
        guard let context, !clientGone, let (head, body) = exchangeRequest.take() else { return }
        state = .idle
        pass(head, body: body, end: true, context: context)
        resume(context: context)
    }

    func exchangeFinished() {
        exchange = nil
        deadlines.state.answerFinished(now: .now(), bytesWaiting: false)
        let closeAfter = exchangeRequest.take()?.head.headerFields[.connection]?.lowercased() == "close"
        guard let context, !clientGone else { return }
        state = .idle
        if closeAfter {
            context.close(promise: nil)
            return
        }
        resume(context: context)
    }

    /// Serves what arrived during the exchange, then lets reading go on.
    private func resume(context: ChannelHandlerContext) {
        // The router's channel takes what was read when the read completes.
        defer { if routerOwes > 0 { context.fireChannelReadComplete() } }
        while !held.isEmpty {
            if case .busy = state { return }
            let part = held.removeFirst()
            if case .body(let chunk) = part { heldBytes -= chunk.readableBytes }
            heldBytes -= 64
            receive(part, context: context)
        }
        if case .busy = state { return }
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if case .busy = state, heldBytes > Self.maxHeldBytes {
            readHeld = true
        } else {
            context.read()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // Only the router's writes pass here; the exchange writes from this handler's context.
        switch unwrapOutboundIn(data) {
        case .head(var response) where deadlines.state.answeringBeforeBody:
            // The router answers before the request's body arrived (a refused credential, a body
            // too large): the connection closes after this answer rather than read the rest to
            // throw it away (Hummingbird would drain it through the codec, however large: an
            // unauthenticated caller's bytes). The answer says so, or a client would send its
            // next request on a connection about to close, and fail it.
            closingAfterAnswer = true
            response.headerFields[.connection] = "close"
            return context.write(wrapOutboundOut(.head(response)), promise: promise)
        case .head, .body:
            return context.write(data, promise: promise)
        case .end:
            break
        }
        routerOwes = max(0, routerOwes - 1)
        // Once announced, the close happens even if the body finished arriving meanwhile.
        let closeAfter = closingAfterAnswer || deadlines.state.answeringBeforeBody
        closingAfterAnswer = false
        deadlines.state.answerFinished(now: .now(), bytesWaiting: false)
        guard closeAfter else { return context.write(data, promise: promise) }
        let written = promise ?? context.eventLoop.makePromise()
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        context.write(data, promise: written)
    }

    private func clientLeft() {
        clientGone = true
        exchange?.clientClosed()
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

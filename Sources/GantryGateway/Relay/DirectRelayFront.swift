import GantryHTTP
import HTTPTypes
import NIOCore

/// The first handler of every client connection: it reads the common `/v1` request's bytes
/// itself and writes the answer's bytes itself, so the direct relay's requests skip Hummingbird's
/// HTTP/1.1 codec (llhttp, NIO's head types, their conversion to HTTPTypes and back, the
/// encoder): about a tenth of the gateway's CPU per request, measured with `perf`.
///
/// It serves only what `DirectRequestHead` accepts. At the first request it does not (another
/// path or method, anything unusual in the head) or that its exchange hands to the router, it
/// hands the connection on for good: the bytes not served yet go, unchanged and in order, to the
/// codec behind it, and from then on it only passes bytes through. `DirectRelayHandler` behind
/// the codec then relays what it can, as before, so no request depends on this front's parse.
final class DirectRelayFront: ChannelDuplexHandler, RemovableChannelHandler, DirectClient {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    let relay: DirectRelay
    let pool: EnginePool
    /// Behind the codec: told which handed-on request must go to the router.
    let behind: DirectRelayHandler
    /// The connection's head, body and idle deadlines (shared with `behind`), checked by `sweep`.
    let deadlines: ClientConnectionDeadlines
    let sweep: DeadlineSweep<ClientConnectionDeadlines>
    /// The body of a caller not known yet is not read past `unverifiedBytes` until it is.
    static let unverifiedBytes = 64 * 1024
    private var context: ChannelHandlerContext?
    /// When to parse, hand on, hold reading and close; this handler keeps the bytes.
    private var machine: FrontStateMachine
    /// Bytes read and not yet served (the served ones are dropped as more arrive).
    private var received = ByteBuffer()
    /// The head of the request whose body is still arriving.
    private var waitingHead: DirectRequestHead?
    private var exchange: DirectExchange?
    /// The running exchange's request as it arrived, to hand on unchanged if the router must
    /// answer, and whether it asked for the connection to close after its answer.
    private var current: (request: ByteBuffer, closeAfter: Bool)?
    /// Whether the answer being written is chunked (no `Content-Length`).
    private var chunked = false
    private(set) var clientGone = false

    init(
        relay: DirectRelay, pool: EnginePool, behind: DirectRelayHandler, deadlines: ClientConnectionDeadlines,
        sweep: DeadlineSweep<ClientConnectionDeadlines>, parses: Bool
    ) {
        // Not parsing (`gateway.relay` below `full`): every byte goes to the codec from the start,
        // and this handler only keeps the connection's deadlines.
        self.machine = FrontStateMachine(
            parses: parses,
            bounds: .init(whileServing: DirectRelayHandler.maxHeldBytes, whileVerifying: Self.unverifiedBytes))
        self.relay = relay
        self.pool = pool
        self.behind = behind
        self.deadlines = deadlines
        self.sweep = sweep
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        deadlines.onExpiry = { [weak self] expired, mayAnswer in self?.deadlinePassed(expired, mayAnswer: mayAnswer) }
        sweep.add(deadlines)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        sweep.remove(deadlines)
        self.context = nil
    }

    /// A client too slow with a head or a body is told 408 (when no answer has begun), an idle
    /// one is simply closed.
    private func deadlinePassed(_ expired: ClientDeadlines.Expired, mayAnswer: Bool) {
        guard let context, !clientGone else { return }
        relay.logger.debug("client deadline passed", metadata: ["deadline": "\(expired.rawValue)"])
        if expired != .idle, mayAnswer {
            var out = context.channel.allocator.buffer(capacity: 96)
            out.writeStaticString("HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
            context.writeAndFlush(wrapOutboundOut(.byteBuffer(out)), promise: nil)
        }
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deadlines.state.bytesReceived(now: .now())
        if machine.isHandedOn { return context.fireChannelRead(data) }
        var bytes = unwrapInboundIn(data)
        received.appendUnserved(&bytes)
        if machine.bytesArrived() == .parse { serveReceived(context: context) }
    }

    /// Does what the state machine said.
    private func perform(_ action: FrontStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .none: break
        case .parse: serveReceived(context: context)
        case .handOn(let withCurrent): handOn(context: context, first: withCurrent ? current?.request : nil)
        case .verify: verifyCaller(context: context)
        case .startExchange: startExchange()
        case .read: context.read()
        case .close: context.close(promise: nil)
        case .abandonExchange:
            exchange?.clientClosed()
            exchange = nil
        }
    }

    /// Starts the next request when it is whole, or hands the connection on.
    private func serveReceived(context: ChannelHandlerContext) {
        guard machine.bytesArrived() == .parse, !clientGone, exchange == nil, received.readableBytes > 0 else { return }
        let head: DirectRequestHead
        if let waitingHead {
            head = waitingHead
        } else {
            switch DirectRequestHead.parse(received, maxBodyBytes: relay.configuration.maxRequestBytes) {
            case .needMore: return
            case .notDirect: return perform(machine.notDirect(), context: context)
            case .head(let parsed):
                head = parsed
                deadlines.state.headReceived(now: .now(), boundedBody: true)
            }
        }
        let whole = received.readableBytes >= head.length + head.contentLength
        // The caller is read from the head once, when its body is not all there yet.
        var caller = FrontStateMachine.Caller.remembered
        if !whole, waitingHead == nil {
            switch relay.caller(authorization: head.authorization, address: clientAddress) {
            case .refused: caller = .refused
            case .remembered: caller = .remembered
            case .unverified(let bearer):
                caller = .unverified
                unverifiedBearer = bearer
            }
        }
        if !whole { waitingHead = head }
        pendingHead = head
        perform(machine.headParsed(whole: whole, closeAfter: head.closeAfter, caller: caller), context: context)
    }

    /// The head `serveReceived` just read, for `startExchange`.
    private var pendingHead: DirectRequestHead?

    /// The bearer credential of the head waiting for its body, when it must be verified.
    private var unverifiedBearer: String?

    private func startExchange() {
        guard let head = pendingHead.take(), let request = received.readSlice(length: head.length + head.contentLength) else {
            return
        }
        deadlines.state.bodyReceived()
        waitingHead = nil
        current = (request, head.closeAfter)
        let exchange = DirectExchange(
            client: self, endpoint: head.endpoint, authorization: head.authorization,
            requestID: RequestID.of(headerValue: head.requestID),
            body: request.getSlice(at: request.readerIndex + head.length, length: head.contentLength)!)
        self.exchange = exchange
        exchange.begin()
    }

    /// A body is still arriving and its caller is not known: verified while reading pauses at
    /// `unverifiedBytes`. A refused credential goes to the router (it answers 401, and the
    /// connection closes without reading the rest of the body).
    private func verifyCaller(context: ChannelHandlerContext) {
        guard let bearer = unverifiedBearer.take() else { return perform(machine.verified(true), context: context) }
        relay.verify(bearer, on: context.eventLoop) { principal in
            guard let context = self.context, !self.clientGone else { return }
            let action = self.machine.verified(principal != nil)
            // Remembered by the verifier now: the exchange finds it without asking again.
            if action == .parse, self.machine.resumeReading() { context.read() }
            self.perform(action, context: context)
        }
    }

    /// From now on the codec reads this connection: first `first` (a request the router must
    /// answer), then what arrived after it.
    private func handOn(context: ChannelHandlerContext, first: ByteBuffer?) {
        // The request counted here is counted again when the codec passes its head on.
        if first != nil || waitingHead != nil { deadlines.state.handedOn() }
        waitingHead = nil
        pendingHead = nil
        unverifiedBearer = nil
        current = nil
        if let first {
            behind.routeNextToRouter()
            context.fireChannelRead(wrapInboundOut(first))
        }
        if received.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(received)) }
        received = ByteBuffer()
        context.fireChannelReadComplete()
        if machine.closeWhenDone { context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        if machine.resumeReading() { context.read() }
    }

    func read(context: ChannelHandlerContext) {
        // During an exchange reading goes on (a client that leaves must be seen at once, to cancel
        // the engine's request) until the pipelined bytes waiting pass the bound.
        if machine.isHandedOn { return context.read() }
        perform(machine.readRequested(buffered: received.readableBytes), context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        clientGone = true
        perform(machine.inactive(), context: context)
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { exchange?.clientWritable() }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Graceful shutdown: Hummingbird's connection-state handler would close at once, as it
        // sees no request in progress; close once the request being served is answered instead.
        guard !machine.isHandedOn, event is ChannelShouldQuiesceEvent else {
            return context.fireUserInboundEventTriggered(event)
        }
        perform(machine.quiesce(bytesWaiting: received.readableBytes > 0), context: context)
    }

    // MARK: - DirectClient

    /// Formatted once per connection (it was about 1 % of the gateway's CPU per request).
    private(set) lazy var clientAddress: String = context?.channel.remoteAddress?.ipAddress ?? "unknown"
    var clientWritable: Bool { context?.channel.isWritable ?? false }

    func handToRouter() {
        exchange = nil
        guard let context, !clientGone else { return }
        perform(machine.exchangeHandedToRouter(), context: context)
    }

    func exchangeFinished() {
        exchange = nil
        deadlines.state.answerFinished(now: .now(), bytesWaiting: received.readableBytes > 0)
        current = nil
        guard let context, !clientGone else { return }
        // A whole pipelined request is still served after graceful shutdown began; then the close.
        perform(machine.exchangeFinished(), context: context)
        perform(machine.settled(), context: context)
    }

    func writeHead(_ response: HTTPResponse) {
        guard let context else { return }
        var out = context.channel.allocator.buffer(capacity: 512)
        out.writeStaticString("HTTP/1.1 ")
        out.writeString(String(response.status.code))
        out.writeStaticString(" ")
        out.writeString(response.status.reasonPhrase)
        out.writeStaticString("\r\n")
        chunked = true
        for field in response.headerFields {
            if field.name == .contentLength { chunked = false }
            out.writeString(field.name.rawName)
            out.writeStaticString(": ")
            out.writeString(field.value)
            out.writeStaticString("\r\n")
        }
        if chunked { out.writeStaticString("transfer-encoding: chunked\r\n") }
        out.writeStaticString("\r\n")
        context.write(wrapOutboundOut(.byteBuffer(out)), promise: nil)
    }

    func writeBody(_ chunk: ByteBuffer) {
        guard let context, chunk.readableBytes > 0 else { return }
        guard chunked else { return context.write(wrapOutboundOut(.byteBuffer(chunk)), promise: nil) }
        var out = context.channel.allocator.buffer(capacity: chunk.readableBytes + 16)
        out.writeString(String(chunk.readableBytes, radix: 16))
        out.writeStaticString("\r\n")
        out.writeImmutableBuffer(chunk)
        out.writeStaticString("\r\n")
        context.write(wrapOutboundOut(.byteBuffer(out)), promise: nil)
    }

    func writeEnd() {
        guard let context else { return }
        if chunked {
            var out = context.channel.allocator.buffer(capacity: 5)
            out.writeStaticString("0\r\n\r\n")
            context.write(wrapOutboundOut(.byteBuffer(out)), promise: nil)
        }
        context.flush()
    }

    func flush() {
        context?.flush()
    }
}

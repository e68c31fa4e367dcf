public import GantryCore
public import GantryHTTP
import Hummingbird
public import HummingbirdCore
public import Logging
public import NIOCore
import NIOPosix
import Synchronization

/// Serves the common `/v1` request on the event loop that read it, from the client's socket to a
/// pooled engine connection on the same loop: no task, no actor hop, no thread switch.
///
/// Why: the router's path (a Hummingbird handler, then async-http-client) hops between the
/// event loops and the concurrency pool several times per request; measured here, it served a
/// quarter of the requests per second nginx did. The direct relay does the same work (key check,
/// context bound, quota, frequency limits, least-outstanding choice, usage injection, metering,
/// timeouts, passive ejection, one retry on a refused connection) synchronously.
///
/// Whatever it cannot finish without waiting, or that is an error, it hands to the router
/// unchanged, before any side effect: a bad body, an unknown model, a limit or quota refusal,
/// a prompt only the engine's tokenizer can count, a model with no ready instance (the queue),
/// a session cookie, a blocked address. The router's answer is then exactly what it always was.
public final class DirectRelay: Sendable {
    let routes: RouteTable
    let configuration: InferenceRoutes.Configuration
    let metering: Metering
    /// The decisions of every `/v1` request, shared with the router.
    let pipeline: AdmissionPipeline
    let verifier: any CredentialVerifier
    /// Whether an address is refused for failed authentication attempts (the router answers it).
    let addressBlocked: @Sendable (String) -> Bool
    let httpMetrics: HTTPRequestMetrics
    let logger: Logger
    let serverName: String
    /// Deadlines on every client connection (head, body, idle), whichever path serves it.
    let clientTimeouts: ClientTimeouts
    /// Which of the relay's pieces serve requests. Whatever the mode, the front and the handler
    /// sit on every connection: they keep the connection's deadlines and bounds.
    let mode: RelayMode
    /// One engine connection pool and one client deadline sweep per event loop, used only there.
    private let loops = Mutex<[ObjectIdentifier: NIOLoopBound<PerLoop>]>([:])

    struct PerLoop {
        let pool: EnginePool
        let deadlines: DeadlineSweep<ClientConnectionDeadlines>
    }

    public init(
        inference: InferenceRoutes, verifier: any CredentialVerifier, addressBlocked: @escaping @Sendable (String) -> Bool,
        httpMetrics: HTTPRequestMetrics, serverName: String, logger: Logger, clientTimeouts: ClientTimeouts = ClientTimeouts(),
        mode: RelayMode = .full
    ) {
        self.clientTimeouts = clientTimeouts
        self.mode = mode
        self.routes = inference.routes
        self.configuration = inference.configuration
        self.metering = inference.metering
        self.pipeline = inference.pipeline
        self.verifier = verifier
        self.addressBlocked = addressBlocked
        self.httpMetrics = httpMetrics
        self.serverName = serverName
        self.logger = logger
    }

    /// The connection's handlers (ahead of the HTTP codec and behind it), or nil where the event
    /// loop cannot open engine connections itself (not a NIO posix loop): the router then serves
    /// everything.
    func makeHandlers(for channel: any Channel) -> (front: DirectRelayFront, behind: DirectRelayHandler)? {
        guard ClientBootstrap(validatingGroup: channel.eventLoop) != nil else { return nil }
        let loop = perLoop(channel.eventLoop)
        let deadlines = ClientConnectionDeadlines(timeouts: clientTimeouts)
        let behind = DirectRelayHandler(relay: self, pool: loop.pool, deadlines: deadlines)
        let front = DirectRelayFront(
            relay: self, pool: loop.pool, behind: behind, deadlines: deadlines, sweep: loop.deadlines,
            parses: mode == .full)
        return (front, behind)
    }

    private func perLoop(_ eventLoop: any EventLoop) -> PerLoop {
        let key = ObjectIdentifier(eventLoop)
        if let found = loops.withLock({ $0[key] }) { return found.value }
        let made = NIOLoopBound(
            PerLoop(pool: EnginePool(eventLoop: eventLoop), deadlines: ClientConnectionDeadlines.sweep(on: eventLoop)),
            eventLoop: eventLoop)
        return loops.withLock { loops in
            if let existing = loops[key] { return existing }
            loops[key] = made
            return made
        }.value
    }

    /// What the relay knows of a request's caller from its `Authorization` value alone.
    enum Caller {
        /// No bearer credential, or an address slowed down for failed attempts: the router answers.
        case refused
        case remembered(Principal)
        /// Not verified recently: `verify` asks the store or the control role.
        case unverified(bearer: String)
    }

    /// The one reading of a request's credential on the relay's paths (the front, before and
    /// after its body, and the handler behind the codec).
    func caller(authorization: String?, address: String) -> Caller {
        guard let bearer = authorization.flatMap(BearerCredential.credential(fromAuthorization:)),
            !addressBlocked(address)
        else { return .refused }
        return verifier.rememberedPrincipal(bearer: bearer).map(Caller.remembered) ?? .unverified(bearer: bearer)
    }

    /// Verifies `bearer` and calls `done` on `eventLoop` with the principal, or nil if refused.
    func verify(_ bearer: String, on eventLoop: any EventLoop, _ done: @escaping (Principal?) -> Void) {
        let verifier = verifier
        let promise = eventLoop.makePromise(of: Principal.self)
        promise.completeWithTask { try await verifier.verify(bearer: bearer) }
        promise.futureResult.assumeIsolated().whenComplete { done(try? $0.get()) }
    }

    /// The endpoint a request head names, when it is one the relay serves.
    static func endpoint(method: HTTPRequest.Method, path: String?) -> InferenceEndpoint? {
        guard method == .post, let path else { return nil }
        return InferenceEndpoint(path: path)
    }
}

/// Hummingbird's HTTP/1.1 channel with the direct relay in two places: `DirectRelayFront` ahead of
/// the codec (the common request, read and written as bytes) and `DirectRelayHandler` just after
/// the connection-state handler (once the front has handed the connection on; there graceful
/// shutdown counts the relay's requests like the router's).
public struct DirectRelayHTTP1Channel: HTTPChannelHandler {
    public typealias Value = HTTP1Channel.Value
    let base: HTTP1Channel
    let relay: DirectRelay

    public var responder: HTTPChannelHandler.Responder { base.responder }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let relay = relay
        return base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            guard let handlers = relay.makeHandlers(for: channel) else { return value }
            let operations = channel.pipeline.syncOperations
            let state = try operations.handler(type: HTTPConnectionStateHandler.self)
            try operations.addHandler(handlers.behind, position: .after(state))
            try operations.addHandler(handlers.front, position: .first)
            return value
        }
    }

    public func handle(value: Value, logger: Logger) async {
        await handleHTTP(asyncChannel: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with `/v1` served by the direct relay where it can, the router otherwise.
    public static func http1(directRelay: DirectRelay) -> HTTPServerBuilder {
        .init { responder in DirectRelayHTTP1Channel(base: HTTP1Channel(responder: responder), relay: directRelay) }
    }
}

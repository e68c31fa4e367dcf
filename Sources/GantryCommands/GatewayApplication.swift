import AsyncHTTPClient
import Foundation
import GantryAuth
import GantryCore
public import GantryGateway
public import GantryHTTP
public import GantryServing
import GantryStore
public import Hummingbird
public import Logging
import Prometheus

/// A gateway process (`gantry serve --role gateway`): the `/v1` data plane alone, in front of a
/// control process. It verifies keys by introspection (remembered for 5 s), follows the control
/// role's route table with a long-poll watch, reports unreachable instances and its load back,
/// enforces limits and quotas, writes usage records to the shared database, and proxies every
/// other path to the control role.
public struct GantryGatewayServer: Sendable {
    public var application: Application<HeadResponder<GantryRequestContext>>
    public let routeTable: RouteTable
    public let usage: UsageRecorder
}

public func buildGatewayApplication(
    configuration: GantryConfiguration, logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> GantryGatewayServer {
    var logger = logger
    logger.logLevel = configuration.logLevel
    // Both are required with this role; the configuration refused to load without them.
    guard let controlURL = configuration.gateway.controlURL, let serviceSecret = configuration.auth.introspectionSecret
    else { preconditionFailure("a gateway configuration always has a control URL and the service credential") }
    // Checked when the configuration loaded.
    let control = try ControlEndpoints(controlURL)
    // The control role owns the schema: a gateway opens the shared database without migrating it.
    let store = try await SQLStore.open(configuration.database, logger: logger)
    let repositories = store.repositories
    let metrics = PrometheusCollectorRegistry()

    let engineClients = EngineClients(configuration: configuration.gateway.engineClientConfiguration)
    // The proxy relays the control role's answers as they are, redirects included.
    var controlConfiguration = configuration.gateway.httpClientConfiguration
    controlConfiguration.redirectConfiguration = .disallow
    let controlClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: controlConfiguration)

    let routeTable = RouteTable()
    let usage = UsageRecorder(repository: repositories.usage, logger: logger)
    let verifier = IntrospectionClient(
        control: control, serviceSecret: serviceSecret, httpClient: controlClient, cacheLifetime: .seconds(5),
        offlineGrace: configuration.gateway.offlineKeyGrace)

    let router = Router(context: GantryRequestContext.self)
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: CanonicalPathMiddleware())
    router.add(middleware: AccessLogMiddleware())
    router.add(middleware: HTTPMetricsMiddleware(registry: metrics))
    let routeMethods = RouteMethods()
    router.add(middleware: APIErrorMiddleware(methods: routeMethods))
    router.add(
        middleware: ControlProxyMiddleware(
            control: control, client: controlClient, maxBodyBytes: max(configuration.gateway.maxRequestBytes, 64 << 20),
            serviceSecret: serviceSecret, clientAddress: { $0.remoteAddress }))
    let failedAuthentication = FailedAuthenticationLimiter(
        maximumFailures: configuration.auth.maxFailedAttemptsPerMinute, window: 60)
    router.add(
        middleware: AuthenticationMiddleware(
            verifier: verifier, limiter: failedAuthentication, metricsToken: configuration.auth.metricsToken))
    OperationsRoutes.add(to: router, registry: metrics, readiness: [ReadinessCheck(name: "store") { await store.ping() }])
    // Limits and quotas over every gateway: admitted here against grants of the leader's ledger.
    let sharedLimits = SharedLimits(
        fallback: configuration.gateway.sharedLimitsFallback, registry: metrics,
        transport: SharedLimits.httpTransport(control: control, serviceSecret: serviceSecret, httpClient: controlClient))
    // Only what the reports carry to the leader's history: two minutes are all a report spans.
    let history = ServiceMetricsHistory(keep: 2, reporting: true)
    let inference = configuration.gateway.inferenceRoutes(
        routes: routeTable, clients: engineClients, limiter: RateLimiter(), usage: usage,
        usageRepository: repositories.usage, metrics: metrics, history: history, shared: sharedLimits)
    inference.add(to: router)
    routeMethods.load(router)
    let directRelay = DirectRelay(
        inference: inference, verifier: verifier, addressBlocked: { failedAuthentication.retryAfter(for: $0) != nil },
        httpMetrics: HTTPRequestMetrics(registry: metrics), serverName: "gantry-gateway", logger: logger,
        clientTimeouts: configuration.http.clientTimeouts, mode: configuration.gateway.relay)

    let watcher = RouteWatcher(
        control: control, serviceSecret: serviceSecret, routes: routeTable, httpClient: controlClient, logger: logger,
        credentialsChanged: { verifier.forgetRemembered() },
        blockedAddresses: { failedAuthentication.applyRemoteBlocks($0) })
    // Shut down in reverse: the server, the route watch, the usage records still waiting
    // (written), the engines' clients, the store, the control role's client.
    let application = Application(
        responder: HeadResponder(router.buildResponder()), server: .http1(directRelay: directRelay),
        configuration: .init(
            address: .hostname(configuration.http.host, port: configuration.http.port), serverName: "gantry-gateway"),
        services: [
            HTTPClientService(client: controlClient), StoreService(store: store), engineClients, usage, watcher,
            sharedLimits,
            GatewayReporter(
                control: control, serviceSecret: serviceSecret, routes: routeTable, httpClient: controlClient,
                logger: logger, failedAuthentication: failedAuthentication, history: history),
        ],
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.http.port) },
        logger: logger)
    return GantryGatewayServer(application: application, routeTable: routeTable, usage: usage)
}

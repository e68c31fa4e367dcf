import AsyncHTTPClient
import Foundation
public import GantryAuth
public import GantryBlobs
import GantryConsole
public import GantryCore
public import GantryGateway
public import GantryHTTP
public import GantryOrchestrator
public import GantryRegistry
public import GantryResources
public import GantryServing
public import GantryStore
public import Hummingbird
public import Logging
import NIOCore
import NIOPosix
public import Prometheus
import ServiceLifecycle

/// Everything `gantry serve` runs, built from one configuration. Tests build the same thing.
public struct GantryServer: Sendable {
    public var application: Application<HeadResponder<GantryRequestContext>>
    public let store: SQLStore
    public let routeTable: RouteTable
    /// Where engines run: `localRuntime`, or Kubernetes pods with `--runtime kubernetes`.
    public let runtime: any EngineRuntime
    /// Engines as processes on this machine (idle with `--runtime kubernetes`).
    public let localRuntime: LocalProcessRuntime
    public let reconciler: Reconciler
    /// Runs the reconciler while this process leads the control replicas on its store.
    public let election: LeaderElection
    public let identity: IdentityService
    /// Present when OIDC login is configured.
    public let login: LoginService?
    public let registry: RegistryService
    /// Where uploaded model files are kept.
    public let objects: any ObjectStore
    public let deployments: DeploymentService
    public let metrics: PrometheusCollectorRegistry
    /// The last hour of every model service, minute by minute.
    public let history: ServiceMetricsHistory
    public let allocations: AllocationService
    /// Usage records waiting to be written; `flush()` writes them now.
    public let usage: UsageRecorder
    public let limiter: RateLimiter
    /// Issues and checks the tokens engine pods fetch model files with.
    public let modelFetch: ModelFetchTokens
    /// Set on the first start of an empty store: the admin key to print once. Never logged.
    public let bootstrapAdminKey: String?
    /// Every route the router serves, as `METHOD /path` with Hummingbird's path syntax
    /// (`{name}` a segment, `**` the rest): what the OpenAPI document is checked against.
    public let routes: [String]
}

/// Builds the all-in-one server: opens and migrates the store, wires the services together
/// through their `GantryCore` protocols and mounts their routes behind the gateway middleware.
/// `onServerRunning` receives the bound port (useful with port 0).
public func buildApplication(
    configuration: GantryConfiguration, logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> GantryServer {
    var logger = logger
    logger.logLevel = configuration.logLevel
    try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)

    let store = try await SQLStore.open(configuration.database, logger: logger)
    let repositories: Repositories
    let bootstrapKey: String?
    let metrics = PrometheusCollectorRegistry()
    // The last hour of every model service, for `GET /api/v1/deployments/{name}/metrics`.
    let history = ServiceMetricsHistory()
    let inventory: ResourceInventory
    let allocations: AllocationService
    let cluster: KubernetesCluster?
    do {
        try await store.migrate(logger: logger)
        repositories = store.repositories
        bootstrapKey = try await IdentityService(repositories: repositories, logger: logger).bootstrapAdminKeyIfNeeded()
        cluster =
            configuration.runtime == .kubernetes
            ? try await KubernetesCluster.connect(configuration.kubernetes, logger: logger) : nil
        let nodeSource: any NodeSource =
            if let cluster {
                KubernetesNodeSource(
                    nodes: cluster.nodes, pods: cluster.allPods, exporters: DCGMExporterScraper(httpClient: .shared))
            } else {
                LocalNodeSource(discovery: try LocalNodeSource.discovery(for: configuration.resources.gpuSource))
            }
        inventory = ResourceInventory(
            source: nodeSource, interval: configuration.resources.pollInterval, metrics: metrics, logger: logger,
            holders: { try await gpuHolders(repositories) }, history: history)
        allocations = AllocationService(inventory: inventory, ledger: repositories.allocations)
        // Allocations of instances no longer recorded are released; recorded instances keep
        // theirs (the reconcile loop adopts their engines or starts them again on the same GPUs),
        // and allocations made for other owners through the API stay.
        try await allocations.releaseOrphans { owner in
            guard owner.hasPrefix("ins_") else { return true }
            return try await repositories.instances.instance(id: owner) != nil
        }
    } catch {
        try? await store.close()
        throw error
    }

    let clientConfiguration = configuration.gateway.httpClientConfiguration
    let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
    let engineClients = EngineClients(configuration: configuration.gateway.engineClientConfiguration)

    let oidc = configuration.auth.oidc.map { OIDCClient(settings: $0, httpClient: httpClient, logger: logger) }
    let routeTable = RouteTable()
    let credentialChanges = CredentialChangeRelay(
        counters: repositories.changeCounters, routes: routeTable, interval: .milliseconds(250), logger: logger)
    // Gateways in other processes hear of revocations through the leader's route watch.
    let identity = IdentityService(
        repositories: repositories, logger: logger, providerTokens: oidc,
        onCredentialsChanged: {
            await routeTable.credentialsChanged()
            await credentialChanges.announce()
        })
    let login = oidc.map {
        LoginService(
            oidc: $0, identity: identity, repositories: repositories, publicURL: configuration.auth.publicURL,
            sessionLifetime: configuration.auth.sessionLifetime, logger: logger)
    }

    var adapters: [any EngineAdapter] = [
        LlamaCppAdapter(binary: configuration.engine.llamaServer), VLLMAdapter(program: configuration.engine.vllm),
        SGLangAdapter(python: configuration.engine.sglangPython), TGIAdapter(program: configuration.engine.tgi),
    ]
    if let template = configuration.engine.customCommand { adapters.append(CustomCommandAdapter(template: template)) }
    let localRuntime = await LocalProcessRuntime.make(
        configuration: .init(
            adapters: adapters, logDirectory: configuration.dataDirectory + "/logs", stopGracePeriod: .seconds(10),
            logMaxBytes: configuration.engine.logMaxBytes),
        httpClient: httpClient, logger: logger)
    // Pods fetch their model files from the registry with these, checked by ModelFileRoutes.
    let fetchTokens = ModelFetchTokens(
        secret: configuration.auth.introspectionSecret,
        baseURL: configuration.kubernetes.registryURL ?? configuration.auth.publicURL)
    let runtime: any EngineRuntime =
        if let cluster {
            KubernetesRuntime(
                client: cluster.client, pods: cluster.enginePods, nodes: cluster.nodes, adapters: adapters,
                configuration: cluster.configuration, grants: fetchTokens, httpClient: httpClient, logger: logger)
        } else {
            localRuntime
        }
    let objects: any ObjectStore
    let closeObjects: @Sendable () async throws -> Void
    do {
        (objects, closeObjects) = try await makeObjectStore(configuration.blobs, logger: logger)
    } catch {
        try? await httpClient.shutdown()
        try? await engineClients.shutdown()
        try? await store.close()
        throw error
    }
    let artifacts = ArtifactCache(
        root: URL(fileURLWithPath: configuration.blobs.artifactCacheDirectory), objects: objects,
        models: repositories.models, maxBytes: configuration.blobs.artifactCacheMaxBytes, logger: logger)
    let reconciler = Reconciler(
        repositories: repositories, runtime: runtime, routes: routeTable, artifacts: artifacts, allocator: allocations,
        timing: .init(
            interval: configuration.reconcileInterval, startupTimeout: configuration.engine.startupTimeout,
            // Gateway processes report their requests on a draining instance about once a second.
            drainGrace: configuration.gateway.role == .control ? .seconds(2) : .zero),
        defaultCPUThreads: configuration.engine.threads, logger: logger)
    if let cluster {
        // A pod's or a node's change is news for its instance now, not at the next interval: a
        // lost node's pods are replaced without waiting out a reconcile period. Wake-ups coalesce.
        await cluster.enginePods.onChange { reconciler.wake() }
        await cluster.nodes.onChange { reconciler.wake() }
    }
    let registry = RegistryService(
        models: repositories.models, deployments: repositories.deployments, objects: objects,
        maxFileBytes: configuration.blobs.maxFileBytes, logger: logger)
    // Control replicas on one store elect one leader: it alone reconciles and autoscales, and its
    // route table alone is served to gateways. Alone on its store, a process leads at once.
    routeTable.setAuthoritative(false)
    // 1 on the leader, 0 on a standby: exactly one replica per store should show 1.
    let leading = metrics.makeGauge(
        descriptor: .init(
            namespace: "gantry", metricName: "control_leader",
            helpText: "1 while this control process leads the replicas on its store (reconciles, serves the route table)"))
    leading.set(Double(0))
    // The share-out of limits and quotas among gateways; it runs on the leader only.
    let ledger = LimitLedgerHost(usage: repositories.usage)
    let election = LeaderElection(
        leases: repositories.leases, holder: LeaderElection.uniqueHolder(), settings: configuration.leadership,
        logger: logger
    ) { _ in
        leading.set(Double(1))
        ledger.lead()
        defer {
            ledger.stepDown()
            leading.set(Double(0))
        }
        await withDiscardingTaskGroup { group in
            group.addTask { await credentialChanges.follow() }
            group.addTask { await registry.sweepUnreferencedObjects(every: .seconds(3600)) }
            await reconciler.lead(onFirstPass: { routeTable.setAuthoritative(true) })
            group.cancelAll()
        }
        // Not the platform's table any more before anything is withdrawn: a gateway's watch must
        // never receive an emptied table.
        routeTable.setAuthoritative(false)
        if Task.isShuttingDownGracefully { await routeTable.withdrawAll() }
    }
    let deployments = DeploymentService(
        repositories: repositories, supportedEngines: runtime.supportedEngines, allocator: allocations,
        reconciler: reconciler)

    let router = Router(context: GantryRequestContext.self)
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: CanonicalPathMiddleware())
    router.add(middleware: AccessLogMiddleware())
    router.add(middleware: HTTPMetricsMiddleware(registry: metrics))
    let routeMethods = RouteMethods()
    router.add(middleware: APIErrorMiddleware(methods: routeMethods))
    // Counts this process's failures and, on the leader, the ones gateways report; an address it
    // blocks reaches every gateway with the route watch.
    let failedAuthentication = FailedAuthenticationLimiter(
        maximumFailures: configuration.auth.maxFailedAttemptsPerMinute, window: 60,
        onBlock: { Task { await routeTable.blocksChanged() } })
    router.add(
        middleware: AuthenticationMiddleware(
            verifier: identity, limiter: failedAuthentication, serviceCredential: configuration.auth.introspectionSecret,
            metricsToken: configuration.auth.metricsToken))
    var readiness = [ReadinessCheck(name: "store") { await store.ping() }]
    if let cluster { readiness.append(ReadinessCheck(name: "kubernetes") { await cluster.isFollowing() }) }
    OperationsRoutes.add(to: router, registry: metrics, readiness: readiness)
    let usage = UsageRecorder(repository: repositories.usage, logger: logger)
    let limiter = RateLimiter()
    // Split roles: this process's own /v1 admits against the ledger too (in process; a standby's
    // follows the fallback setting, as a gateway that cannot reach the leader does).
    let sharedLimits =
        configuration.gateway.sharesLimits
        ? SharedLimits(fallback: configuration.gateway.sharedLimitsFallback, registry: metrics) {
            try await ledger.sync($0)
        } : nil
    let inference = configuration.gateway.inferenceRoutes(
        routes: routeTable, clients: engineClients, limiter: limiter, usage: usage, usageRepository: repositories.usage,
        metrics: metrics, history: history, failedAuthentication: failedAuthentication, shared: sharedLimits,
        ledger: ledger)
    inference.add(to: router)
    let directRelay = DirectRelay(
        inference: inference, verifier: identity,
        addressBlocked: { failedAuthentication.retryAfter(for: $0) != nil },
        httpMetrics: HTTPRequestMetrics(registry: metrics), serverName: "gantry", logger: logger,
        clientTimeouts: configuration.http.clientTimeouts, mode: configuration.gateway.relay)
    UsageRoutes(repository: repositories.usage, recorder: usage).add(to: router)
    RegistryRoutes(registry: registry).add(to: router)
    ModelFileRoutes(models: repositories.models, registry: registry, tokens: fetchTokens).add(to: router)
    DeploymentRoutes(service: deployments, repositories: repositories, runtime: runtime, history: history).add(to: router)
    IdentityRoutes(identity: identity, repositories: repositories).add(to: router)
    AuthRoutes(
        login: login,
        keySessions: BrowserSessions(repositories: repositories, lifetime: configuration.auth.sessionLifetime),
        secureCookies: configuration.auth.publicURL.hasPrefix("https://")
    ).add(to: router)
    IntrospectionRoutes(verifier: identity).add(to: router)
    SelfServicePage(identity: identity, repositories: repositories, loginAvailable: login != nil).add(to: router)
    ResourceRoutes(inventory: inventory, allocations: allocations).add(to: router)
    OpenAPIRoutes.add(to: router)
    // The console calls the API in process through this same router, as the visitor.
    let consoleAPI = ConsoleAPI()
    ConsoleRoutes(api: consoleAPI, loginAvailable: login != nil).add(to: router)
    routeMethods.load(router)
    consoleAPI.attach(router.buildResponder())

    // Shut down in reverse: the server first (in-flight requests finish), then the resource
    // poller, the reconcile loop, the engines, the usage records still waiting (written), the
    // engines' HTTP clients, and last the store and the shared HTTP client.
    // Nothing after this point throws, so nothing opened above can leak.
    let application = Application(
        responder: HeadResponder(router.buildResponder()), server: .http1(directRelay: directRelay),
        configuration: .init(address: .hostname(configuration.http.host, port: configuration.http.port), serverName: "gantry"),
        services: [
            HTTPClientService(client: httpClient), StoreService(store: store), ShutdownService(action: closeObjects),
            engineClients, usage,
        ] + (cluster?.services ?? []) + [localRuntime, election, inventory] + (sharedLimits.map { [$0] } ?? []),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.http.port) },
        logger: logger)
    return GantryServer(
        application: application, store: store, routeTable: routeTable, runtime: runtime, localRuntime: localRuntime,
        reconciler: reconciler, election: election,
        identity: identity, login: login, registry: registry, objects: objects, deployments: deployments, metrics: metrics,
        history: history, allocations: allocations, usage: usage, limiter: limiter, modelFetch: fetchTokens,
        bootstrapAdminKey: bootstrapKey, routes: router.routes.map(\.description))
}

extension GantryConfiguration.Gateway {
    /// The HTTP client settings for engines and the control role.
    var httpClientConfiguration: HTTPClient.Configuration {
        var client = HTTPClient.Configuration()
        client.timeout = .init(connect: .seconds(2), read: .seconds(Int64(upstreamTimeout.components.seconds)))
        client.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
        // A refused connection fails at once instead of being retried until the connect timeout:
        // a dead engine must be reported to the orchestrator (and the request tried on another
        // instance) now, not two seconds later. Measured: failover after kill -9 went from 2.3 s to
        // well under one.
        client.connectionPool.retryConnectionEstablishment = false
        client.decompression = .disabled
        return client
    }

    /// Engines get clients of their own (a model service with its own idle timeout needs its own
    /// client: see EngineClients), with one connection per request in flight (HTTP/1.1): the pool
    /// must hold as many as the streams a gateway keeps open (bench/gateway.sh holds 1,000; 256 made
    /// the rest fail).
    var engineClientConfiguration: HTTPClient.Configuration {
        var client = httpClientConfiguration
        client.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 4096
        // Idle connections go before the engine closes them itself (the direct relay keeps its
        // own pool to the same limit).
        client.connectionPool.idleTimeout = EngineClients.idleConnectionLimit
        return client
    }

    /// The `/v1` routes with these settings, for the all-in-one server and gateway processes alike.
    func inferenceRoutes(
        routes: RouteTable, clients: EngineClients, limiter: RateLimiter, usage: UsageRecorder,
        usageRepository: any UsageRepository, metrics: PrometheusCollectorRegistry, history: ServiceMetricsHistory? = nil,
        failedAuthentication: FailedAuthenticationLimiter? = nil, shared: SharedLimits? = nil,
        ledger: LimitLedgerHost? = nil
    ) -> InferenceRoutes {
        InferenceRoutes(
            routes: routes, clients: clients,
            configuration: .init(
                maxRequestBytes: maxRequestBytes, maxResponseBytes: 64 << 20, upstreamTimeout: upstreamTimeout,
                queueTimeout: queueTimeout, maxQueuedPerModel: maxQueuedRequests),
            metering: Metering(
                limiter: limiter, quotas: QuotaLedger(repository: usageRepository), usage: usage,
                metrics: GatewayMetrics(registry: metrics, history: history), shared: shared),
            failedAuthentication: failedAuthentication, ledger: ledger)
    }
}

/// Which GPUs each running engine instance holds, by service and version: what ties a GPU's
/// utilisation and memory to the service (the Resources service reads it on every poll).
func gpuHolders(_ repositories: Repositories) async throws -> [GPUHolder] {
    let deployments = Dictionary(
        try await repositories.deployments.listDeployments().map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    return try await repositories.instances.listInstances(deploymentID: nil).flatMap { instance -> [GPUHolder] in
        guard instance.state.isActive, let deployment = deployments[instance.deploymentID] else { return [] }
        let version = deployment.revision(runBy: instance).version
        // Instances placed by Kubernetes record no GPU: their nodes report what they use.
        return (instance.gpuUUIDs.isEmpty ? [""] : instance.gpuUUIDs).map {
            GPUHolder(
                service: deployment.name, version: version, instance: instance.id, node: instance.node, gpuUUID: $0)
        }
    }
}

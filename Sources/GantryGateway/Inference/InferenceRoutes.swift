public import AsyncHTTPClient
import Foundation
public import GantryCore
public import GantryHTTP
import HTTPTypes
public import Hummingbird
public import Logging
import NIOCore
import ServiceLifecycle

/// The `/v1` inference surface: authenticates nothing itself (the middleware did), checks the
/// request against the model service's context and frequency limits and the key's quota, picks
/// a ready instance and relays the answer, streaming SSE as it arrives, and meters every request.
public struct InferenceRoutes: Sendable {
    public struct Configuration: Sendable {
        /// Largest request body accepted; a larger one is a 413.
        public var maxRequestBytes: Int
        /// Largest non-streaming engine response relayed.
        public var maxResponseBytes: Int
        /// How long to wait for an engine's response head, unless its service sets its own.
        public var upstreamTimeout: Duration
        /// How long a request waits for a deployment with no ready instance (starting, or scaled
        /// to zero) before a 503.
        public var queueTimeout: Duration
        /// Requests held per deployment while it has no ready instance; more get a 503 at once.
        public var maxQueuedPerModel: Int

        public init(
            maxRequestBytes: Int, maxResponseBytes: Int, upstreamTimeout: Duration, queueTimeout: Duration = .seconds(120),
            maxQueuedPerModel: Int = 100
        ) {
            self.maxRequestBytes = maxRequestBytes
            self.maxResponseBytes = maxResponseBytes
            self.upstreamTimeout = upstreamTimeout
            self.queueTimeout = queueTimeout
            self.maxQueuedPerModel = maxQueuedPerModel
        }
    }

    let routes: RouteTable
    let clients: EngineClients
    let configuration: Configuration
    let metering: Metering
    let tokenizer: EngineTokenizer
    /// The decisions of every `/v1` request, shared with the direct relay.
    let pipeline: AdmissionPipeline
    /// The control role's failed-authentication slowdown: gateways' reports add to it, and the
    /// route table carries the addresses it blocks to them.
    let failedAuthentication: FailedAuthenticationLimiter?
    /// The control role's share-out of limits among gateways, answered while this process leads.
    let ledger: LimitLedgerHost?

    public init(
        routes: RouteTable, clients: EngineClients, configuration: Configuration, metering: Metering,
        failedAuthentication: FailedAuthenticationLimiter? = nil, ledger: LimitLedgerHost? = nil
    ) {
        self.failedAuthentication = failedAuthentication
        self.ledger = ledger
        self.routes = routes
        self.clients = clients
        self.configuration = configuration
        self.metering = metering
        self.tokenizer = EngineTokenizer(client: clients.defaultClient)
        self.pipeline = AdmissionPipeline(routes: routes, metering: metering)
    }

    public func add(to router: Router<GantryRequestContext>) {
        for endpoint in [InferenceEndpoint.chatCompletions, .completions, .embeddings] {
            router.post(RouterPath(endpoint.path)) { request, context in
                try await forward(request, context: context, endpoint: endpoint)
            }
        }
        router.get("/v1/models") { _, context in
            await listModels(for: try context.requirePrincipal())
        }
        router.get("/v1/models/{name}") { _, context in
            let principal = try context.requirePrincipal()
            let name = try context.parameters.require("name")
            guard let entry = routes.entry(for: name), entry.admits(principal) else {
                throw Self.modelNotFound(name)
            }
            return JSONResponse(ModelItem(entry))
        }
        // The route table for a gateway in its own process: `?after=<generation>` waits (up to
        // `timeout_seconds`, default 30) until the routes change, so changes arrive at once.
        router.get("/api/v1/routes") { request, context in
            _ = try context.requireAdmin()
            try Self.requireLeader(routes)
            let after = try request.uri.queryParameters["after"].map { text in
                guard let value = UInt64(text) else {
                    throw GantryError.invalid("after must be a generation number", param: "after")
                }
                return value
            }
            let seconds =
                try request.uri.queryParameters["timeout_seconds"].map { text in
                    guard let value = Int(text), (0...300).contains(value) else {
                        throw GantryError.invalid("timeout_seconds must be 0-300", param: "timeout_seconds")
                    }
                    return value
                } ?? 30
            let (generation, entries) =
                if let after {
                    await withGracefulShutdownHandler {
                        await routes.routes(after: after, timeout: .seconds(seconds))
                    } onGracefulShutdown: {
                        Task { await routes.releaseWatchers() }
                    }
                } else {
                    (await routes.generation, routes.allEntries())
                }
            // Again after the wait: a replica that stopped leading meanwhile no longer speaks for
            // the platform (and at shutdown its table is emptied, which wakes the watch).
            try Self.requireLeader(routes)
            return JSONResponse(
                RouteSnapshot(
                    generation: generation, credentials: await routes.credentialGeneration, data: entries,
                    blocked: failedAuthentication?.blockedAddresses()))
        }
        // What a gateway in its own process saw: unreachable instances and its load.
        router.post("/api/v1/routes/reports") { request, context in
            _ = try context.requireAdmin()
            try Self.requireLeader(routes)
            var request = request
            let body = try await request.collectBody(upTo: 4 << 20)
            let report: GatewayReport
            do {
                report = try JSONDecoder().decode(GatewayReport.self, from: Data(buffer: body))
            } catch {
                throw GantryError.invalid("the body is not a gateway report")
            }
            await routes.receive(report)
            if let history = metering.metrics.history {
                for (service, minutes) in report.minutes ?? [:] { for minute in minutes { history.series(service).add(minute) } }
            }
            for (address, count) in (report.failedAuthentications ?? [:]).prefix(FailedAuthenticationLimiter.capacity) {
                failedAuthentication?.recordFailures(for: address, count: count)
            }
            return Response(status: .noContent)
        }
        // A gateway's grants of the shared limits: what it asks for, gives back and runs.
        router.post("/api/v1/limits/sync") { request, context in
            _ = try context.requireAdmin()
            guard let ledger else { throw GantryError.notFound("this process keeps no limit ledger") }
            var request = request
            let body = try await request.collectBody(upTo: 4 << 20)
            let sync: LimitSync
            do {
                sync = try JSONDecoder().decode(LimitSync.self, from: Data(buffer: body))
            } catch {
                throw GantryError.invalid("the body is not a limit sync")
            }
            let answer: LimitSyncAnswer
            do {
                answer = try await ledger.sync(sync)
            } catch is LedgerUnavailable {
                throw GantryError(
                    .unavailable, "this control replica is a standby; the leader keeps the limit ledger",
                    code: "not_leader")
            }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(data: try JSONEncoder().encode(answer))))
        }
    }

    struct ModelList: Encodable, Sendable {
        var object = "list"
        var data: [ModelItem]
    }

    struct ModelItem: Encodable, Sendable {
        var id: String
        var object = "model"
        var created: Int
        var owned_by = "gantry"

        init(_ entry: RouteEntry) {
            id = entry.deployment
            created = Int(entry.createdAt.timeIntervalSince1970)
        }
    }

    /// Only the deployments the caller may use are listed.
    func listModels(for principal: Principal) async -> JSONResponse<ModelList> {
        JSONResponse(ModelList(data: routes.allEntries().filter { $0.admits(principal) }.map(ModelItem.init)))
    }

    /// A standby control replica sends gateways on to the leader: its table is not the platform's,
    /// and the load a gateway reports counts only where the autoscaler runs.
    static func requireLeader(_ routes: RouteTable) throws {
        guard routes.isAuthoritative else {
            throw GantryError(
                .unavailable, "this control replica is a standby; the leader serves the route table",
                code: "not_leader")
        }
    }

    /// A deployment the caller may not use answers exactly like one that does not exist.
    static func modelNotFound(_ name: String) -> GantryError {
        GantryError.notFound("The model '\(name)' does not exist or you do not have access to it.", code: "model_not_found")
    }
}

/// The answer of `GET /api/v1/routes`.
struct RouteSnapshot: Encodable {
    var generation: UInt64
    /// The control role's credential generation: when it moves, gateways forget remembered keys.
    var credentials: UInt64
    var data: [RouteEntry]
    /// Client addresses blocked for failed authentications over every gateway, with the seconds
    /// left.
    var blocked: [String: Int]?
}

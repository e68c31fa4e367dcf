public import AsyncHTTPClient
import Foundation
import GantryCore
public import GantryHTTP
import HTTPTypes
public import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The `/v1` inference surface: reads `model`, picks a ready instance and forwards the body,
/// streaming SSE responses through as they arrive.
public struct InferenceRoutes: Sendable {
    public struct Configuration: Sendable {
        /// Largest request body accepted; a larger one is a 413.
        public var maxRequestBytes: Int
        /// Largest non-streaming engine response relayed.
        public var maxResponseBytes: Int
        /// How long to wait for an engine's response head.
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
    let httpClient: HTTPClient
    let configuration: Configuration

    public init(routes: RouteTable, httpClient: HTTPClient, configuration: Configuration) {
        self.routes = routes
        self.httpClient = httpClient
        self.configuration = configuration
    }

    public func add(to router: Router<GantryRequestContext>) {
        router.post("/v1/chat/completions") { request, context in
            try await forward(request, context: context, path: "/v1/chat/completions")
        }
        router.post("/v1/completions") { request, context in
            try await forward(request, context: context, path: "/v1/completions")
        }
        router.get("/v1/models") { _, context in
            try await listModels(for: try context.requirePrincipal())
        }
        // The route table for a gateway in its own process: `?after=<generation>` waits (up to
        // `timeout_seconds`, default 30) until the routes change, so changes arrive at once.
        router.get("/api/v1/routes") { request, context in
            _ = try context.requireAdmin()
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
                    await routes.routes(after: after, timeout: .seconds(seconds))
                } else {
                    (await routes.generation, await routes.allEntries())
                }
            return JSONResponse(RouteSnapshot(generation: generation, data: entries))
        }
    }

    /// Only the deployments the caller may use are listed.
    func listModels(for principal: Principal) async throws -> Response {
        struct Item: Encodable {
            var id: String
            var object = "model"
            var created: Int
            var owned_by = "gantry"
        }
        struct List: Encodable {
            var object = "list"
            var data: [Item]
        }
        let items = await routes.allEntries().filter { $0.admits(principal) }
            .map { Item(id: $0.deployment, created: Int($0.createdAt.timeIntervalSince1970)) }
        let data = try JSONEncoder().encode(List(data: items))
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: data)))
    }

    func forward(_ request: Request, context: GantryRequestContext, path: String) async throws -> Response {
        let principal = try context.requirePrincipal()
        // The body is collected with a bound, never handed to the HTTP client as a stream:
        // see DESIGN.md section 7 (an upload task outliving the handler crashes the server).
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: configuration.maxRequestBytes)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw GantryError(.payloadTooLarge, "request body is larger than \(configuration.maxRequestBytes) bytes")
        }
        let parsed = try InferenceRequest.parse(Data(buffer: body))
        // A deployment the caller may not use answers exactly like one that does not exist.
        guard let entry = await routes.entry(for: parsed.deployment), entry.admits(principal) else {
            throw GantryError.notFound(
                "The model '\(parsed.deployment)' does not exist or you do not have access to it.", code: "model_not_found")
        }
        if let maxTokens = parsed.maxTokens, maxTokens > entry.contextLimit {
            throw GantryError.invalid(
                "max_tokens (\(maxTokens)) exceeds the context limit of model '\(entry.deployment)' (\(entry.contextLimit))",
                param: "max_tokens", code: "context_length_exceeded")
        }

        var upstream = HTTPClientRequest(url: "")
        upstream.method = .POST
        upstream.headers.add(name: "content-type", value: "application/json")
        upstream.headers.add(name: "x-request-id", value: context.requestID)
        upstream.body = .bytes(body)
        // One retry on another instance, only when the first could not even be connected to:
        // then the request never reached an engine and cannot have run twice.
        var attempt = 0
        let response: HTTPClientResponse
        let lease: InFlightLease
        while true {
            attempt += 1
            // A retry goes to another ready instance or nowhere: it never waits in the queue.
            let found: RouteTarget?
            do {
                found = try await routes.acquire(
                    deployment: parsed.deployment, version: parsed.pinnedVersion, timeout: configuration.queueTimeout,
                    maxQueued: attempt == 1 ? configuration.maxQueuedPerModel : 0)
            } catch let error as GantryError where attempt > 1 && error.kind == .unavailable {
                throw GantryError(.badGateway, "the model's engine could not be reached", code: "engine_unavailable")
            }
            guard let target = found else {
                throw GantryError.notFound("The model '\(parsed.deployment)' does not exist.", code: "model_not_found")
            }
            let current = InFlightLease(routes: routes, instanceID: target.instanceID)
            upstream.url = target.endpoint + path
            do {
                response = try await httpClient.execute(upstream, timeout: .init(configuration.upstreamTimeout))
                lease = current
                break
            } catch {
                current.end()
                // Any transport failure is a passive health report (a killed engine's pooled
                // connection fails with a reset, not a refusal); only a refused connection is retried.
                await routes.reportUnreachable(instanceID: target.instanceID)
                let refused = Self.isConnectFailure(error)
                context.logger.warning(
                    "engine request failed", metadata: ["instance_id": "\(target.instanceID)", "error": "\(error)"])
                if refused, attempt < 2 { continue }
                throw GantryError(.badGateway, "the model's engine could not be reached", code: "engine_unavailable")
            }
        }
        // Passive health: an engine answering 5xx leaves rotation until the orchestrator's next
        // probe (woken at once) finds it healthy again.
        if response.status.code >= 500 { await routes.reportUnreachable(instanceID: lease.instanceID) }
        var headers = HTTPFields()
        headers[.contentType] = response.headers.first(name: "content-type") ?? "application/json"
        let status = HTTPResponse.Status(code: Int(response.status.code))
        guard parsed.stream, response.status == .ok else {
            let payload: ByteBuffer
            defer { lease.end() }
            do {
                payload = try await response.body.collect(upTo: configuration.maxResponseBytes)
            } catch {
                await routes.reportUnreachable(instanceID: lease.instanceID)
                context.logger.warning(
                    "engine response failed", metadata: ["instance_id": "\(lease.instanceID)", "error": "\(error)"])
                throw GantryError(.badGateway, "the model's engine failed while answering", code: "engine_failed")
            }
            return Response(status: status, headers: headers, body: .init(byteBuffer: payload))
        }

        headers[.cacheControl] = "no-cache"
        let logger = context.logger
        let instanceID = lease.instanceID
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                defer { lease.end() }
                var engineFailure: (any Error)?
                var chunks = response.body.makeAsyncIterator()
                while true {
                    let chunk: ByteBuffer?
                    do {
                        chunk = try await chunks.next()
                    } catch {
                        engineFailure = error
                        break
                    }
                    guard let chunk else { break }
                    // A client gone mid-stream throws here and ends the handler: not the engine's fault.
                    try await writer.write(chunk)
                }
                if let engineFailure {
                    // The engine went away mid-stream: end the stream with an error event the
                    // client can see, instead of a silent cut or a hang, and report the instance.
                    logger.warning(
                        "engine stream failed", metadata: ["instance_id": "\(instanceID)", "error": "\(engineFailure)"])
                    await routes.reportUnreachable(instanceID: instanceID)
                    let failure = ErrorResponse(
                        error: GantryError(.badGateway, "the model's engine failed during the stream", code: "engine_failed"),
                        style: .openAI)
                    var event = ByteBuffer(string: "data: ")
                    event.writeBytes(failure.body())
                    event.writeString("\n\n")
                    try? await writer.write(event)
                }
                try await writer.finish(nil)
            })
    }

    /// Whether the request failed before a connection existed (refused, unreachable, connect
    /// timeout), so no byte of it reached the engine.
    static func isConnectFailure(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let error = error as? IOError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH].contains(error.errnoCode) { return true }
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        return false
    }
}

/// One request counted in flight on an instance; ends exactly once, at the latest when dropped
/// (a client gone before its response body was written).
final class InFlightLease: Sendable {
    let routes: RouteTable
    let instanceID: String
    private let ended = Mutex(false)

    init(routes: RouteTable, instanceID: String) {
        self.routes = routes
        self.instanceID = instanceID
    }

    func end() {
        guard
            ended.withLock({ done in
                defer { done = true }; return !done
            })
        else { return }
        let routes = routes
        let instanceID = instanceID
        Task { await routes.finish(instanceID: instanceID) }
    }

    deinit { end() }
}

/// The answer of `GET /api/v1/routes`.
struct RouteSnapshot: Encodable {
    var generation: UInt64
    var data: [RouteEntry]
}

import AsyncHTTPClient
import Foundation
import GantryCore
import GantryHTTP
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// One request's way through the data plane: admission (context, quota, frequency limits),
/// instance choice, relay, and metering.
extension InferenceRoutes {
    func forward(_ request: Request, context: GantryRequestContext, endpoint: InferenceEndpoint) async throws -> Response {
        let started = ContinuousClock.now
        metering.metrics.relayedByRouter.increment()
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
        let parsed = try InferenceRequest.parse(body, endpoint: endpoint)
        let admitted = try await admit(
            AdmissionPipeline.Request(parsed: parsed, principal: principal, started: started), body: body)
        do {
            return try await relay(admitted, body: body, context: context)
        } catch {
            admitted.meter.finish(failure: error)
            throw error
        }
    }

    /// Drives the admission pipeline through what it needs waited for: the quota's stored use,
    /// quota held in flight, the limit ledger, the engine's token count, the queue for an instance. Throws the refusal, accounted.
    private func admit(_ request: AdmissionPipeline.Request, body: ByteBuffer) async throws -> AdmissionPipeline.Admitted {
        var waits = AdmissionWaits(queueTimeout: configuration.queueTimeout)
        while true {
            switch pipeline.decide(request, quotaWaitOver: waits.quotaWaitOver, limitsWaitOver: waits.limitsWaitOver) {
            case .admit(let admitted):
                return admitted
            case .refuse(let error):
                throw error
            case .readQuota(let scopes):
                // Read at most twice (a period may end between the read and the decision).
                waits.quotaReads += 1
                guard waits.quotaReads <= 2 else {
                    throw GantryError(.unavailable, "the quota could not be read; retry shortly")
                }
                do {
                    try await metering.quotas.check(scopes)
                } catch let error as GantryError where error.kind == .rateLimited {
                    // Spent: the next decision refuses it, and accounts the refusal.
                }
            case .waitForQuota(let settlements):
                let waited = await metering.quotas.settlement(after: settlements, timeout: waits.quotaDeadline - .now)
                waits.quotaWaited(waited, cancelled: Task.isCancelled)
            case .waitForLimits:
                let waited = await metering.shared?.nextSync(timeout: waits.limitsDeadline - .now) ?? false
                waits.limitsWaited(waited, cancelled: Task.isCancelled)
            case .countTokens(let held):
                // Only when the bound says the prompt might not fit does the engine's tokenizer
                // count it, on the instance that will then serve it.
                let lease = try await waitForInstance(held, attempt: 1)
                let counted = try? await tokenizer.countPromptTokens(
                    engine: held.entry.engine, baseURL: lease.endpoint, endpoint: held.parsed.endpoint, body: body)
                switch pipeline.counted(held, promptTokens: counted, on: lease) {
                case .admit(let admitted): return admitted
                case .refuse(let error): throw error
                default: preconditionFailure("a counted request is admitted or refused")
                }
            case .queue(let held):
                return pipeline.leased(held, try await waitForInstance(held, attempt: 1))
            }
        }
    }

    /// An instance for a held request, waiting in the queue on the first attempt; a failure ends
    /// the request.
    private func waitForInstance(_ held: AdmissionPipeline.Held, attempt: Int) async throws -> InFlightLease {
        do {
            return try await acquire(held.parsed, entry: held.entry, attempt: attempt)
        } catch {
            pipeline.failed(held, error)
            throw error
        }
    }

    /// Picks an instance; a retry goes to another ready instance or nowhere: it never waits in the queue.
    private func acquire(_ parsed: InferenceRequest, entry: RouteEntry, attempt: Int) async throws -> InFlightLease {
        let found: RouteTarget?
        do {
            found = try await routes.acquire(
                deployment: parsed.deployment, version: parsed.pinnedVersion, timeout: configuration.queueTimeout,
                maxQueued: attempt == 1 ? configuration.maxQueuedPerModel : 0)
        } catch let error as GantryError where attempt > 1 && error.kind == .unavailable {
            throw EngineFailure.unreachable
        }
        guard let target = found else { throw Self.modelNotFound(parsed.deployment) }
        return pipeline.lease(target, of: entry)
    }

    private func relay(_ admitted: AdmissionPipeline.Admitted, body: ByteBuffer, context: GantryRequestContext) async throws
        -> Response
    {
        let parsed = admitted.parsed
        let entry = admitted.entry
        let meter = admitted.meter
        var upstream = HTTPClientRequest(url: "")
        upstream.method = .POST
        upstream.headers.add(name: "content-type", value: "application/json")
        upstream.headers.add(name: "x-request-id", value: context.requestID)
        upstream.body = .bytes(try parsed.upstreamBody(body))
        let client = clients.client(idleTimeout: entry.timeouts.idleSeconds.map { Duration.seconds($0) })
        let firstByteTimeout = entry.firstByteTimeout(default: configuration.upstreamTimeout)

        // One retry on another instance, only when the first could not even be connected to:
        // then the request never reached an engine and cannot have run twice.
        var attempt = 0
        var pending: InFlightLease? = admitted.lease
        let response: HTTPClientResponse
        let lease: InFlightLease
        while true {
            attempt += 1
            let current: InFlightLease
            if let pending {
                current = pending
            } else {
                current = try await acquire(parsed, entry: entry, attempt: attempt)
            }
            pending = nil
            upstream.url = current.endpoint + parsed.endpoint.path
            meter.sent(to: current)
            do {
                response = try await client.execute(upstream, timeout: .init(firstByteTimeout))
                lease = current
                break
            } catch let error as HTTPClientError where error == .getConnectionFromPoolTimeout {
                // Every connection the gateway may open to this engine is busy: the engine is not
                // at fault, and the request never reached it.
                current.end()
                throw EngineFailure.overloaded
            } catch {
                current.end()
                // Any transport failure is a passive health report (a killed engine's pooled
                // connection fails with a reset, not a refusal); only a refused connection is retried.
                routes.reportUnreachable(instanceID: current.instanceID)
                context.logger.warning(
                    "engine request failed", metadata: ["instance_id": "\(current.instanceID)", "error": "\(error)"])
                if Self.isTimeout(error) { throw EngineFailure.noAnswer(within: firstByteTimeout.inSeconds) }
                if Self.isConnectFailure(error), attempt < 2 {
                    meter.retried()
                    continue
                }
                throw EngineFailure.unreachable
            }
        }
        meter.headReceived()
        // Passive health: an engine answering 5xx leaves rotation until the orchestrator's next
        // probe (woken at once) finds it healthy again.
        if response.status.code >= 500 { routes.reportUnreachable(instanceID: lease.instanceID) }
        var headers = HTTPFields()
        headers[.contentType] = response.headers.first(name: "content-type") ?? "application/json"
        for (field, value) in meter.rateLimitHeaders { headers[field] = value }
        guard parsed.stream, response.status == .ok else {
            defer { lease.end() }
            let payload: ByteBuffer
            do {
                payload = try await response.body.collect(upTo: configuration.maxResponseBytes)
            } catch {
                routes.reportUnreachable(instanceID: lease.instanceID)
                context.logger.warning(
                    "engine response failed", metadata: ["instance_id": "\(lease.instanceID)", "error": "\(error)"])
                throw EngineFailure.whileAnswering(timedOut: Self.isTimeout(error))
            }
            if response.status == .badRequest, Self.isContextOverflow(payload) {
                throw EngineFailure.contextOverflow(entry, endpoint: parsed.endpoint)
            }
            let status = Int(response.status.code)
            meter.finish(
                status: status, usage: TokenUsage.find(in: payload), errorType: status >= 400 ? "engine_error" : nil)
            return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: payload))
        }
        return streamResponse(response, headers: headers, parsed: parsed, lease: lease, meter: meter, logger: context.logger)
    }

    private func streamResponse(
        _ response: HTTPClientResponse, headers: HTTPFields, parsed: InferenceRequest, lease: InFlightLease, meter: RequestMeter,
        logger: Logger
    ) -> Response {
        var headers = headers
        headers[.cacheControl] = "no-cache"
        let routes = routes
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                defer { lease.end() }
                var stream = StreamMeter(stripUsage: !parsed.includeUsage)
                var failure: (any Error)?
                var chunks = response.body.makeAsyncIterator()
                var clientGone = false
                while true {
                    let chunk: ByteBuffer?
                    do {
                        chunk = try await chunks.next()
                    } catch {
                        failure = error
                        break
                    }
                    guard let chunk else { break }
                    meter.bodyByteReceived()
                    let out = stream.relay(chunk)
                    guard out.readableBytes > 0 else { continue }
                    do {
                        try await writer.write(out)
                    } catch {
                        // The client went away: not the engine's fault. Leaving the loop drops
                        // the engine's response, which cancels its request.
                        clientGone = true
                        break
                    }
                }
                if clientGone {
                    meter.finish(status: 499, usage: stream.usage, errorType: "client_closed")
                    return
                }
                let rest = stream.finish()
                if rest.readableBytes > 0 { try? await writer.write(rest) }
                if let failure {
                    // The engine went away or stalled mid-stream: end the stream with an error
                    // event the client can see, instead of a silent cut or a hang.
                    let timedOut = Self.isTimeout(failure)
                    logger.warning(
                        "engine stream failed", metadata: ["instance_id": "\(lease.instanceID)", "error": "\(failure)"])
                    routes.reportUnreachable(instanceID: lease.instanceID)
                    let error = EngineFailure.duringStream(timedOut: timedOut)
                    try? await writer.write(EngineFailure.event(error))
                    meter.finish(status: EngineFailure.status(of: error), usage: stream.usage, errorType: error.code)
                } else {
                    meter.finish(status: 200, usage: stream.usage, errorType: nil)
                }
                try await writer.finish(nil)
            })
    }

    /// Engines' own context-overflow errors: llama.cpp's `exceed_context_size_error`, vLLM's and
    /// OpenAI's "maximum context length".
    static func isContextOverflow(_ payload: ByteBuffer) -> Bool {
        let text = String(buffer: payload).lowercased()
        return text.contains("exceed_context_size") || text.contains("maximum context length")
            || text.contains("context_length_exceeded") || text.contains("exceeds the available context size")
    }

    /// Whether the request failed before a connection existed (refused, unreachable, connect
    /// timeout), so no byte of it reached the engine.
    static func isConnectFailure(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let error = error as? IOError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH].contains(error.errnoCode) { return true }
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        return false
    }

    static func isTimeout(_ error: any Error) -> Bool {
        guard let error = error as? HTTPClientError else { return false }
        return error == .deadlineExceeded || error == .readTimeout
    }
}

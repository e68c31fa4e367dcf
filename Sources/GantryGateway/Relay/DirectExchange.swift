import Foundation
import GantryCore
import GantryHTTP
import HTTPTypes
import Logging
import NIOCore

/// One `/v1` request served by the direct relay, on its connection's event loop: the same steps
/// and answers as `InferenceRoutes.forward`, whose error paths it leaves to the router (see
/// `DirectRelay`). Every step that can fail after admission answers here, in the OpenAI format.
final class DirectExchange: SweepMember {
    let client: any DirectClient
    let relay: DirectRelay
    let endpoint: InferenceEndpoint
    /// The request's `Authorization` value, as it came.
    let authorization: String?
    let requestID: String
    let body: ByteBuffer
    let started = ContinuousClock.now

    private var parsed: InferenceRequest?
    private var entry: RouteEntry?
    private var meter: RequestMeter?
    private var lease: InFlightLease?
    private var upstreamBody: ByteBuffer?
    private var connection: EngineConnection?
    /// Where this exchange sits in its pool's deadline sweep (`EnginePool.watch`).
    var sweepIndex: Int?
    /// The phase, the attempt and the engine's deadlines; this class does what it says.
    private var machine = ExchangeStateMachine()
    private var engineHead: EngineResponseHead?
    private var collected: ByteBuffer?
    private var stream: StreamMeter?

    init(client: any DirectClient, endpoint: InferenceEndpoint, authorization: String?, requestID: String, body: ByteBuffer) {
        self.client = client
        self.relay = client.relay
        self.endpoint = endpoint
        self.authorization = authorization
        self.requestID = requestID
        self.body = body
    }

    private var eventLoop: any EventLoop { client.pool.eventLoop }

    // MARK: - Admission

    func begin() {
        switch relay.caller(authorization: authorization, address: client.clientAddress) {
        case .refused: handToRouter()
        case .remembered(let principal): authenticated(principal)
        case .unverified(let bearer):
            // Not verified recently: verify now (the store or the control role), then go on here.
            relay.verify(bearer, on: eventLoop) { principal in
                guard !self.client.clientGone else { return }
                if let principal { self.authenticated(principal) } else { self.handToRouter() }
            }
        }
    }

    /// The admission pipeline decides; the relay drives the waits that hold nothing (a quota's
    /// stored use, requests in flight releasing a quota, the next sync with the limit ledger)
    /// itself, bounded as the router bounds them, so its connection stays on the relay. It
    /// answers a refusal itself, in the same bytes as the router; a request that must wait for a
    /// token count or an instance is withdrawn whole and handed to the router, which decides it
    /// again.
    private func authenticated(_ principal: Principal) {
        let parsed: InferenceRequest
        do {
            parsed = try InferenceRequest.parse(body, endpoint: endpoint)
        } catch let error as GantryError {
            return fail(error)
        } catch {
            return handToRouter()
        }
        let waits = AdmissionWaits(queueTimeout: relay.configuration.queueTimeout)
        decide(AdmissionPipeline.Request(parsed: parsed, principal: principal, started: started), waits: waits)
    }

    private func decide(_ request: AdmissionPipeline.Request, waits: AdmissionWaits) {
        var waits = waits
        switch relay.pipeline.decide(request, quotaWaitOver: waits.quotaWaitOver, limitsWaitOver: waits.limitsWaitOver) {
        case .admit(let admitted):
            start(admitted)
        case .refuse(let error):
            fail(error)
        case .readQuota(let scopes):
            // Read once here; the router reads again if it must.
            guard waits.quotaReads == 0 else { return handToRouter() }
            waits.quotaReads = 1
            let quotas = relay.metering.quotas
            wait({
                do {
                    try await quotas.check(scopes)
                } catch let error as GantryError where error.kind == .rateLimited {
                    // Spent: the pipeline refuses it now, and accounts the refusal.
                } catch {
                    return false
                }
                return true
            }) { read in
                if read { self.decide(request, waits: waits) } else { self.handToRouter() }
            }
        case .waitForQuota(let settlements):
            let quotas = relay.metering.quotas
            let timeout = waits.quotaDeadline - .now
            wait({ await quotas.settlement(after: settlements, timeout: timeout) }) { waited in
                waits.quotaWaited(waited)
                self.decide(request, waits: waits)
            }
        case .waitForLimits:
            guard let shared = relay.metering.shared else { return handToRouter() }
            let timeout = waits.limitsDeadline - .now
            wait({ await shared.nextSync(timeout: timeout) }) { waited in
                waits.limitsWaited(waited)
                self.decide(request, waits: waits)
            }
        case .countTokens(let held), .queue(let held):
            relay.pipeline.withdraw(held)
            handToRouter()
        }
    }

    /// Runs `wait` off the event loop and goes on with its answer back on it, unless the client
    /// left meanwhile (nothing is held during these waits, so nothing is left to release): a
    /// quota's stored use read, a settlement or a sync waited for.
    private func wait(_ wait: @escaping @Sendable () async -> Bool, then next: @escaping (Bool) -> Void) {
        let promise = eventLoop.makePromise(of: Bool.self)
        promise.completeWithTask(wait)
        promise.futureResult.assumeIsolated().whenSuccess { waited in
            guard !self.client.clientGone else { return }
            next(waited)
        }
    }

    private func start(_ admitted: AdmissionPipeline.Admitted) {
        relay.metering.metrics.relayedDirectly.increment()
        parsed = admitted.parsed
        entry = admitted.entry
        meter = admitted.meter
        lease = admitted.lease
        upstreamBody = (try? admitted.parsed.upstreamBody(body)) ?? body
        let configured = relay.configuration.upstreamTimeout
        perform(
            machine.admitted(
                firstByteTimeout: TimeAmount(admitted.entry.firstByteTimeout(default: configured)),
                idleTimeout: TimeAmount(admitted.entry.idleTimeout(default: configured))))
    }

    private func handToRouter() {
        machine.endedBeforeAdmission()
        client.handToRouter()
    }

    // MARK: - The engine

    /// Does what the state machine said.
    private func perform(_ action: ExchangeStateMachine.Action) {
        switch action {
        case .none:
            break
        case .connect:
            connect()
        case .send:
            guard let connection, let upstreamBody else { return }
            connection.send(path: endpoint.path, requestID: requestID, body: upstreamBody)
            client.pool.watch(self)
        case .retry:
            retry()
        case .fail(let failure):
            releaseConnection(keepAlive: false)
            fail(Self.error(failure, firstByteTimeout: firstByteTimeout))
        case .endStreamWithError(let timedOut):
            // Mid-stream: end the stream with an error event the client can see, not a silent cut.
            releaseConnection(keepAlive: false)
            lease?.end()
            let error = EngineFailure.duringStream(timedOut: timedOut)
            if var stream {
                let rest = stream.finish()
                if rest.readableBytes > 0 { client.writeBody(rest) }
                meter?.finish(status: EngineFailure.status(of: error), usage: stream.usage, errorType: error.code)
            }
            client.writeBody(EngineFailure.event(error))
            complete(status: 200)
        case .finish:
            finishAnswer()
        case .abandon:
            // The client left: closing the engine's connection cancels its request.
            client.pool.unwatch(self)
            releaseConnection(keepAlive: false)
            meter?.finish(status: 499, usage: stream?.usage, errorType: "client_closed")
            lease?.end()
        }
    }

    static func error(_ failure: ExchangeStateMachine.Failure, firstByteTimeout: Duration) -> GantryError {
        switch failure {
        case .overloaded: EngineFailure.overloaded
        case .unreachable: EngineFailure.unreachable
        case .noAnswer: EngineFailure.noAnswer(within: firstByteTimeout.inSeconds)
        case .whileAnswering(let timedOut): EngineFailure.whileAnswering(timedOut: timedOut)
        }
    }

    private func connect() {
        guard let lease, let meter else { return }
        meter.sent(to: lease)
        client.pool.connection(to: lease.endpoint) { result in
            switch result {
            case .success(let connection):
                guard case .connecting = self.machine.state else { return self.client.pool.release(connection) }
                self.connection = connection
                connection.exchange = self
                self.perform(self.machine.connected(now: .now()))
            case .failure(let error):
                guard case .connecting = self.machine.state else { return }
                let poolFull = error is EnginePool.Full
                if !poolFull, let lease = self.lease {
                    self.relay.routes.reportUnreachable(instanceID: lease.instanceID)
                    self.relay.logger.warning(
                        "engine request failed", metadata: ["instance_id": "\(lease.instanceID)", "error": "\(error)"])
                }
                self.lease?.end()
                self.lease = nil
                self.perform(self.machine.connectFailed(poolFull: poolFull))
            }
        }
    }

    /// The connection could not be opened: the request never reached an engine, so it may go to
    /// another ready instance, once.
    private func retry() {
        guard let parsed, let entry,
            let target = try? relay.routes.acquireReady(deployment: parsed.deployment, version: parsed.pinnedVersion)
        else { return perform(machine.noInstanceToRetry()) }
        meter?.retried()
        lease = relay.pipeline.lease(target, of: entry)
        connect()
    }

    private var firstByteTimeout: Duration {
        entry?.firstByteTimeout(default: relay.configuration.upstreamTimeout) ?? relay.configuration.upstreamTimeout
    }

    func engineHead(_ head: EngineResponseHead) {
        guard case .waitingForHead = machine.state, let parsed, let lease, let meter else { return }
        engineHead = head
        meter.headReceived()
        // Passive health: an engine answering 5xx leaves rotation until its next probe.
        if head.status >= 500 { relay.routes.reportUnreachable(instanceID: lease.instanceID) }
        let streaming = parsed.stream && head.status == 200
        perform(machine.headReceived(streaming: streaming, now: .now()))
        guard streaming else {
            collected = ByteBuffer()
            return
        }
        var fields = responseFields(contentType: head.contentType)
        fields.append(HTTPField(name: .cacheControl, value: "no-cache"))
        stream = StreamMeter(stripUsage: !parsed.includeUsage)
        // Flushed with the first events when this read completes: one write, not two.
        client.writeHead(addCommonFields(HTTPResponse(status: .ok, headerFields: fields)))
    }

    func engineBody(_ chunk: ByteBuffer) {
        guard case .answering = machine.state else { return }
        machine.bodyReceived(now: .now())
        if stream != nil {
            meter?.bodyByteReceived()
            let out = stream!.relay(chunk)
            guard out.readableBytes > 0, !client.clientGone else { return }
            client.writeBody(out)
            if !client.clientWritable { connection?.pauseReading() }
        } else if collected != nil {
            meter?.bodyByteReceived()
            if collected!.readableBytes + chunk.readableBytes > relay.configuration.maxResponseBytes {
                return engineFailed(timedOut: false, reason: "the answer is larger than the gateway relays")
            }
            // Most answers arrive in one read: keep that slice rather than copy it.
            if collected!.readableBytes == 0 { collected = chunk } else { collected!.writeImmutableBuffer(chunk) }
        }
    }

    func engineReadComplete() {
        if stream != nil, !machine.isFinished { client.flush() }
    }

    func clientWritable() {
        connection?.resumeReading()
    }

    func engineEnd() {
        perform(machine.engineEnded())
    }

    /// The whole answer arrived.
    private func finishAnswer() {
        guard let engineHead, let lease, let meter, let entry, let parsed else { return }
        releaseConnection(keepAlive: engineHead.keepAlive)
        if var stream {
            let rest = stream.finish()
            if rest.readableBytes > 0 { client.writeBody(rest) }
            meter.finish(status: 200, usage: stream.usage, errorType: nil)
            lease.end()
            return complete(status: 200)
        }
        let payload = collected ?? ByteBuffer()
        lease.end()
        if engineHead.status == 400, InferenceRoutes.isContextOverflow(payload) {
            return fail(EngineFailure.contextOverflow(entry, endpoint: parsed.endpoint))
        }
        let status = engineHead.status
        meter.finish(status: status, usage: TokenUsage.find(in: payload), errorType: status >= 400 ? "engine_error" : nil)
        var fields = responseFields(contentType: engineHead.contentType)
        fields.append(HTTPField(name: .contentLength, value: String(payload.readableBytes)))
        respond(HTTPResponse(status: .init(code: status), headerFields: fields), body: payload)
    }

    /// The engine went away, failed or stalled before its answer ended.
    func engineFailed(timedOut: Bool, reason: String) {
        if !machine.isFinished, let lease {
            relay.routes.reportUnreachable(instanceID: lease.instanceID)
            relay.logger.warning(
                "engine request failed", metadata: ["instance_id": "\(lease.instanceID)", "error": "\(reason)"])
        }
        perform(machine.engineFailed(timedOut: timedOut))
    }

    /// The client left.
    func clientClosed() {
        perform(machine.clientClosed())
    }

    /// Whether the engine has taken too long: for its head, or since its last bytes.
    func deadlinePassed(_ now: NIODeadline) -> Bool {
        machine.deadlinePassed(now: now)
    }

    func timedOut() {
        engineFailed(timedOut: true, reason: "timed out")
    }

    /// Gives the engine connection back for the next request, or closes it (which cancels an
    /// unfinished request on the engine).
    private func releaseConnection(keepAlive: Bool) {
        guard let connection else { return }
        self.connection = nil
        if keepAlive {
            client.pool.release(connection)
        } else {
            connection.exchange = nil
            connection.channel.close(promise: nil)
        }
    }

    // MARK: - The answer

    private func responseFields(contentType: String?) -> HTTPFields {
        var fields = HTTPFields()
        fields.reserveCapacity(12)
        // Appended, not assigned: the names are distinct, and assignment searches the list first.
        fields.append(HTTPField(name: .contentType, value: contentType ?? "application/json"))
        for (field, value) in meter?.rateLimitHeaders ?? [] { fields.append(HTTPField(name: field, value: value)) }
        return fields
    }

    /// An error after admission, in the OpenAI format, as the router's error middleware writes it.
    private func fail(_ error: GantryError) {
        meter?.finish(failure: error)
        lease?.end()
        let rendered = ErrorResponse(error: error, style: .openAI)
        var fields = rendered.response().headers
        let payload = ByteBuffer(data: rendered.body())
        fields[.contentLength] = String(payload.readableBytes)
        respond(HTTPResponse(status: rendered.status, headerFields: fields), body: payload)
    }

    private func respond(_ response: HTTPResponse, body: ByteBuffer) {
        if !client.clientGone {
            client.writeHead(addCommonFields(response))
            if body.readableBytes > 0 { client.writeBody(body) }
        }
        complete(status: Int(response.status.code))
    }

    private func addCommonFields(_ response: HTTPResponse) -> HTTPResponse {
        var response = response
        // No answer the relay builds has these yet (engine headers are not passed on).
        response.headerFields.append(HTTPField(name: RequestID.headerName, value: requestID))
        // In the order Hummingbird writes them on the router's answers.
        response.headerFields.append(HTTPField(name: .date, value: client.pool.httpDate()))
        response.headerFields.append(HTTPField(name: .server, value: relay.serverName))
        return response
    }

    /// Ends the answer, then counts it as the router's middleware would.
    private func complete(status: Int) {
        machine.endedBeforeAdmission()
        // Every answer ends here (and a vanished client in `clientClosed`): no deadline after it.
        client.pool.unwatch(self)
        client.writeEnd()
        let duration = ContinuousClock.now - started
        relay.httpMetrics.record(method: "POST", route: endpoint.path, status: status, duration: duration)
        if relay.logger.logLevel <= .info {
            var logger = relay.logger
            logger[metadataKey: RequestID.metadataKey] = .string(requestID)
            if let principal = meter?.request.principal {
                if let keyID = principal.keyID { logger[metadataKey: "key_id"] = .string(keyID) }
                logger[metadataKey: "user_id"] = .string(principal.userID)
            }
            AccessLog.log(logger, method: "POST", path: endpoint.path, status: status, duration: duration)
        }
        client.exchangeFinished()
    }
}

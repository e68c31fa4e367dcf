import Foundation
import GantryCore
import GantryHTTP
import Synchronization

/// Follows one inference request from admission to its end and then, exactly once: settles its
/// token reservation to what the engine reported, counts the tokens against the key's quota,
/// writes its usage record and its metrics. A request whose client vanished before its body was
/// written is finished when the meter is dropped.
final class RequestMeter: Sendable {
    struct State {
        var admission: RateLimitAdmission?
        var reservation = 0
        var instanceID: String?
        var version = ""
        var sentAt: ContinuousClock.Instant?
        var headAt: ContinuousClock.Instant?
        var firstByteAt: ContinuousClock.Instant?
        var finished = false
    }

    let principal: Principal
    let entry: RouteEntry
    let endpoint: InferenceEndpoint
    let started: ContinuousClock.Instant
    let limiter: RateLimiter
    let quotas: QuotaLedger
    let usage: UsageRecorder
    let metrics: GatewayMetrics
    private let state = Mutex(State())

    init(
        principal: Principal, entry: RouteEntry, endpoint: InferenceEndpoint, started: ContinuousClock.Instant,
        limiter: RateLimiter, quotas: QuotaLedger, usage: UsageRecorder, metrics: GatewayMetrics
    ) {
        self.principal = principal
        self.entry = entry
        self.endpoint = endpoint
        self.started = started
        self.limiter = limiter
        self.quotas = quotas
        self.usage = usage
        self.metrics = metrics
    }

    func admitted(_ admission: RateLimitAdmission, reservation: Int) {
        state.withLock {
            $0.admission = admission
            $0.reservation = reservation
        }
    }

    var rateLimitHeaders: [(String, String)] { state.withLock { $0.admission?.status.headers ?? [] } }

    func sent(to lease: InFlightLease) {
        state.withLock {
            $0.instanceID = lease.instanceID
            $0.version = lease.version
            $0.sentAt = .now
        }
    }

    /// The instance whose tokenizer counted the prompt (it then serves the request, if admitted).
    func counted(on lease: InFlightLease) {
        state.withLock {
            $0.instanceID = lease.instanceID
            $0.version = lease.version
        }
    }

    /// The request was not delivered and goes to another instance.
    func retried() {
        state.withLock { $0.sentAt = nil }
    }

    func headReceived() {
        state.withLock { $0.headAt = .now }
    }

    func bodyByteReceived() {
        state.withLock { state in
            if state.firstByteAt == nil { state.firstByteAt = .now }
        }
    }

    func finish(failure: any Error) async {
        let error = (failure as? GantryError) ?? GantryError(.internal, "internal error")
        await finish(
            status: Int(ErrorResponse.status(for: error.kind).code), usage: nil,
            errorType: error.code ?? ErrorResponse.openAIType(for: error.kind))
    }

    /// Ends the request. Without the engine's usage, a request that reached an engine keeps its
    /// whole reservation (what it really used is unknown) and one that never did frees it.
    func finish(status: Int, usage reported: TokenUsage?, errorType: String?) async {
        guard
            let saved = state.withLock({ state -> State? in
                guard !state.finished else { return nil }
                state.finished = true
                return state
            })
        else { return }
        await Parts(self).complete(saved, status: status, usage: reported, errorType: errorType)
    }

    /// The meter's fixed parts, which its `deinit` can hand to a task.
    struct Parts: Sendable {
        let principal: Principal
        let entry: RouteEntry
        let endpoint: InferenceEndpoint
        let started: ContinuousClock.Instant
        let limiter: RateLimiter
        let quotas: QuotaLedger
        let usage: UsageRecorder
        let metrics: GatewayMetrics

        init(_ meter: RequestMeter) {
            principal = meter.principal
            entry = meter.entry
            endpoint = meter.endpoint
            started = meter.started
            limiter = meter.limiter
            quotas = meter.quotas
            usage = meter.usage
            metrics = meter.metrics
        }

        func complete(_ state: State, status: Int, usage reported: TokenUsage?, errorType: String?) async {
            let now = ContinuousClock.now
            let used =
                reported.map { $0.promptTokens + $0.completionTokens } ?? (state.sentAt != nil ? state.reservation : 0)
            if let admission = state.admission { await limiter.settle(admission, tokens: used) }
            if let keyID = principal.keyID, let limits = principal.keyLimits {
                await quotas.add(keyID: keyID, limits: limits, tokens: used)
            }
            // Time to first token: to the first byte of the answer's body (a stream's first event).
            let firstByte = (state.firstByteAt ?? state.headAt).map { $0 - started }
            let engineTime = state.sentAt.map { now - $0 } ?? .zero
            await usage.record(
                UsageRecord(
                    id: Identifier.make("use"), createdAt: Date(), keyID: principal.keyID, userID: principal.userID,
                    deployment: entry.deployment, version: state.version, instanceID: state.instanceID,
                    endpoint: endpoint.rawValue, promptTokens: reported?.promptTokens ?? 0,
                    completionTokens: reported?.completionTokens ?? 0,
                    timeToFirstTokenMs: firstByte.map { Int(($0.inSeconds * 1000).rounded()) },
                    latencyMs: Int(((now - started).inSeconds * 1000).rounded()), status: status, errorType: errorType,
                    engineSeconds: engineTime.inSeconds))
            metrics.requestFinished(
                model: entry.deployment, status: status, errorType: errorType, latency: now - started,
                timeToFirstByte: firstByte, usage: reported)
        }
    }

    deinit {
        let saved = state.withLock { $0 }
        guard !saved.finished else { return }
        // Nobody finished it: the client vanished before its response was written.
        let parts = Parts(self)
        Task { await parts.complete(saved, status: 499, usage: nil, errorType: "client_closed") }
    }
}

/// One request counted in flight on an instance; ends exactly once, at the latest when dropped
/// (a client gone before its response body was written).
final class InFlightLease: Sendable {
    let routes: RouteTable
    let metrics: GatewayMetrics
    let deployment: String
    let instanceID: String
    let endpoint: String
    let version: String
    private let ended = Mutex(false)

    init(routes: RouteTable, metrics: GatewayMetrics, deployment: String, instanceID: String, endpoint: String, version: String) {
        self.routes = routes
        self.metrics = metrics
        self.deployment = deployment
        self.instanceID = instanceID
        self.endpoint = endpoint
        self.version = version
        metrics.inFlight(model: deployment, instanceID: instanceID, by: 1)
    }

    func end() {
        guard
            ended.withLock({ done in
                defer { done = true }
                return !done
            })
        else { return }
        metrics.inFlight(model: deployment, instanceID: instanceID, by: -1)
        let routes = routes
        let instanceID = instanceID
        Task { await routes.finish(instanceID: instanceID) }
    }

    deinit { end() }
}

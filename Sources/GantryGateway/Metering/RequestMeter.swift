import Foundation
import GantryCore
import GantryHTTP
import HTTPTypes
import Prometheus
import Synchronization

/// Where finished requests are accounted: the limiter their reservations are settled in, the
/// quota ledger, the usage recorder and the metrics. One per data plane.
public struct Metering: Sendable {
    let limiter: RateLimiter
    let quotas: QuotaLedger
    let usage: UsageRecorder
    let metrics: GatewayMetrics
    /// The limits and quotas shared with other gateways (nil in a process serving alone).
    let shared: SharedLimits?

    public init(
        limiter: RateLimiter, quotas: QuotaLedger, usage: UsageRecorder, metrics: GatewayMetrics,
        shared: SharedLimits? = nil
    ) {
        self.shared = shared
        self.limiter = limiter
        self.quotas = quotas
        self.usage = usage
        self.metrics = metrics
    }

    /// Settles the reservation to what the engine reported, counts the reported tokens against the
    /// key's quota (as the stored records do), writes the usage record and the metrics. Without
    /// the engine's usage, a request that may have run on an engine (answered, failed there, timed
    /// out, or abandoned by its client) is charged its whole reservation everywhere (limits, quota,
    /// usage record marked `estimated`), since what it used is unknown; one that never reached an
    /// engine, or that the engine refused (4xx), is charged nothing.
    func account(
        _ request: MeteredRequest, _ state: RequestMeter.State, status: Int, usage reported: TokenUsage?,
        errorType: String?
    ) {
        let now = ContinuousClock.now
        let mayHaveRun = state.sentAt != nil && !(400..<499).contains(status)
        // Without the engine's count, a request that may have run is charged its reservation,
        // marked as an estimate: no tokens without a charge.
        let estimated = reported == nil && mayHaveRun && state.estimate != nil
        let charged = reported ?? (mayHaveRun ? state.estimate : nil)
        let chargedTokens = charged.map { $0.promptTokens + $0.completionTokens }
        if let admission = state.admission { limiter.settle(admission, tokens: chargedTokens ?? 0) }
        if let hold = state.quotaHold { quotas.settle(hold, tokens: chargedTokens ?? 0) }
        if let admission = state.sharedAdmission { shared?.settle(admission, tokens: chargedTokens ?? 0) }
        let principal = request.principal
        // Time to first token: to the first byte of the answer's body (a stream's first event).
        let firstByte = (state.firstByteAt ?? state.headAt).map { $0 - request.started }
        let latency = now - request.started
        let createdAt = Date()
        usage.record(
            UsageRecord(
                id: Identifier.makeTimeOrdered("use", now: createdAt), createdAt: createdAt, keyID: principal.keyID,
                userID: principal.userID,
                deployment: request.deployment, version: state.version, instanceID: state.instanceID,
                endpoint: request.endpoint.rawValue, promptTokens: charged?.promptTokens ?? 0,
                completionTokens: charged?.completionTokens ?? 0,
                timeToFirstTokenMs: firstByte.map { Int(($0.inSeconds * 1000).rounded()) },
                latencyMs: Int((latency.inSeconds * 1000).rounded()), status: status, errorType: errorType,
                engineSeconds: (state.sentAt.map { now - $0 } ?? .zero).inSeconds, estimated: estimated))
        metrics.requestFinished(
            service: request.deployment, version: state.version, status: status, errorType: errorType, latency: latency,
            timeToFirstByte: firstByte,
            usage: charged, endedAt: createdAt)
    }
}

/// What is fixed about a request once its deployment is known.
struct MeteredRequest: Sendable {
    let principal: Principal
    let deployment: String
    let endpoint: InferenceEndpoint
    let started: ContinuousClock.Instant
}

/// Follows one inference request from admission to its end and accounts for it exactly once
/// (`Metering.account`). A request whose client vanished before its body was written is
/// accounted when the meter is dropped.
final class RequestMeter: Sendable {
    struct State {
        var admission: RateLimitAdmission?
        var instanceID: String?
        var version = ""
        var sentAt: ContinuousClock.Instant?
        var headAt: ContinuousClock.Instant?
        var firstByteAt: ContinuousClock.Instant?
        var finished = false
        /// The reservation, split into the prompt's bound and the rest: what the limits and the
        /// quota hold while the request runs, and what is charged if the engine's usage never
        /// arrives.
        var estimate: TokenUsage?
        var quotaHold: QuotaLedger.Hold?
        var sharedAdmission: SharedAdmission?
    }

    let request: MeteredRequest
    let metering: Metering
    private let state = Mutex(State())

    init(_ request: MeteredRequest, metering: Metering) {
        self.request = request
        self.metering = metering
    }

    func admitted(_ admission: RateLimitAdmission) {
        state.withLock { $0.admission = admission }
    }

    func sharedAdmitted(_ admission: SharedAdmission) {
        state.withLock { $0.sharedAdmission = admission }
    }

    /// The request was admitted: what to charge without the engine's count, and the tokens held
    /// against the key's quota (settled when the request is accounted).
    func reserved(estimate: TokenUsage, quotaHold: QuotaLedger.Hold?) {
        state.withLock {
            $0.estimate = estimate
            $0.quotaHold = quotaHold
        }
    }

    /// The `x-ratelimit-*` fields: from the shared limits' grants while a ledger answers, else
    /// from this gateway's own windows.
    var rateLimitHeaders: [(HTTPField.Name, String)] {
        state.withLock { ($0.sharedAdmission?.status ?? $0.admission?.status)?.headers ?? [] }
    }

    /// The instance whose tokenizer counted the prompt (it then serves the request, if admitted).
    func counted(on lease: InFlightLease) {
        state.withLock {
            $0.instanceID = lease.instanceID
            $0.version = lease.version
        }
    }

    func sent(to lease: InFlightLease) {
        counted(on: lease)
        lease.dispatched()
        state.withLock { $0.sentAt = .now }
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

    func finish(failure: any Error) {
        let error = (failure as? GantryError) ?? GantryError(.internal, "internal error")
        finish(
            status: Int(ErrorResponse.status(for: error.kind).code), usage: nil,
            errorType: error.code ?? ErrorResponse.openAIType(for: error.kind))
    }

    func finish(status: Int, usage reported: TokenUsage?, errorType: String?) {
        guard let saved = takeUnfinished() else { return }
        metering.account(request, saved, status: status, usage: reported, errorType: errorType)
    }

    /// Ends the meter without a record: the request was withdrawn before it was decided, and
    /// another transport decides and accounts it again.
    func discard() {
        _ = takeUnfinished()
    }

    private func takeUnfinished() -> State? {
        state.withLock { state in
            guard !state.finished else { return nil }
            state.finished = true
            return state
        }
    }

    deinit {
        guard let saved = takeUnfinished() else { return }
        // Nobody finished it: the client vanished before its response was written.
        metering.account(request, saved, status: 499, usage: nil, errorType: "client_closed")
    }
}

/// One request counted in flight on an instance; ends exactly once, at the latest when dropped
/// (a client gone before its response body was written).
final class InFlightLease: Sendable {
    let routes: RouteTable
    let instanceID: String
    let endpoint: String
    let version: String
    let deployment: String
    /// The model's and the instance's in-flight gauges, looked up once.
    private let gauges: [Gauge]
    private let ended = Mutex(false)

    /// A target `RouteTable` just counted in flight for a request to `entry`.
    init(_ target: RouteTarget, of entry: RouteEntry, routes: RouteTable, metrics: GatewayMetrics) {
        self.routes = routes
        self.instanceID = target.instanceID
        self.endpoint = target.endpoint
        self.deployment = entry.deployment
        // Targets published by this release carry their version; an older control role's do not.
        self.version =
            !target.version.isEmpty ? target.version : target.canary ? (entry.canaryVersion ?? entry.version) : entry.version
        gauges = metrics.inFlightGauges(service: entry.deployment, version: version, target: target)
        for gauge in gauges { gauge.increment(by: 1) }
    }

    /// The request goes to the engine now: from here it counts in the load the autoscaler reads
    /// (a lease taken only to count a prompt's tokens, then refused, never does).
    func dispatched() {
        routes.dispatched(deployment: deployment)
    }

    func end() {
        guard
            ended.withLock({ done in
                defer { done = true }
                return !done
            })
        else { return }
        for gauge in gauges { gauge.decrement(by: 1) }
        routes.finish(instanceID: instanceID)
    }

    deinit { end() }
}

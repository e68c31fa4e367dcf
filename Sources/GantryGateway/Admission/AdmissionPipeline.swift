import Foundation
import GantryCore
import HTTPTypes
import NIOCore

/// The decisions of one `/v1` request, in one order, for both transports: the router's handler
/// (`InferenceRoutes.forward`) and the direct relay (`DirectExchange`).
///
/// The order: the model and the caller's access, the pinned version, the context bound, the
/// quota, the frequency limits, and only then an instance. So a request refused for any reason
/// never holds an instance, never waits in a queue and never counts in the load the autoscaler
/// reads. Refusals are accounted here (a usage record and the metrics, once the model is known),
/// whichever transport then writes the answer.
///
/// Synchronous and free of I/O: it reads and changes in-memory state only (the route table, the
/// limiter, the quota ledger, each behind a lock), so the relay calls it on its event loop and
/// the router between its awaits. What needs a wait (reading a quota's use from the store, a
/// prompt only the engine's tokenizer can count, a model with no ready instance) comes back as a
/// decision naming it; the caller does the waiting and calls back in.
struct AdmissionPipeline: Sendable {
    let routes: RouteTable
    let metering: Metering

    /// A request whose body has been read and whose caller is known.
    struct Request {
        let parsed: InferenceRequest
        let principal: Principal
        let started: ContinuousClock.Instant
    }

    /// A request admitted into its quota and limits that does not hold an instance yet. Its meter
    /// accounts it from now on, exactly once.
    struct Held {
        let parsed: InferenceRequest
        let entry: RouteEntry
        let meter: RequestMeter
        let admission: RateLimitAdmission?
        let quotaHold: QuotaLedger.Hold?
        let shared: SharedAdmission?
    }

    /// A request that may go to an engine now.
    struct Admitted {
        let parsed: InferenceRequest
        let entry: RouteEntry
        let meter: RequestMeter
        let lease: InFlightLease
    }

    enum Decision {
        case admit(Admitted)
        /// Refused: nothing is held, the refusal is accounted; the error is the answer.
        case refuse(GantryError)
        /// A quota's use this period is not in memory: read it (`QuotaLedger.check`), then decide
        /// again.
        case readQuota([QuotaScope])
        /// The quota is not used up, but requests in flight hold the rest of it: wait for one to
        /// settle (`QuotaLedger.settlement(after:)`), then decide again; past the wait's bound,
        /// decide with `quotaWaitOver`. Nothing is held meanwhile.
        case waitForQuota(after: UInt64)
        /// A shared limit's budget is not at this gateway yet: wait for its next sync with the
        /// ledger (`SharedLimits.nextSync`), then decide again; past the wait's bound, decide with
        /// `limitsWaitOver`. Nothing is held meanwhile.
        case waitForLimits
        /// Only the engine's tokenizer can tell whether the prompt fits: count it on an instance
        /// (`acquire`, then `counted`).
        case countTokens(Held)
        /// No instance is ready: wait for one (`acquire`, then `leased`).
        case queue(Held)
    }

    /// The first decision about a request, and the next one after a wait. `quotaWaitOver`: the
    /// caller waited as long as it may for requests in flight to release the quota, so what they
    /// hold now refuses the request.
    /// `limitsWaitOver`: the caller waited as long as it may for the ledger, so a shared budget
    /// still missing follows the fallback setting.
    func decide(_ request: Request, quotaWaitOver: Bool = false, limitsWaitOver: Bool = false) -> Decision {
        let parsed = request.parsed
        let principal = request.principal
        let entry: RouteEntry
        switch access(parsed, principal: principal) {
        case .failure(let error): return .refuse(error)
        case .success(let found): entry = found
        }
        // Known model, so every end from here is accounted (a usage record, the metrics).
        let meter = RequestMeter(
            MeteredRequest(
                principal: principal, deployment: entry.deployment, endpoint: parsed.endpoint, started: request.started),
            metering: metering)
        if let error = Self.contextRefusal(parsed, entry: entry) { return refuse(error, meter: meter) }
        let quotaScopes = QuotaScope.scopes(for: principal)
        if case .unknown = metering.quotas.rememberedCheck(quotaScopes) {
            meter.discard()
            return .readQuota(quotaScopes)
        }
        let reservation = parsed.reservation(contextLimit: entry.contextLimit)
        // The quota first: what in-flight requests hold counts, so concurrent ones cannot all pass.
        let settlements = metering.quotas.settlementCount
        let quotaHold: QuotaLedger.Hold?
        switch metering.quotas.hold(quotaScopes, tokens: reservation) {
        case .held(let held):
            quotaHold = held
        case .heldInFlight where !quotaWaitOver:
            meter.discard()
            return .waitForQuota(after: settlements)
        case .spent(let error), .heldInFlight(let error):
            metering.metrics.limitRejected(service: entry.deployment, scope: "quota")
            return refuse(error, meter: meter)
        }
        // From here every end of the request settles the hold (the meter accounts exactly once).
        meter.reserved(estimate: parsed.usageEstimate(contextLimit: entry.contextLimit), quotaHold: quotaHold)
        let scopes = LimitScope.scopes(principal: principal, entry: entry)
        if let oversized = LimitScope.oversized(scopes, tokens: reservation) {
            metering.metrics.limitRejected(service: entry.deployment, scope: oversized.scopeKind)
            return refuse(Self.limitError(oversized), meter: meter)
        }
        // Limits shared with every other gateway, from this gateway's grants: while a ledger
        // answers, they alone decide (and give the headers).
        var shared: SharedAdmission?
        if let sharedLimits = metering.shared {
            let needs = LimitNeed.needs(scopes: scopes, quotas: quotaScopes, tokens: reservation, now: Date())
            switch takeShared(needs, from: sharedLimits, waitOver: limitsWaitOver, entry: entry, meter: meter) {
            case .taken(let taken):
                shared = taken
            case .decided(let decision):
                if case .waitForLimits = decision, let quotaHold { metering.quotas.settle(quotaHold, tokens: 0) }
                return decision
            }
        }
        // This gateway's own windows: the only limits of an all-in-one process, and the shared
        // limits' `local` fallback when no ledger answers.
        var admission: RateLimitAdmission?
        if shared == nil, !scopes.isEmpty {
            switch metering.limiter.admit(scopes, tokens: reservation) {
            case .success(let admitted):
                admission = admitted
            case .failure(let rejection):
                metering.metrics.limitRejected(service: entry.deployment, scope: rejection.scopeKind)
                return refuse(Self.limitError(rejection), meter: meter)
            }
        }
        if let admission { meter.admitted(admission) }
        if let shared { meter.sharedAdmitted(shared) }
        let held = Held(
            parsed: parsed, entry: entry, meter: meter, admission: admission, quotaHold: quotaHold, shared: shared)
        if parsed.mayExceedContext(entry.contextLimit) { return .countTokens(held) }
        let target: RouteTarget?
        do {
            target = try routes.acquireReady(deployment: parsed.deployment, version: parsed.pinnedVersion)
        } catch {
            return refuse(error, meter: meter)
        }
        guard let target else { return .queue(held) }
        return .admit(Admitted(parsed: parsed, entry: entry, meter: meter, lease: lease(target, of: entry)))
    }

    /// The engine's tokenizer counted the prompt on `lease`'s instance (nil: it could not, and the
    /// engine's own answer decides). Over the context limit, the request is refused and the
    /// instance released; otherwise that instance serves it.
    func counted(_ held: Held, promptTokens counted: Int?, on lease: InFlightLease) -> Decision {
        held.meter.counted(on: lease)
        let parsed = held.parsed
        let limit = held.entry.contextLimit
        if let counted, counted + (parsed.maxTokens ?? 1) > limit {
            lease.end()
            let maxTokens = parsed.maxTokens ?? 0
            return refuse(
                Self.contextExceeded(
                    "This model's maximum context length is \(limit) tokens. However, you requested \(counted + maxTokens) tokens (\(counted) in the messages, \(maxTokens) in the completion). Please reduce the length of the messages or completion.",
                    param: parsed.endpoint.promptField),
                meter: held.meter)
        }
        return .admit(Admitted(parsed: parsed, entry: held.entry, meter: held.meter, lease: lease))
    }

    /// An instance came free for a queued request.
    func leased(_ held: Held, _ lease: InFlightLease) -> Admitted {
        Admitted(parsed: held.parsed, entry: held.entry, meter: held.meter, lease: lease)
    }

    /// A target the route table counted in flight for a request to `entry`, as a lease that ends
    /// exactly once (the first choice here, a queued request's or a retry's in the transports).
    func lease(_ target: RouteTarget, of entry: RouteEntry) -> InFlightLease {
        InFlightLease(target, of: entry, routes: routes, metrics: metering.metrics)
    }

    /// Takes back everything `held` holds, as if it had never been decided: its request and
    /// tokens in the limits, its quota hold, and its meter without a record. For a transport that
    /// hands the request to another that decides it again (the relay, which does not wait).
    func withdraw(_ held: Held) {
        if let admission = held.admission { metering.limiter.cancel(admission) }
        if let quotaHold = held.quotaHold { metering.quotas.settle(quotaHold, tokens: 0) }
        if let shared = held.shared { metering.shared?.cancel(shared) }
        held.meter.discard()
    }

    /// Waiting failed (the queue was full or timed out, the model went away): the request ends
    /// with `error`, accounted as every refusal is.
    func failed(_ held: Held, _ error: any Error) {
        held.meter.finish(failure: error)
    }

    /// What the shared limits made of a request: what it took (nil when nothing is shared, or
    /// when the `local` fallback leaves it to this gateway's own windows), or a decision instead.
    private enum SharedStep {
        case taken(SharedAdmission?)
        case decided(Decision)
    }

    /// The request's needs from this gateway's grants: what it took (nil when nothing is shared),
    /// or the decision when they do not cover it: wait for a sync (the meter discarded), refused
    /// (accounted), or the fallback's 503. Nil with `local` as the fallback: this gateway's own
    /// windows decide then.
    private func takeShared(
        _ needs: [LimitNeed], from sharedLimits: SharedLimits, waitOver: Bool, entry: RouteEntry, meter: RequestMeter
    ) -> SharedStep {
        guard !needs.isEmpty else { return .taken(nil) }
        switch sharedLimits.take(needs, waitOver: waitOver) {
        case .taken(let taken):
            return .taken(taken)
        case .wait:
            meter.discard()
            return .decided(.waitForLimits)
        case .refused(let need, let retryAfter):
            metering.metrics.limitRejected(
                service: entry.deployment, scope: need.resource.kind == .quota ? "quota" : need.label)
            return .decided(refuse(Self.sharedLimitError(need, retryAfter: retryAfter), meter: meter))
        case .unavailable:
            // `local`: this gateway's own windows decide, as if it were the only one, counting
            // what it admitted on grants in the last minute.
            guard sharedLimits.fallback == .refuse else {
                if let used = sharedLimits.fallingBack() { metering.limiter.record(used) }
                return .taken(nil)
            }
            let error = GantryError(
                .unavailable,
                "This request is limited and the limits cannot be checked now: no control replica answers. Retry shortly.",
                code: "limits_unavailable", retryAfter: 1)
            return .decided(refuse(error, meter: meter))
        }
    }

    private func refuse(_ error: any Error, meter: RequestMeter) -> Decision {
        meter.finish(failure: error)
        return .refuse((error as? GantryError) ?? GantryError(.internal, "internal error"))
    }

    /// The model, when the caller may use it and the version asked for is deployed; a model the
    /// caller may not use answers exactly like one that does not exist.
    func access(_ parsed: InferenceRequest, principal: Principal) -> Result<RouteEntry, GantryError> {
        guard let entry = routes.entry(for: parsed.deployment), entry.admits(principal) else {
            return .failure(InferenceRoutes.modelNotFound(parsed.deployment))
        }
        if let version = parsed.pinnedVersion, version != entry.version, version != entry.canaryVersion {
            return .failure(
                GantryError.notFound(
                    "version '\(version)' of model '\(parsed.deployment)' is not deployed", code: "model_not_found"))
        }
        return .success(entry)
    }

    /// A completion bound that leaves no room for a prompt, or sequences the engine cannot meter.
    static func contextRefusal(_ parsed: InferenceRequest, entry: RouteEntry) -> GantryError? {
        let limit = entry.contextLimit
        if let maxTokens = parsed.maxTokens, maxTokens >= limit {
            return Self.contextExceeded(
                "max_tokens (\(maxTokens)) leaves no room for a prompt in the context limit of model '\(entry.deployment)' (\(limit) tokens)",
                param: "max_tokens")
        }
        if parsed.choices > 1, !EngineUsageReporting.countsEverySequence(engine: entry.engine) {
            return EngineUsageReporting.severalSequencesRefused(parsed, deployment: entry.deployment)
        }
        return nil
    }

    static func contextExceeded(_ message: String, param: String) -> GantryError {
        GantryError.invalid(message, param: param, code: "context_length_exceeded")
    }

    /// A shared limit or quota with nothing left for this gateway now.
    static func sharedLimitError(_ need: LimitNeed, retryAfter: Double) -> GantryError {
        let seconds = max(1, Int(retryAfter.rounded(.up)))
        // The limit's headers, as a local refusal carries them: nothing left until the reset.
        var status = RateLimitStatus()
        switch need.resource.kind {
        case .requests:
            status.limitRequests = need.limit
            status.remainingRequests = 0
            status.resetRequests = .milliseconds(Int64(retryAfter * 1000))
        case .tokens:
            status.limitTokens = need.limit
            status.remainingTokens = 0
            status.resetTokens = .milliseconds(Int64(retryAfter * 1000))
        case .concurrent, .quota:
            break
        }
        var headers = Dictionary(status.headers.map { ($0.0.rawName, $0.1) }, uniquingKeysWith: { first, _ in first })
        headers["retry-after-ms"] = String(Int((retryAfter * 1000).rounded(.up)))
        let message: String
        switch need.resource.kind {
        case .quota:
            return GantryError(
                .rateLimited,
                "You exceeded your current quota: \(need.label) has no tokens left of its \(need.limit) this period (counted over every gateway).",
                code: "insufficient_quota", type: "insufficient_quota", retryAfter: seconds)
        case .requests: message = "\(need.limit) requests per minute"
        case .tokens: message = "\(need.limit) tokens per minute"
        case .concurrent: message = "\(need.limit) concurrent requests"
        }
        return GantryError(
            .rateLimited, "Rate limit reached for \(need.label): \(message) (counted over every gateway).",
            code: "rate_limit_exceeded", retryAfter: seconds, headers: headers)
    }

    /// A frequency limit's 429, with the limit's headers and how long to wait.
    static func limitError(_ rejection: RateLimitRejection) -> GantryError {
        var headers = Dictionary(
            rejection.status.headers.map { ($0.0.rawName, $0.1) }, uniquingKeysWith: { first, _ in first })
        headers["retry-after-ms"] = String(Int(rejection.retryAfter.inSeconds * 1000))
        return GantryError(
            .rateLimited, rejection.message, code: "rate_limit_exceeded",
            retryAfter: max(1, Int(rejection.retryAfter.inSeconds.rounded(.up))), headers: headers)
    }
}

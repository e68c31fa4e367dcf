/// What one request has waited for during its admission and until when it may still wait, with
/// the same bounds whichever transport drives the waits: the router (`InferenceRoutes.admit`) or
/// the direct relay (`DirectExchange`). Nothing is held while a request waits for these.
struct AdmissionWaits: Sendable {
    /// A shared limit's budget is waited for at most this long: a new ledger warms up in 1.5 s, and
    /// a gateway that cannot reach one stops waiting for it after a failed sync.
    static let longestLimitsWait: Duration = .seconds(3)

    /// Reads of a quota's stored use so far (a period may end between a read and the decision).
    var quotaReads = 0
    /// Past the quota's wait: what requests in flight hold now refuses the request.
    private(set) var quotaWaitOver = false
    /// Past the shared limits' wait: a budget still missing follows the fallback setting.
    private(set) var limitsWaitOver = false
    /// Waiting for requests in flight to release a quota is bounded like the queue.
    let quotaDeadline: ContinuousClock.Instant
    let limitsDeadline: ContinuousClock.Instant

    init(queueTimeout: Duration, now: ContinuousClock.Instant = .now) {
        quotaDeadline = now + queueTimeout
        limitsDeadline = now + Self.longestLimitsWait
    }

    /// A wait for a quota settlement ended: `waited` false when it timed out or was refused.
    mutating func quotaWaited(_ waited: Bool, cancelled: Bool = false) {
        quotaWaitOver = !waited || ContinuousClock.now >= quotaDeadline || cancelled
    }

    /// A wait for the next sync with the ledger ended: `waited` false when it timed out or was
    /// refused.
    mutating func limitsWaited(_ waited: Bool, cancelled: Bool = false) {
        limitsWaitOver = !waited || ContinuousClock.now >= limitsDeadline || cancelled
    }
}

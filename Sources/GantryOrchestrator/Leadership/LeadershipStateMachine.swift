/// Whether this control replica leads, decided from the answers of the lease store and the time.
/// Pure: the election's loop feeds it and does what it answers, so every transition is tested
/// without a database or a clock.
///
/// Safety rests on one rule: a leader stops acting before anyone else can take its lease. The
/// store sets the lease's end at least `duration` after the renewal was sent (the statement runs
/// after it leaves), so this replica counts its lease as ending `duration` after it *sent* the
/// renewal, less `stepDownMargin` for stopping its work; another replica can only take the lease
/// after that.
public struct LeadershipStateMachine: Sendable {
    public enum Role: Sendable, Equatable {
        case following
        /// `validUntil`: when this replica stops acting unless a renewal succeeds before.
        case leading(term: Int64, validUntil: ContinuousClock.Instant)
    }

    public enum Action: Sendable, Equatable {
        case none
        /// Start the leader's work.
        case startLeading(term: Int64)
        /// Stop the leader's work now.
        case stepDown(reason: String)
        /// The lease lapsed and was taken again (no one else held it meanwhile, or the term would
        /// not match): what the leader's work knew may be stale, so it starts afresh.
        case restart(term: Int64)
    }

    public private(set) var role: Role = .following
    let duration: Duration
    let stepDownMargin: Duration

    public init(duration: Duration, stepDownMargin: Duration) {
        precondition(stepDownMargin < duration, "the lease must outlast the margin")
        self.duration = duration
        self.stepDownMargin = stepDownMargin
    }

    public var isLeading: Bool {
        if case .leading = role { return true }
        return false
    }

    /// The store answered an acquisition sent at `sentAt`: `term` when this replica holds the
    /// lease, nil when another does.
    public mutating func answered(term: Int64?, sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant) -> Action {
        guard let term else {
            guard isLeading else { return .none }
            role = .following
            return .stepDown(reason: "another replica holds the lease")
        }
        let validUntil = sentAt + duration - stepDownMargin
        // An answer that arrives after its own deadline proves nothing about now.
        guard now < validUntil else { return expire(now: now) }
        switch role {
        case .following:
            role = .leading(term: term, validUntil: validUntil)
            return .startLeading(term: term)
        case .leading(let held, _):
            role = .leading(term: term, validUntil: validUntil)
            return held == term ? .none : .restart(term: term)
        }
    }

    /// The store could not be asked (unreachable, an error): nothing changes until the lease
    /// this replica holds runs out, checked by `expire`.
    public mutating func failed(now: ContinuousClock.Instant) -> Action {
        expire(now: now)
    }

    /// Steps down once the lease may have run out without a renewal. Called often, whatever the
    /// store is doing: a renewal stuck in a dead connection must not keep a leader acting.
    public mutating func expire(now: ContinuousClock.Instant) -> Action {
        guard case .leading(_, let validUntil) = role, now >= validUntil else { return .none }
        role = .following
        return .stepDown(reason: "the lease was not renewed in time")
    }

    /// This replica stops (shutting down): it gives the lease up.
    public mutating func resign() -> Action {
        guard isLeading else { return .none }
        role = .following
        return .stepDown(reason: "shutting down")
    }
}

import Foundation
public import GantryCore
public import HTTPTypes
import Synchronization

/// One thing a limit applies to (a key, a key on one service, a service) and its limits.
public struct LimitScope: Sendable, Equatable {
    /// What the scope is, for error messages: `user`, `key`, `key on this model`, `model`.
    public var kind: String
    /// Unique per scope, e.g. `k:<key id>`, `ks:<key id>:<service>`, `s:<service>`.
    public var id: String
    public var requestsPerMinute: Int?
    public var tokensPerMinute: Int?
    public var concurrentRequests: Int?

    public init(kind: String, id: String, requestsPerMinute: Int?, tokensPerMinute: Int?, concurrentRequests: Int?) {
        self.kind = kind
        self.id = id
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.concurrentRequests = concurrentRequests
    }

    /// The scopes a request by `principal` to `entry` is counted in: the user (over all their
    /// keys), the key, the key on this service, and the service in total.
    public static func scopes(principal: Principal, entry: RouteEntry) -> [LimitScope] {
        var scopes: [LimitScope] = []
        // Only limited scopes are built: every request asks, most have no limit, and the ids
        // are strings put together per request.
        func add(_ kind: String, _ id: @autoclosure () -> String, _ rpm: Int?, _ tpm: Int?, _ concurrent: Int?) {
            guard rpm != nil || tpm != nil || concurrent != nil else { return }
            scopes.append(
                LimitScope(kind: kind, id: id(), requestsPerMinute: rpm, tokensPerMinute: tpm, concurrentRequests: concurrent))
        }
        if let limits = principal.userLimits {
            add("user", "user:" + principal.userID, limits.requestsPerMinute, limits.tokensPerMinute, limits.concurrentRequests)
        }
        // Callers without a key (browser session, provider token) are limited as their user.
        var caller: String { principal.keyID.map { "k:" + $0 } ?? "u:" + principal.userID }
        if let limits = principal.keyLimits {
            add("key", caller, limits.requestsPerMinute, limits.tokensPerMinute, limits.concurrentRequests)
        }
        let limits = entry.limits
        add(
            "key on this model", caller + "|s:" + entry.deployment, limits.requestsPerMinutePerKey,
            limits.tokensPerMinutePerKey, limits.concurrentRequestsPerKey)
        add("model", "s:" + entry.deployment, limits.requestsPerMinute, limits.tokensPerMinute, limits.concurrentRequests)
        return scopes
    }
}

extension LimitScope {
    /// A request that may use more tokens than a scope allows in a whole minute is never
    /// admitted, however long it waits: refused as too large rather than told to retry.
    static func oversized(_ scopes: [LimitScope], tokens: Int) -> RateLimitRejection? {
        guard let scope = scopes.first(where: { $0.tokensPerMinute.map { tokens > $0 } ?? false }),
            let limit = scope.tokensPerMinute
        else { return nil }
        return RateLimitRejection(
            message:
                "Request too large for \(scope.kind): it may use \(tokens) tokens (prompt plus max_tokens) and the limit is \(limit) tokens per minute. Lower max_tokens or the prompt.",
            retryAfter: RateLimiterCore.window, status: RateLimitStatus(), scopeKind: scope.kind)
    }
}

/// What the caller is told about the tightest limit: the OpenAI `x-ratelimit-*` headers.
public struct RateLimitStatus: Sendable, Equatable {
    public var limitRequests: Int?
    public var remainingRequests: Int?
    public var resetRequests: Duration?
    public var limitTokens: Int?
    public var remainingTokens: Int?
    public var resetTokens: Duration?

    public init() {}

    /// The `x-ratelimit-*` fields, named once here rather than parsed per answer.
    public var headers: [(HTTPField.Name, String)] {
        var fields: [(HTTPField.Name, String)] = []
        if let limitRequests, let remainingRequests {
            fields.append((Self.limitRequestsField, String(limitRequests)))
            fields.append((Self.remainingRequestsField, String(remainingRequests)))
            fields.append((Self.resetRequestsField, Self.format(resetRequests ?? .zero)))
        }
        if let limitTokens, let remainingTokens {
            fields.append((Self.limitTokensField, String(limitTokens)))
            fields.append((Self.remainingTokensField, String(remainingTokens)))
            fields.append((Self.resetTokensField, Self.format(resetTokens ?? .zero)))
        }
        return fields
    }

    static let limitRequestsField = HTTPField.Name("x-ratelimit-limit-requests")!
    static let remainingRequestsField = HTTPField.Name("x-ratelimit-remaining-requests")!
    static let resetRequestsField = HTTPField.Name("x-ratelimit-reset-requests")!
    static let limitTokensField = HTTPField.Name("x-ratelimit-limit-tokens")!
    static let remainingTokensField = HTTPField.Name("x-ratelimit-remaining-tokens")!
    static let resetTokensField = HTTPField.Name("x-ratelimit-reset-tokens")!

    /// Like OpenAI's: `1.2s`, `6m0s`.
    static func format(_ duration: Duration) -> String {
        let seconds = max(0, duration.inSeconds)
        if seconds < 60 {
            // Tenths by hand: `String(format:)` costs more than the rest of the headers together.
            let tenths = Int((seconds * 10).rounded())
            return "\(tenths / 10).\(tenths % 10)s"
        }
        return "\(Int(seconds) / 60)m\(Int(seconds) % 60)s"
    }
}

/// Use admitted somewhere else than this limiter, `age` seconds ago, in the scope `scopeID`.
struct WindowedUse: Sendable, Equatable {
    let scopeID: String
    let requests: Int
    let tokens: Int
    let age: Double
}

/// Why a request was not admitted.
public struct RateLimitRejection: Error, Sendable {
    public var message: String
    public var retryAfter: Duration
    public var status: RateLimitStatus
    /// Which scope refused (`user`, `key`, `key on this model`, `model`), for metrics.
    public var scopeKind: String
}

/// Requests admitted into some scopes; settled to the tokens actually used, and released when the
/// request ends.
public struct RateLimitAdmission: Sendable {
    /// The second (since the limiter started) whose bucket holds the reservation.
    let second: Int64
    let tokens: Int
    let scopeIDs: [String]
    let concurrencyScopeIDs: [String]
    public let status: RateLimitStatus
}

/// Requests-per-minute, tokens-per-minute and concurrency limits over sliding 60-second windows,
/// never exceeded however many requests arrive at once (admission is serialised by a lock).
///
/// Tokens are reserved at admission (the prompt's upper bound plus the most the completion may
/// use) and settled to the real usage when the request ends; a request is admitted only if every
/// scope's window still has room for its whole reservation. A window is 61 one-second buckets:
/// the oldest bucket counts whole until all of it is older than 60 s, so a request may be refused
/// up to a second early but what is admitted in any 60 s never exceeds a limit, and memory per
/// scope stays bounded at any request rate.
public final class RateLimiter: Sendable {
    /// A lock, not an actor: the data plane admits and settles on its event loops without a hop.
    private let core = Mutex(RateLimiterCore())

    public init() {}

    /// Admits a request reserving `tokens` in every scope, or says why not and when to retry.
    public func admit(_ scopes: [LimitScope], tokens: Int) -> Result<RateLimitAdmission, RateLimitRejection> {
        core.withLock { $0.admit(scopes, tokens: tokens) }
    }

    /// Replaces the reservation with the tokens the request really used (which may be fewer, or,
    /// when the engine ignored `max_tokens`, more) and ends its concurrency slot.
    public func settle(_ admission: RateLimitAdmission, tokens: Int) {
        core.withLock { $0.settle(admission, tokens: tokens) }
    }

    /// Takes an admission back whole, as if it had never been made: its request, its tokens and
    /// its concurrency slot. For a request admitted and then handed elsewhere before it ran.
    public func cancel(_ admission: RateLimitAdmission) {
        core.withLock { $0.cancel(admission) }
    }

    /// Counts use admitted elsewhere (on a shared limit's grants) in these windows, at its age.
    func record(_ uses: [WindowedUse]) {
        core.withLock { core in
            for use in uses { core.record(use) }
        }
    }

    /// Tokens admitted into a scope's current window, for tests and metrics.
    public func tokensInWindow(_ scopeID: String) -> Int {
        core.withLock { $0.tokensInWindow(scopeID) }
    }

    /// Requests admitted into a scope's current window, for tests.
    public func requestsInWindow(_ scopeID: String) -> Int {
        core.withLock { $0.requestsInWindow(scopeID) }
    }
}

/// The limiter's windows, always used under its lock.
struct RateLimiterCore {
    struct Bucket {
        let second: Int64
        var requests: Int
        var tokens: Int
    }

    struct Window {
        var buckets = FIFO<Bucket>()
        var requests = 0
        var tokens = 0
        var inFlight = 0

        var isIdle: Bool { buckets.isEmpty && inFlight == 0 }

        /// Counts one request reserving `tokens` in the bucket of `second`.
        mutating func record(second: Int64, tokens: Int) {
            if var last = buckets.last, last.second == second {
                last.requests += 1
                last.tokens += tokens
                buckets.replaceLast(with: last)
            } else {
                buckets.append(Bucket(second: second, requests: 1, tokens: tokens))
            }
            requests += 1
            self.tokens += tokens
        }

        /// Adds to the bucket of `second`, made where its second belongs if there is none.
        mutating func add(second: Int64, requests: Int, tokens: Int) {
            guard !move(second: second, requests: requests, tokens: tokens) else { return }
            buckets.insert(Bucket(second: second, requests: requests, tokens: tokens)) { $0.second > second }
            self.requests += requests
            self.tokens += tokens
        }

        /// Moves the counts of the bucket of `second`; false when it is no longer in the window.
        @discardableResult
        mutating func move(second: Int64, requests: Int, tokens: Int) -> Bool {
            let moved = buckets.update(where: { $0.second == second }) {
                $0.requests += requests
                $0.tokens += tokens
            }
            guard moved else { return false }
            self.requests += requests
            self.tokens += tokens
            return true
        }

        /// Drops the buckets of seconds before `second`.
        mutating func drop(before second: Int64) {
            while let first = buckets.first, first.second < second {
                requests -= first.requests
                tokens -= first.tokens
                buckets.removeFirst()
            }
        }
    }

    static let window: Duration = .seconds(60)
    private var windows: [String: Window] = [:]
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant

    init() {
        origin = clock.now
    }

    private func second(of instant: ContinuousClock.Instant) -> Int64 { (instant - origin).components.seconds }

    /// When the bucket of `second` stops counting: once all of it is more than 60 s old.
    private func expiry(of second: Int64) -> ContinuousClock.Instant { origin + .seconds(second + 61) }

    /// Admits a request reserving `tokens` in every scope, or says why not and when to retry.
    mutating func admit(_ scopes: [LimitScope], tokens: Int) -> Result<RateLimitAdmission, RateLimitRejection> {
        let now = clock.now
        let current = second(of: now)
        if let oversized = LimitScope.oversized(scopes, tokens: tokens) { return .failure(oversized) }
        for scope in scopes { prune(scope.id, now: current) }
        var status = RateLimitStatus()
        for scope in scopes {
            let window = windows[scope.id] ?? Window()
            if let limit = scope.concurrentRequests, window.inFlight >= limit {
                return .failure(
                    RateLimitRejection(
                        message: "Rate limit reached for \(scope.kind): \(limit) concurrent requests. Retry when one finishes.",
                        retryAfter: .seconds(1), status: status, scopeKind: scope.kind))
            }
            if let limit = scope.requestsPerMinute, window.requests >= limit {
                let wait = timeUntilFree(window, needed: window.requests + 1 - limit, now: now) { $0.requests }
                var rejected = status
                rejected.limitRequests = limit
                rejected.remainingRequests = 0
                rejected.resetRequests = wait
                return .failure(
                    RateLimitRejection(
                        message: "Rate limit reached for \(scope.kind): \(limit) requests per minute.",
                        retryAfter: wait, status: rejected, scopeKind: scope.kind))
            }
            if let limit = scope.tokensPerMinute {
                if window.tokens + tokens > limit {
                    let wait = timeUntilFree(window, needed: window.tokens + tokens - limit, now: now) { $0.tokens }
                    var rejected = status
                    rejected.limitTokens = limit
                    rejected.remainingTokens = max(0, limit - window.tokens)
                    rejected.resetTokens = wait
                    return .failure(
                        RateLimitRejection(
                            message:
                                "Rate limit reached for \(scope.kind): \(limit) tokens per minute, \(window.tokens) in use, this request may use \(tokens).",
                            retryAfter: wait, status: rejected, scopeKind: scope.kind))
                }
            }
            status.tighten(with: scope, window: window, adding: tokens, reset: resetTime(window, now: now))
        }
        let windowed = scopes.filter { $0.requestsPerMinute != nil || $0.tokensPerMinute != nil }.map(\.id)
        let concurrent = scopes.filter { $0.concurrentRequests != nil }.map(\.id)
        // In place (`default:` modifies the stored window): a copy taken out and written back
        // would copy its buckets on every request.
        for id in windowed { windows[id, default: Window()].record(second: current, tokens: tokens) }
        for id in concurrent { windows[id, default: Window()].inFlight += 1 }
        return .success(
            RateLimitAdmission(
                second: current, tokens: tokens, scopeIDs: windowed, concurrencyScopeIDs: concurrent, status: status))
    }

    /// Replaces the reservation with the tokens the request really used (which may be fewer, or,
    /// when the engine ignored `max_tokens`, more) and ends its concurrency slot.
    mutating func settle(_ admission: RateLimitAdmission, tokens: Int) {
        end(admission, requests: 0, tokens: tokens - admission.tokens)
    }

    mutating func cancel(_ admission: RateLimitAdmission) {
        end(admission, requests: -1, tokens: -admission.tokens)
    }

    /// Ends the admission's concurrency slot and moves its bucket's counts by `requests` and
    /// `tokens` in every scope it was admitted into.
    private mutating func end(_ admission: RateLimitAdmission, requests: Int, tokens: Int) {
        for id in admission.concurrencyScopeIDs {
            guard let index = windows.index(forKey: id) else { continue }
            windows.values[index].inFlight -= 1
            if windows.values[index].isIdle { windows.remove(at: index) }
        }
        let current = second(of: clock.now)
        for id in admission.scopeIDs {
            guard let index = windows.index(forKey: id) else { continue }
            windows.values[index].drop(before: current - 60)
            // Every scope prunes by the same rule, so the reservation's bucket is either still in
            // all of them or in none.
            if requests != 0 || tokens != 0 {
                windows.values[index].move(second: admission.second, requests: requests, tokens: tokens)
            }
            if windows.values[index].isIdle { windows.remove(at: index) }
        }
    }

    /// Use admitted elsewhere, counted in the bucket of its second (older than the window: not at
    /// all).
    mutating func record(_ use: WindowedUse) {
        let second = second(of: clock.now - .milliseconds(Int64((use.age * 1000).rounded())))
        guard second >= self.second(of: clock.now) - 60 else { return }
        windows[use.scopeID, default: Window()].add(second: second, requests: use.requests, tokens: use.tokens)
    }

    mutating func requestsInWindow(_ scopeID: String) -> Int {
        prune(scopeID, now: second(of: clock.now))
        return windows[scopeID]?.requests ?? 0
    }

    /// Tokens admitted into a scope's current window, for tests and metrics.
    mutating func tokensInWindow(_ scopeID: String) -> Int {
        prune(scopeID, now: second(of: clock.now))
        return windows[scopeID]?.tokens ?? 0
    }

    /// Drops the buckets no longer in the window, in place, and the window once nothing is left.
    private mutating func prune(_ id: String, now current: Int64) {
        guard let index = windows.index(forKey: id) else { return }
        windows.values[index].drop(before: current - 60)
        if windows.values[index].isIdle { windows.remove(at: index) }
    }

    private func resetTime(_ window: Window, now: ContinuousClock.Instant) -> Duration {
        window.buckets.first.map { expiry(of: $0.second) - now } ?? Self.window
    }

    /// How long until enough of the oldest buckets leave the window to free `needed` requests or tokens.
    private func timeUntilFree(
        _ window: Window, needed: Int, now: ContinuousClock.Instant, _ amount: (Bucket) -> Int
    ) -> Duration {
        var freed = 0
        for bucket in window.buckets {
            freed += amount(bucket)
            if freed >= needed { return max(.milliseconds(1), expiry(of: bucket.second) - now) }
        }
        return Self.window
    }
}

extension RateLimitStatus {
    /// Keeps, per kind of limit, the scope with the least room left after this request.
    mutating func tighten(with scope: LimitScope, window: RateLimiterCore.Window, adding tokens: Int, reset: Duration) {
        if let limit = scope.requestsPerMinute {
            tighten(requests: limit, remaining: limit - window.requests - 1, reset: reset)
        }
        if let limit = scope.tokensPerMinute {
            tighten(tokens: limit, remaining: limit - window.tokens - tokens, reset: reset)
        }
    }

    /// A requests-per-minute limit with `remaining` room after this request: kept if tightest.
    mutating func tighten(requests limit: Int, remaining: Int, reset: Duration) {
        guard remainingRequests.map({ remaining < $0 }) ?? true else { return }
        limitRequests = limit
        remainingRequests = remaining
        resetRequests = reset
    }

    /// A tokens-per-minute limit with `remaining` room after this request: kept if tightest.
    mutating func tighten(tokens limit: Int, remaining: Int, reset: Duration) {
        guard remainingTokens.map({ remaining < $0 }) ?? true else { return }
        limitTokens = limit
        remainingTokens = remaining
        resetTokens = reset
    }
}

/// A first-in-first-out list: appends at the end, removes from the front in O(1) (amortised),
/// compacting its storage once half of it is dead.
struct FIFO<Element>: Sequence {
    private var storage: [Element] = []
    private var head = 0

    var count: Int { storage.count - head }
    var isEmpty: Bool { head == storage.count }
    var first: Element? { isEmpty ? nil : storage[head] }
    var last: Element? { isEmpty ? nil : storage[storage.count - 1] }

    mutating func replaceLast(with element: Element) { storage[storage.count - 1] = element }

    /// Changes the first element matching `predicate`; false when there is none.
    mutating func update(where predicate: (Element) -> Bool, _ change: (inout Element) -> Void) -> Bool {
        guard let index = storage[head...].firstIndex(where: predicate) else { return false }
        change(&storage[index])
        return true
    }

    mutating func append(_ element: Element) { storage.append(element) }

    /// Inserts `element` before the first element matching `isAfter` (at the end when none does).
    mutating func insert(_ element: Element, before isAfter: (Element) -> Bool) {
        let index = storage[head...].firstIndex(where: isAfter) ?? storage.count
        storage.insert(element, at: index)
    }

    mutating func removeFirst() {
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024, head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
    }

    func makeIterator() -> ArraySlice<Element>.Iterator { storage[head...].makeIterator() }
}

public import Foundation
import Synchronization

/// Slows down guessing: an address that presents too many invalid credentials within a window is
/// refused (429 with `retry-after`) until the window ends, before any credential is checked.
///
/// Across processes: a gateway reports the failures it saw (`takeUnreported`) to the control
/// leader, which counts them with every other gateway's (`recordFailures`) and sends the addresses
/// it blocks back to every gateway with the route watch (`blockedAddresses`, `applyRemoteBlocks`).
/// So an address gets the allowance once over all gateways, plus what it tries while a report and
/// a route watch answer are on their way (about a second). Keyed by peer IP, so clients behind
/// one NAT share the allowance.
///
/// A lock, not an actor, so the data plane's direct relay can ask without suspending.
public final class FailedAuthenticationLimiter: Sendable {
    struct State {
        var failures: [String: (count: Int, windowStart: Date)] = [:]
        /// Failures seen here since the last report, per address.
        var unreported: [String: Int] = [:]
        /// Blocks decided by the control leader over every gateway: until when.
        var remote: [String: Date] = [:]
    }

    /// Addresses remembered at most, in each table: beyond it the oldest windows are forgotten.
    static let capacity = 10_000

    let maximumFailures: Int
    let window: TimeInterval
    /// Called, outside the lock, when an address becomes blocked here: the control leader tells
    /// the gateways.
    let onBlock: @Sendable () -> Void
    private let state = Mutex(State())

    public init(maximumFailures: Int = 20, window: TimeInterval = 60, onBlock: @escaping @Sendable () -> Void = {}) {
        self.maximumFailures = maximumFailures
        self.window = window
        self.onBlock = onBlock
    }

    /// Seconds until the address may try again, or nil when it may try now.
    public func retryAfter(for address: String, now: Date = Date()) -> Int? {
        state.withLock { state in
            var local: Int?
            if let entry = state.failures[address] {
                let elapsed = now.timeIntervalSince(entry.windowStart)
                if elapsed >= window {
                    state.failures[address] = nil
                } else if entry.count >= maximumFailures {
                    local = max(1, Int((window - elapsed).rounded(.up)))
                }
            }
            var remote: Int?
            if let until = state.remote[address] {
                if until <= now {
                    state.remote[address] = nil
                } else {
                    remote = max(1, Int(until.timeIntervalSince(now).rounded(.up)))
                }
            }
            return [local, remote].compactMap { $0 }.max()
        }
    }

    public func recordFailure(for address: String, now: Date = Date()) {
        let blocked = state.withLock { state in
            if state.unreported.count < Self.capacity || state.unreported[address] != nil {
                state.unreported[address, default: 0] += 1
            }
            return record(in: &state, address: address, count: 1, now: now)
        }
        if blocked { onBlock() }
    }

    /// Failures another process saw (a gateway's report, at the control leader).
    public func recordFailures(for address: String, count: Int, now: Date = Date()) {
        guard count > 0 else { return }
        let blocked = state.withLock { record(in: &$0, address: address, count: count, now: now) }
        if blocked { onBlock() }
    }

    /// The failures seen here since the last call, per address, for the gateway's report.
    public func takeUnreported() -> [String: Int] {
        state.withLock { state in
            defer { state.unreported = [:] }
            return state.unreported
        }
    }

    /// Addresses blocked here now, with the seconds left: what the control leader sends every
    /// gateway.
    public func blockedAddresses(now: Date = Date()) -> [String: Int] {
        state.withLock { state in
            var blocked: [String: Int] = [:]
            for (address, entry) in state.failures where entry.count >= maximumFailures {
                let left = window - now.timeIntervalSince(entry.windowStart)
                if left > 0 { blocked[address] = max(1, Int(left.rounded(.up))) }
            }
            return blocked
        }
    }

    /// The blocks the control leader decided over every gateway, replacing the ones it sent
    /// before (an address it no longer lists is no longer blocked by it).
    public func applyRemoteBlocks(_ blocks: [String: Int], now: Date = Date()) {
        state.withLock { state in
            state.remote = [:]
            for (address, seconds) in blocks.prefix(Self.capacity) where seconds > 0 {
                state.remote[address] = now.addingTimeInterval(TimeInterval(min(seconds, Int(window))))
            }
        }
    }

    /// Adds `count` failures; true when this made the address blocked.
    private func record(in state: inout State, address: String, count: Int, now: Date) -> Bool {
        let before: Int
        if let entry = state.failures[address], now.timeIntervalSince(entry.windowStart) < window {
            before = entry.count
            state.failures[address] = (entry.count + count, entry.windowStart)
        } else {
            before = 0
            state.failures[address] = (count, now)
        }
        // Bound memory: forget addresses whose window has passed once the table grows.
        if state.failures.count > Self.capacity {
            state.failures = state.failures.filter { now.timeIntervalSince($0.value.windowStart) < window }
        }
        return before < maximumFailures && before + count >= maximumFailures
    }
}

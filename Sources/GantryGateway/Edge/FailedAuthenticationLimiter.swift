public import Foundation
import Synchronization

/// Slows down guessing: an address that presents too many invalid credentials within a window is
/// refused (429 with `retry-after`) until the window ends, before any credential is checked.
///
/// The bound is per process; behind several gateway replicas an address gets that many tries on
/// each. Keyed by peer IP, so clients behind one NAT share the allowance.
///
/// A lock, not an actor, so the data plane's direct relay can ask without suspending.
public final class FailedAuthenticationLimiter: Sendable {
    let maximumFailures: Int
    let window: TimeInterval
    private let table = Mutex<[String: (count: Int, windowStart: Date)]>([:])

    public init(maximumFailures: Int = 20, window: TimeInterval = 60) {
        self.maximumFailures = maximumFailures
        self.window = window
    }

    /// Seconds until the address may try again, or nil when it may try now.
    public func retryAfter(for address: String, now: Date = Date()) -> Int? {
        table.withLock { failures in
            guard let entry = failures[address] else { return nil }
            let elapsed = now.timeIntervalSince(entry.windowStart)
            if elapsed >= window {
                failures[address] = nil
                return nil
            }
            return entry.count >= maximumFailures ? max(1, Int((window - elapsed).rounded(.up))) : nil
        }
    }

    public func recordFailure(for address: String, now: Date = Date()) {
        table.withLock { failures in record(in: &failures, address: address, now: now) }
    }

    private func record(in failures: inout [String: (count: Int, windowStart: Date)], address: String, now: Date) {
        if let entry = failures[address], now.timeIntervalSince(entry.windowStart) < window {
            failures[address] = (entry.count + 1, entry.windowStart)
        } else {
            failures[address] = (1, now)
        }
        // Bound memory: forget addresses whose window has passed once the table grows.
        if failures.count > 10_000 {
            failures = failures.filter { now.timeIntervalSince($0.value.windowStart) < window }
        }
    }
}

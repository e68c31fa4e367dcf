import Synchronization

/// A counter of events (a quota hold settled, a sync with the ledger ended) that requests wait on:
/// `wait(after:timeout:)` returns once the counter has moved past what the waiter saw, or the
/// timeout passes; `advance()` moves it and wakes every waiter. Woken, not polling; a bounded
/// number of waiters, so a flood of requests cannot hold unbounded continuations.
final class WakeGeneration: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())
    /// At most this many wait at once; more are told so at once.
    private let maxWaiting: Int

    init(maxWaiting: Int) {
        self.maxWaiting = maxWaiting
    }

    var generation: UInt64 { state.withLock { $0.generation } }

    func advance() {
        let waiting = state.withLock { state in
            state.generation &+= 1
            defer { state.waiters.removeAll() }
            return state.waiters.isEmpty ? [] : Array(state.waiters.values)
        }
        for waiter in waiting { waiter.resume() }
    }

    /// Waits until the generation is past `seen`, or `timeout` passes. False, at once, when
    /// `maxWaiting` already wait.
    func wait(after seen: UInt64, timeout: Duration) async -> Bool {
        let id: Int? = state.withLock { state in
            guard state.waiters.count < maxWaiting else { return nil }
            state.nextWaiter += 1
            return state.nextWaiter
        }
        guard let id else { return false }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask { await self.next(after: seen, id: id) }
            await group.next()
            group.cancelAll()
        }
        return true
    }

    private func next(after seen: UInt64, id: Int) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    guard state.generation == seen, !Task.isCancelled else { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

import Synchronization

/// Wake-ups of a background loop (the reconciler, a gateway's shared-limits sync and its
/// reports), coalesced: any number of `wake()` calls between two waits end one wait. Unlike an
/// `AsyncStream`, it outlives a cancelled waiter: a stream finishes for good when the task
/// iterating it is cancelled, so a replica that stepped down and led again had a reconcile loop
/// that ended at once (found by the scale-out test: no replica led after a database outage).
public final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    public init() {}

    public func wake() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns once woken or `timeout` has passed: a loop's turn every `timeout`, sooner when
    /// woken. The timer ending never counts as a wake-up (a timer that woke the signal when
    /// cancelled made a loop spin: half a core in bench/shared-limits.sh).
    public func wait(atMost timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask { await self.wait() }
            await group.next()
            group.cancelAll()
        }
    }

    /// Returns once woken (at once if woken since the last wait), or when the task is cancelled.
    /// One waiter at a time: the loop.
    public func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.pending || Task.isCancelled {
                        state.pending = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}

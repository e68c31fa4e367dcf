import Testing

@testable import GantryCore

/// The reconcile loop's wake-ups outlive a cancelled waiter: a replica that steps down (its loop
/// cancelled) and leads again must get a loop that waits and wakes, not one that ends at once.
@Suite("Wake signal")
struct WakeSignalTests {
    @Test("wake-ups coalesce, and a new waiter after a cancelled one is woken")
    func outlivesCancellation() async {
        let signal = WakeSignal()
        signal.wake()
        signal.wake()
        // Two wake-ups before the wait: one wait ends at once.
        await signal.wait()
        // A waiter cancelled while waiting (a term ending) returns.
        let first = Task { await signal.wait() }
        try? await Task.sleep(for: .milliseconds(50))
        first.cancel()
        await first.value
        // The next term's waiter waits for a wake-up, and gets it.
        let woken = Task {
            await signal.wait()
            return !Task.isCancelled
        }
        try? await Task.sleep(for: .milliseconds(50))
        signal.wake()
        #expect(await woken.value)
    }
}

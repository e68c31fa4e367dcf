/// Checks `condition` every `interval` until it holds, and throws ``WaitTimedOut`` naming `what`
/// once `bound` has passed without it.
///
/// For what a test waits on to happen by itself (a write, a process's exit, a request queued):
/// instead of a fixed sleep, which is too long on a quiet machine and too short on a busy one,
/// the wait ends as soon as the condition holds, and a slow run takes longer instead of failing.
/// The condition is checked once more after the bound, so a slow check cannot lose the race.
func waitUntil(
    _ what: String, within bound: Duration = .seconds(20), every interval: Duration = .milliseconds(100),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + bound
    while true {
        if try await condition() { return }
        guard ContinuousClock.now < deadline else { throw WaitTimedOut(what: what, bound: bound) }
        try await Task.sleep(for: interval)
    }
}

/// A condition a test waited for did not hold within its bound.
struct WaitTimedOut: Error, CustomStringConvertible {
    var what: String
    var bound: Duration

    var description: String { "timed out after \(bound) waiting until \(what)" }
}

import Foundation
import GantryGateway
import Synchronization
import Testing

/// The failed-authentication slowdown, in one process and over several (a gateway's report to
/// the control leader, the leader's blocks sent back with the route watch).
@Suite struct FailedAuthenticationLimiterTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func blocksAnAddressAfterItsFailuresUntilTheWindowEnds() {
        let limiter = FailedAuthenticationLimiter(maximumFailures: 3, window: 60)
        for _ in 0..<2 { limiter.recordFailure(for: "10.0.0.1", now: start) }
        #expect(limiter.retryAfter(for: "10.0.0.1", now: start) == nil)
        limiter.recordFailure(for: "10.0.0.1", now: start.addingTimeInterval(10))
        #expect(limiter.retryAfter(for: "10.0.0.1", now: start.addingTimeInterval(10)) == 50)
        #expect(limiter.retryAfter(for: "10.0.0.2", now: start.addingTimeInterval(10)) == nil, "per address")
        #expect(limiter.retryAfter(for: "10.0.0.1", now: start.addingTimeInterval(60)) == nil)
    }

    @Test func reportsEachFailureOnce() {
        let limiter = FailedAuthenticationLimiter(maximumFailures: 3, window: 60)
        limiter.recordFailure(for: "a", now: start)
        limiter.recordFailure(for: "a", now: start)
        limiter.recordFailure(for: "b", now: start)
        #expect(limiter.takeUnreported() == ["a": 2, "b": 1])
        #expect(limiter.takeUnreported().isEmpty)
    }

    @Test func theLeaderCountsEveryGatewaysFailuresAndSaysOnceWhenItBlocks() {
        let blocks = Atomic<Int>(0)
        let leader = FailedAuthenticationLimiter(
            maximumFailures: 5, window: 60, onBlock: { blocks.add(1, ordering: .relaxed) })
        // Two gateways each saw fewer failures than the allowance; together they pass it.
        leader.recordFailures(for: "a", count: 3, now: start)
        #expect(leader.blockedAddresses(now: start).isEmpty)
        #expect(blocks.load(ordering: .relaxed) == 0)
        leader.recordFailures(for: "a", count: 3, now: start.addingTimeInterval(1))
        #expect(leader.blockedAddresses(now: start.addingTimeInterval(1)) == ["a": 59])
        #expect(blocks.load(ordering: .relaxed) == 1)
        leader.recordFailures(for: "a", count: 1, now: start.addingTimeInterval(2))
        #expect(blocks.load(ordering: .relaxed) == 1, "told once per block")
        #expect(leader.blockedAddresses(now: start.addingTimeInterval(61)).isEmpty)
        // Reported failures are not reported again by the leader.
        #expect(leader.takeUnreported().isEmpty)
    }

    @Test func aGatewayRefusesWhatTheLeaderBlocksUntilItSaysOtherwise() {
        let gateway = FailedAuthenticationLimiter(maximumFailures: 5, window: 60)
        gateway.applyRemoteBlocks(["a": 30, "b": 10], now: start)
        #expect(gateway.retryAfter(for: "a", now: start) == 30)
        #expect(gateway.retryAfter(for: "b", now: start.addingTimeInterval(5)) == 5)
        #expect(gateway.retryAfter(for: "b", now: start.addingTimeInterval(10)) == nil, "the block ran out")
        #expect(gateway.retryAfter(for: "c", now: start) == nil)
        // The next answer replaces the last: an address it no longer lists is free.
        gateway.applyRemoteBlocks(["c": 20], now: start.addingTimeInterval(1))
        #expect(gateway.retryAfter(for: "a", now: start.addingTimeInterval(1)) == nil)
        #expect(gateway.retryAfter(for: "c", now: start.addingTimeInterval(1)) == 20)
        // A remote block never lasts longer than a window, whatever it says.
        gateway.applyRemoteBlocks(["d": 100_000], now: start)
        #expect(gateway.retryAfter(for: "d", now: start) == 60)
        // The longer of a local and a remote block holds.
        for _ in 0..<5 { gateway.recordFailure(for: "d", now: start.addingTimeInterval(30)) }
        #expect(gateway.retryAfter(for: "d", now: start.addingTimeInterval(31)) == 59)
    }
}

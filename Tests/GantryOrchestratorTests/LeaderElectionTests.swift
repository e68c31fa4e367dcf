import GantryCore
import GantryOrchestrator
import Logging
import Synchronization
import Testing

/// A lease store in memory, with the SQL one's rules; `cutOff` holders get errors, as a replica
/// that lost its database would.
actor MemoryLeaseRepository: LeaseRepository {
    struct Lease {
        var holder: String
        var term: Int64
        var expiresAt: ContinuousClock.Instant
    }

    var leases: [String: Lease] = [:]
    var cutOff: Set<String> = []

    func cut(_ holder: String) { cutOff.insert(holder) }

    func acquireLease(name: String, holder: String, duration: Duration) async throws -> Int64? {
        guard !cutOff.contains(holder) else { throw GantryError(.unavailable, "the store cannot be reached") }
        let now = ContinuousClock.now
        guard let lease = leases[name] else {
            leases[name] = Lease(holder: holder, term: 1, expiresAt: now + duration)
            return 1
        }
        guard lease.holder == holder || lease.expiresAt <= now else { return nil }
        let term = lease.holder == holder ? lease.term : lease.term + 1
        leases[name] = Lease(holder: holder, term: term, expiresAt: now + duration)
        return term
    }

    func releaseLease(name: String, holder: String) async throws {
        guard !cutOff.contains(holder) else { throw GantryError(.unavailable, "the store cannot be reached") }
        if leases[name]?.holder == holder { leases[name]?.expiresAt = .now }
    }
}

/// When each replica's leader work ran, to show one at a time.
final class WorkLog: Sendable {
    struct Span {
        var holder: String
        var term: Int64
        var start: ContinuousClock.Instant
        var end: ContinuousClock.Instant?
    }

    private let spans = Mutex<[Span]>([])

    var all: [Span] { spans.withLock { $0 } }

    func running(_ holder: String) -> Bool { spans.withLock { $0.contains { $0.holder == holder && $0.end == nil } } }

    /// The work of a leader: runs until cancelled, recording its span.
    func work(_ holder: String) -> @Sendable (Int64) async -> Void {
        { term in
            let index = self.spans.withLock { spans in
                spans.append(Span(holder: holder, term: term, start: .now))
                return spans.count - 1
            }
            while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(5)) }
            self.spans.withLock { $0[index].end = .now }
        }
    }

    /// No two spans overlap.
    var oneAtATime: Bool {
        let sorted = all.sorted { $0.start < $1.start }
        for (earlier, later) in zip(sorted, sorted.dropFirst()) {
            guard let end = earlier.end, end <= later.start else { return false }
        }
        return true
    }
}

@Suite struct LeaderElectionTests {
    // Long enough that a loaded machine (the suites run in parallel) renews in time.
    let settings = LeaderElection.Settings(
        duration: .milliseconds(2000), renewInterval: .milliseconds(500), checkInterval: .milliseconds(10))

    // Generous: on two cores the property tests of other suites can hold the cooperative pool for
    // seconds. How fast a takeover is follows from LeadershipStateMachineTests and is measured by
    // scripts/scale-out-test.sh with real processes.
    func waitUntil(_ what: String, within limit: Duration = .seconds(30), _ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while !(await condition()) {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting until \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func election(_ holder: String, _ store: MemoryLeaseRepository, _ log: WorkLog) -> LeaderElection {
        LeaderElection(
            leases: store, holder: holder, settings: settings, logger: Logger(label: "test"), work: log.work(holder))
    }

    @Test func oneLeadsAndAnotherTakesOverWhenItShutsDown() async throws {
        let store = MemoryLeaseRepository()
        let log = WorkLog()
        let a = election("a", store, log)
        let b = election("b", store, log)
        let runA = Task { try await a.run() }
        try await waitUntil("a leads") { a.isLeader && log.running("a") }
        let runB = Task { try await b.run() }
        // b keeps asking and stays a follower.
        try await Task.sleep(for: .milliseconds(1200))
        #expect(!b.isLeader && !log.running("b"))

        // a shuts down and gives the lease up: b may take it at its next renewal, not after expiry.
        runA.cancel()
        try await runA.value
        #expect(!log.running("a"))
        let lease = await store.leases["control-leader"]
        #expect(lease.map { $0.holder == "b" || $0.expiresAt <= .now } == true, "given up, not left to run out")
        try await waitUntil("b leads") { b.isLeader && log.running("b") }
        // A new holder, a higher term (a loaded machine may add terms of a's own on the way).
        let spans = log.all
        #expect(spans.last?.holder == "b")
        #expect(spans.filter { $0.holder == "a" }.allSatisfy { $0.term < spans.last?.term ?? 0 })
        runB.cancel()
        try await runB.value
        #expect(log.oneAtATime)
        #expect(await store.leases["control-leader"].map { $0.expiresAt <= .now } == true)
    }

    @Test func aLeaderCutOffFromTheStoreStopsBeforeAnotherStarts() async throws {
        let store = MemoryLeaseRepository()
        let log = WorkLog()
        let a = election("a", store, log)
        let b = election("b", store, log)
        let runA = Task { try await a.run() }
        try await waitUntil("a leads") { a.isLeader }
        let runB = Task { try await b.run() }
        try await Task.sleep(for: .milliseconds(600))

        // As a partition or a dead database connection would: a cannot renew, b can.
        await store.cut("a")
        try await waitUntil("b leads") { b.isLeader && log.running("b") }
        #expect(!a.isLeader && !log.running("a"))
        #expect(log.oneAtATime)
        runA.cancel()
        runB.cancel()
        try await runA.value
        try await runB.value
    }

    @Test func exactlyOneOfManyLeads() async throws {
        let store = MemoryLeaseRepository()
        let log = WorkLog()
        let elections = (0..<5).map { election("r\($0)", store, log) }
        let runs = elections.map { election in Task { try await election.run() } }
        try await waitUntil("one leads") { elections.contains { $0.isLeader } }
        try await Task.sleep(for: .milliseconds(1500))
        // Safety, however the machine schedules the loops: never two at once.
        #expect(elections.filter(\.isLeader).count <= 1)
        for run in runs { run.cancel() }
        for run in runs { try await run.value }
        #expect(!log.all.isEmpty)
        #expect(log.oneAtATime)
    }
}

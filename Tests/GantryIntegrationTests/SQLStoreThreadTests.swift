import Foundation
import GantryStore
import GantryTestSupport
import Logging
import NIOCore
import NIOPosix
import SQLKit
import Synchronization
import Testing

/// SQLite's calls block a thread. They must not wait for NIO's shared blocking pool, which has
/// one thread per core and is where file-system calls and any other blocking work queue: with
/// it full, every request that read or wrote the database stalled (seen as relay reads and the
/// per-service timeout test missing their bounds by the 10 s a blocked test read took to time
/// out).
@Suite("SQLite store threads")
struct SQLStoreThreadTests {
    @Test("a SQLite store answers while every thread of NIO's shared blocking pool is busy")
    func answersWhileSharedPoolIsBusy() async throws {
        let directory = try TemporaryDirectory()
        let store = try await SQLStore.open(.sqlite(path: directory.path + "/threads.sqlite"), logger: Logger(label: "test"))
        let threads = NIOSingletons.blockingPoolThreadCountSuggestion
        let started = Atomic<Int>(0)
        let finished = Atomic<Int>(0)
        let released = Atomic<Bool>(false)
        // Each blocker holds one thread of the shared pool until released (at most 30 s, so a
        // failing run still ends).
        let blockers = (0..<threads).map { _ in
            NIOThreadPool.singleton.runIfActive(eventLoop: MultiThreadedEventLoopGroup.singleton.any()) {
                started.add(1, ordering: .sequentiallyConsistent)
                let deadline = ContinuousClock.now + .seconds(30)
                while !released.load(ordering: .sequentiallyConsistent), ContinuousClock.now < deadline {
                    usleep(2_000)
                }
                finished.add(1, ordering: .sequentiallyConsistent)
            }
        }
        defer { released.store(true, ordering: .sequentiallyConsistent) }
        // Every blocker must be running before the query, or the query could take a free thread.
        let startDeadline = ContinuousClock.now + .seconds(30)
        while started.load(ordering: .sequentiallyConsistent) < threads, ContinuousClock.now < startDeadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        try #require(started.load(ordering: .sequentiallyConsistent) == threads, "the shared pool's threads were all taken")

        let rows = try await store.database.raw("SELECT 41 + 1 AS answer").all()
        // Counted, not timed: the query was answered while the blockers still held the pool.
        let stillHeld = finished.load(ordering: .sequentiallyConsistent) == 0
        released.store(true, ordering: .sequentiallyConsistent)
        for blocker in blockers { try await blocker.get() }
        #expect(try rows.first?.decode(column: "answer", as: Int.self) == 42)
        #expect(stillHeld, "the query waited for the shared pool")
        try await store.close()
    }
}

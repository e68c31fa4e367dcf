import GantryTestSupport
import NIOCore
import NIOPosix
import Testing

@testable import GantryGateway
@testable import GantryServing

/// The relay's engine connections: kept for the next request only while young, because engines
/// close idle keep-alive connections themselves (llama-server after 5 s) and a request written as
/// one closes is lost.
@Suite("Engine connection pool")
struct EnginePoolTests {
    final class Connection {}

    @Test("the newest idle connection is handed out while young; older ones are taken out to close")
    func idlePolicy() {
        let start = NIODeadline.now()
        func at(_ milliseconds: Int64) -> NIODeadline { start + .milliseconds(milliseconds) }
        var idle = IdleConnections<Connection>(limit: .seconds(3))
        let (a, b, c) = (Connection(), Connection(), Connection())
        idle.add(a, now: at(0))
        idle.add(b, now: at(1000))
        idle.add(c, now: at(2000))

        var taken = idle.take(now: at(2500))
        #expect(taken.fresh === c && taken.stale.isEmpty && idle.count == 2)
        // At 3.5 s: b (idle 2.5 s) is still young; a (3.5 s) is not.
        taken = idle.take(now: at(3500))
        #expect(taken.fresh === b)
        #expect(taken.stale.count == 1 && taken.stale[0] === a)
        #expect(idle.isEmpty)

        let d = Connection()
        idle.add(a, now: at(4000))
        idle.add(d, now: at(5000))
        // Exactly at the limit counts as too old; when the newest is too old, all are.
        taken = idle.take(now: at(8000))
        #expect(taken.fresh == nil)
        #expect(taken.stale.count == 2 && taken.stale.contains { $0 === a } && taken.stale.contains { $0 === d })
        #expect(idle.isEmpty)

        idle.add(a, now: at(9000))
        idle.add(b, now: at(11000))
        idle.add(c, now: at(11500))
        let stale = idle.removeStale(now: at(12500))
        #expect(stale.count == 1 && stale[0] === a)
        idle.remove(c)
        #expect(idle.take(now: at(12500)).fresh === b)
        #expect(idle.isEmpty)
    }

    @Test("a released connection is reused at once, and replaced (and closed) once idle past the limit")
    func poolReusesOnlyYoungConnections() async throws {
        try await FakeEngine.withEngine(.normal(chunks: 1, delay: .zero)) { endpoint in
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let (reused, replaced) = try await loop.flatSubmit { () -> EventLoopFuture<(Bool, Bool)> in
                let pool = EnginePool(eventLoop: loop, idleLimit: .milliseconds(200))
                let promise = loop.makePromise(of: (Bool, Bool).self)
                struct Failed: Error {}
                pool.connection(to: endpoint) { first in
                    guard case .success(let firstConnection) = first else { return promise.fail(Failed()) }
                    pool.release(firstConnection)
                    pool.connection(to: endpoint) { second in
                        guard case .success(let secondConnection) = second else { return promise.fail(Failed()) }
                        let reused = secondConnection === firstConnection
                        pool.release(secondConnection)
                        loop.assumeIsolated().scheduleTask(in: .milliseconds(300)) {
                            pool.connection(to: endpoint) { third in
                                guard case .success(let thirdConnection) = third else { return promise.fail(Failed()) }
                                let replaced = thirdConnection !== secondConnection
                                // The old one is closed, not left open until the engine closes it.
                                loop.assumeIsolated().scheduleTask(in: .milliseconds(50)) {
                                    let oldClosed = !secondConnection.channel.isActive
                                    thirdConnection.channel.close(promise: nil)
                                    promise.succeed((reused, replaced && oldClosed))
                                }
                            }
                        }
                    }
                }
                return promise.futureResult
            }.get()
            #expect(reused, "a connection released a moment ago is used again")
            #expect(replaced, "a connection idle past the limit is closed and not handed out")
        }
    }
}

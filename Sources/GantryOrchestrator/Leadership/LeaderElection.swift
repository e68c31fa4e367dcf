import Foundation
public import GantryCore
public import Logging
public import ServiceLifecycle
import Synchronization

/// Elects one leader among the control replicas sharing a store, with a lease in the store
/// (`LeaseRepository`), and runs `work` (the reconcile loop and the autoscaler) only while this
/// replica leads. The others serve the admin API and the login flows, and keep asking for the
/// lease (every half renewal interval): when the leader dies its lease runs out (`duration`) and
/// one of them takes over; when it shuts down it gives the lease up and one takes over at once.
///
/// The decisions are `LeadershipStateMachine`'s; this is its I/O: a loop that asks the store
/// every `renewInterval`, a loop that checks every `checkInterval` that the lease has not run out
/// while the store is slow to answer, and the task that runs `work`.
public final class LeaderElection: Service, Sendable {
    public struct Settings: Sendable {
        /// The lease's name: replicas with the same name elect one leader.
        public var name: String
        /// How long a lease lasts without renewal: a dead leader is replaced after at most this
        /// plus half a `renewInterval`.
        public var duration: Duration
        public var renewInterval: Duration
        public var checkInterval: Duration
        /// The store serves this process alone (SQLite): it leads from the start until it stops,
        /// with no lease, and never steps down however slowly it is scheduled.
        public var sole: Bool

        public init(
            name: String = "control-leader", duration: Duration = .seconds(3), renewInterval: Duration = .seconds(1),
            checkInterval: Duration = .milliseconds(100), sole: Bool = false
        ) {
            self.sole = sole
            self.name = name
            self.duration = duration
            self.renewInterval = renewInterval
            self.checkInterval = checkInterval
        }
    }

    let leases: any LeaseRepository
    /// This replica's name in the lease: unique per process start, so a restarted replica does
    /// not mistake its predecessor's lease for its own.
    public let holder: String
    let settings: Settings
    let logger: Logger
    let work: @Sendable (_ term: Int64) async -> Void
    private let machine: Mutex<LeadershipStateMachine>
    /// The leader's work while it runs (or finishes after a step-down).
    private let current = Mutex<Task<Void, Never>?>(nil)
    private let soleLeading = Atomic<Bool>(false)

    public init(
        leases: any LeaseRepository, holder: String, settings: Settings = Settings(), logger: Logger,
        work: @escaping @Sendable (_ term: Int64) async -> Void
    ) {
        self.leases = leases
        self.holder = holder
        self.settings = settings
        self.logger = logger
        self.work = work
        // Stop one renewal interval before the lease can end: the time the work has to stop.
        machine = Mutex(LeadershipStateMachine(duration: settings.duration, stepDownMargin: settings.renewInterval))
    }

    /// A holder name unique to this process start: the host, the process id and a random part.
    public static func uniqueHolder() -> String {
        let host = ProcessInfo.processInfo.hostName
        return "\(host)/\(ProcessInfo.processInfo.processIdentifier)/\(UInt32.random(in: 0...UInt32.max))"
    }

    /// Whether this replica leads now.
    public var isLeader: Bool { soleLeading.load(ordering: .relaxed) || machine.withLock { $0.isLeading } }

    public func run() async throws {
        if settings.sole {
            soleLeading.store(true, ordering: .relaxed)
            logger.info("leading: the store serves this process alone")
            // The work ends by itself on a graceful shutdown.
            await work(0)
            soleLeading.store(false, ordering: .relaxed)
            return
        }
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.campaign() }
                group.addTask { await self.watchExpiry() }
            }
        }
        let wasLeading = machine.withLock { $0.resign() } != .none
        if wasLeading { logger.info("giving up the lead: shutting down") }
        current.withLock { $0?.cancel() }
        await current.withLock { $0 }?.value
        // Handing over at once rather than after the lease runs out.
        if wasLeading {
            do {
                try await leases.releaseLease(name: settings.name, holder: holder)
            } catch {
                logger.warning("could not give up the leader lease", metadata: ["error": "\(error)"])
            }
        }
    }

    private func campaign() async {
        let clock = ContinuousClock()
        var failing = false
        while !Task.isCancelled {
            let sentAt = clock.now
            let action: LeadershipStateMachine.Action
            do {
                let term = try await leases.acquireLease(
                    name: settings.name, holder: holder, duration: settings.duration)
                action = machine.withLock { $0.answered(term: term, sentAt: sentAt, now: clock.now) }
                if failing {
                    logger.info("the lease store answers again")
                    failing = false
                }
            } catch {
                if Task.isCancelled { return }
                if !failing {
                    logger.warning("cannot reach the lease store", metadata: ["error": "\(error)"])
                    failing = true
                }
                action = machine.withLock { $0.failed(now: clock.now) }
            }
            perform(action)
            // A follower asks twice as often: a dead leader's lease is taken within half a
            // renewal of running out.
            let leading = machine.withLock { $0.isLeading }
            try? await Task.sleep(for: leading ? settings.renewInterval : settings.renewInterval / 2)
        }
    }

    private func watchExpiry() async {
        let clock = ContinuousClock()
        while !Task.isCancelled {
            perform(machine.withLock { $0.expire(now: clock.now) })
            try? await Task.sleep(for: settings.checkInterval)
        }
    }

    /// Starts or stops the work. Never waits: a new term's work starts once the previous one's
    /// has stopped, so two never run at once in one process.
    private func perform(_ action: LeadershipStateMachine.Action) {
        switch action {
        case .none:
            return
        case .startLeading(let term), .restart(let term):
            logger.info("leading the control replicas", metadata: ["term": "\(term)", "holder": "\(holder)"])
            current.withLock { current in
                let previous = current
                previous?.cancel()
                current = Task { [work] in
                    await previous?.value
                    guard !Task.isCancelled else { return }
                    await work(term)
                }
            }
        case .stepDown(let reason):
            logger.warning("no longer leading", metadata: ["reason": "\(reason)"])
            current.withLock { $0?.cancel() }
        }
    }
}

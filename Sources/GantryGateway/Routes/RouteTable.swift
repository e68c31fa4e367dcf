public import GantryCore
import Synchronization

/// Where each deployment's ready instances are: written by the orchestrator, read on every `/v1`
/// request. It also counts requests in flight per instance (for least-outstanding balancing,
/// draining and autoscaling) and holds requests for deployments with no ready instance in a
/// bounded queue until one is published.
///
/// What every request reads and counts (routes, ejections, requests in flight) is under a lock,
/// so the data plane picks and releases instances on its event loops without a hop onto the
/// actor; waiting (the queue, the route watch) is the actor's.
public actor RouteTable: RoutePublisher {
    struct Routing {
        var entries: [String: RouteEntry] = [:]
        /// Instances the gateway could not reach, kept out of rotation until the next publish.
        var ejected: Set<String> = []
        var unreachable: Set<String> = []
        /// Requests in flight per instance, and whose instance it is; an instance leaves both when
        /// its count reaches zero, so they stay as small as the traffic.
        var inFlight: [String: (deployment: String, count: Int)] = [:]
        var deploymentInFlight: [String: Int] = [:]
        var peakInFlight: [String: Int] = [:]
        var attention: (@Sendable () -> Void)?
    }

    private let routing = Mutex(Routing())
    private let authoritative = Atomic<Bool>(true)
    private var waiters: [String: [Waiter]] = [:]
    private var nextWaiterID: UInt64 = 0
    /// The latest load each gateway process reported, by gateway id (see `receive`).
    private var reported: [String: (at: ContinuousClock.Instant, load: [String: ReportedLoad])] = [:]
    /// A gateway silent for this long is assumed gone and its load no longer counts.
    static let reportLifetime: Duration = .seconds(10)
    /// Counts changes to the published routes, for watchers in other processes.
    public private(set) var generation: UInt64 = 0
    /// Counts changes to credentials (a revoked key, a disabled user, changed limits): a watcher
    /// that sees it move forgets the verifications it remembers.
    public private(set) var credentialGeneration: UInt64 = 0
    private var watchers: [CheckedContinuation<Void, Never>] = []
    private var watchersReleased = false

    struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }

    public init() {}

    // MARK: - Orchestrator side

    public func publish(_ entry: RouteEntry) {
        let previous = routing.withLock { routing in
            let previous = routing.entries[entry.deployment]
            routing.entries[entry.deployment] = entry
            // The orchestrator's word replaces the gateway's: published targets passed their probe,
            // and instances no longer published need no ejection.
            for target in (previous?.targets ?? []) + entry.targets { routing.ejected.remove(target.instanceID) }
            return previous
        }
        if previous != entry { changed() }
        if !entry.targets.isEmpty { resumeWaiters(of: entry.deployment) }
    }

    public func withdraw(deployment: String) {
        let previous = routing.withLock { routing in
            let previous = routing.entries.removeValue(forKey: deployment)
            for target in previous?.targets ?? [] { routing.ejected.remove(target.instanceID) }
            routing.peakInFlight[deployment] = nil
            return previous
        }
        if previous != nil { changed() }
        resumeWaiters(of: deployment)
    }

    /// Makes the table exactly `entries`: what a gateway in its own process receives from the
    /// control role's route watch.
    public func withdrawAll(except kept: Set<String>) {
        let known = routing.withLock { Array($0.entries.keys) }
        for gone in known where !kept.contains(gone) { withdraw(deployment: gone) }
    }

    /// Whether this table is the platform's, to be served to gateways in other processes: always
    /// in a gateway and a single control process; in a control replica only while it leads and
    /// once its first pass has published (a standby's table is empty or stale, and must not
    /// replace the gateways').
    public nonisolated var isAuthoritative: Bool { authoritative.load(ordering: .relaxed) }

    public nonisolated func setAuthoritative(_ value: Bool) {
        authoritative.store(value, ordering: .relaxed)
    }

    public func replaceAll(with entries: [RouteEntry]) {
        let names = Set(entries.map(\.deployment))
        let known = routing.withLock { Array($0.entries.keys) }
        for gone in known where !names.contains(gone) { withdraw(deployment: gone) }
        for entry in entries { publish(entry) }
    }

    /// The load seen here plus the latest that each live gateway process reported.
    public func takeLoad(deployment: String) -> DeploymentLoad {
        let local = takeLocalLoad(deployment)
        var load = DeploymentLoad(
            peakInFlight: local.peakInFlight, queued: local.queued, inFlightByInstance: local.inFlightByInstance)
        let now = ContinuousClock.now
        reported = reported.filter { now - $0.value.at < Self.reportLifetime }
        for (_, report) in reported {
            guard let remote = report.load[deployment] else { continue }
            load.peakInFlight += remote.peakInFlight
            load.queued += remote.queued
            load.inFlightByInstance.merge(remote.inFlightByInstance, uniquingKeysWith: +)
        }
        return load
    }

    /// This process's own load on a deployment since the last call (which resets the peak).
    private func takeLocalLoad(_ deployment: String) -> ReportedLoad {
        let queued = waiters[deployment]?.count ?? 0
        return routing.withLock { routing in
            let current = routing.deploymentInFlight[deployment, default: 0]
            let peak = max(routing.peakInFlight[deployment, default: 0], current)
            routing.peakInFlight[deployment] = current
            return ReportedLoad(
                peakInFlight: peak, queued: queued,
                inFlightByInstance: routing.inFlight.filter { $0.value.deployment == deployment }.mapValues(\.count))
        }
    }

    /// A gateway process's report: instances it could not reach (ejected here too, and probed),
    /// and its load per deployment, which replaces its previous report and counts for autoscaling,
    /// scale from zero and draining until it is `reportLifetime` old.
    public func receive(_ report: GatewayReport) {
        let attention = routing.withLock { routing in
            for instanceID in report.unreachable {
                routing.ejected.insert(instanceID)
                routing.unreachable.insert(instanceID)
            }
            return routing.attention
        }
        reported[report.gateway] = (ContinuousClock.now, report.load)
        if !report.unreachable.isEmpty || report.load.values.contains(where: { $0.queued > 0 }) { attention?() }
    }

    /// This process's load per deployment with any activity since the last call, for a gateway's
    /// report to the control role.
    public func takeActiveLoads() -> [String: ReportedLoad] {
        var loads: [String: ReportedLoad] = [:]
        let known = routing.withLock { Set($0.entries.keys).union($0.peakInFlight.keys) }
        for deployment in known.union(waiters.keys) {
            let load = takeLocalLoad(deployment)
            if load.peakInFlight > 0 || load.queued > 0 { loads[deployment] = load }
        }
        return loads
    }

    public func takeUnreachableInstances() -> Set<String> {
        routing.withLock { routing in
            defer { routing.unreachable.removeAll() }
            return routing.unreachable
        }
    }

    public func onAttentionNeeded(_ handler: @escaping @Sendable () -> Void) {
        routing.withLock { $0.attention = handler }
    }

    // MARK: - Gateway side

    public nonisolated func entry(for deployment: String) -> RouteEntry? {
        routing.withLock { $0.entries[deployment] }
    }

    public nonisolated func allEntries() -> [RouteEntry] {
        routing.withLock { $0.entries.values }.sorted { $0.deployment < $1.deployment }
    }

    /// Picks a ready instance for one request and counts it in flight until `finish`, or nil
    /// when none is ready now (the request must then wait in `acquire`'s queue). Throws for a
    /// pinned version that is not deployed.
    public nonisolated func acquireReady(deployment: String, version: String?) throws -> RouteTarget? {
        try routing.withLock { routing in
            guard let entry = routing.entries[deployment] else { return nil }
            if let version, version != entry.version, version != entry.canaryVersion {
                throw GantryError.notFound(
                    "version '\(version)' of model '\(deployment)' is not deployed", code: "model_not_found")
            }
            guard let target = routing.leastOutstanding(of: entry, version: version) else { return nil }
            routing.inFlight[target.instanceID, default: (deployment, 0)].count += 1
            routing.deploymentInFlight[deployment, default: 0] += 1
            return target
        }
    }

    /// A request holding an instance of `deployment` was sent to its engine: the deployment's
    /// peak, which the autoscaler reads, counts it. Not at `acquireReady`: a request may hold an
    /// instance only to have its prompt counted, and be refused.
    public nonisolated func dispatched(deployment: String) {
        routing.withLock { routing in
            let now = routing.deploymentInFlight[deployment, default: 0]
            routing.peakInFlight[deployment] = max(routing.peakInFlight[deployment, default: 0], now)
        }
    }

    /// Picks an instance for one request and counts it in flight until `finish`. With no ready
    /// instance the request waits (at most `maxQueued` per deployment, for at most `timeout`).
    /// Returns nil when the deployment does not exist (or was withdrawn while waiting).
    /// `version` pins the request to the main or the canary revision (`model: "name@version"`).
    public func acquire(deployment: String, version: String? = nil, timeout: Duration, maxQueued: Int) async throws
        -> RouteTarget?
    {
        while true {
            if let target = try acquireReady(deployment: deployment, version: version) { return target }
            guard entry(for: deployment) != nil else { return nil }
            guard waiters[deployment, default: []].count < maxQueued else {
                throw GantryError(
                    .unavailable, "model '\(deployment)' has no ready instance and its queue is full; retry shortly",
                    code: "model_not_ready")
            }
            try await wait(for: deployment, timeout: timeout)
        }
    }

    /// Ends a request started with `acquire`.
    public nonisolated func finish(instanceID: String) {
        routing.withLock { routing in
            guard let (deployment, count) = routing.inFlight[instanceID] else { return }
            routing.inFlight[instanceID] = count > 1 ? (deployment, count - 1) : nil
            routing.deploymentInFlight[deployment] = max(0, routing.deploymentInFlight[deployment, default: 1] - 1)
        }
    }

    /// Passive health: the gateway could not reach this instance, or it answered 5xx. It leaves
    /// rotation at once and the orchestrator is asked to probe it.
    public nonisolated func reportUnreachable(instanceID: String) {
        let attention = routing.withLock { routing in
            routing.ejected.insert(instanceID)
            routing.unreachable.insert(instanceID)
            return routing.attention
        }
        attention?()
    }

    /// Whether the gateway took an instance out of rotation after failing to use it.
    public nonisolated func isEjected(instanceID: String) -> Bool {
        routing.withLock { $0.ejected.contains(instanceID) }
    }

    /// Requests in flight on an instance now.
    public nonisolated func inFlight(instanceID: String) -> Int {
        routing.withLock { $0.inFlight[instanceID]?.count ?? 0 }
    }

    // MARK: - Watching

    /// Credentials changed on the control role: wakes the route watchers, which carry the news
    /// to gateways in other processes.
    /// The addresses blocked for failed authentications changed: the watchers hear it now.
    public func blocksChanged() {
        changed()
    }

    public func credentialsChanged() {
        credentialGeneration += 1
        changed()
    }

    /// The routes once their generation is past `after`, or as they are when `timeout` passes
    /// first: a long poll for a gateway running in another process.
    public func routes(after: UInt64, timeout: Duration) async -> (generation: UInt64, entries: [RouteEntry]) {
        if generation <= after, !watchersReleased {
            let timer = Task { [weak self] in
                try await Task.sleep(for: timeout)
                await self?.wakeWatchers()
            }
            await withCheckedContinuation { watchers.append($0) }
            timer.cancel()
        }
        return (generation, allEntries())
    }

    /// Answers every waiting watch now and every later one at once: the process is shutting
    /// down, and a graceful shutdown would otherwise wait out each long poll.
    public func releaseWatchers() {
        watchersReleased = true
        wakeWatchers()
    }

    private func changed() {
        generation += 1
        wakeWatchers()
    }

    private func wakeWatchers() {
        let waiting = watchers
        watchers.removeAll()
        for watcher in waiting { watcher.resume() }
    }

    // MARK: - Internals

    private func wait(for deployment: String, timeout: Duration) async throws {
        nextWaiterID += 1
        let id = nextWaiterID
        routing.withLock { $0.attention }?()
        let timer = Task { [weak self] in
            try await Task.sleep(for: timeout)
            await self?.expire(
                id, deployment: deployment,
                GantryError(
                    .unavailable, "model '\(deployment)' had no ready instance within \(timeout); retry shortly",
                    code: "model_not_ready"))
        }
        defer { timer.cancel() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiters[deployment, default: []].append(Waiter(id: id, continuation: continuation))
            }
        } onCancel: {
            Task { await self.expire(id, deployment: deployment, CancellationError()) }
        }
    }

    private func expire(_ id: UInt64, deployment: String, _ error: any Error) {
        guard let index = waiters[deployment]?.firstIndex(where: { $0.id == id }) else { return }
        let waiter = waiters[deployment]!.remove(at: index)
        waiter.continuation.resume(throwing: error)
    }

    private func resumeWaiters(of deployment: String) {
        for waiter in waiters.removeValue(forKey: deployment) ?? [] { waiter.continuation.resume() }
    }
}

extension RouteTable.Routing {
    /// The canary's share of requests goes to its instances (or to the main ones while it has
    /// none ready, and the other way round); within the chosen group, power of two choices: of two
    /// random ready instances, the one with fewer requests in flight.
    func leastOutstanding(of entry: RouteEntry, version: String?) -> RouteTarget? {
        let live = entry.targets.filter { !ejected.contains($0.instanceID) }
        let canaries = live.filter(\.canary)
        let mains = live.filter { !$0.canary }
        let targets: [RouteTarget]
        if let version {
            targets = version == entry.version ? mains : canaries
        } else if entry.canaryWeight > 0, Int.random(in: 0..<100) < entry.canaryWeight {
            targets = canaries.isEmpty ? mains : canaries
        } else {
            targets = mains.isEmpty ? canaries : mains
        }
        guard !targets.isEmpty else { return nil }
        guard targets.count > 1 else { return targets[0] }
        let first = Int.random(in: 0..<targets.count)
        var second = Int.random(in: 0..<(targets.count - 1))
        if second >= first { second += 1 }
        let a = targets[first]
        let b = targets[second]
        return (inFlight[a.instanceID]?.count ?? 0) <= (inFlight[b.instanceID]?.count ?? 0) ? a : b
    }
}

public import GantryCore

/// Where each deployment's ready instances are: written by the orchestrator, read on every `/v1`
/// request. It also counts requests in flight per instance (for least-outstanding balancing,
/// draining and autoscaling) and holds requests for deployments with no ready instance in a
/// bounded queue until one is published.
public actor RouteTable: RoutePublisher {
    private var entries: [String: RouteEntry] = [:]
    /// Instances the gateway could not reach, kept out of rotation until the next publish.
    private var ejected: Set<String> = []
    private var unreachable: Set<String> = []
    /// Requests in flight per instance, and whose instance it is; an instance leaves both when
    /// its count reaches zero, so they stay as small as the traffic.
    private var inFlight: [String: (deployment: String, count: Int)] = [:]
    private var deploymentInFlight: [String: Int] = [:]
    private var peakInFlight: [String: Int] = [:]
    private var waiters: [String: [Waiter]] = [:]
    private var nextWaiterID: UInt64 = 0
    private var attention: (@Sendable () -> Void)?
    /// The latest load each gateway process reported, by gateway id (see `receive`).
    private var reported: [String: (at: ContinuousClock.Instant, load: [String: ReportedLoad])] = [:]
    /// A gateway silent for this long is assumed gone and its load no longer counts.
    static let reportLifetime: Duration = .seconds(10)
    /// Counts changes to the published routes, for watchers in other processes.
    public private(set) var generation: UInt64 = 0
    private var watchers: [CheckedContinuation<Void, Never>] = []

    struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }

    public init() {}

    // MARK: - Orchestrator side

    public func publish(_ entry: RouteEntry) {
        let previous = entries[entry.deployment]
        if previous != entry { changed() }
        entries[entry.deployment] = entry
        // The orchestrator's word replaces the gateway's: published targets passed their probe,
        // and instances no longer published need no ejection.
        for target in (previous?.targets ?? []) + entry.targets { ejected.remove(target.instanceID) }
        if !entry.targets.isEmpty { resumeWaiters(of: entry.deployment) }
    }

    public func withdraw(deployment: String) {
        if let previous = entries.removeValue(forKey: deployment) {
            changed()
            for target in previous.targets { ejected.remove(target.instanceID) }
        }
        peakInFlight[deployment] = nil
        resumeWaiters(of: deployment)
    }

    /// Makes the table exactly `entries`: what a gateway in its own process receives from the
    /// control role's route watch.
    public func replaceAll(with entries: [RouteEntry]) {
        let names = Set(entries.map(\.deployment))
        for gone in self.entries.keys where !names.contains(gone) { withdraw(deployment: gone) }
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
        let current = deploymentInFlight[deployment, default: 0]
        let peak = max(peakInFlight[deployment, default: 0], current)
        peakInFlight[deployment] = current
        return ReportedLoad(
            peakInFlight: peak, queued: waiters[deployment]?.count ?? 0,
            inFlightByInstance: inFlight.filter { $0.value.deployment == deployment }.mapValues(\.count))
    }

    /// A gateway process's report: instances it could not reach (ejected here too, and probed),
    /// and its load per deployment, which replaces its previous report and counts for autoscaling,
    /// scale from zero and draining until it is `reportLifetime` old.
    public func receive(_ report: GatewayReport) {
        for instanceID in report.unreachable {
            ejected.insert(instanceID)
            unreachable.insert(instanceID)
        }
        reported[report.gateway] = (ContinuousClock.now, report.load)
        if !report.unreachable.isEmpty || report.load.values.contains(where: { $0.queued > 0 }) { attention?() }
    }

    /// This process's load per deployment with any activity since the last call, for a gateway's
    /// report to the control role.
    public func takeActiveLoads() -> [String: ReportedLoad] {
        var loads: [String: ReportedLoad] = [:]
        for deployment in Set(entries.keys).union(waiters.keys).union(peakInFlight.keys) {
            let load = takeLocalLoad(deployment)
            if load.peakInFlight > 0 || load.queued > 0 { loads[deployment] = load }
        }
        return loads
    }

    public func takeUnreachableInstances() -> Set<String> {
        defer { unreachable.removeAll() }
        return unreachable
    }

    public func onAttentionNeeded(_ handler: @escaping @Sendable () -> Void) {
        attention = handler
    }

    // MARK: - Gateway side

    public func entry(for deployment: String) -> RouteEntry? {
        entries[deployment]
    }

    public func allEntries() -> [RouteEntry] {
        entries.values.sorted { $0.deployment < $1.deployment }
    }

    /// Picks an instance for one request and counts it in flight until `finish`. With no ready
    /// instance the request waits (at most `maxQueued` per deployment, for at most `timeout`).
    /// Returns nil when the deployment does not exist (or was withdrawn while waiting).
    /// `version` pins the request to the main or the canary revision (`model: "name@version"`).
    public func acquire(deployment: String, version: String? = nil, timeout: Duration, maxQueued: Int) async throws
        -> RouteTarget?
    {
        while true {
            guard let entry = entries[deployment] else { return nil }
            if let version, version != entry.version, version != entry.canaryVersion {
                throw GantryError.notFound(
                    "version '\(version)' of model '\(deployment)' is not deployed", code: "model_not_found")
            }
            if let target = leastOutstanding(of: entry, version: version) {
                inFlight[target.instanceID, default: (deployment, 0)].count += 1
                let now = deploymentInFlight[deployment, default: 0] + 1
                deploymentInFlight[deployment] = now
                peakInFlight[deployment] = max(peakInFlight[deployment, default: 0], now)
                return target
            }
            guard waiters[deployment, default: []].count < maxQueued else {
                throw GantryError(
                    .unavailable, "model '\(deployment)' has no ready instance and its queue is full; retry shortly",
                    code: "model_not_ready")
            }
            try await wait(for: deployment, timeout: timeout)
        }
    }

    /// Ends a request started with `acquire`.
    public func finish(instanceID: String) {
        guard let (deployment, count) = inFlight[instanceID] else { return }
        inFlight[instanceID] = count > 1 ? (deployment, count - 1) : nil
        deploymentInFlight[deployment] = max(0, deploymentInFlight[deployment, default: 1] - 1)
    }

    /// Passive health: the gateway could not reach this instance, or it answered 5xx. It leaves
    /// rotation at once and the orchestrator is asked to probe it.
    public func reportUnreachable(instanceID: String) {
        ejected.insert(instanceID)
        unreachable.insert(instanceID)
        attention?()
    }

    /// Whether the gateway took an instance out of rotation after failing to use it.
    public func isEjected(instanceID: String) -> Bool {
        ejected.contains(instanceID)
    }

    /// Requests in flight on an instance now.
    public func inFlight(instanceID: String) -> Int {
        inFlight[instanceID]?.count ?? 0
    }

    // MARK: - Watching

    /// The routes once their generation is past `after`, or as they are when `timeout` passes
    /// first: a long poll for a gateway running in another process.
    public func routes(after: UInt64, timeout: Duration) async -> (generation: UInt64, entries: [RouteEntry]) {
        if generation <= after {
            let timer = Task { [weak self] in
                try await Task.sleep(for: timeout)
                await self?.wakeWatchers()
            }
            await withCheckedContinuation { watchers.append($0) }
            timer.cancel()
        }
        return (generation, allEntries())
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

    /// The canary's share of requests goes to its instances (or to the main ones while it has
    /// none ready, and the other way round); within the chosen group, power of two choices: of two
    /// random ready instances, the one with fewer requests in flight.
    private func leastOutstanding(of entry: RouteEntry, version: String?) -> RouteTarget? {
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

    private func wait(for deployment: String, timeout: Duration) async throws {
        nextWaiterID += 1
        let id = nextWaiterID
        attention?()
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

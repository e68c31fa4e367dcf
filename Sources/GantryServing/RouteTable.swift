public import GantryCore

/// Where each deployment's ready instances are: written by the orchestrator, read on every
/// `/v1` request. Picks targets round-robin (load balancing proper arrives with the gateway issue).
public actor RouteTable: RoutePublisher {
    private var entries: [String: RouteEntry] = [:]
    private var cursors: [String: Int] = [:]

    public init() {}

    public func publish(_ entry: RouteEntry) {
        entries[entry.deployment] = entry
    }

    public func withdraw(deployment: String) {
        entries[deployment] = nil
        cursors[deployment] = nil
    }

    public func entry(for deployment: String) -> RouteEntry? {
        entries[deployment]
    }

    public func allEntries() -> [RouteEntry] {
        entries.values.sorted { $0.deployment < $1.deployment }
    }

    /// The next target of a deployment, or nil when it has none ready.
    public func nextTarget(for deployment: String) -> RouteTarget? {
        guard let targets = entries[deployment]?.targets, !targets.isEmpty else { return nil }
        let cursor = cursors[deployment, default: 0]
        cursors[deployment] = cursor &+ 1
        return targets[cursor % targets.count]
    }
}

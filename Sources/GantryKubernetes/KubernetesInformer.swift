import Foundation
public import Logging
public import ServiceLifecycle

/// A local copy of a set of objects (pods with Gantry's label, every node), kept current by a
/// list then a watch from the list's version, as Kubernetes controllers do. A watch that ends
/// is resumed from the last version seen; one the server answers with 410 Gone (the version is
/// older than it keeps) starts again from a fresh list, which replaces the copy, so nothing is
/// lost or held twice.
public actor KubernetesInformer<Object: KubernetesResource>: Service {
    public struct Scope: Sendable {
        public var namespace: String?
        public var labelSelector: String?
        public var fieldSelector: String?

        public init(namespace: String? = nil, labelSelector: String? = nil, fieldSelector: String? = nil) {
            self.namespace = namespace
            self.labelSelector = labelSelector
            self.fieldSelector = fieldSelector
        }
    }

    let client: KubernetesClient
    let scope: Scope
    let logger: Logger
    /// How long the server keeps one watch open before Gantry opens the next.
    let watchSeconds: Int
    private var objects: [String: Object] = [:]
    private var version: String?
    private var listed = false
    private var failure: KubernetesError?
    private var listeners: [@Sendable () -> Void] = []
    private var syncWaiters: [CheckedContinuation<Void, Never>] = []
    /// Lists made since start: a 410 shows as a second one (tests read it).
    public private(set) var listCount = 0

    /// `resumeFrom` starts with a watch from that version instead of a list (a version kept from
    /// before); one the server no longer has ends in a list all the same.
    public init(
        client: KubernetesClient, scope: Scope, watchSeconds: Int = 240, resumeFrom: String? = nil, logger: Logger
    ) {
        self.version = resumeFrom
        self.client = client
        self.scope = scope
        self.watchSeconds = watchSeconds
        self.logger = logger
    }

    /// Every object now, keyed by `namespace/name` (`name` for cluster objects).
    public func snapshot() -> [String: Object] { objects }

    /// Whether a list has succeeded, and the last error since, for readiness checks.
    public func health() -> (synced: Bool, error: KubernetesError?) { (listed, failure) }

    /// Called after every change (on the informer's executor; keep it short).
    public func onChange(_ listener: @escaping @Sendable () -> Void) {
        listeners.append(listener)
    }

    /// Returns once the first list has landed.
    public func waitUntilSynced() async {
        if listed { return }
        await withCheckedContinuation { syncWaiters.append($0) }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.loop() }
        for waiter in syncWaiters { waiter.resume() }
        syncWaiters = []
    }

    private func loop() async {
        var delay = Duration.milliseconds(250)
        while !Task.isCancelled {
            do {
                if version == nil { try await relist() }
                try await follow()
                delay = .milliseconds(250)
            } catch let error as KubernetesError {
                if error.isGone {
                    logger.info("watch expired; listing again", metadata: ["resource": "\(Object.plural)"])
                    version = nil
                    continue
                }
                record(error)
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(10))
                // After a failure the version may be stale: start over from a list.
                version = nil
            } catch {
                if Task.isCancelled { return }
                record(.unreachable(url: client.config.server, reason: "\(error)"))
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(10))
                version = nil
            }
        }
    }

    private func record(_ error: KubernetesError) {
        if failure?.description != error.description {
            logger.warning("cannot follow \(Object.plural)", metadata: ["error": "\(error)"])
        }
        failure = error
    }

    private func relist() async throws {
        let list = try await client.list(
            Object.self, namespace: scope.namespace, labelSelector: scope.labelSelector, fieldSelector: scope.fieldSelector)
        listCount += 1
        objects = Dictionary(list.items.map { (Self.key($0), $0) }, uniquingKeysWith: { _, last in last })
        version = list.metadata.resourceVersion
        failure = nil
        if !listed {
            listed = true
            for waiter in syncWaiters { waiter.resume() }
            syncWaiters = []
        }
        notify()
    }

    private func follow() async throws {
        guard let from = version else { return }
        let events = client.watch(
            Object.self, namespace: scope.namespace, labelSelector: scope.labelSelector,
            fieldSelector: scope.fieldSelector, resourceVersion: from, timeoutSeconds: watchSeconds)
        for try await event in events {
            switch event {
            case .added(let object), .modified(let object):
                objects[Self.key(object)] = object
                version = object.metadata.resourceVersion ?? version
            case .deleted(let object):
                objects[Self.key(object)] = nil
                version = object.metadata.resourceVersion ?? version
            case .bookmark(let resourceVersion):
                if !resourceVersion.isEmpty { version = resourceVersion }
                continue
            case .error(let status):
                throw KubernetesError.refused(
                    method: "WATCH", url: client.config.server, code: status.code ?? 500, status: status)
            }
            failure = nil
            notify()
        }
    }

    private func notify() {
        for listener in listeners { listener() }
    }

    static func key(_ object: Object) -> String {
        let name = object.metadata.name ?? ""
        guard let namespace = object.metadata.namespace else { return name }
        return namespace + "/" + name
    }
}

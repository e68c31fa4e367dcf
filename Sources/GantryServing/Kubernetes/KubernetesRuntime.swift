public import AsyncHTTPClient
import Foundation
public import GantryCore
public import GantryKubernetes
public import Logging
import NIOCore

/// Runs engine instances as Kubernetes pods: one pod per instance, made by server-side apply,
/// placed by kube-scheduler, restarted in place by the kubelet, and followed through an informer
/// on Gantry's pods, so observing an instance costs no request to the API server.
public actor KubernetesRuntime: EngineRuntime {
    public nonisolated let supportedEngines: [String]
    public nonisolated var placesInstances: Bool { true }
    let client: KubernetesClient
    let pods: KubernetesInformer<Pod>
    let nodes: KubernetesInformer<Node>?
    let httpClient: HTTPClient
    let configuration: KubernetesRuntimeConfiguration
    let adapters: [String: any EngineAdapter]
    let grants: any ModelFetchGrants
    let logger: Logger
    /// Pods applied moments ago, which the informer may not show yet.
    private var applied: [String: (pod: String, at: ContinuousClock.Instant)] = [:]
    /// How long a freshly applied pod may be missing from the informer before it counts as gone.
    static let informerGrace = Duration.seconds(15)

    /// `pods` follows this installation's pods (`PodManifest.selector`) in the namespace; `nodes`,
    /// when given, lets a pod whose node vanished count as lost.
    public init(
        client: KubernetesClient, pods: KubernetesInformer<Pod>, nodes: KubernetesInformer<Node>?,
        adapters: [any EngineAdapter], configuration: KubernetesRuntimeConfiguration, grants: any ModelFetchGrants,
        httpClient: HTTPClient, logger: Logger
    ) {
        self.grants = grants
        self.client = client
        self.pods = pods
        self.nodes = nodes
        self.adapters = Dictionary(adapters.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.supportedEngines = adapters.compactMap { adapter in
            configuration.images[adapter.name] != nil || adapter.containerImage(gpu: false) != nil ? adapter.name : nil
        }
        self.configuration = configuration
        self.httpClient = httpClient
        self.logger = logger
    }

    public func start(_ spec: EngineLaunchSpec) async throws -> StartedEngine {
        guard let adapter = adapters[spec.engine] else {
            throw GantryError.invalid("engine '\(spec.engine)' is not known to the Kubernetes runtime", param: "engine")
        }
        guard let image = configuration.images[spec.engine] ?? adapter.containerImage(gpu: spec.gpuCount > 0) else {
            throw GantryError(
                .unavailable, "engine '\(spec.engine)' has no container image: set orchestrator.kubernetes.images")
        }
        // A previous pod of this instance (a restart) terminates beside the new one.
        await stop(instanceID: spec.instanceID)
        let name = PodManifest.podName(instanceID: spec.instanceID)
        // The init container fetches the version's files into the model volume on the node.
        var products: [String] = []
        if let wanted = spec.gpuName, spec.gpuCount > 0, let nodes {
            let labels = await nodes.snapshot().values.compactMap { $0.metadata.labels?[PodManifest.gpuProductLabelKey] }
            products = PodManifest.matchingProducts(wanted, among: labels)
        }
        let pod = PodManifest.make(
            spec, adapter: adapter, image: image, podName: name, configuration: configuration,
            grant: spec.modelVersion.map { grants.grant(versionID: $0.id) }, gpuProducts: products)
        do {
            try await client.apply(pod)
        } catch let error as KubernetesError {
            throw GantryError(.unavailable, "cannot create the pod for \(spec.instanceID): \(error)")
        }
        applied[spec.instanceID] = (name, .now)
        logger.info(
            "engine pod applied",
            metadata: [
                "instance_id": "\(spec.instanceID)", "pod": "\(configuration.namespace)/\(name)", "image": "\(image)",
                "gpus": "\(spec.gpuCount)",
            ])
        return StartedEngine(endpoint: "", handle: "pod \(configuration.namespace)/\(name)")
    }

    public func observe(instanceID: String) async -> EngineObservation {
        guard let pod = await currentPod(of: instanceID) else {
            if let recent = applied[instanceID], ContinuousClock.now - recent.at < Self.informerGrace {
                return EngineObservation(health: .starting)
            }
            return EngineObservation(health: .exited("its pod is gone (deleted, evicted, or lost with its node)"))
        }
        var nodeExists: Bool?
        if let nodes, let node = pod.spec?.nodeName, await nodes.health().synced {
            nodeExists = await nodes.snapshot()[node] != nil
        }
        return PodObservation.observe(pod, port: configuration.enginePort, nodeExists: nodeExists)
    }

    public func probe(instanceID: String) async -> EngineHealth {
        await observe(instanceID: instanceID).health
    }

    /// Deletes every pod of the instance with its grace period; the kubelet stops the engine.
    public func stop(instanceID: String) async {
        applied[instanceID] = nil
        for pod in await podsOf(instanceID) where pod.metadata.deletionTimestamp == nil {
            guard let name = pod.metadata.name else { continue }
            do {
                try await client.delete(Pod.self, name: name, namespace: configuration.namespace)
                logger.info("engine pod deleted", metadata: ["instance_id": "\(instanceID)", "pod": "\(name)"])
            } catch {
                logger.warning("cannot delete an engine pod", metadata: ["pod": "\(name)", "error": "\(error)"])
            }
        }
    }

    /// A recorded instance whose pod still exists is adopted; the pod keeps running throughout.
    public func adopt(instanceID: String, engine: String, pid: Int32?, endpoint: String) async -> Bool {
        await pods.waitUntilSynced()
        return await currentPod(of: instanceID) != nil
    }

    /// Deletes pods of this installation that no recorded instance owns; never another manager's.
    public func stopStrays(keeping instanceIDs: Set<String>) async -> [String] {
        await pods.waitUntilSynced()
        var stopped: [String] = []
        for pod in await pods.snapshot().values {
            guard let instance = pod.metadata.labels?[PodManifest.instanceLabel], !instanceIDs.contains(instance),
                applied[instance] == nil, let name = pod.metadata.name
            else { continue }
            _ = try? await client.delete(Pod.self, name: name, namespace: configuration.namespace)
            stopped.append(instance)
            logger.info("deleted a pod no instance owns", metadata: ["pod": "\(name)", "instance_id": "\(instance)"])
        }
        return stopped
    }

    public func logs(instanceID: String, maxBytes: Int) async -> String? {
        guard let name = await currentPod(of: instanceID)?.metadata.name else { return nil }
        return try? await client.logs(
            pod: name, namespace: configuration.namespace, container: PodManifest.engineContainer, limitBytes: maxBytes)
    }

    public func engineMetrics(instanceID: String) async -> String? {
        guard let pod = await currentPod(of: instanceID), let adapter = adapters[engineName(pod) ?? ""],
            let endpoint = PodObservation.observe(pod, port: configuration.enginePort, nodeExists: nil).endpoint
        else { return nil }
        let request = HTTPClientRequest(url: endpoint + adapter.metricsPath)
        guard let response = try? await httpClient.execute(request, timeout: .seconds(5)), response.status == .ok,
            let body = try? await response.body.collect(upTo: 8 << 20)
        else { return nil }
        return String(buffer: body)
    }

    // MARK: - Pods of an instance

    func podsOf(_ instanceID: String) async -> [Pod] {
        let label = PodManifest.labelValue(instanceID)
        return await pods.snapshot().values.filter { $0.metadata.labels?[PodManifest.instanceLabel] == label }
    }

    /// The instance's live pod: the one applied last, or else the newest not being deleted.
    func currentPod(of instanceID: String) async -> Pod? {
        let all = await podsOf(instanceID)
        if let name = applied[instanceID]?.pod { return all.first { $0.metadata.name == name } }
        return all.filter { $0.metadata.deletionTimestamp == nil }
            .max { ($0.metadata.creationTimestamp ?? "") < ($1.metadata.creationTimestamp ?? "") }
    }

    func engineName(_ pod: Pod) -> String? {
        // The engine is not a label; the pod's image tells which adapter made it.
        let image = pod.spec?.containers.first { $0.name == PodManifest.engineContainer }?.image
        return adapters.values.first { adapter in
            image == configuration.images[adapter.name] || image == adapter.containerImage(gpu: true)
                || image == adapter.containerImage(gpu: false)
        }?.name
    }
}

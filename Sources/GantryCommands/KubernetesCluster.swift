import Foundation
import GantryCore
import GantryKubernetes
import GantryResources
import GantryServing
import Logging
import ServiceLifecycle

/// The connection to a Kubernetes cluster for `--runtime kubernetes`: one client, and informers
/// on the cluster's nodes, on every pod (GPUs held by anyone) and on this installation's engine
/// pods. Built and checked before the server starts, so a wrong URL or missing permission stops
/// start-up with the URL and the permission named.
struct KubernetesCluster: Sendable {
    let client: KubernetesClient
    let namespace: String
    let nodes: KubernetesInformer<Node>
    let allPods: KubernetesInformer<Pod>
    let enginePods: KubernetesInformer<Pod>
    let configuration: KubernetesRuntimeConfiguration

    static func connect(_ settings: GantryConfiguration.Kubernetes, logger: Logger) async throws -> KubernetesCluster {
        let config: KubeConfig
        do {
            config = try settings.kubeconfig.map { try KubeConfig.load(path: $0) } ?? KubeConfig.inCluster()
        } catch let error as KubernetesError {
            throw GantryError(.unavailable, "Kubernetes runtime: \(error)")
        }
        let namespace = settings.namespace ?? config.namespace ?? "default"
        let client = try KubernetesClient(config: config, logger: logger)
        do {
            // What Gantry needs, asked once now: reading nodes and every pod, and managing pods in
            // its namespace. A 403 names the user, verb and resource missing.
            _ = try await client.list(Node.self, namespace: nil)
            _ = try await client.list(Pod.self, namespace: nil, fieldSelector: "metadata.name=gantry-access-check")
            _ = try await client.list(
                Pod.self, namespace: namespace, labelSelector: PodManifest.selector(installation: settings.installation))
            let probe = Pod(
                metadata: ObjectMeta(name: "gantry-access-check", namespace: namespace),
                spec: PodSpec(containers: [Container(name: "check", image: "gantry-access-check")]))
            try await client.apply(probe, dryRun: true)
        } catch {
            try? await client.shutdown()
            throw GantryError(.unavailable, "Kubernetes runtime: \(error)")
        }
        let configuration = KubernetesRuntimeConfiguration(
            namespace: namespace, installation: settings.installation, images: settings.images,
            readinessPeriodSeconds: settings.readinessPeriodSeconds, gantryImage: settings.gantryImage)
        logger.info("connected to Kubernetes", metadata: ["server": "\(config.server)", "namespace": "\(namespace)"])
        return KubernetesCluster(
            client: client, namespace: namespace,
            nodes: KubernetesInformer(client: client, scope: .init(), logger: logger),
            allPods: KubernetesInformer(client: client, scope: .init(), logger: logger),
            enginePods: KubernetesInformer(
                client: client,
                scope: .init(namespace: namespace, labelSelector: PodManifest.selector(installation: settings.installation)),
                logger: logger),
            configuration: configuration)
    }

    /// The client is shut down after the informers that use it (a service group stops its
    /// services in reverse order).
    var services: [any Service] { [ShutdownService(action: { try await client.shutdown() }), nodes, allPods, enginePods] }

    /// Whether every informer has listed and its last watch or list succeeded: `/readyz`.
    func isFollowing() async -> Bool {
        for health in [await nodes.health(), await allPods.health(), await enginePods.health()] {
            if !health.synced || health.error != nil { return false }
        }
        return true
    }
}

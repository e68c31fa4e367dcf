import Foundation
public import GantryCore
public import GantryKubernetes

/// A Kubernetes cluster's Nodes as Gantry's nodes: allocatable CPU, memory and `nvidia.com/gpu`,
/// the GPU product and memory from NVIDIA GPU Feature Discovery's labels, whether new pods can
/// land there, and the GPUs the node's pods request (Gantry's or not). Both come from informers,
/// so reading the nodes costs no request to the API server.
public struct KubernetesNodeSource: NodeSource {
    /// The extended resource NVIDIA's device plugin advertises.
    public static let gpuResource = "nvidia.com/gpu"
    /// GPU Feature Discovery's labels: the product (`NVIDIA-H100-80GB-HBM3`) and the memory of
    /// one GPU in MiB.
    public static let productLabel = "nvidia.com/gpu.product"
    public static let memoryLabel = "nvidia.com/gpu.memory"

    let nodeInformer: KubernetesInformer<Node>
    let podInformer: KubernetesInformer<Pod>
    let exporters: DCGMExporterScraper?

    /// `pods` must follow every namespace: GPUs held by other managers' pods are taken too.
    /// `exporters`, when given, adds utilisation and memory in use from dcgm-exporter pods.
    public init(nodes: KubernetesInformer<Node>, pods: KubernetesInformer<Pod>, exporters: DCGMExporterScraper? = nil) {
        self.nodeInformer = nodes
        self.podInformer = pods
        self.exporters = exporters
    }

    public func nodes() async throws -> [NodeInventory] {
        await nodeInformer.waitUntilSynced()
        await podInformer.waitUntilSynced()
        let (synced, error) = await nodeInformer.health()
        if !synced, let error { throw error }
        let pods = await podInformer.snapshot().values
        var requested: [String: Int] = [:]
        for pod in pods {
            guard let node = pod.spec?.nodeName, Self.holdsResources(pod) else { continue }
            requested[node, default: 0] += Self.gpuRequest(of: pod)
        }
        let readings = await exporters?.readings(among: pods) ?? [:]
        let instances = Self.instancesByPod(pods)
        return await nodeInformer.snapshot().values.map { node in
            let name = node.metadata.name ?? ""
            return Self.withReadings(
                Self.inventory(of: node, gpusRequested: requested[name] ?? 0), readings[name] ?? [], instances: instances)
        }.sorted { $0.name < $1.name }
    }

    /// The label Gantry's engine pods carry with their instance id (`PodManifest.instanceLabel` in
    /// GantryServing, which this module may not import; a test keeps the two the same).
    public static let instanceLabel = "gantry.dev/instance"

    /// Gantry's engine pods by `namespace/name`, to their instance ids.
    static func instancesByPod(_ pods: some Sequence<Pod>) -> [String: String] {
        var instances: [String: String] = [:]
        for pod in pods {
            guard let instance = pod.metadata.labels?[instanceLabel], let name = pod.metadata.name else { continue }
            instances[(pod.metadata.namespace ?? "default") + "/" + name] = instance
        }
        return instances
    }

    /// The node's GPUs with an exporter's readings, matched by index: the real UUID, utilisation
    /// and memory in use (and the memory size, where no label gave it), and the Gantry instance
    /// whose pod uses the GPU, where the exporter maps GPUs to pods.
    static func withReadings(_ inventory: NodeInventory, _ readings: [DCGMReading], instances: [String: String] = [:])
        -> NodeInventory
    {
        var inventory = inventory
        for reading in readings {
            guard let index = reading.index, inventory.gpus.indices.contains(index) else { continue }
            var gpu = inventory.gpus[index]
            gpu.uuid = reading.uuid
            gpu.utilizationPercent = reading.utilizationPercent
            gpu.memoryUsedMiB = reading.memoryUsedMiB
            gpu.heldBy = reading.pod.flatMap { instances[$0] }
            if gpu.memoryTotalMiB == 0, let used = reading.memoryUsedMiB, let free = reading.memoryFreeMiB {
                gpu.memoryTotalMiB = used + free
            }
            inventory.gpus[index] = gpu
        }
        return inventory
    }

    /// Pods that have ended no longer hold what they asked for.
    static func holdsResources(_ pod: Pod) -> Bool {
        let phase = pod.status?.phase
        return phase != "Succeeded" && phase != "Failed"
    }

    /// A pod's GPUs, as the scheduler counts them: the sum over its containers, or its largest
    /// init container if that is more. Extended resources have requests equal to limits, and a
    /// limit alone implies the request.
    static func gpuRequest(of pod: Pod) -> Int {
        func gpus(_ container: Container) -> Int {
            Quantity.whole(container.resources?.requests?[gpuResource] ?? container.resources?.limits?[gpuResource]) ?? 0
        }
        let main = (pod.spec?.containers ?? []).reduce(0) { $0 + gpus($1) }
        let initMax = (pod.spec?.initContainers ?? []).map(gpus).max() ?? 0
        return max(main, initMax)
    }

    static func inventory(of node: Node, gpusRequested: Int) -> NodeInventory {
        let name = node.metadata.name ?? ""
        let labels = node.metadata.labels ?? [:]
        let allocatable = node.status?.allocatable ?? node.status?.capacity ?? [:]
        let gpuCount = Quantity.whole(allocatable[gpuResource]) ?? 0
        let product = labels[productLabel] ?? (gpuCount > 0 ? "NVIDIA GPU" : "")
        let memory = Int(labels[memoryLabel] ?? "") ?? 0
        // Nodes name no GPU UUIDs (the device plugin hands them to containers): each GPU gets a
        // stable id of its node and index.
        let gpus = (0..<gpuCount).map { index in
            GPUInfo(
                index: index, uuid: "\(name)/gpu\(index)", name: product, memoryTotalMiB: memory, memoryUsedMiB: nil,
                utilizationPercent: nil, temperatureCelsius: nil, powerWatts: nil)
        }
        return NodeInventory(
            name: name, cpuCount: Quantity.whole(allocatable["cpu"]) ?? 0,
            memoryBytes: UInt64(Quantity.value(allocatable["memory"] ?? "0") ?? 0), labels: labels, gpus: gpus,
            gpuSource: "kubernetes", simulated: false, observedAt: Date(),
            unschedulableReasons: unschedulableReasons(node), gpusRequested: gpusRequested)
    }

    static func unschedulableReasons(_ node: Node) -> [String] {
        var reasons: [String] = []
        if let ready = node.status?.conditions?.first(where: { $0.type == "Ready" }), ready.status != "True" {
            reasons.append("not ready" + (ready.message.map { ": \($0)" } ?? ""))
        } else if node.status?.conditions?.contains(where: { $0.type == "Ready" }) != true {
            reasons.append("not ready: no Ready condition reported")
        }
        if node.spec?.unschedulable == true { reasons.append("cordoned") }
        // GPU nodes are commonly tainted nvidia.com/gpu to keep other work off; engine pods that
        // ask for GPUs tolerate it, so it is no reason here.
        for taint in node.spec?.taints ?? []
        where (taint.effect == "NoSchedule" || taint.effect == "NoExecute") && taint.key != gpuResource {
            reasons.append("taint \(taint.key)\(taint.value.map { "=\($0)" } ?? ""):\(taint.effect)")
        }
        return reasons
    }
}

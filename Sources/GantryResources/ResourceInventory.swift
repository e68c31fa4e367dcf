import Foundation
public import GantryCore
public import Logging
public import Prometheus
public import ServiceLifecycle

/// The nodes as last observed, refreshed by a poller: the Resources service's view of the cluster.
public actor ResourceInventory: Service {
    let source: any NodeSource
    let interval: Duration
    let metrics: PrometheusCollectorRegistry
    let logger: Logger
    /// Which engine instance holds which GPU, for the per-service GPU series; nil exports none.
    let holders: (@Sendable () async throws -> [GPUHolder])?
    let history: ServiceMetricsHistory?
    private var current: [NodeInventory] = []
    private var lastError: String?
    /// The per-service GPU gauges of the last refresh, by their labels, so that a GPU's series
    /// ends when its instance lets go of it.
    private var attributed: [GPUHolder: [Gauge]] = [:]

    public init(
        source: any NodeSource, interval: Duration, metrics: PrometheusCollectorRegistry, logger: Logger,
        holders: (@Sendable () async throws -> [GPUHolder])? = nil, history: ServiceMetricsHistory? = nil
    ) {
        self.source = source
        self.interval = interval
        self.metrics = metrics
        self.logger = logger
        self.holders = holders
        self.history = history
    }

    public func nodes() async -> [NodeInventory] {
        if current.isEmpty { await refresh() }
        return current
    }

    /// Reads the nodes again and updates the per-GPU gauges. A failed read keeps the last view.
    public func refresh() async {
        do {
            current = try await source.nodes()
            lastError = nil
            export(current)
            await attribute(current)
        } catch {
            if lastError == nil { logger.warning("resource discovery failed", metadata: ["error": "\(error)"]) }
            lastError = "\(error)"
        }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.refresh()
                try? await Task.sleep(for: self.interval)
            }
        }
    }

    /// Labels are node name, GPU index and the GPU's product name: bounded by the hardware, never
    /// by requests. The product is `product`, not `model`: every other metric's `model` is a model
    /// service, and one label name means one thing across Gantry's metrics.
    func export(_ nodes: [NodeInventory]) {
        for node in nodes {
            for gpu in node.gpus {
                let labels = [("node", node.name), ("gpu", String(gpu.index)), ("product", gpu.name)]
                metrics.makeGauge(
                    descriptor: .init(
                        namespace: "gantry", metricName: "gpu_memory_total", unitName: "bytes", helpText: "GPU memory size"),
                    labels: labels
                ).set(Double(gpu.memoryTotalMiB) * 1_048_576)
                if let used = gpu.memoryUsedMiB {
                    metrics.makeGauge(
                        descriptor: .init(
                            namespace: "gantry", metricName: "gpu_memory_used", unitName: "bytes",
                            helpText: "GPU memory in use"),
                        labels: labels
                    ).set(Double(used) * 1_048_576)
                }
                if let utilization = gpu.utilizationPercent {
                    metrics.makeGauge(
                        descriptor: .init(
                            namespace: "gantry", metricName: "gpu_utilization", unitName: "ratio",
                            helpText: "GPU busy fraction over the driver's last sample period"),
                        labels: labels
                    ).set(Double(utilization) / 100)
                }
            }
        }
    }

    /// The utilisation and memory of each GPU an instance holds, as series of the instance's
    /// service (`service`, `version`, `instance`, `node`, `gpu`), and one sample per service for
    /// the console's history: the mean utilisation of its GPUs and the memory used on them.
    func attribute(_ nodes: [NodeInventory]) async {
        guard let holders else { return }
        let held: [GPUHolder]
        do {
            held = try await holders()
        } catch {
            // The store is away: the GPU series keep their last values until it answers again.
            logger.debug("cannot read which instances hold GPUs", metadata: ["error": "\(error)"])
            return
        }
        var gpus: [String: GPUInfo] = [:]
        // GPUs a node says an instance uses (dcgm-exporter's pod mapping), with their node.
        var usedBy: [String: [(node: String, gpu: GPUInfo)]] = [:]
        for node in nodes {
            for gpu in node.gpus {
                gpus[node.name + "/" + gpu.uuid] = gpu
                if let instance = gpu.heldBy { usedBy[instance, default: []].append((node.name, gpu)) }
            }
        }
        // A holder without a GPU UUID is an instance placed by Kubernetes: it holds what its
        // node reports it using.
        let expanded = held.flatMap { holder -> [(GPUHolder, GPUInfo)] in
            guard holder.gpuUUID.isEmpty else {
                return gpus[holder.node + "/" + holder.gpuUUID].map { [(holder, $0)] } ?? []
            }
            return (usedBy[holder.instance] ?? []).map { used in
                var exact = holder
                exact.node = used.node
                exact.gpuUUID = used.gpu.uuid
                return (exact, used.gpu)
            }
        }
        var now: [GPUHolder: [Gauge]] = [:]
        var perService: [String: (utilization: [Double], memory: Double?)] = [:]
        for (holder, gpu) in expanded {
            let labels = [
                ("service", holder.service), ("version", holder.version), ("instance", holder.instance),
                ("node", holder.node), ("gpu", String(gpu.index)),
            ]
            var gauges: [Gauge] = []
            var sample = perService[holder.service] ?? ([], nil)
            if let utilization = gpu.utilizationPercent {
                let gauge = metrics.makeGauge(
                    descriptor: .init(
                        namespace: "gantry", metricName: "service_gpu_utilization", unitName: "ratio",
                        helpText: "Busy fraction of a GPU held by an instance of the model service"),
                    labels: labels)
                gauge.set(Double(utilization) / 100)
                gauges.append(gauge)
                sample.utilization.append(Double(utilization) / 100)
            }
            if let used = gpu.memoryUsedMiB {
                let gauge = metrics.makeGauge(
                    descriptor: .init(
                        namespace: "gantry", metricName: "service_gpu_memory_used", unitName: "bytes",
                        helpText: "Memory in use on a GPU held by an instance of the model service"),
                    labels: labels)
                gauge.set(Double(used) * 1_048_576)
                gauges.append(gauge)
                sample.memory = (sample.memory ?? 0) + Double(used) * 1_048_576
            }
            now[holder] = gauges
            perService[holder.service] = sample
        }
        for (holder, gauges) in attributed where now[holder] == nil {
            for gauge in gauges { metrics.unregisterGauge(gauge) }
        }
        attributed = now
        let at = Date()
        for (service, sample) in perService {
            let mean = sample.utilization.isEmpty ? nil : sample.utilization.reduce(0, +) / Double(sample.utilization.count)
            history?.series(service).gpuSample(at: at, utilization: mean, memoryUsedBytes: sample.memory)
        }
    }
}

/// A GPU an engine instance holds: what ties the GPU's utilisation to a model service. An empty
/// `gpuUUID` stands for every GPU the instance's node reports it using (an instance that
/// Kubernetes placed, whose GPUs Gantry did not choose).
public struct GPUHolder: Sendable, Hashable {
    public var service: String
    public var version: String
    public var instance: String
    public var node: String
    public var gpuUUID: String

    public init(service: String, version: String, instance: String, node: String, gpuUUID: String) {
        self.service = service
        self.version = version
        self.instance = instance
        self.node = node
        self.gpuUUID = gpuUUID
    }
}

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
    private var current: [NodeInventory] = []
    private var lastError: String?

    public init(source: any NodeSource, interval: Duration, metrics: PrometheusCollectorRegistry, logger: Logger) {
        self.source = source
        self.interval = interval
        self.metrics = metrics
        self.logger = logger
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
}

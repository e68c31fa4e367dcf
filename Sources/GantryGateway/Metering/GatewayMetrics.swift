import Foundation
public import GantryCore
public import Prometheus
import Synchronization

/// The data plane's Prometheus metrics, per model service in Gantry's one label vocabulary:
/// `service` (the model service's name), `version` (the model version of the instance that
/// answered; empty for a request refused before it reached one), `instance` and `node`. Every
/// label is bounded by what admins create (services, their instances) or by fixed sets (status,
/// error type, limit scope); never a key, a user or a path.
public final class GatewayMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    /// The console's minute-by-minute history, which every finished request is added to.
    let history: ServiceMetricsHistory?
    /// Each service and version's per-request metrics, looked up in the registry once (measured:
    /// the lookups were 4 % of the gateway's CPU per request).
    private let perService = Mutex<[ServiceVersion: ServiceMetrics]>([:])
    /// The in-flight gauge of each instance, by instance id (bounded by the instances).
    private let perInstance = Mutex<[String: Gauge]>([:])

    struct ServiceVersion: Hashable {
        var service: String
        var version: String
    }

    struct ServiceMetrics: Sendable {
        let ok: Counter
        let latency: DurationHistogram
        let timeToFirstByte: DurationHistogram
        let promptTokens: Counter
        let completionTokens: Counter
        let inFlight: Gauge
        let history: ServiceSeries?
    }

    /// `/v1` requests relayed on the event loop that read them, and those the router served
    /// (errors, limits, the tokenizer's count, a queue; see `DirectRelay`).
    let relayedDirectly: Counter
    let relayedByRouter: Counter

    public init(registry: PrometheusCollectorRegistry, history: ServiceMetricsHistory? = nil) {
        self.registry = registry
        self.history = history
        let descriptor = MetricNameDescriptor(
            namespace: "gantry", metricName: "inference_relay", unitName: "total",
            helpText: "Inference requests by the path that served them: direct (on the event loop) or router")
        relayedDirectly = registry.makeCounter(descriptor: descriptor, labels: [("path", "direct")])
        relayedByRouter = registry.makeCounter(descriptor: descriptor, labels: [("path", "router")])
    }

    private func metrics(for key: ServiceVersion) -> ServiceMetrics {
        if let cached = perService.withLock({ $0[key] }) { return cached }
        let labels = [("service", key.service), ("version", key.version)]
        let made = ServiceMetrics(
            ok: requestCounter(key, status: 200),
            latency: registry.makeDurationHistogram(
                descriptor: .init(
                    namespace: "gantry", metricName: "inference_request_duration", unitName: "seconds",
                    helpText: "Inference request latency, to the last byte of the answer"),
                labels: labels, buckets: Self.latencyBuckets),
            timeToFirstByte: registry.makeDurationHistogram(
                descriptor: .init(
                    namespace: "gantry", metricName: "inference_time_to_first_token", unitName: "seconds",
                    helpText: "Time from the request to the first byte of the engine's answer"),
                labels: labels, buckets: Self.latencyBuckets),
            promptTokens: tokenCounter(key, direction: "prompt"),
            completionTokens: tokenCounter(key, direction: "completion"),
            inFlight: registry.makeGauge(
                descriptor: .init(
                    namespace: "gantry", metricName: "inference_in_flight",
                    helpText: "Inference requests in flight per model service and version"),
                labels: labels),
            history: history?.series(key.service))
        perService.withLock { cache in
            // Versions come and go with updates; a cache that outgrew them starts again.
            if cache.count > 10_000 { cache.removeAll() }
            cache[key] = made
        }
        return made
    }

    private func requestCounter(_ key: ServiceVersion, status: Int) -> Counter {
        registry.makeCounter(
            descriptor: .init(
                namespace: "gantry", metricName: "inference_requests", unitName: "total",
                helpText: "Inference requests by model service, version and status"),
            labels: [("service", key.service), ("version", key.version), ("status", String(status))])
    }

    private func tokenCounter(_ key: ServiceVersion, direction: String) -> Counter {
        registry.makeCounter(
            descriptor: .init(
                namespace: "gantry", metricName: "inference_tokens", unitName: "total",
                helpText: "Tokens by model service, prompt (in) and completion (out), as the engines counted them"),
            labels: [("service", key.service), ("version", key.version), ("direction", direction)])
    }

    static let latencyBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120),
    ]

    func requestFinished(
        service: String, version: String, status: Int, errorType: String?, latency: Duration,
        timeToFirstByte: Duration?, usage: TokenUsage?, endedAt: Date
    ) {
        let key = ServiceVersion(service: service, version: version)
        let cached = metrics(for: key)
        if status == 200 { cached.ok.increment() } else { requestCounter(key, status: status).increment() }
        if let errorType {
            registry.makeCounter(
                descriptor: .init(
                    namespace: "gantry", metricName: "inference_errors", unitName: "total",
                    helpText: "Failed inference requests by error type"),
                labels: [("service", service), ("version", version), ("type", errorType)]
            ).increment()
        }
        cached.latency.record(latency)
        if let timeToFirstByte { cached.timeToFirstByte.record(timeToFirstByte) }
        if let usage {
            if usage.promptTokens > 0 { cached.promptTokens.increment(by: Int64(usage.promptTokens)) }
            if usage.completionTokens > 0 { cached.completionTokens.increment(by: Int64(usage.completionTokens)) }
        }
        cached.history?.request(
            at: endedAt, status: status, latencySeconds: latency.inSeconds, promptTokens: usage?.promptTokens ?? 0,
            completionTokens: usage?.completionTokens ?? 0)
    }

    func limitRejected(service: String, scope: String) {
        registry.makeCounter(
            descriptor: .init(
                namespace: "gantry", metricName: "inference_limit_rejections", unitName: "total",
                helpText: "Requests refused by a rate limit or quota, by the scope that refused"),
            labels: [("service", service), ("scope", scope)]
        ).increment()
    }

    /// The in-flight gauges of a service's version and of the instance a request runs on, for a
    /// lease to move up and down.
    func inFlightGauges(service: String, version: String, target: RouteTarget) -> [Gauge] {
        let instance =
            perInstance.withLock { $0[target.instanceID] }
            ?? {
                let made = registry.makeGauge(
                    descriptor: .init(
                        namespace: "gantry", metricName: "inference_instance_in_flight",
                        helpText: "Inference requests in flight per engine instance"),
                    labels: [
                        ("service", service), ("version", version), ("instance", target.instanceID), ("node", target.node),
                    ])
                perInstance.withLock { gauges in
                    if gauges.count > 10_000 { gauges.removeAll() }
                    gauges[target.instanceID] = made
                }
                return made
            }()
        return [metrics(for: ServiceVersion(service: service, version: version)).inFlight, instance]
    }
}

public import Prometheus
import Synchronization

/// The data plane's Prometheus metrics. Labels are bounded: the model service's name (admins
/// create those), the instance id (instances of existing services), the HTTP status, the error
/// type and the limit's scope kind; never a key, a user or a path.
public final class GatewayMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    /// Each model's per-request metrics, looked up in the registry once (measured: the lookups
    /// were 4 % of the gateway's CPU per request).
    private let perModel = Mutex<[String: ModelMetrics]>([:])
    /// The in-flight gauge of each instance, by model and instance id (bounded by the instances).
    private let perInstance = Mutex<[String: Gauge]>([:])

    struct ModelMetrics: Sendable {
        let ok: Counter
        let latency: DurationHistogram
        let timeToFirstByte: DurationHistogram
        let promptTokens: Counter
        let completionTokens: Counter
        let inFlight: Gauge
    }

    /// `/v1` requests relayed on the event loop that read them, and those the router served
    /// (errors, limits, the tokenizer's count, a queue; see `DirectRelay`).
    let relayedDirectly: Counter
    let relayedByRouter: Counter

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        let descriptor = MetricNameDescriptor(
            namespace: "gantry", metricName: "inference_relay", unitName: "total",
            helpText: "Inference requests by the path that served them: direct (on the event loop) or router")
        relayedDirectly = registry.makeCounter(descriptor: descriptor, labels: [("path", "direct")])
        relayedByRouter = registry.makeCounter(descriptor: descriptor, labels: [("path", "router")])
    }

    private func metrics(for model: String) -> ModelMetrics {
        if let cached = perModel.withLock({ $0[model] }) { return cached }
        let made = ModelMetrics(
            ok: requestCounter(model: model, status: 200),
            latency: registry.makeDurationHistogram(
                descriptor: .init(
                    namespace: "gantry", metricName: "inference_request_duration", unitName: "seconds",
                    helpText: "Inference request latency, to the last byte of the answer"),
                labels: [("model", model)], buckets: Self.latencyBuckets),
            timeToFirstByte: registry.makeDurationHistogram(
                descriptor: .init(
                    namespace: "gantry", metricName: "inference_time_to_first_token", unitName: "seconds",
                    helpText: "Time from the request to the first byte of the engine's answer"),
                labels: [("model", model)], buckets: Self.latencyBuckets),
            promptTokens: tokenCounter(model: model, direction: "prompt"),
            completionTokens: tokenCounter(model: model, direction: "completion"),
            inFlight: registry.makeGauge(
                descriptor: .init(
                    namespace: "gantry", metricName: "inference_in_flight",
                    helpText: "Inference requests in flight per model service"),
                labels: [("model", model)]))
        perModel.withLock { $0[model] = made }
        return made
    }

    private func requestCounter(model: String, status: Int) -> Counter {
        registry.makeCounter(
            descriptor: .init(
                namespace: "gantry", metricName: "inference_requests", unitName: "total",
                helpText: "Inference requests by model service and status"),
            labels: [("model", model), ("status", String(status))])
    }

    private func tokenCounter(model: String, direction: String) -> Counter {
        registry.makeCounter(
            descriptor: .init(
                namespace: "gantry", metricName: "inference_tokens", unitName: "total",
                helpText: "Tokens by model service, prompt (in) and completion (out), as the engines counted them"),
            labels: [("model", model), ("direction", direction)])
    }

    static let latencyBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120),
    ]

    func requestFinished(
        model: String, status: Int, errorType: String?, latency: Duration, timeToFirstByte: Duration?, usage: TokenUsage?
    ) {
        let cached = metrics(for: model)
        if status == 200 { cached.ok.increment() } else { requestCounter(model: model, status: status).increment() }
        if let errorType {
            registry.makeCounter(
                descriptor: .init(
                    namespace: "gantry", metricName: "inference_errors", unitName: "total",
                    helpText: "Failed inference requests by error type"),
                labels: [("model", model), ("type", errorType)]
            ).increment()
        }
        cached.latency.record(latency)
        if let timeToFirstByte { cached.timeToFirstByte.record(timeToFirstByte) }
        if let usage {
            if usage.promptTokens > 0 { cached.promptTokens.increment(by: Int64(usage.promptTokens)) }
            if usage.completionTokens > 0 { cached.completionTokens.increment(by: Int64(usage.completionTokens)) }
        }
    }

    func limitRejected(model: String, scope: String) {
        registry.makeCounter(
            descriptor: .init(
                namespace: "gantry", metricName: "inference_limit_rejections", unitName: "total",
                helpText: "Requests refused by a rate limit or quota, by the scope that refused"),
            labels: [("model", model), ("scope", scope)]
        ).increment()
    }

    /// The in-flight gauges of a model and one of its instances, for a lease to move up and down.
    func inFlightGauges(model: String, instanceID: String) -> [Gauge] {
        let key = model + " " + instanceID
        let instance =
            perInstance.withLock { $0[key] }
            ?? {
                let made = registry.makeGauge(
                    descriptor: .init(
                        namespace: "gantry", metricName: "inference_instance_in_flight",
                        helpText: "Inference requests in flight per engine instance"),
                    labels: [("model", model), ("instance", instanceID)])
                perInstance.withLock { gauges in
                    if gauges.count > 10_000 { gauges.removeAll() }
                    gauges[key] = made
                }
                return made
            }()
        return [metrics(for: model).inFlight, instance]
    }
}

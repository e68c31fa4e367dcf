public import Prometheus

/// The data plane's Prometheus metrics. Labels are bounded: the model service's name (admins
/// create those), the instance id (instances of existing services), the HTTP status, the error
/// type and the limit's scope kind; never a key, a user or a path.
public struct GatewayMetrics: Sendable {
    let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    static let latencyBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120),
    ]

    func requestFinished(
        model: String, status: Int, errorType: String?, latency: Duration, timeToFirstByte: Duration?, usage: TokenUsage?
    ) {
        registry.makeCounter(
            descriptor: .init(
                namespace: "gantry", metricName: "inference_requests", unitName: "total",
                helpText: "Inference requests by model service and status"),
            labels: [("model", model), ("status", String(status))]
        ).increment()
        if let errorType {
            registry.makeCounter(
                descriptor: .init(
                    namespace: "gantry", metricName: "inference_errors", unitName: "total",
                    helpText: "Failed inference requests by error type"),
                labels: [("model", model), ("type", errorType)]
            ).increment()
        }
        registry.makeDurationHistogram(
            descriptor: .init(
                namespace: "gantry", metricName: "inference_request_duration", unitName: "seconds",
                helpText: "Inference request latency, to the last byte of the answer"),
            labels: [("model", model)], buckets: Self.latencyBuckets
        ).record(latency)
        if let timeToFirstByte {
            registry.makeDurationHistogram(
                descriptor: .init(
                    namespace: "gantry", metricName: "inference_time_to_first_token", unitName: "seconds",
                    helpText: "Time from the request to the first byte of the engine's answer"),
                labels: [("model", model)], buckets: Self.latencyBuckets
            ).record(timeToFirstByte)
        }
        if let usage {
            for (direction, count) in [("prompt", usage.promptTokens), ("completion", usage.completionTokens)] where count > 0 {
                registry.makeCounter(
                    descriptor: .init(
                        namespace: "gantry", metricName: "inference_tokens", unitName: "total",
                        helpText: "Tokens by model service, prompt (in) and completion (out), as the engines counted them"),
                    labels: [("model", model), ("direction", direction)]
                ).increment(by: Int64(count))
            }
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

    func inFlight(model: String, instanceID: String, by delta: Double) {
        registry.makeGauge(
            descriptor: .init(
                namespace: "gantry", metricName: "inference_in_flight", helpText: "Inference requests in flight per model service"
            ),
            labels: [("model", model)]
        ).increment(by: delta)
        registry.makeGauge(
            descriptor: .init(
                namespace: "gantry", metricName: "inference_instance_in_flight",
                helpText: "Inference requests in flight per engine instance"),
            labels: [("model", model), ("instance", instanceID)]
        ).increment(by: delta)
    }
}

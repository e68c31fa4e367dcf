import Foundation
import HTTPTypes
public import Hummingbird
public import Prometheus
import Synchronization

/// Counts requests and records their latency by route template and status.
///
/// Labels are bounded: the route is the matched template (`/api/v1/models/{name}`), never the
/// raw path, and unmatched paths share one label.
public struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: HTTPRequestMetrics

    public init(registry: PrometheusCollectorRegistry) {
        self.metrics = HTTPRequestMetrics(registry: registry)
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let start = ContinuousClock.now
        var response = try await next(request, context)
        let status = response.status
        let method = request.method.rawValue
        let route = context.endpointPath ?? "unmatched"
        // Streamed bodies are timed until their last byte is written.
        response.body = response.body.afterWrite {
            metrics.record(method: method, route: route, status: Int(status.code), duration: ContinuousClock.now - start)
        }
        return response
    }
}

/// `gantry_http_requests_total` and `gantry_http_request_duration_seconds` by method, route
/// template and status: for the router's middleware and for requests served beside the router
/// (the data plane's direct relay), so both count alike.
public final class HTTPRequestMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    /// Each label set's counter and histogram, looked up in the registry once.
    private let handles = Mutex<[String: (Counter, DurationHistogram)]>([:])

    static var buckets: [Duration] {
        [
            .milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        ]
    }

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    public func record(method: String, route: String, status: Int, duration: Duration) {
        let key = "\(method) \(status) \(route)"
        let (counter, histogram) =
            handles.withLock { $0[key] }
            ?? {
                let labels = [("method", method), ("route", route), ("status", String(status))]
                let made = (
                    registry.makeCounter(
                        descriptor: .init(
                            namespace: "gantry", metricName: "http_requests", unitName: "total",
                            helpText: "HTTP requests served"),
                        labels: labels),
                    registry.makeDurationHistogram(
                        descriptor: .init(
                            namespace: "gantry", metricName: "http_request_duration", unitName: "seconds",
                            helpText: "Time from request head to the last byte of the response"),
                        labels: labels, buckets: Self.buckets)
                )
                handles.withLock { $0[key] = made }
                return made
            }()
        counter.increment()
        histogram.record(duration)
    }
}

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
    let registry: PrometheusCollectorRegistry
    /// Each label set's counter and histogram, looked up in the registry once.
    let handles = HandleCache()

    final class HandleCache: Sendable {
        let entries = Mutex<[String: (Counter, DurationHistogram)]>([:])
    }

    static var buckets: [Duration] {
        [
            .milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        ]
    }

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
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
            self.record(method: method, route: route, status: status, duration: ContinuousClock.now - start)
        }
        return response
    }

    private func record(method: String, route: String, status: HTTPResponse.Status, duration: Duration) {
        let key = "\(method) \(status.code) \(route)"
        let (counter, histogram) =
            handles.entries.withLock { $0[key] }
            ?? {
                let labels = [("method", method), ("route", route), ("status", String(status.code))]
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
                handles.entries.withLock { $0[key] = made }
                return made
            }()
        counter.increment()
        histogram.record(duration)
    }
}

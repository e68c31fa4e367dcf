import Foundation
import HTTPTypes
public import Hummingbird
import NIOCore
public import Prometheus

/// A dependency `/readyz` checks, e.g. the store.
public struct ReadinessCheck: Sendable {
    public var name: String
    public var check: @Sendable () async -> Bool

    public init(name: String, check: @escaping @Sendable () async -> Bool) {
        self.name = name
        self.check = check
    }
}

/// `/healthz` (the process answers), `/readyz` (its dependencies answer) and `/metrics`.
public enum OperationsRoutes {
    public static func add<Context: RequestContext>(
        to router: Router<Context>, registry: PrometheusCollectorRegistry, readiness: [ReadinessCheck]
    ) {
        router.get("/healthz") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#)))
        }
        router.get("/readyz") { _, _ in
            var failing: [String] = []
            for check in readiness where await !check.check() {
                failing.append(check.name)
            }
            let body: String
            if failing.isEmpty {
                body = #"{"status":"ready"}"#
            } else {
                body = #"{"status":"not ready","failing":["# + failing.map { "\"\($0)\"" }.joined(separator: ",") + "]}"
            }
            return Response(
                status: failing.isEmpty ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
    }
}

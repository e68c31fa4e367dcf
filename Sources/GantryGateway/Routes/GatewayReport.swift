public import AsyncHTTPClient
import Foundation
public import GantryCore
public import Logging
import NIOCore
public import ServiceLifecycle

/// Load one gateway process saw for one deployment since its previous report.
public struct ReportedLoad: Codable, Sendable, Equatable {
    public var peakInFlight: Int
    public var queued: Int
    public var inFlightByInstance: [String: Int]

    public init(peakInFlight: Int, queued: Int, inFlightByInstance: [String: Int]) {
        self.peakInFlight = peakInFlight
        self.queued = queued
        self.inFlightByInstance = inFlightByInstance
    }
}

/// What a gateway process tells the control role (`POST /api/v1/routes/reports`): the
/// instances it failed to reach and its load, so passive health, autoscaling, scale from zero
/// and draining work for traffic that never passes through the control role.
public struct GatewayReport: Codable, Sendable, Equatable {
    /// Random per gateway process: reports of one gateway replace each other.
    public var gateway: String
    public var unreachable: [String]
    public var load: [String: ReportedLoad]
    /// Invalid credentials presented since the last report, per client address: the leader counts
    /// them over every gateway (`FailedAuthenticationLimiter`).
    public var failedAuthentications: [String: Int]?
    /// The requests this gateway finished since its last report, per service and minute: the
    /// leader adds them to the history the console draws.
    public var minutes: [String: [ServiceMinute]]?

    public init(
        gateway: String, unreachable: [String], load: [String: ReportedLoad], failedAuthentications: [String: Int]? = nil,
        minutes: [String: [ServiceMinute]]? = nil
    ) {
        self.gateway = gateway
        self.unreachable = unreachable
        self.load = load
        self.failedAuthentications = failedAuthentications
        self.minutes = minutes
    }
}

/// Sends this gateway's reports to the control role: every `interval` while there is load to
/// report (and once more after it ends, so the control role sees it end), and at once when an
/// instance fails or a request waits for a deployment with no ready instance.
public actor GatewayReporter: Service {
    let control: ControlEndpoints
    let serviceSecret: String
    let routes: RouteTable
    let httpClient: HTTPClient
    let logger: Logger
    let interval: Duration
    /// This gateway's failed-authentication slowdown, whose failures the reports carry.
    let failedAuthentication: FailedAuthenticationLimiter?
    /// This gateway's history of finished requests, whose new minutes the reports carry.
    let history: ServiceMetricsHistory?
    let gatewayID = "gw_" + UUID().uuidString.lowercased().prefix(12)
    /// Wakes the loop before its interval: an instance became unreachable.
    private nonisolated let wakeups = WakeSignal()

    public init(
        control: ControlEndpoints, serviceSecret: String, routes: RouteTable, httpClient: HTTPClient, logger: Logger,
        interval: Duration = .seconds(1), failedAuthentication: FailedAuthenticationLimiter? = nil,
        history: ServiceMetricsHistory? = nil
    ) {
        self.failedAuthentication = failedAuthentication
        self.history = history
        self.control = control
        self.serviceSecret = serviceSecret
        self.routes = routes
        self.httpClient = httpClient
        self.logger = logger
        self.interval = interval
    }

    public func run() async throws {
        await routes.onAttentionNeeded { [weak self] in
            self?.wakeups.wake()
        }
        await cancelWhenGracefulShutdown {
            var lastWasEmpty = true
            while !Task.isCancelled {
                await self.wakeups.wait(atMost: self.interval)
                let failures = self.failedAuthentication?.takeUnreported() ?? [:]
                let minutes = self.history?.takeUnreported() ?? [:]
                let report = GatewayReport(
                    gateway: self.gatewayID, unreachable: Array(await self.routes.takeUnreachableInstances()),
                    load: await self.routes.takeActiveLoads(), failedAuthentications: failures.isEmpty ? nil : failures,
                    minutes: minutes.isEmpty ? nil : minutes)
                let empty = report.unreachable.isEmpty && report.load.isEmpty && failures.isEmpty && minutes.isEmpty
                if empty, lastWasEmpty { continue }
                lastWasEmpty = empty
                await self.send(report)
            }
        }
    }

    func send(_ report: GatewayReport) async {
        do {
            // Plain keys: a key strategy would also rewrite the instance ids used as dictionary keys.
            let body = ByteBuffer(data: try JSONEncoder().encode(report))
            // To the next replica only when the report did not leave or a standby refused it (loads
            // would count twice).
            let status = try await control.first(tryNext: ControlConnection.notServed) { base in
                var request = HTTPClientRequest(url: base + "/api/v1/routes/reports")
                request.method = .POST
                request.headers.add(name: "authorization", value: "Bearer \(serviceSecret)")
                request.headers.add(name: "content-type", value: "application/json")
                request.body = .bytes(body)
                let response = try await httpClient.execute(request, timeout: .seconds(5))
                _ = try await response.body.collect(upTo: 1 << 16)
                if response.status == .serviceUnavailable { throw ControlConnection.Standby() }
                return response.status
            }
            if status != .noContent {
                logger.warning("the control role refused a gateway report", metadata: ["status": "\(status.code)"])
            }
        } catch {
            logger.warning("gateway report not delivered", metadata: ["error": "\(error)"])
        }
    }
}

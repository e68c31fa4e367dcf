public import AsyncHTTPClient
import Foundation
public import GantryCore
public import Logging
import NIOCore
public import ServiceLifecycle

/// Keeps a gateway's route table equal to the control role's: long-polls
/// `GET /api/v1/routes?after=<generation>` with the service credential, so a deploy, a scale or an
/// instance that leaves rotation reaches the gateway as soon as it happens. The same answer carries
/// the control role's credential generation: when it moves (a key revoked, a user disabled,
/// limits changed), `credentialsChanged` makes the gateway forget the verifications it remembers,
/// so a revocation reaches it within one round trip instead of the cache's lifetime. While the
/// control role cannot be reached the last table stays in use, and the watch retries every second.
public struct RouteWatcher: Service {
    let control: ControlEndpoints
    let serviceSecret: String
    let routes: RouteTable
    let httpClient: HTTPClient
    let logger: Logger
    let pollSeconds: Int
    let credentialsChanged: @Sendable () -> Void
    /// The addresses the leader blocks for failed authentications over every gateway.
    let blockedAddresses: @Sendable ([String: Int]) -> Void

    public init(
        control: ControlEndpoints, serviceSecret: String, routes: RouteTable, httpClient: HTTPClient, logger: Logger,
        pollSeconds: Int = 30, credentialsChanged: @escaping @Sendable () -> Void = {},
        blockedAddresses: @escaping @Sendable ([String: Int]) -> Void = { _ in }
    ) {
        self.credentialsChanged = credentialsChanged
        self.blockedAddresses = blockedAddresses
        self.control = control
        self.serviceSecret = serviceSecret
        self.routes = routes
        self.httpClient = httpClient
        self.logger = logger
        self.pollSeconds = pollSeconds
    }

    struct Snapshot: Decodable {
        var generation: UInt64
        var credentials: UInt64
        var data: [RouteEntry]
        /// Seconds left per blocked client address; absent from older control processes.
        var blocked: [String: Int]?
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var generation: UInt64?
            var credentials: UInt64?
            var failing = false
            // The replica that answered last: generations are each process's own, so another
            // replica is asked for everything.
            var answeredBy: String?
            while !Task.isCancelled {
                do {
                    let (snapshot, base) = try await control.first { base in
                        (try await fetch(from: base, after: base == answeredBy ? generation : nil), base)
                    }
                    if base != answeredBy {
                        credentials = nil
                        answeredBy = base
                    }
                    // Also on the first answer after a failure, a control restart or from another
                    // replica: what changed meanwhile is unknown, so nothing remembered is kept.
                    if snapshot.credentials != credentials {
                        credentialsChanged()
                        credentials = snapshot.credentials
                    }
                    // Also when nothing changed (a poll that timed out): publishing again returns
                    // instances this gateway ejected to rotation, as the control role's probes
                    // still find them healthy.
                    await routes.replaceAll(with: snapshot.data)
                    blockedAddresses(snapshot.blocked ?? [:])
                    generation = snapshot.generation
                    if failing {
                        logger.info("route watch restored", metadata: ["generation": "\(snapshot.generation)"])
                        failing = false
                    }
                } catch {
                    if Task.isCancelled { return }
                    if !failing {
                        logger.warning("route watch failed; keeping the last routes", metadata: ["error": "\(error)"])
                        failing = true
                    }
                    // A new control process starts its generations again: ask for everything.
                    generation = nil
                    credentials = nil
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
    }

    func fetch(from base: String, after generation: UInt64?) async throws -> Snapshot {
        var url = base + "/api/v1/routes"
        if let generation { url += "?after=\(generation)&timeout_seconds=\(pollSeconds)" }
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "authorization", value: "Bearer \(serviceSecret)")
        let response = try await httpClient.execute(request, timeout: .seconds(Int64(pollSeconds + 10)))
        let body = try await response.body.collect(upTo: 64 << 20)
        guard response.status == .ok else {
            throw GantryError(.unavailable, "the control role answered \(response.status.code) to the route watch")
        }
        return try Self.decoder.decode(Snapshot.self, from: Data(buffer: body))
    }

    /// Reads the snake_case the API writes back into the Swift names, where `_id` is `ID`
    /// (`instance_id` → `instanceID`), which `.convertFromSnakeCase` would make `instanceId`.
    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        decoder.keyDecodingStrategy = .custom { path in
            let parts = (path.last?.stringValue ?? "").split(separator: "_").map(String.init)
            var name = parts.first ?? ""
            for part in parts.dropFirst() { name += part == "id" ? "ID" : part.prefix(1).uppercased() + part.dropFirst() }
            return SnakeKey(stringValue: name)
        }
        return decoder
    }

    struct SnakeKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

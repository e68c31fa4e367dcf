public import AsyncHTTPClient
import GantryCore
public import NIOCore
public import ServiceLifecycle
import Synchronization

/// HTTP clients for talking to engines, one per idle-read timeout. async-http-client bounds the
/// time between two reads only per client (`timeout.read`), and `execute(timeout:)` bounds only
/// the wait for the response head; a model service with its own idle timeout therefore gets its
/// own client (and connection pool), made on first use and shared by every service with the
/// same value. Services without one use the default client.
public final class EngineClients: Service, Sendable {
    /// How long an idle keep-alive connection to an engine may be kept for another request: well
    /// under the engines' own idle close (llama-server and uvicorn close after 5 s), so that a
    /// request is never written on a connection the engine is closing (see `IdleConnections`).
    public static let idleConnectionLimit = TimeAmount.seconds(3)

    public let defaultClient: HTTPClient
    private let configuration: HTTPClient.Configuration
    private let byIdleTimeout = Mutex<[Int64: HTTPClient]>([:])

    /// `configuration` is the default client's, whose `timeout.read` is the default idle timeout.
    public init(configuration: HTTPClient.Configuration) {
        self.configuration = configuration
        self.defaultClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// The client whose reads time out after `idleTimeout` (milliseconds resolution).
    public func client(idleTimeout: Duration?) -> HTTPClient {
        guard let idleTimeout else { return defaultClient }
        let milliseconds = max(1, Int64(idleTimeout.inSeconds * 1000))
        return byIdleTimeout.withLock { clients in
            if let client = clients[milliseconds] { return client }
            var configuration = configuration
            configuration.timeout.read = .milliseconds(milliseconds)
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            clients[milliseconds] = client
            return client
        }
    }

    /// Shuts every client down on graceful shutdown, after the server stopped using them.
    public func run() async throws {
        try? await gracefulShutdown()
        try await shutdown()
    }

    public func shutdown() async throws {
        let clients = byIdleTimeout.withLock { clients in
            defer { clients.removeAll() }
            return Array(clients.values)
        }
        for client in clients { try? await client.shutdown() }
        try await defaultClient.shutdown()
    }
}

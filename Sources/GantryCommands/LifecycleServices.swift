import AsyncHTTPClient
import GantryStore
import ServiceLifecycle

/// Keeps the shared HTTP client alive for the life of the application and shuts it down last.
struct HTTPClientService: Service {
    let client: HTTPClient

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}

/// Closes the store's connections once everything that uses it has stopped.
struct StoreService: Service {
    let store: SQLStore

    func run() async throws {
        try? await gracefulShutdown()
        try await store.close()
    }
}

/// Runs a closing action at shutdown (the S3 store's own HTTP client).
struct ShutdownService: Service {
    let action: @Sendable () async throws -> Void

    func run() async throws {
        try? await gracefulShutdown()
        try await action()
    }
}

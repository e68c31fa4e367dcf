public import Hummingbird
public import Logging
public import ServiceLifecycle

/// Runs a Hummingbird router on 127.0.0.1 (a free port) for the duration of `body`, which gets the
/// server's base URL. For the fakes tests need (a fast engine, a token-minting provider).
public enum LocalTestServer {
    public static func withServer<T: Sendable>(
        _ router: Router<BasicRequestContext>, _ body: @Sendable (_ baseURL: String) async throws -> T
    ) async throws -> T {
        let portBox = PortPromise()
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in await portBox.fulfil(channel.localAddress?.port ?? 0) },
            logger: Logger(label: "test-server"))
        return try await running(app, logger: Logger(label: "test-server")) {
            try await body("http://127.0.0.1:\(await portBox.value())")
        }
    }

    /// Runs a service (an application with its own services) in a `ServiceGroup` while `body`
    /// runs, then shuts it down gracefully, whether `body` returned or threw.
    public static func running<T: Sendable>(
        _ service: some Service, logger: Logger, _ body: @Sendable () async throws -> T
    ) async throws -> T {
        let group = ServiceGroup(services: [service], logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                let result = try await body()
                await group.triggerGracefulShutdown()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
        }
    }
}

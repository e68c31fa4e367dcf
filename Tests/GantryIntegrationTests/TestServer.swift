import AsyncHTTPClient
import Foundation
import GantryCommands
import GantryCore
import GantryStore
import GantryTestSupport
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import ServiceLifecycle

/// Builds the real all-in-one application for a test, on its own data directory and database.
struct TestServer {
    let server: GantryServer
    let directory: TemporaryDirectory
    let adminKey: String

    /// `adminKey`: a key of an earlier run on the same store (`flags` naming its data directory
    /// and database), which makes no bootstrap key.
    static func make(
        database: String? = nil, llamaServer: String? = nil, flags extraFlags: [GantrySetting: String] = [:],
        adminKey: String? = nil, logger: Logger = Logger(label: "test")
    ) async throws -> TestServer {
        let directory = try TemporaryDirectory()
        var flags: [GantrySetting: String] = [
            .port: "0", .dataDir: directory.path + "/data", .cacheDir: directory.path + "/cache",
            .databaseURL: database ?? "sqlite://\(directory.path)/data/gantry.sqlite",
            .engineThreads: "1", .reconcileInterval: "1", .engineStartupTimeout: "120", .logLevel: "warning", .queueTimeout: "3",
        ]
        if let llamaServer { flags[.llamaServer] = llamaServer }
        flags.merge(extraFlags) { $1 }
        let configuration = try await Self.configuration(flags: flags, home: directory.path)
        let server = try await buildApplication(configuration: configuration, logger: logger)
        guard let key = server.bootstrapAdminKey ?? adminKey else {
            throw GantryError(.internal, "no bootstrap key on a fresh store")
        }
        return TestServer(server: server, directory: directory, adminKey: key)
    }
}

extension HTTPFields {
    static func bearer(_ key: String) -> HTTPFields {
        [.authorization: "Bearer \(key)", .contentType: "application/json"]
    }
}

extension TestResponse {
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
    }
    var text: String { String(buffer: body) }
}

extension ByteBuffer {
    static func json(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
}

extension TestServer {
    /// The configuration `flags` make, with `home` as the home directory and no file or variables.
    static func configuration(flags: [GantrySetting: String], home: String) async throws -> GantryConfiguration {
        let reader = try await GantryConfiguration.reader(flags: flags, configFile: nil, environment: ["HOME": home])
        return try GantryConfiguration(reader: reader, environment: ["HOME": home])
    }

    /// Waits until the server at `base` answers `/healthz` with 200, and throws ``WaitTimedOut``
    /// if it has not within 30 s (it usually takes milliseconds; the bound is for a busy machine).
    static func waitUntilHealthy(_ base: String) async throws {
        try await waitUntil("\(base)/healthz answers 200", within: .seconds(30), every: .milliseconds(50)) {
            let health = try? await HTTPClient.shared.execute(HTTPClientRequest(url: base + "/healthz"), timeout: .seconds(1))
            return health?.status == .ok
        }
    }

    /// Runs the application on a fixed, free port (OIDC redirect URIs must name it before the
    /// server starts, which `.live` testing with port 0 cannot do) until `body` returns.
    static func running<T: Sendable>(
        port: Int, flags: [GantrySetting: String], adminKey: String? = nil, logger: Logger = Logger(label: "test"),
        _ body: @Sendable (TestServer, String) async throws -> T
    ) async throws -> T {
        var flags = flags
        flags[.port] = String(port)
        flags[.host] = "127.0.0.1"
        let test = try await make(flags: flags, adminKey: adminKey, logger: logger)
        let base = "http://127.0.0.1:\(port)"
        return try await LocalTestServer.running(test.server.application, logger: logger) {
            try await waitUntilHealthy(base)
            return try await body(test, base)
        }
    }
}

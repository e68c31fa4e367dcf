import Foundation
import GantryCommands
import GantryCore
import GantryStore
import GantryTestSupport
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore

/// Builds the real all-in-one application for a test, on its own data directory and database.
struct TestServer {
    let server: GantryServer
    let directory: TemporaryDirectory
    let adminKey: String

    static func make(database: String? = nil, llamaServer: String? = nil) async throws -> TestServer {
        let directory = try TemporaryDirectory()
        var flags: [GantrySetting: String] = [
            .port: "0", .dataDir: directory.path + "/data", .cacheDir: directory.path + "/cache",
            .databaseURL: database ?? "sqlite://\(directory.path)/data/gantry.sqlite",
            .engineThreads: "1", .reconcileInterval: "1", .engineStartupTimeout: "120", .logLevel: "warning",
        ]
        if let llamaServer { flags[.llamaServer] = llamaServer }
        let reader = try await GantryConfiguration.reader(flags: flags, configFile: nil, environment: ["HOME": directory.path])
        let configuration = try GantryConfiguration(reader: reader, environment: ["HOME": directory.path])
        let server = try await buildApplication(configuration: configuration, logger: Logger(label: "test"))
        guard let key = server.bootstrapAdminKey else { throw GantryError(.internal, "no bootstrap key on a fresh store") }
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

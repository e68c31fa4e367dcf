import ArgumentParser
import Foundation
import GantryStore
import Hummingbird
import Logging

/// `gantry serve`: runs all services in one process until SIGTERM or SIGINT.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the platform: all services in one process, or with --role a control or gateway process.")

    @OptionGroup var options: ServerOptions

    func run() async throws {
        let configuration = try await options.configuration()
        if configuration.gateway.role == .gateway {
            let gateway = try await buildGatewayApplication(configuration: configuration, logger: Logger(label: "gantry"))
            try await gateway.application.runService()
            return
        }
        let server = try await buildApplication(configuration: configuration, logger: Logger(label: "gantry"))
        if let key = server.bootstrapAdminKey { printBootstrapKey(key) }
        try await server.application.runService()
    }
}

/// Shown once, on the terminal only: the key is not in any log and cannot be shown again.
func printBootstrapKey(_ key: String) {
    print(
        """

        ============================================================
        First start: an admin API key was created. It is shown once
        and stored only as a hash. Keep it somewhere safe:

            \(key)
        ============================================================

        """)
    flushStandardOutput()
}

/// Progress for a person, on standard error, so that standard output carries only results.
func printProgress(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Standard output is block-buffered when it is not a terminal; flush so that a key or a ready
/// message reaches a pipe or file at once.
func flushStandardOutput() {
    fflush(nil)
}

/// `gantry migrate`: applies pending database migrations and exits.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "migrate", abstract: "Apply database migrations and exit.")

    @OptionGroup var options: ServerOptions

    func run() async throws {
        let configuration = try await options.configuration()
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        var logger = Logger(label: "gantry")
        logger.logLevel = configuration.logLevel
        let store = try await SQLStore.open(configuration.database, logger: logger)
        do {
            let applied = try await store.migrate(logger: logger)
            print(
                "database \(configuration.database): \(applied) migration(s) applied, schema version \(SQLStore.latestSchemaVersion)"
            )
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }
}

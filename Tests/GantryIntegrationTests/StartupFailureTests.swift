import Foundation
import GantryCore
import GantryServing
import GantryStore
import GantryTestSupport
import Logging
import Synchronization
import Testing

/// What an operator sees when a dependency is wrong at start: the real cause, at once.
@Suite("Start-up failures")
struct StartupFailureTests {
    @Test("a PostgreSQL error at start names the server's own error and its SQLSTATE", .tags(.postgres))
    func postgresErrorIsReported() async throws {
        let adminURL = try TestEnvironment.require(TestEnvironment.postgresURL)
        var components = try #require(URLComponents(string: adminURL))
        components.path = "/no_such_database"
        let started = ContinuousClock.now
        do {
            _ = try await SQLStore.open(.postgres(url: components.string!), logger: Logger(label: "test"))
            Issue.record("opening a missing database succeeded")
        } catch let error as GantryError {
            #expect(error.kind == .unavailable)
            #expect(error.message.contains("no_such_database"))
            #expect(error.message.contains("3D000"))
        }
        #expect(ContinuousClock.now - started < .seconds(10), "the error must not wait for pool retries")
    }

    @Test("a database URL with a password never shows it in the start-up error")
    func passwordNotInError() async throws {
        do {
            _ = try await SQLStore.open(
                .postgres(url: "postgres://gantry:hunter2@127.0.0.1:1/gantry"), logger: Logger(label: "test"))
            Issue.record("connecting to port 1 succeeded")
        } catch {
            #expect(!String(describing: error).contains("hunter2"))
        }
    }

    @Test("the engine installer adopts an existing binary and is idempotent afterwards", .tags(.llamaCpp))
    func installerAdoptsBinary() async throws {
        let binary = try TestEnvironment.require(TestEnvironment.llamaServer)
        let cache = try TemporaryDirectory()
        let lines = LineRecorder()
        let installer = LlamaCppInstaller(cacheDirectory: cache.path) { line in lines.append(line) }
        #expect(installer.installedBinary == nil)
        let adopted = try await installer.adopt(binary: binary)
        #expect(adopted == installer.binaryPath)
        #expect(installer.installedBinary == installer.binaryPath)
        // With a binary in place, install does no work.
        #expect(try await installer.install() == installer.binaryPath)
        #expect(lines.all.last?.contains("already installed") == true)
        await #expect(throws: GantryError.self) { try await installer.adopt(binary: cache.path + "/missing") }
    }
}

/// Collects progress lines from a `@Sendable` callback.
final class LineRecorder: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ line: String) { storage.withLock { $0.append(line) } }
    var all: [String] { storage.withLock { $0 } }
}

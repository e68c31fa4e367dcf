import ArgumentParser
import Foundation
import GantryServing

/// `gantry engines install llama-cpp`: builds (or adopts) the engine binary into the cache.
struct EnginesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engines", abstract: "Install inference engines.", subcommands: [Install.self])

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install an engine into the cache directory (idempotent).")

        @Argument(help: "Engine to install. Available: llama-cpp.")
        var engine: String

        @Option(help: "Use this existing llama-server binary instead of building one.")
        var binary: String?

        @Option(name: .customLong("cache-dir"), help: "Cache directory. [env: GANTRY_CACHE_DIR]")
        var cacheDir: String?

        @Option(help: "Parallel build jobs (default: all cores).")
        var jobs: Int?

        func run() async throws {
            guard engine == LlamaCppAdapter.name else {
                throw ValidationError("unknown engine '\(engine)'; available: \(LlamaCppAdapter.name)")
            }
            let installer = LlamaCppInstaller(cacheDirectory: try await cacheDirectory()) { printProgress($0) }
            let path: String
            if let binary {
                path = try await installer.adopt(binary: binary)
            } else {
                path = try await installer.install(jobs: jobs ?? ProcessInfo.processInfo.activeProcessorCount)
            }
            print(path)
        }

        func cacheDirectory() async throws -> String {
            try await GantryConfiguration.cacheDirectory(flag: cacheDir)
        }
    }
}

import ArgumentParser
import Foundation

/// `gantry demo-model`: fetches and verifies the demo model into the cache and prints its path.
struct DemoModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-model",
        abstract: "Download the demo model (SmolLM2-135M-Instruct GGUF) into the cache, verify it, print its path.")

    @Option(name: .customLong("cache-dir"), help: "Cache directory. [env: GANTRY_CACHE_DIR]")
    var cacheDir: String?

    func run() async throws {
        let cache = try await GantryConfiguration.cacheDirectory(flag: cacheDir)
        print(try await DemoModel(cacheDirectory: cache) { printProgress($0) }.fetch())
    }
}

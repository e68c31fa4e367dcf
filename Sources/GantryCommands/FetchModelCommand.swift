import ArgumentParser
import AsyncHTTPClient
import Foundation
import GantryCore

/// `gantry fetch-model`: what an engine pod's init container runs to put a model version's files
/// on its node. The fetch token comes from the environment, never from the command line.
struct FetchModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fetch-model",
        abstract: "Fetch one model version's files into a directory, checking every digest (engine pods run this).")

    @Option(help: "The version's manifest URL on Gantry's registry (…/internal/model-files/<version id>).")
    var from: String

    @Option(help: "Directory to write the files into.")
    var into: String

    static let tokenVariable = "GANTRY_FETCH_TOKEN"

    func run() async throws {
        guard let token = ProcessInfo.processInfo.environment[Self.tokenVariable], !token.isEmpty else {
            throw ValidationError("set \(Self.tokenVariable) to the version's fetch token")
        }
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            try await ModelFetcher(
                grant: ModelFetchGrant(url: from, token: token), directory: URL(fileURLWithPath: into), http: http,
                progress: { print($0) }
            ).fetch()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}

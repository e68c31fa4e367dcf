import ArgumentParser
import Foundation
import GantryCore
import GantryOrchestrator
import GantryRegistry
import GantryServing
import Hummingbird
import Logging

/// `gantry quickstart`: from a fresh machine to a served model in one command.
struct QuickstartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quickstart",
        abstract: "Install llama.cpp, fetch a small demo model, deploy it and serve until Ctrl-C.")

    @OptionGroup var options: ServerOptions

    func run() async throws {
        let configuration = try await options.configuration()
        let say: @Sendable (String) -> Void = { printProgress("quickstart: " + $0) }

        if !FileManager.default.isExecutableFile(atPath: configuration.engine.llamaServer) {
            let installer = LlamaCppInstaller(cacheDirectory: configuration.cacheDirectory, progress: say)
            guard configuration.engine.llamaServer == installer.binaryPath else {
                throw ValidationError("llama-server not found at \(configuration.engine.llamaServer)")
            }
            _ = try await installer.install()
        }
        let modelPath = try await DemoModel(cacheDirectory: configuration.cacheDirectory, progress: say).fetch()

        let port = PortBox()
        let server = try await buildApplication(configuration: configuration, logger: Logger(label: "gantry")) {
            await port.set($0)
        }
        if let key = server.bootstrapAdminKey { printBootstrapKey(key) }

        if try await server.registry.modelIfExists(DemoModel.modelName) == nil {
            _ = try await server.registry.createModel(
                NewModel(
                    name: DemoModel.modelName, description: "SmolLM2 135M Instruct, Q4_1 GGUF (demo model)", task: .chat,
                    owner: "quickstart"),
                createdBy: nil)
        }
        let model = try await server.registry.model(named: DemoModel.modelName)
        let versions = try await server.store.repositories.models.listVersions(modelID: model.id)
        let artifact = URL(fileURLWithPath: modelPath).absoluteString
        if !versions.contains(where: { $0.artifactURI == artifact }) {
            _ = try await server.registry.createVersion(
                modelName: DemoModel.modelName,
                NewVersion(format: "gguf", contextLimit: DemoModel.contextLimit, artifactUri: artifact))
        }
        if try await server.store.repositories.deployments.deployment(named: DemoModel.deploymentName) == nil {
            _ = try await server.deployments.create(
                DeploymentRequest(name: DemoModel.deploymentName, model: DemoModel.modelName, replicas: 1))
        }
        let demoUser = try await server.identity.ensureUser(name: "demo", role: .user)
        let (_, userKey) = try await server.identity.issueKey(
            userID: demoUser.id, name: "quickstart \(Date().formatted(.iso8601))", expiresAt: nil)

        let repositories = server.store.repositories
        let host = configuration.http.host
        let announcer = Task {
            let started = ContinuousClock.now
            while !Task.isCancelled {
                if let deployment = try? await repositories.deployments.deployment(named: DemoModel.deploymentName),
                    deployment.status == .ready, let boundPort = await port.value
                {
                    Self.printReady(host: host, port: boundPort, key: userKey, after: ContinuousClock.now - started)
                    return
                }
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
        defer { announcer.cancel() }
        try await server.application.runService()
    }

    static func printReady(host: String, port: Int, key: String, after: Duration) {
        let base = "http://\(host):\(port)"
        print(
            """

            Gantry is serving '\(DemoModel.deploymentName)' at \(base) (ready after \(after.formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 1))))).
            A user API key for this run (shown once): \(key)

            Chat completion:
              curl -s \(base)/v1/chat/completions -H 'Authorization: Bearer \(key)' -H 'Content-Type: application/json' \\
                -d '{"model":"\(DemoModel.deploymentName)","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":32}'

            Streaming:
              curl -sN \(base)/v1/chat/completions -H 'Authorization: Bearer \(key)' -H 'Content-Type: application/json' \\
                -d '{"model":"\(DemoModel.deploymentName)","stream":true,"messages":[{"role":"user","content":"Count to five."}],"max_tokens":32}'

            Press Ctrl-C to stop.
            """)
        flushStandardOutput()
    }
}

/// The port the server bound, known only once it is running.
actor PortBox {
    private(set) var value: Int?
    func set(_ port: Int) { value = port }
}

public import AsyncHTTPClient
import Foundation
public import GantryCore
public import Logging
import NIOCore
public import ServiceLifecycle

/// Runs engine instances as child processes of Gantry on this machine.
///
/// Each instance gets a free port on 127.0.0.1 and a log file under `logDirectory`. The runtime
/// is a `Service`: when Gantry shuts down it stops every child (SIGTERM, then SIGKILL after a
/// grace period), so no engine outlives the platform that started it.
public actor LocalProcessRuntime: EngineRuntime, Service {
    public struct Configuration: Sendable {
        public var llamaCpp: LlamaCppEngine
        public var logDirectory: String
        /// How long an engine may take from spawn to a healthy `/health`.
        public var startupTimeout: Duration
        /// How long a stopping engine gets after SIGTERM before SIGKILL.
        public var stopGracePeriod: Duration

        public init(llamaCpp: LlamaCppEngine, logDirectory: String, startupTimeout: Duration, stopGracePeriod: Duration) {
            self.llamaCpp = llamaCpp
            self.logDirectory = logDirectory
            self.startupTimeout = startupTimeout
            self.stopGracePeriod = stopGracePeriod
        }
    }

    struct Child {
        let process: ChildProcess
        let endpoint: String
        let logPath: String
    }

    let configuration: Configuration
    let httpClient: HTTPClient
    let logger: Logger
    private var children: [String: Child] = [:]

    public init(configuration: Configuration, httpClient: HTTPClient, logger: Logger) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.logger = logger
    }

    public nonisolated var supportedEngines: [String] { [LlamaCppEngine.name] }

    public func launch(_ spec: EngineLaunchSpec) async throws -> String {
        guard spec.engine == LlamaCppEngine.name else {
            throw GantryError.invalid("engine '\(spec.engine)' is not supported by the local runtime", param: "engine")
        }
        guard FileManager.default.isExecutableFile(atPath: configuration.llamaCpp.binary) else {
            throw GantryError(
                .unavailable,
                "llama-server not found at \(configuration.llamaCpp.binary); run 'gantry engines install llama-cpp'")
        }
        let port = try FreePort.find()
        let endpoint = "http://127.0.0.1:\(port)"
        try FileManager.default.createDirectory(atPath: configuration.logDirectory, withIntermediateDirectories: true)
        let logPath = configuration.logDirectory + "/\(spec.instanceID).log"
        let process = try ChildProcess.spawn(
            [configuration.llamaCpp.binary] + configuration.llamaCpp.arguments(for: spec, port: port), outputPath: logPath)
        children[spec.instanceID] = Child(process: process, endpoint: endpoint, logPath: logPath)
        logger.info(
            "engine started",
            metadata: ["instance_id": "\(spec.instanceID)", "pid": "\(process.pid)", "endpoint": "\(endpoint)"])

        do {
            try await waitUntilHealthy(instanceID: spec.instanceID, endpoint: endpoint)
        } catch {
            await stop(instanceID: spec.instanceID)
            throw error
        }
        return endpoint
    }

    private func waitUntilHealthy(instanceID: String, endpoint: String) async throws {
        let deadline = ContinuousClock.now + configuration.startupTimeout
        while ContinuousClock.now < deadline {
            switch await health(instanceID: instanceID) {
            case .ready: return
            case .failed(let reason) where children[instanceID]?.process.isRunning != true:
                throw GantryError(.unavailable, "engine exited while starting: \(reason)")
            default:
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        throw GantryError(.unavailable, "engine did not become healthy within \(configuration.startupTimeout)")
    }

    public func health(instanceID: String) async -> EngineHealth {
        guard let child = children[instanceID] else { return .failed("no such instance") }
        if let status = child.process.exitStatus {
            return .failed("process exited with status \(status); \(Self.tail(of: child.logPath))")
        }
        var request = HTTPClientRequest(url: child.endpoint + LlamaCppEngine.healthPath)
        request.method = .GET
        do {
            let response = try await httpClient.execute(request, timeout: .seconds(2))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            switch response.status.code {
            case 200: return .ready
            case 503: return .starting
            default: return .failed("health check answered \(response.status.code)")
            }
        } catch {
            return .starting
        }
    }

    public func stop(instanceID: String) async {
        guard let child = children.removeValue(forKey: instanceID) else { return }
        await child.process.terminate(grace: configuration.stopGracePeriod)
        logger.info("engine stopped", metadata: ["instance_id": "\(instanceID)"])
    }

    /// Stops every child; called on shutdown.
    public func stopAll() async {
        let all = children
        children.removeAll()
        await withTaskGroup(of: Void.self) { group in
            for (_, child) in all {
                group.addTask { await child.process.terminate(grace: self.configuration.stopGracePeriod) }
            }
        }
        if !all.isEmpty { logger.info("all engines stopped", metadata: ["count": "\(all.count)"]) }
    }

    /// Ids of instances with a live process, for tests and diagnostics.
    public func runningInstanceIDs() -> [String] {
        children.filter { $0.value.process.isRunning }.map(\.key).sorted()
    }

    public func processIdentifier(instanceID: String) -> Int32? {
        children[instanceID]?.process.pid
    }

    public func run() async throws {
        // Children are started by the reconcile loop; this service only outlives them.
        try? await gracefulShutdown()
        await stopAll()
    }

    /// The last lines of an engine's log, to explain why it stopped.
    static func tail(of path: String) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "no log" }
        return text.split(separator: "\n").suffix(5).joined(separator: " | ")
    }
}

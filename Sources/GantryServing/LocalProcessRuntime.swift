public import AsyncHTTPClient
import Foundation
public import GantryCore
public import Logging
import NIOCore
public import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// Runs engine instances as processes on this machine.
///
/// Each instance gets a free port on 127.0.0.1, its own process group and a log file under
/// `logDirectory`, rotated by size. Engines carry `GANTRY_INSTANCE_ID` and this runtime's tag in
/// their environment, so a Gantry restarted after a crash can recognise its engines (adopt them)
/// and stop the ones no record owns. On graceful shutdown every engine is stopped (SIGTERM, then
/// SIGKILL after a grace period), so none outlives the platform that started it.
public actor LocalProcessRuntime: EngineRuntime, Service {
    public struct Configuration: Sendable {
        public var adapters: [any EngineAdapter]
        public var logDirectory: String
        /// How long a stopping engine gets after SIGTERM before SIGKILL.
        public var stopGracePeriod: Duration
        /// A log file larger than this is rotated (copied to `.1`, then truncated).
        public var logMaxBytes: Int
        /// Rotated files kept (`.1` ... `.N`).
        public var logFilesKept: Int

        public init(
            adapters: [any EngineAdapter], logDirectory: String, stopGracePeriod: Duration, logMaxBytes: Int = 10 << 20,
            logFilesKept: Int = 3
        ) {
            self.adapters = adapters
            self.logDirectory = logDirectory
            self.stopGracePeriod = stopGracePeriod
            self.logMaxBytes = logMaxBytes
            self.logFilesKept = logFilesKept
        }
    }

    /// A child this process spawned, or an engine adopted from an earlier run (not our child,
    /// so it cannot be waited for, only signalled).
    enum Handle {
        case child(ChildProcess)
        case adopted(pid_t)

        var pid: pid_t {
            switch self {
            case .child(let child): child.pid
            case .adopted(let pid): pid
            }
        }
    }

    struct Instance {
        let handle: Handle
        let endpoint: String
        let adapter: any EngineAdapter
    }

    let configuration: Configuration
    let httpClient: HTTPClient
    let logger: Logger
    /// Marks engines started by runtimes with this log directory, so two Gantry servers on one
    /// machine (tests run many) never adopt or stop each other's engines.
    nonisolated let tag: String
    private let adapters: [String: any EngineAdapter]
    public nonisolated let supportedEngines: [String]
    private var instances: [String: Instance] = [:]

    /// Builds the runtime with the engines whose programs are installed here.
    public static func make(configuration: Configuration, httpClient: HTTPClient, logger: Logger) async
        -> LocalProcessRuntime
    {
        // llama.cpp is Gantry's own engine: always offered, and a missing binary is reported when
        // an instance starts ("run gantry engines install llama-cpp"). Others only when installed.
        var installed: [String] = []
        for adapter in configuration.adapters {
            let offered = adapter.name == LlamaCppAdapter.name ? true : await adapter.isInstalled()
            if offered { installed.append(adapter.name) }
        }
        return LocalProcessRuntime(
            configuration: configuration, installed: installed, httpClient: httpClient, logger: logger)
    }

    init(configuration: Configuration, installed: [String], httpClient: HTTPClient, logger: Logger) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.logger = logger
        self.tag = configuration.logDirectory
        self.supportedEngines = installed
        self.adapters = Dictionary(configuration.adapters.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public func logPath(instanceID: String) -> String {
        configuration.logDirectory + "/\(instanceID).log"
    }

    public func start(_ spec: EngineLaunchSpec) async throws -> StartedEngine {
        guard let adapter = adapters[spec.engine] else {
            throw GantryError.invalid("engine '\(spec.engine)' is not known to the local runtime", param: "engine")
        }
        guard await adapter.isInstalled() else {
            let hint = spec.engine == LlamaCppAdapter.name ? "; run 'gantry engines install llama-cpp'" : ""
            throw GantryError(.unavailable, "engine '\(spec.engine)' is not installed on this node\(hint)")
        }
        await stop(instanceID: spec.instanceID)
        let port = try FreePort.find()
        let endpoint = "http://127.0.0.1:\(port)"
        try FileManager.default.createDirectory(atPath: configuration.logDirectory, withIntermediateDirectories: true)
        let command = adapter.command(for: spec, host: "127.0.0.1", port: port)
        var environment = ProcessInfo.processInfo.environment.merging(command.environment) { _, engine in engine }
        environment["GANTRY_INSTANCE_ID"] = spec.instanceID
        environment["GANTRY_RUNTIME_TAG"] = tag
        let process = try ChildProcess.spawn(
            command.arguments, environment: environment, outputPath: logPath(instanceID: spec.instanceID),
            newProcessGroup: true)
        instances[spec.instanceID] = Instance(handle: .child(process), endpoint: endpoint, adapter: adapter)
        logger.info(
            "engine started",
            metadata: [
                "instance_id": "\(spec.instanceID)", "engine": "\(spec.engine)", "pid": "\(process.pid)",
                "endpoint": "\(endpoint)", "gpus": "\(spec.gpuUUIDs.joined(separator: ","))",
            ])
        return StartedEngine(endpoint: endpoint, pid: process.pid)
    }

    public func probe(instanceID: String) async -> EngineHealth {
        guard let instance = instances[instanceID] else { return .exited("not running on this node") }
        if let status = exitStatus(of: instance.handle) {
            return .exited("process exited with status \(status); last log lines: \(tail(instanceID: instanceID))")
        }
        rotateLogIfLarge(instanceID: instanceID)
        var request = HTTPClientRequest(url: instance.endpoint + instance.adapter.healthPath)
        request.method = .GET
        do {
            let response = try await httpClient.execute(request, timeout: .seconds(2))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            switch response.status.code {
            case 200: return .ready
            case 503: return .starting
            default: return .unhealthy("health check answered \(response.status.code)")
            }
        } catch {
            return .unhealthy("health check failed: \(error)")
        }
    }

    public func stop(instanceID: String) async {
        guard let instance = instances.removeValue(forKey: instanceID) else { return }
        await terminate(instance.handle)
        logger.info("engine stopped", metadata: ["instance_id": "\(instanceID)"])
    }

    public func adopt(instanceID: String, engine: String, pid: Int32?, endpoint: String) async -> Bool {
        guard let pid, let adapter = adapters[engine], let environment = Self.environment(of: pid),
            environment["GANTRY_INSTANCE_ID"] == instanceID, environment["GANTRY_RUNTIME_TAG"] == tag
        else { return false }
        instances[instanceID] = Instance(handle: .adopted(pid), endpoint: endpoint, adapter: adapter)
        logger.info("engine adopted", metadata: ["instance_id": "\(instanceID)", "pid": "\(pid)"])
        return true
    }

    public func stopStrays(keeping instanceIDs: Set<String>) async -> [String] {
        var stopped: [String] = []
        for (pid, environment) in Self.processesWithInstanceIDs() where environment["GANTRY_RUNTIME_TAG"] == tag {
            guard let id = environment["GANTRY_INSTANCE_ID"], !instanceIDs.contains(id), instances[id] == nil else { continue }
            await terminate(.adopted(pid))
            stopped.append(id)
        }
        if !stopped.isEmpty { logger.warning("stopped engines no instance owns", metadata: ["instances": "\(stopped)"]) }
        return stopped
    }

    public func logs(instanceID: String, maxBytes: Int) async -> String? {
        let current = logPath(instanceID: instanceID)
        guard var data = Self.end(ofFile: current, maxBytes: maxBytes) else { return nil }
        if data.count < maxBytes, let older = Self.end(ofFile: current + ".1", maxBytes: maxBytes - data.count) {
            data = older + data
        }
        return String(decoding: data, as: UTF8.self)
    }

    public func engineMetrics(instanceID: String) async -> String? {
        guard let instance = instances[instanceID] else { return nil }
        var request = HTTPClientRequest(url: instance.endpoint + instance.adapter.metricsPath)
        request.method = .GET
        guard let response = try? await httpClient.execute(request, timeout: .seconds(5)), response.status == .ok,
            let body = try? await response.body.collect(upTo: 8 << 20)
        else { return nil }
        return String(buffer: body)
    }

    /// Stops every engine; called on shutdown.
    public func stopAll() async {
        let all = instances
        instances.removeAll()
        await withTaskGroup(of: Void.self) { group in
            for (_, instance) in all {
                group.addTask { await self.terminate(instance.handle) }
            }
        }
        if !all.isEmpty { logger.info("all engines stopped", metadata: ["count": "\(all.count)"]) }
    }

    /// Ids of instances with a live process, for tests and diagnostics.
    public func runningInstanceIDs() -> [String] {
        instances.filter { exitStatus(of: $0.value.handle) == nil }.map(\.key).sorted()
    }

    public func processIdentifier(instanceID: String) -> Int32? {
        instances[instanceID]?.handle.pid
    }

    public func run() async throws {
        // Engines are started by the reconcile loop; this service only outlives them.
        try? await gracefulShutdown()
        await stopAll()
    }

    // MARK: - Processes

    private func exitStatus(of handle: Handle) -> Int32? {
        switch handle {
        case .child(let child): return child.exitStatus
        case .adopted(let pid): return Self.isAlive(pid) ? nil : -1
        }
    }

    private nonisolated func terminate(_ handle: Handle) async {
        switch handle {
        case .child(let child):
            await child.terminate(grace: configuration.stopGracePeriod)
        case .adopted(let pid):
            // Engines lead their own process group; signal all of it.
            let target = getpgid(pid) == pid ? -pid : pid
            kill(target, SIGTERM)
            let deadline = ContinuousClock.now + configuration.stopGracePeriod
            while Self.isAlive(pid), ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(25))
            }
            kill(target, SIGKILL)
        }
    }

    /// Alive and not a zombie (an adopted engine's zombie is reaped by init, not by us).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return true }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state != "Z" && state != "X"
    }

    /// The environment of a process (Linux `/proc`); nil when it cannot be read.
    static func environment(of pid: pid_t) -> [String: String]? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return nil }
        var result: [String: String] = [:]
        for entry in data.split(separator: 0) {
            let text = String(decoding: entry, as: UTF8.self)
            guard let equals = text.firstIndex(of: "=") else { continue }
            result[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        return result
    }

    /// Every engine carrying `GANTRY_INSTANCE_ID`, with its environment: process-group leaders
    /// only, since an engine's helpers inherit its environment and go with its group.
    static func processesWithInstanceIDs() -> [(pid_t, [String: String])] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry in
            guard let pid = pid_t(entry), pid != getpid(), getpgid(pid) == pid, let environment = environment(of: pid),
                environment["GANTRY_INSTANCE_ID"] != nil, isAlive(pid)
            else { return nil }
            return (pid, environment)
        }
    }

    // MARK: - Logs

    /// Copy-and-truncate rotation: the engine keeps its file descriptor (opened with O_APPEND,
    /// so it writes at the new end), and an adopted engine needs nothing from us to keep logging.
    private func rotateLogIfLarge(instanceID: String) {
        let path = logPath(instanceID: instanceID)
        guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int,
            size > configuration.logMaxBytes
        else { return }
        let files = FileManager.default
        try? files.removeItem(atPath: "\(path).\(configuration.logFilesKept)")
        for index in stride(from: configuration.logFilesKept - 1, through: 1, by: -1) {
            try? files.moveItem(atPath: "\(path).\(index)", toPath: "\(path).\(index + 1)")
        }
        try? files.copyItem(atPath: path, toPath: "\(path).1")
        truncate(path, 0)
    }

    /// The last lines of an engine's log, to explain why it stopped.
    private func tail(instanceID: String) -> String {
        guard let data = Self.end(ofFile: logPath(instanceID: instanceID), maxBytes: 4096) else { return "no log" }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").suffix(5).joined(separator: " | ")
    }

    /// The last `maxBytes` of a file, read from there: logs grow to `logMaxBytes` and beyond.
    static func end(ofFile path: String, maxBytes: Int) -> Data? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        try? handle.seek(toOffset: size > UInt64(maxBytes) ? size - UInt64(maxBytes) : 0)
        return (try? handle.readToEnd()) ?? Data()
    }
}

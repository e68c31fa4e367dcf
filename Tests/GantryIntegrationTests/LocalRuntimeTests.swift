import AsyncHTTPClient
import Foundation
import GantryCore
import GantryServing
import GantryTestSupport
import Logging
import Testing

/// The local process driver with real processes: a shell script stands in for an engine (it
/// logs a lot and starts a helper), since the point is process handling, not inference.
@Suite("Local process runtime")
struct LocalRuntimeTests {
    /// A fake engine: writes `lines` log lines, starts a helper process, then sleeps.
    static func script(in directory: TemporaryDirectory, lines: Int) throws -> String {
        let path = directory.path + "/fake-engine.sh"
        let text = """
            #!/bin/sh
            i=0
            while [ $i -lt \(lines) ]; do echo "log line $i of a fake engine on port $1"; i=$((i+1)); done
            sleep 300 &
            echo $! > "$2"
            wait
            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    static func runtime(_ directory: TemporaryDirectory, script: String, helperFile: String) async -> LocalProcessRuntime {
        await LocalProcessRuntime.make(
            configuration: .init(
                adapters: [CustomCommandAdapter(template: "\(script) {port} \(helperFile)")],
                logDirectory: directory.path + "/logs", stopGracePeriod: .seconds(2), logMaxBytes: 4096, logFilesKept: 2),
            httpClient: HTTPClient.shared, logger: Logger(label: "test"))
    }

    static func spec(_ id: String) -> EngineLaunchSpec {
        EngineLaunchSpec(instanceID: id, deploymentName: "d", engine: "custom", modelPath: "/m", contextLimit: 8)
    }

    static func alive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        return !stat.contains(") Z ") && !stat.contains(") X ")
    }

    static func helperPID(_ path: String) async throws -> Int32 {
        for _ in 0..<200 {
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
                let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                return pid
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw GantryError(.internal, "the fake engine never wrote its helper's pid")
    }

    @Test("logs rotate by size and are served from their end; stopping ends the whole process group")
    func logsAndProcessGroup() async throws {
        let directory = try TemporaryDirectory()
        let helperFile = directory.path + "/helper.pid"
        let runtime = await Self.runtime(directory, script: try Self.script(in: directory, lines: 400), helperFile: helperFile)
        let started = try await runtime.start(Self.spec("ins_a"))
        let helper = try await Self.helperPID(helperFile)
        // No HTTP server: alive but unhealthy, and the probe rotates the 20 KB log.
        guard case .unhealthy = await runtime.probe(instanceID: "ins_a") else {
            Issue.record("a running engine that does not answer HTTP must be unhealthy")
            return
        }
        let log = directory.path + "/logs/ins_a.log"
        #expect(FileManager.default.fileExists(atPath: log + ".1"), "the large log was rotated")
        let size = (try FileManager.default.attributesOfItem(atPath: log)[.size] as? Int) ?? -1
        #expect(size < 4096, "the current log starts again small (\(size) bytes)")
        let tail = try #require(await runtime.logs(instanceID: "ins_a", maxBytes: 200))
        #expect(tail.utf8.count <= 200 && tail.contains("log line 399 of a fake engine on port"))

        await runtime.stop(instanceID: "ins_a")
        // SIGKILL to the group is delivered at once, but the kernel may take a moment to end it.
        for _ in 0..<100 where Self.alive(helper) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!Self.alive(started.pid!))
        #expect(!Self.alive(helper), "the engine's helper process went with it")
        #expect(await runtime.probe(instanceID: "ins_a") == .exited("not running on this node"))
    }

    @Test("a second runtime on the same data adopts a running engine by its recorded pid, never a stranger's, and stops strays")
    func adoptionAndStrays() async throws {
        let directory = try TemporaryDirectory()
        let helperFile = directory.path + "/helper.pid"
        let script = try Self.script(in: directory, lines: 1)
        let first = await Self.runtime(directory, script: script, helperFile: helperFile)
        let kept = try await first.start(Self.spec("ins_kept"))
        let stray = try await first.start(Self.spec("ins_stray"))

        // Strays are engines left by a crashed Gantry, long running; here they were just spawned,
        // so wait until their environment shows their instance ids (the shell is exec'd).
        for pid in [kept.pid!, stray.pid!] {
            for _ in 0..<100 {
                let environment = (try? String(contentsOfFile: "/proc/\(pid)/environ", encoding: .utf8)) ?? ""
                if environment.contains("GANTRY_INSTANCE_ID=ins_") { break }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        // As if Gantry had crashed: a new runtime, the old one never stopped its engines.
        let second = await Self.runtime(directory, script: script, helperFile: helperFile)
        #expect(await !second.adopt(instanceID: "ins_other", engine: "custom", pid: kept.pid, endpoint: kept.endpoint))
        #expect(await !second.adopt(instanceID: "ins_kept", engine: "custom", pid: getpid(), endpoint: kept.endpoint))
        #expect(await second.adopt(instanceID: "ins_kept", engine: "custom", pid: kept.pid, endpoint: kept.endpoint))
        #expect(await second.stopStrays(keeping: ["ins_kept"]) == ["ins_stray"])
        #expect(!Self.alive(stray.pid!))
        #expect(Self.alive(kept.pid!))
        // Another Gantry's engines (another data directory) are not ours to adopt or stop.
        let elsewhere = try TemporaryDirectory()
        let other = await Self.runtime(elsewhere, script: script, helperFile: helperFile)
        #expect(await !other.adopt(instanceID: "ins_kept", engine: "custom", pid: kept.pid, endpoint: kept.endpoint))
        #expect(await other.stopStrays(keeping: []).isEmpty)

        await second.stop(instanceID: "ins_kept")
        for _ in 0..<100 where Self.alive(kept.pid!) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!Self.alive(kept.pid!), "an adopted engine is stopped through its process group")
        await first.stopAll()
    }
}

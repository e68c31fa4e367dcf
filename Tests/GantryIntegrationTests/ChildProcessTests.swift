import Foundation
import GantryCore
import GantryTestSupport
import Testing

/// Children must start with no blocked signals: with SIGCHLD blocked, cmake waits forever for
/// its own children; with SIGTERM blocked, an engine cannot be stopped gracefully.
@Suite("Child processes")
struct ChildProcessTests {
    @Test("children start with an empty signal mask, even when spawned from a worker thread")
    func cleanSignalMask() async throws {
        let output = try await Task.detached {
            try await ExternalCommand.run(["sh", "-c", "grep SigBlk /proc/self/status"])
        }.value
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == "SigBlk:\t0000000000000000")
    }

    @Test("exit status, SIGTERM and failures are reported")
    func lifecycle() async throws {
        let sleeper = try ChildProcess.spawn(["sleep", "30"])
        #expect(sleeper.isRunning)
        await sleeper.terminate(grace: .seconds(5))
        #expect(sleeper.exitStatus == 128 + SIGTERM, "a plain SIGTERM ends it: no SIGKILL was needed")
        await #expect(throws: ExternalCommand.Failure.self) { try await ExternalCommand.run(["sh", "-c", "echo oops; exit 3"]) }
        do {
            try await ExternalCommand.run(["sh", "-c", "echo oops; exit 3"])
        } catch let failure as ExternalCommand.Failure {
            #expect(failure.status == 3)
            #expect(failure.output.contains("oops"))
        }
    }

    @Test("children inherit no descriptor beyond stdin, stdout and stderr (a crashed Gantry's port is not kept bound)")
    func noInheritedDescriptors() async throws {
        // Opened without close-on-exec, like a socket a library forgot to mark.
        let descriptor = open("/dev/null", O_RDONLY)
        #expect(descriptor > 2)
        defer { close(descriptor) }
        let output = try await ExternalCommand.run([
            "sh", "-c", "[ -e /proc/self/fd/\(descriptor) ] && echo leaked || echo clean",
        ])
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == "clean")
    }

    @Test("a child leading its own process group takes its helpers with it when terminated")
    func processGroup() async throws {
        let directory = try TemporaryDirectory()
        let pidFile = directory.path + "/helper.pid"
        // The shell starts a helper that ignores the shell's death, as engine workers do.
        let parent = try ChildProcess.spawn(
            ["sh", "-c", "sleep 60 & echo $! > \(pidFile); wait"], newProcessGroup: true)
        var helper: Int32 = 0
        for _ in 0..<100 {
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
                let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                helper = pid
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(helper > 0)
        await parent.terminate(grace: .seconds(5))
        // The group's signal is delivered at once, but the kernel may take a moment to end the helper.
        try await waitUntil("helper \(helper) has ended with its group", within: .seconds(5), every: .milliseconds(20)) {
            let state = (try? String(contentsOfFile: "/proc/\(helper)/stat", encoding: .utf8)) ?? ""
            return state.isEmpty || state.contains(") Z ")
        }
    }
}

import Foundation
import GantryCore
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
}

import Foundation
import Synchronization

/// A TEST STAND-IN for the kubelet (scripts/kubernetes/standin-kubelet.py), run for one test:
/// it registers fixture Nodes with the test control plane's API server, runs the pods the real
/// kube-scheduler binds to them as local processes on loopback addresses of their own, reports
/// their status, and removes its Nodes and pods when stopped.
///
/// Nothing here blocks a cooperative thread (there are two on this machine kind, and a blocked
/// one starves every other test): a thread of its own reads the stand-in's answers, and waits
/// sleep asynchronously. Commands are sent one at a time (`sending`); the rest is immutable.
public final class StandinKubelet: @unchecked Sendable {
    public let nodePrefix: String
    public let workDirectory: TemporaryDirectory
    let process: Process
    let input: FileHandle
    let lines: AsyncStream<String>
    let sending = Mutex(false)

    /// Starts it and waits (60 s at most) until its Nodes exist and it follows pods. `images`
    /// maps a container image to a local program (`*`: every other image).
    public static func start(
        kubeconfig: String, images: [String: String], nodesFixture: String? = nil
    ) async throws -> StandinKubelet {
        let standin = try StandinKubelet(kubeconfig: kubeconfig, images: images, nodesFixture: nodesFixture)
        guard try await standin.nextLine(timeout: .seconds(60))?.contains("standin-kubelet ready") == true else {
            await standin.stop()
            throw StandinError(message: "the stand-in kubelet did not become ready:\n\(standin.logTail)")
        }
        return standin
    }

    private init(kubeconfig: String, images: [String: String], nodesFixture: String?) throws {
        let python = try TestEnvironment.require(TestEnvironment.python)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        nodePrefix = "t\(UInt32.random(in: 0...UInt32.max))-"
        workDirectory = try TemporaryDirectory()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        let imagesJSON = String(decoding: try JSONSerialization.data(withJSONObject: images), as: UTF8.self)
        process.arguments = [
            root.appendingPathComponent("scripts/kubernetes/standin-kubelet.py").path, "--kubeconfig", kubeconfig,
            "--nodes", nodesFixture ?? root.appendingPathComponent("scripts/kubernetes/nodes-fixture.json").path,
            "--node-prefix", nodePrefix, "--images", imagesJSON, "--work-dir", workDirectory.path,
        ]
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        let log = workDirectory.path + "/standin-kubelet.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: log) ?? FileHandle.standardError
        try process.run()
        self.process = process
        self.input = stdin.fileHandleForWriting
        let (lines, continuation) = AsyncStream.makeStream(of: String.self)
        self.lines = lines
        // Blocking reads on a thread of its own, never on the cooperative pool.
        let output = stdout.fileHandleForReading
        Thread.detachNewThread {
            var line = Data()
            while true {
                let chunk = output.availableData
                if chunk.isEmpty { break }
                for byte in chunk {
                    if byte == UInt8(ascii: "\n") {
                        continuation.yield(String(decoding: line, as: UTF8.self))
                        line.removeAll()
                    } else {
                        line.append(byte)
                    }
                }
            }
            continuation.finish()
        }
    }

    /// The end of its own log (what it did), for a failing test's report.
    public var logTail: String {
        let text = (try? String(contentsOfFile: workDirectory.path + "/standin-kubelet.log", encoding: .utf8)) ?? ""
        return String(text.suffix(4000))
    }

    /// A fixture node's name as registered (`gpu-h100` → `t123-gpu-h100`).
    public func node(_ name: String) -> String { nodePrefix + name }

    /// Sends a command (`kill-node NAME`, `crash NS/POD[/CONTAINER]`) and waits for its `ok`.
    public func command(_ line: String) async throws {
        let acquired = sending.withLock { busy -> Bool in
            if busy { return false }
            busy = true
            return true
        }
        guard acquired else {
            throw StandinError(message: "\(line): another command is waiting for its answer")
        }
        defer { sending.withLock { $0 = false } }
        input.write(Data((line + "\n").utf8))
        var answer: String?
        repeat {
            answer = try await nextLine(timeout: .seconds(30))
        } while answer != nil && answer != "ok" && answer?.hasPrefix("error") != true
        guard answer == "ok" else { throw StandinError(message: "\(line): \(answer ?? "no answer")") }
    }

    /// Stops it: it kills its processes and deletes its pods and Nodes (SIGKILL after 40 s).
    public func stop() async {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(40)
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// Kills it at once if a test forgot to stop it.
    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// The next line it prints, or nil when it has ended or `timeout` passes.
    func nextLine(timeout: Duration) async throws -> String? {
        let lines = self.lines
        return try await withThrowingTaskGroup(of: String?.self) { group in
            group.addTask {
                var iterator = lines.makeAsyncIterator()
                return await iterator.next()
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    struct StandinError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}

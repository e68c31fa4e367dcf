import Foundation

/// A TEST STAND-IN for the kubelet (scripts/kubernetes/standin-kubelet.py), run for one test:
/// it registers fixture Nodes with the test control plane's API server, runs the pods the real
/// kube-scheduler binds to them as local processes on loopback addresses of their own, reports
/// their status, and removes its Nodes and pods when stopped. Sendable: its pipe is used under a
/// lock, one command and its answer at a time.
public final class StandinKubelet: @unchecked Sendable {
    private let lock = NSLock()
    public let nodePrefix: String
    let process: Process
    let input: FileHandle
    let output: FileHandle
    public let workDirectory: TemporaryDirectory

    /// `images` maps a container image to a local program (`*`: every other image).
    public init(kubeconfig: String, images: [String: String], nodesFixture: String? = nil) throws {
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
        self.output = stdout.fileHandleForReading
        guard try readLine(timeout: 60)?.contains("standin-kubelet ready") == true else {
            stop()
            throw StandinError(message: "the stand-in kubelet did not become ready")
        }
    }

    /// The end of its own log (what it did), for a failing test's report.
    public var logTail: String {
        let text = (try? String(contentsOfFile: workDirectory.path + "/standin-kubelet.log", encoding: .utf8)) ?? ""
        return String(text.suffix(4000))
    }

    /// A fixture node's name as registered (`gpu-h100` → `t123-gpu-h100`).
    public func node(_ name: String) -> String { nodePrefix + name }

    /// Sends a command (`kill-node NAME`, `crash NS/POD`) and waits for its `ok`.
    public func command(_ line: String) throws {
        lock.lock()
        defer { lock.unlock() }
        input.write(Data((line + "\n").utf8))
        let answer = try readLine(timeout: 30)
        guard answer == "ok" else { throw StandinError(message: "\(line): \(answer ?? "no answer")") }
    }

    /// Stops it: it kills its processes and deletes its pods and Nodes.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(40)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    deinit { stop() }

    func readLine(timeout: TimeInterval) throws -> String? {
        var line = Data()
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let byte = output.readData(ofLength: 1)
            if byte.isEmpty { return line.isEmpty ? nil : String(decoding: line, as: UTF8.self) }
            if byte.first == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
        return nil
    }

    struct StandinError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}

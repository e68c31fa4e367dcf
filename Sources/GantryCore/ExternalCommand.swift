import Foundation

/// Runs another program to completion (pip, tar, cmake), streaming its output to ours or
/// capturing it. For installers and fetchers only: engines are started by runtime drivers.
public enum ExternalCommand {
    public struct Failure: Error, CustomStringConvertible {
        public var command: String
        public var status: Int32
        public var output: String
        public var description: String {
            "'\(command)' failed with exit status \(status)" + (output.isEmpty ? "" : ":\n" + output)
        }
    }

    /// Runs `arguments[0]` (looked up on PATH) and returns its output. With `echo`, its output
    /// goes to this process's standard error (progress for a person to watch) instead of being
    /// captured; standard output stays free for the command's result.
    @discardableResult
    public static func run(_ arguments: [String], environment: [String: String]? = nil, echo: Bool = false) async throws
        -> String
    {
        let outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("gantry-cmd-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: outputFile) }
        let child = try ChildProcess.spawn(
            arguments, environment: environment, outputPath: echo ? nil : outputFile, outputToStandardError: echo)
        let status = await child.wait()
        let output = (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw Failure(command: arguments.joined(separator: " "), status: status, output: String(output.suffix(4000)))
        }
        return output
    }

    /// Whether a program is on PATH (or, given as a path, is executable).
    public static func exists(_ name: String) -> Bool {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) }
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return paths.contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
    }
}

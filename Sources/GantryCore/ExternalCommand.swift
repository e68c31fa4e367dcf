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

    /// Runs `arguments[0]` (looked up on PATH) and returns its standard output.
    /// With `echo`, its output goes to this process's standard error (progress for a person to
    /// watch) instead of being captured; standard output stays free for the command's result.
    @discardableResult
    public static func run(
        _ arguments: [String], in directory: String? = nil, environment: [String: String]? = nil, echo: Bool = false
    ) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
            if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
            if let environment { process.environment = environment }
            let outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("gantry-cmd-\(UUID().uuidString)")
            _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
            let handle: FileHandle?
            if !echo {
                handle = try? FileHandle(forWritingTo: outputFile)
                process.standardOutput = handle
                process.standardError = handle
            } else {
                handle = nil
                process.standardOutput = FileHandle.standardError
                process.standardError = FileHandle.standardError
            }
            process.terminationHandler = { finished in
                try? handle?.close()
                let output = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
                try? FileManager.default.removeItem(at: outputFile)
                if finished.terminationStatus == 0 {
                    continuation.resume(returning: output)
                } else {
                    continuation.resume(
                        throwing: Failure(
                            command: arguments.joined(separator: " "), status: finished.terminationStatus,
                            output: String(output.suffix(4000))))
                }
            }
            do {
                try process.run()
            } catch {
                try? FileManager.default.removeItem(at: outputFile)
                continuation.resume(throwing: error)
            }
        }
    }

    /// Whether a program is on PATH.
    public static func exists(_ name: String) -> Bool {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return paths.contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
    }
}

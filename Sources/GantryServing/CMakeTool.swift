public import Foundation
import GantryCore

/// The `cmake` that builds `llama-server`: the one on PATH, else PyPI's `cmake` wheel installed
/// once under the cache (`<cacheDirectory>/tools/cmake-<version>`) and reused from then on.
///
/// A machine with only Swift and python3 with pip can then build the engine. The wheel goes in
/// with `pip install --target` rather than into a virtual environment: Debian's python3 makes
/// virtual environments only with its separate `python3-venv` package, while `--target` needs
/// pip alone, and touches neither the system's packages nor PEP 668's marker. The wheel carries
/// the real `cmake` binary (`cmake/data/bin/cmake`), which is run directly, so no Python runs
/// during the build.
public struct CMakeTool: Sendable {
    /// The same release as the test peers' (`scripts/peers/test.txt`).
    public static let version = "3.31.10"

    public var cacheDirectory: String
    /// Whether a `cmake` on PATH is used when there is one (false: always the private one).
    public var usesPath: Bool

    public init(cacheDirectory: String, usesPath: Bool = true) {
        self.cacheDirectory = cacheDirectory
        self.usesPath = usesPath
    }

    public var directory: String { cacheDirectory + "/tools/cmake-\(Self.version)" }
    /// The binary inside the installed wheel.
    public var privateBinary: String { directory + "/cmake/data/bin/cmake" }

    /// The command to run as `cmake`, installing the private one first when there is none.
    public func resolve(progress: @Sendable (String) -> Void) async throws -> String {
        if usesPath, ExternalCommand.exists("cmake") { return "cmake" }
        if FileManager.default.isExecutableFile(atPath: privateBinary) {
            progress("using cmake \(Self.version) from \(directory)")
            return privateBinary
        }
        guard ExternalCommand.exists("python3") else {
            throw GantryError(
                .unavailable,
                "'cmake' is needed to build llama-server, and python3 (with pip) to fetch it; install either")
        }
        progress("cmake not found: installing cmake \(Self.version) from PyPI (its wheel) into \(directory)")
        // Installed beside its final place, then renamed into it: an interrupted install never
        // leaves a directory that looks complete.
        let staged = directory + ".partial-" + UUID().uuidString.prefix(8)
        defer { try? FileManager.default.removeItem(atPath: staged) }
        try FileManager.default.createDirectory(
            atPath: cacheDirectory + "/tools", withIntermediateDirectories: true)
        do {
            try await ExternalCommand.run([
                "python3", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                "--no-warn-script-location", "--target", staged, "cmake==\(Self.version)",
            ])
        } catch let failure as ExternalCommand.Failure {
            throw GantryError(
                .unavailable,
                "'cmake' is needed to build llama-server and installing PyPI's cmake \(Self.version) failed (is pip installed? Debian: apt-get install python3-pip cmake): \(failure)"
            )
        }
        let stagedBinary = staged + "/cmake/data/bin/cmake"
        let version = try await ExternalCommand.run([stagedBinary, "--version"])
        guard version.contains(Self.version) else {
            throw GantryError(.internal, "the cmake installed from PyPI reports another version: \(version)")
        }
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.moveItem(atPath: staged, toPath: directory)
        progress("installed cmake \(Self.version) at \(privateBinary)")
        return privateBinary
    }
}

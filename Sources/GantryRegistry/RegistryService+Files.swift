import Foundation
public import GantryBlobs
public import GantryCore
public import NIOCore

extension RegistryService {
    /// Streams one file of a version into the object store and records it.
    ///
    /// The body is never held in memory: the store hashes and writes it as it arrives. With an
    /// `expectedSHA256` a mismatch is a 422 and nothing is recorded or left behind. Each upload
    /// writes a fresh object key and the file's row is swapped to it in one transaction that also
    /// checks the version is not ready, so a ready version's files can never change, and a failed
    /// upload never disturbs the file it was meant to replace.
    public func upload<Body: AsyncSequence & Sendable>(
        modelName: String, version name: String, path: String, body: Body, expectedSHA256: String?,
        declaredLength: Int64?
    ) async throws -> ModelFile where Body.Element == ByteBuffer {
        try ModelFilePath.validate(path)
        let expected = try expectedSHA256.map(Self.validateDigest)
        if let declaredLength, declaredLength > maxFileBytes {
            throw GantryError(.payloadTooLarge, "the file is \(declaredLength) bytes; the limit is \(maxFileBytes)")
        }
        let (_, version) = try await version(modelName: modelName, version: name)
        try Self.requireUploadable(version)
        try await leases.acquire(versionID: version.id, path: path)
        do {
            let objectKey = version.storagePrefix + "objects/" + Identifier.make("obj")
            let limit = maxFileBytes
            let summary = try await objects.put(objectKey, body: body, limit: limit) { summary in
                if let expected, summary.sha256 != expected {
                    throw GantryError(
                        .unprocessable,
                        "the uploaded bytes have sha256 \(summary.sha256), not the expected \(expected); nothing was stored",
                        code: "digest_mismatch")
                }
            }
            let file = ModelFile(
                path: path, size: summary.size, sha256: summary.sha256, objectKey: objectKey, createdAt: Date())
            let previous: ModelFile?
            do {
                previous = try await models.recordFile(versionID: version.id, file)
            } catch {
                try? await objects.delete(objectKey)
                throw error
            }
            if let previous { try? await objects.delete(previous.objectKey) }
            await leases.release(versionID: version.id, path: path)
            logger.info(
                "file uploaded",
                metadata: ["version_id": "\(version.id)", "path": "\(path)", "bytes": "\(summary.size)"])
            return file
        } catch {
            await leases.release(versionID: version.id, path: path)
            throw error
        }
    }

    /// Paths of the version's files whose uploads are running on this server now.
    public func uploadsInProgress(of version: ModelVersion) async -> [String] {
        await leases.paths(versionID: version.id)
    }

    /// The record of one uploaded file, for `GET .../files/{path}`.
    public func file(modelName: String, version name: String, path: String) async throws -> ModelFile {
        try ModelFilePath.validate(path)
        let (_, version) = try await version(modelName: modelName, version: name)
        guard let file = try await models.files(versionID: version.id).first(where: { $0.path == path }) else {
            throw GantryError.notFound("version '\(name)' has no file '\(path)'", code: "file_not_found")
        }
        return file
    }

    /// Runs `body` with the file's bytes streamed from the object store.
    public func withBytes<Result: Sendable>(
        of file: ModelFile, range: Range<Int64>? = nil, _ body: (ObjectChunks) async throws -> Result
    ) async throws -> Result {
        try await objects.withChunks(of: file.objectKey, range: range, body)
    }

    public func deleteFile(modelName: String, version name: String, path: String) async throws {
        try ModelFilePath.validate(path)
        let (_, version) = try await version(modelName: modelName, version: name)
        try Self.requireUploadable(version)
        guard let removed = try await models.deleteFile(versionID: version.id, path: path) else {
            throw GantryError.notFound("version '\(name)' has no file '\(path)'", code: "file_not_found")
        }
        try? await objects.delete(removed.objectKey)
    }

    /// Marks an uploaded version ready after checking that every recorded file is in the object
    /// store at its recorded size. From then on the version is immutable.
    public func complete(modelName: String, version name: String) async throws -> ModelVersion {
        var (_, version) = try await version(modelName: modelName, version: name)
        if version.status == .ready { return version }
        try Self.requireUploadable(version)
        guard await leases.paths(versionID: version.id).isEmpty else {
            throw GantryError.conflict("files of version '\(name)' are still being uploaded; complete it when they finish")
        }
        let files = try await models.files(versionID: version.id)
        guard !files.isEmpty else {
            throw GantryError.conflict("version '\(name)' has no files yet; upload them before completing it")
        }
        if version.format == "gguf", !files.contains(where: { $0.path.hasSuffix(".gguf") }) {
            throw GantryError.invalid("a gguf version needs at least one .gguf file", param: "format")
        }
        var missing: [String] = []
        for file in files {
            let info = try await objects.info(file.objectKey)
            if info?.size != file.size { missing.append(file.path) }
        }
        let expectedStatus = version.status
        version.updatedAt = Date()
        if missing.isEmpty {
            version.status = .ready
            version.statusMessage = ""
        } else {
            version.status = .failed
            version.statusMessage =
                "missing or changed in the object store: \(missing.joined(separator: ", ")); upload them again"
        }
        guard try await models.updateVersion(version, expectedStatus: expectedStatus) else {
            throw GantryError.conflict("version '\(name)' changed while being completed; read it again")
        }
        if !missing.isEmpty { throw GantryError.conflict("version '\(name)' failed: \(version.statusMessage)") }
        logger.info("version ready", metadata: ["version_id": "\(version.id)", "files": "\(files.count)"])
        return version
    }

    static func requireUploadable(_ version: ModelVersion) throws {
        guard version.artifactURI == nil else {
            throw GantryError.conflict(
                "version '\(version.version)' references \(version.artifactURI ?? ""); it has no uploaded files")
        }
        guard version.status != .ready else {
            throw GantryError.conflict("version '\(version.version)' is ready and immutable; register a new version")
        }
    }

    /// 64 hex digits, any case; returned in lower case.
    static func validateDigest(_ digest: String) throws -> String {
        let lower = digest.lowercased()
        guard lower.count == 64, lower.allSatisfy({ $0.isHexDigit }) else {
            throw GantryError.invalid("the expected sha256 must be 64 hexadecimal digits", param: "x-gantry-sha256")
        }
        return lower
    }
}

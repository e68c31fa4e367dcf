import Crypto
import Foundation
import GantryCore
public import NIOCore
import NIOFileSystem

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

extension LocalDirectoryObjectStore {
    public func put<Body: AsyncSequence & Sendable>(
        _ key: String, body: Body, limit: Int64?, approve: @Sendable (ObjectSummary) throws -> Void
    ) async throws -> ObjectSummary where Body.Element == ByteBuffer {
        let destination = try path(for: key)
        try await createDirectory(staging)
        let temporary = staging.appending(UUID().uuidString)
        do {
            let (size, sha256) = try await write(body, to: temporary, limit: limit)
            let summary = ObjectSummary(key: key, size: size, sha256: sha256)
            try approve(summary)
            try await moveIntoPlace(temporary, destination, key: key)
            return summary
        } catch {
            // The handle discards an unfinished file itself; this removes one that was complete
            // but refused (approve threw) or could not be renamed, even in a cancelled task.
            await uncancelled { _ = try? await FileSystem.shared.removeItem(at: temporary, recursively: false) }
            throw error
        }
    }

    /// Streams `body` into a new file at `path`, hashing and counting as it goes.
    func write<Body: AsyncSequence>(
        _ body: Body, to path: FilePath, limit: Int64?
    ) async throws -> (size: Int64, sha256: String) where Body.Element == ByteBuffer {
        try await FileSystem.shared.withFileHandle(forWritingAt: path, options: .newFile(replaceExisting: false)) { handle in
            var writer = handle.bufferedWriter()
            var hasher = SHA256()
            var size: Int64 = 0
            for try await chunk in body {
                size += Int64(chunk.readableBytes)
                if let limit, size > limit {
                    throw GantryError(.payloadTooLarge, "object is larger than the limit of \(limit) bytes")
                }
                chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
                try await writer.write(contentsOf: chunk)
            }
            try await writer.flush()
            // The rename must not publish a file whose data a crash could still lose.
            try await handle.synchronize()
            return (size, Hex.encode(hasher.finalize()))
        }
    }

    /// Renames the finished file over `destination`, creating its parent directories.
    ///
    /// rename(2) replaces an existing object atomically, which NIOFileSystem's `replaceItem`
    /// (remove, then move) does not; it is a single metadata call, cheap enough to make here.
    func moveIntoPlace(_ temporary: FilePath, _ destination: FilePath, key: String) async throws {
        // A concurrent delete may prune the parent between mkdir and rename: retry a few times.
        for attempt in 1...3 {
            try await createDirectory(destination.removingLastComponent())
            let failure = temporary.withPlatformString { from in
                destination.withPlatformString { to in rename(from, to) == 0 ? 0 : errno }
            }
            if failure == 0 { return }
            if failure == ENOENT && attempt < 3 { continue }
            if failure == EISDIR || failure == ENOTDIR || failure == ENOTEMPTY || failure == EEXIST {
                throw GantryError.conflict("object key '\(key)' collides with a directory of other objects")
            }
            throw GantryError(.internal, "local object store: cannot store object '\(key)': \(Errno(rawValue: failure))")
        }
    }

    func createDirectory(_ directory: FilePath) async throws {
        do {
            try await FileSystem.shared.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch let error as FileSystemError where error.code == .fileAlreadyExists {
            throw GantryError.conflict("cannot create directory \(directory): a file is in the way")
        } catch {
            throw Self.wrap(error, "cannot create directory \(directory)")
        }
    }
}

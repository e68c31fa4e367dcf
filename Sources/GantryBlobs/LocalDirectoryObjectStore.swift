public import Foundation
import GantryCore
public import NIOCore
import NIOFileSystem

/// Objects as files under a root directory: the default store of a single-node Gantry.
///
/// A key is a relative path under the root. Writes go to a hidden staging directory inside the
/// root (`.staging`, so on the same file system) and are renamed into place once complete and
/// approved, so readers see either the old object or the whole new one, never a partial file.
public struct LocalDirectoryObjectStore: ObjectStore {
    /// Name of the staging directory under the root; keys may not start with it.
    static let stagingName = ".staging"
    /// Bounded read size: large files are streamed in chunks of this size.
    static let readChunk = ByteCount.kibibytes(256)

    let root: FilePath
    let staging: FilePath

    /// The absolute path of the root directory.
    public var rootPath: String { root.string }

    public var displayName: String { "local directory \(root.string)" }

    /// A store rooted at `root`, a `file:` URL. The directory is created on the first write.
    public init(root: URL) {
        self.init(path: root.path)
    }

    /// A store rooted at the directory `path`; a relative path is taken from the current
    /// directory now, so a later change of directory does not move the store.
    public init(path: String) {
        var root = FilePath(path)
        if root.isRelative {
            root = FilePath(FileManager.default.currentDirectoryPath).pushing(root)
        }
        self.root = root.lexicallyNormalized()
        self.staging = self.root.appending(Self.stagingName)
    }

    /// Deletes staging files left behind by a process that died while writing: those not written
    /// to for `olderThan`. Files written more recently belong to puts in progress, perhaps of
    /// another process sharing the directory (control replicas on one host), and stay; a put
    /// writes as its body arrives, and a body that stalls is cut off by the server's body timeout
    /// long before an hour.
    public func removeLeftovers(olderThan age: Duration) async throws {
        let cutoff = Date().addingTimeInterval(-Double(age.components.seconds))
        guard FileManager.default.fileExists(atPath: staging.string) else { return }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: staging.string)
        } catch {
            throw Self.wrap(error, "cannot list staging files in \(staging)")
        }
        for name in names {
            let path = staging.appending(name).string
            guard let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                modified < cutoff
            else { continue }
            do {
                try FileManager.default.removeItem(atPath: path)
            } catch  where !FileManager.default.fileExists(atPath: path) {
                continue  // another process removed it first
            } catch {
                throw Self.wrap(error, "cannot remove staging file \(path)")
            }
        }
    }

    public func read(_ key: String, into consume: @Sendable (ByteBuffer) async throws -> Void) async throws {
        try await read(key, range: 0..<Int64.max, into: consume)
    }

    public func read(_ key: String, range: Range<Int64>, into consume: @Sendable (ByteBuffer) async throws -> Void)
        async throws
    {
        let path = try self.path(for: key)
        // The scoped handle is closed even when this task is cancelled (a consumer that went
        // away cancels the read); closing by hand would fail under cancellation and leave the
        // handle to trap in its deinit.
        do {
            try await FileSystem.shared.withFileHandle(forReadingAt: path) { handle in
                // A directory opens for reading on Linux; only a regular file is an object.
                guard try await handle.info().type == .regular else { throw GantryError.notFound("no object '\(key)'") }
                for try await chunk in handle.readChunks(in: range, chunkLength: Self.readChunk) {
                    try await consume(chunk)
                }
            }
        } catch let error as FileSystemError where Self.isMissing(error) {
            throw GantryError.notFound("no object '\(key)'")
        } catch let error as FileSystemError {
            throw Self.wrap(error, "cannot read object '\(key)'")
        }
    }

    public func info(_ key: String) async throws -> ObjectInfo? {
        let path = try self.path(for: key)
        guard let info = try await fileInfo(path, ofLink: false), info.type == .regular else { return nil }
        return ObjectInfo(key: key, size: info.size)
    }

    public func delete(_ key: String) async throws {
        let path = try self.path(for: key)
        guard let info = try await fileInfo(path, ofLink: true), info.type != .directory else { return }
        do {
            try await FileSystem.shared.removeItem(at: path, recursively: false)
        } catch {
            throw Self.wrap(error, "cannot delete object '\(key)'")
        }
        await pruneEmptyDirectories(above: path)
    }

    /// Removes the now-empty directories between a deleted file and the root, so deleted
    /// versions leave no directory skeletons behind. Stops at the first one that is not empty.
    func pruneEmptyDirectories(above path: FilePath) async {
        var directory = path.removingLastComponent()
        while directory != root, directory.starts(with: root) {
            // A put that just created this directory retries when its rename finds it gone.
            guard (try? await FileSystem.shared.removeItem(at: directory, recursively: false)) != nil else { return }
            directory = directory.removingLastComponent()
        }
    }

    /// What is at `path`, or nil when nothing is, including when a parent is a file (the key
    /// lies below another object).
    func fileInfo(_ path: FilePath, ofLink: Bool) async throws -> FileInfo? {
        do {
            return try await FileSystem.shared.info(forFileAt: path, infoAboutSymbolicLink: ofLink)
        } catch let error as FileSystemError where Self.isMissing(error) {
            return nil
        } catch {
            throw Self.wrap(error, "cannot look at \(path)")
        }
    }

    /// Not found, or not found because a parent is a file (ENOTDIR).
    static func isMissing(_ error: FileSystemError) -> Bool {
        error.code == .notFound || (error.cause as? FileSystemError.SystemCallError)?.errno == .notDirectory
    }

    /// The file of `key`, after checking that the key cannot leave the root or reach the staging area.
    func path(for key: String) throws -> FilePath {
        try ObjectKey.validate(key)
        if key == Self.stagingName || key.hasPrefix(Self.stagingName + "/") {
            throw GantryError.invalid("object key '\(key)' uses a reserved name", param: "key")
        }
        return root.appending(key)
    }

    /// File-system failures as `GantryError`s, so HTTP surfaces can render them; the message
    /// names the path, which is no secret.
    static func wrap(_ error: any Error, _ what: String) -> any Error {
        if error is GantryError || error is CancellationError { return error }
        return GantryError(.internal, "local object store: \(what): \(error)")
    }
}

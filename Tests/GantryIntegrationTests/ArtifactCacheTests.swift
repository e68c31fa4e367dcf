import Foundation
import GantryBlobs
import GantryCore
import GantryRegistry
import GantryStore
import GantryTestSupport
import Logging
import Testing

/// The node-side artifact cache: download and verify, reuse, evict least recently used, refuse
/// bytes that do not match the registry.
@Suite("Artifact cache")
struct ArtifactCacheTests {
    /// A migrated SQLite store, an object store and a registry, with `count` ready gguf versions
    /// of `size` random bytes each.
    struct Fixture {
        let directory: TemporaryDirectory
        let store: SQLStore
        let objects: LocalDirectoryObjectStore
        let versions: [ModelVersion]
        let contents: [[UInt8]]

        static func make(versions count: Int, size: Int) async throws -> Fixture {
            let directory = try TemporaryDirectory()
            let store = try await SQLStore.open(.sqlite(path: directory.path + "/a.sqlite"), logger: Logger(label: "test"))
            try await store.migrate(logger: Logger(label: "test"))
            let objects = LocalDirectoryObjectStore(path: directory.path + "/blobs")
            let models = store.repositories.models
            let now = Date()
            try await models.createModel(Model(id: "mdl_1", name: "m", description: "", task: .chat, createdAt: now))
            var versions: [ModelVersion] = []
            var contents: [[UInt8]] = []
            for index in 1...count {
                var version = ModelVersion(
                    id: "ver_\(index)", modelID: "mdl_1", version: "\(index)", format: "gguf", contextLimit: 64,
                    artifactURI: nil, status: .pending, createdAt: now)
                try await models.createVersion(version)
                let bytes = TestBytes.random(size, seed: UInt64(index))
                let key = version.storagePrefix + "objects/1"
                let summary = try await objects.put(key, body: TestBody(bytes: bytes), limit: nil) { _ in }
                try await models.recordFile(
                    versionID: version.id,
                    ModelFile(path: "model.gguf", size: summary.size, sha256: summary.sha256, objectKey: key, createdAt: now))
                version.status = .ready
                #expect(try await models.updateVersion(version, expectedStatus: .uploading))
                versions.append(version)
                contents.append(bytes)
            }
            return Fixture(directory: directory, store: store, objects: objects, versions: versions, contents: contents)
        }

        func cache(maxBytes: Int64) -> ArtifactCache {
            ArtifactCache(
                root: URL(fileURLWithPath: directory.path + "/cache"), objects: objects, models: store.repositories.models,
                maxBytes: maxBytes, logger: Logger(label: "test"))
        }
    }

    @Test("a version is downloaded once, verified, and its gguf file handed to the engine")
    func downloadAndReuse() async throws {
        let fixture = try await Fixture.make(versions: 1, size: 700_000)
        let cache = fixture.cache(maxBytes: 1 << 30)
        let path = try await cache.localPath(for: fixture.versions[0])
        #expect(path.hasSuffix("/ver_1/model.gguf"))
        #expect(
            TestBytes.sha256(Array(try Data(contentsOf: URL(fileURLWithPath: path)))) == TestBytes.sha256(fixture.contents[0]))

        // Reused: removing the object store's copy does not matter any more.
        try await fixture.objects.delete(fixture.versions[0].storagePrefix + "objects/1")
        #expect(try await cache.localPath(for: fixture.versions[0]) == path)
        try await fixture.store.close()
    }

    @Test("bytes that differ from the registry's digest are refused and not cached")
    func corruptObjectIsRefused() async throws {
        let fixture = try await Fixture.make(versions: 1, size: 10_000)
        // Someone overwrites the object behind the registry's back.
        _ = try await fixture.objects.put(
            fixture.versions[0].storagePrefix + "objects/1", body: TestBody(bytes: TestBytes.random(10_000, seed: 99)),
            limit: nil
        ) { _ in }
        let cache = fixture.cache(maxBytes: 1 << 30)
        await #expect(throws: GantryError.self) { try await cache.localPath(for: fixture.versions[0]) }
        let cached = fixture.directory.path + "/cache/ver_1/model.gguf"
        #expect(!FileManager.default.fileExists(atPath: cached), "no unverified file under the real name")
        try await fixture.store.close()
    }

    @Test("past the size limit the least recently used version is evicted, never the one in use")
    func eviction() async throws {
        let fixture = try await Fixture.make(versions: 3, size: 400_000)
        // Room for two versions.
        let cache = fixture.cache(maxBytes: 900_000)
        let root = fixture.directory.path + "/cache/"
        // The cache orders versions by the modification time it gives each one's marker file when
        // used: the uses are 20 ms apart so that their order is unambiguous.
        _ = try await cache.localPath(for: fixture.versions[0])
        try await Task.sleep(for: .milliseconds(20))
        _ = try await cache.localPath(for: fixture.versions[1])
        try await Task.sleep(for: .milliseconds(20))
        _ = try await cache.localPath(for: fixture.versions[0])  // version 1 is now the most recent
        try await Task.sleep(for: .milliseconds(20))
        _ = try await cache.localPath(for: fixture.versions[2])
        #expect(FileManager.default.fileExists(atPath: root + "ver_1/model.gguf"))
        #expect(!FileManager.default.fileExists(atPath: root + "ver_2"), "the least recently used version went")
        #expect(FileManager.default.fileExists(atPath: root + "ver_3/model.gguf"))

        // A limit below one version still keeps the version being started.
        let tiny = fixture.cache(maxBytes: 1)
        let kept = try await tiny.localPath(for: fixture.versions[1])
        #expect(FileManager.default.fileExists(atPath: kept))
        #expect(
            !FileManager.default.fileExists(atPath: root + "ver_1") && !FileManager.default.fileExists(atPath: root + "ver_3"))
        try await fixture.store.close()
    }
}

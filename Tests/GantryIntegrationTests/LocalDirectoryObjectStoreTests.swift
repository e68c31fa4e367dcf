import Foundation
import GantryBlobs
import GantryCore
import GantryTestSupport
import Testing

/// What only the local directory store has: its staging area and its directories.
@Suite("Local directory object store")
struct LocalDirectoryObjectStoreTests {
    @Test("staging files of a crashed process are hidden from list and removed at start-up; recent ones stay")
    func leftovers() async throws {
        let directory = try TemporaryDirectory()
        let store = LocalDirectoryObjectStore(root: URL(fileURLWithPath: directory.path))
        try await store.put("a/kept", Array("kept".utf8))
        let staging = directory.path + "/.staging"
        #expect(FileManager.default.fileExists(atPath: staging))
        #expect(FileManager.default.createFile(atPath: staging + "/crashed-upload", contents: Data("partial".utf8)))

        // Not written to for two hours: a crashed put's. Written just now: a put in progress,
        // perhaps of another process sharing the directory.
        try FileManager.default.setAttributes(
            [.modificationDate: Date().addingTimeInterval(-7200)], ofItemAtPath: staging + "/crashed-upload")
        #expect(FileManager.default.createFile(atPath: staging + "/in-progress", contents: Data("part".utf8)))

        #expect(try await store.list(prefix: "").map(\.key) == ["a/kept"])
        try await store.removeLeftovers(olderThan: .seconds(3600))
        #expect(!FileManager.default.fileExists(atPath: staging + "/crashed-upload"))
        #expect(FileManager.default.fileExists(atPath: staging + "/in-progress"))
        // Removing leftovers twice, or with nothing left over, is fine; puts work afterwards.
        try await store.removeLeftovers(olderThan: .zero)
        #expect(!FileManager.default.fileExists(atPath: staging + "/in-progress"))
        try await store.removeLeftovers(olderThan: .seconds(3600))
        try await store.put("a/after", Array("after".utf8))
        #expect(try await store.list(prefix: "").map(\.key) == ["a/after", "a/kept"])
        #expect(try await store.readAll("a/kept").bytes == Array("kept".utf8))
    }

    @Test("the staging directory cannot be reached through a key")
    func stagingIsReserved() async throws {
        let directory = try TemporaryDirectory()
        let store = LocalDirectoryObjectStore(path: directory.path)
        for key in [".staging", ".staging/x"] {
            let error = await #expect(throws: GantryError.self) { _ = try await store.put(key, [1]) }
            #expect(error?.kind == .invalidRequest)
        }
        // Other hidden names are ordinary keys.
        try await store.put(".config/x", [1])
        #expect(try await store.list(prefix: ".").map(\.key) == [".config/x"])
    }

    @Test("objects are plain files under the root; deleting prunes empty directories")
    func layout() async throws {
        let directory = try TemporaryDirectory()
        let store = LocalDirectoryObjectStore(path: directory.path)
        try await store.put("m/1/weights.bin", Array("w".utf8))
        try await store.put("m/2/weights.bin", Array("v".utf8))
        #expect(FileManager.default.contents(atPath: directory.path + "/m/1/weights.bin") == Data("w".utf8))
        try await store.delete("m/1/weights.bin")
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/m/1"))
        #expect(FileManager.default.fileExists(atPath: directory.path + "/m/2/weights.bin"))
        try await store.delete("m/2/weights.bin")
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/m"))
        #expect(FileManager.default.fileExists(atPath: directory.path))
        #expect(store.displayName == "local directory \(directory.path)")
    }

    @Test("a key whose path is taken by a directory of other objects is a conflict")
    func directoryInTheWay() async throws {
        let directory = try TemporaryDirectory()
        let store = LocalDirectoryObjectStore(path: directory.path)
        try await store.put("x/y", [1])
        let error = await #expect(throws: GantryError.self) { _ = try await store.put("x", [2]) }
        #expect(error?.kind == .conflict)
        let below = await #expect(throws: GantryError.self) { _ = try await store.put("x/y/z", [3]) }
        #expect(below?.kind == .conflict)
        #expect(try await store.list(prefix: "").map(\.key) == ["x/y"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path + "/.staging").isEmpty)
        // Below an object there is nothing: no object, no error but notFound.
        #expect(try await store.info("x/y/z") == nil)
        await #expect(throws: GantryError.notFound("no object 'x/y/z'")) { try await store.read("x/y/z") { _ in } }
        try await store.delete("x/y/z")
        #expect(try await store.list(prefix: "x/y/").isEmpty)
        #expect(try await store.list(prefix: "x/y/z/").isEmpty)
        #expect(try await store.info("x/y") == ObjectInfo(key: "x/y", size: 1))
    }
}

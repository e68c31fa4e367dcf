import Foundation
import GantryCore
import GantryTestSupport
import NIOCore
import Synchronization
import Testing

@testable import GantryBlobs

/// One suite, run against every object store: the local directory and S3 (moto, started by
/// scripts/test.sh). Each must keep the promises of `ObjectStore` the same way.
@Suite("Object store conformance", .tags(.moto))
struct ObjectStoreConformanceTests {
    enum Backend: String, CaseIterable, CustomTestStringConvertible {
        case local
        case s3
        var testDescription: String { rawValue }
    }

    /// What a test may look at besides the store: leftovers of failed puts.
    struct Fixture {
        var store: any ObjectStore
        /// Staging files (local) or open multipart uploads (S3).
        var leftovers: @Sendable () async throws -> [String]
    }

    /// One bucket per test run; each test works under its own key prefix in it.
    static let bucket = "gantry-test-\(UUID().uuidString.lowercased().prefix(13))"
    static let partSize = S3Configuration.minimumPartSize

    static func s3Configuration(bucket: String = bucket, prefix: String) throws -> S3Configuration {
        S3Configuration(
            region: "us-east-1", bucket: bucket,
            credentials: S3Credentials(
                accessKeyID: try TestEnvironment.require(TestEnvironment.s3AccessKeyID),
                secretAccessKey: try TestEnvironment.require(TestEnvironment.s3SecretAccessKey)),
            endpoint: URL(string: try TestEnvironment.require(TestEnvironment.s3Endpoint)), keyPrefix: prefix,
            partSize: partSize)
    }

    func withStore(_ backend: Backend, _ body: (Fixture) async throws -> Void) async throws {
        switch backend {
        case .local:
            let directory = try TemporaryDirectory()
            let store = LocalDirectoryObjectStore(path: directory.path + "/objects")
            let staging = directory.path + "/objects/.staging"
            try await body(
                Fixture(store: store) {
                    (try? FileManager.default.contentsOfDirectory(atPath: staging)) ?? []
                })
            // The directory is removed when released: not before the test is done.
            withExtendedLifetime(directory) {}
        case .s3:
            let store = try S3ObjectStore(configuration: Self.s3Configuration(prefix: "t-\(UUID().uuidString)/"))
            do {
                try await store.createBucketIfMissing()
                try await body(
                    Fixture(store: store) {
                        try await store.listMultipartUploads(prefix: "").map { "\($0.key) \($0.uploadID)" }
                    })
            } catch {
                try? await store.shutdown()
                throw error
            }
            try await store.shutdown()
        }
    }

    struct Refused: Error {}

    @Test("ranged reads: a middle, an open end, past the end, and a missing object", arguments: Backend.allCases)
    func rangedReads(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let store = fixture.store
            let bytes = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            _ = try await store.put("r/blob", body: TestBody(bytes: bytes), limit: nil) { _ in }
            #expect(try await store.readRange("r/blob", 10..<20) == Array(bytes[10..<20]))
            #expect(try await store.readRange("r/blob", 99_990..<Int64.max) == Array(bytes[99_990...]))
            #expect(try await store.readRange("r/blob", 0..<Int64.max) == bytes)
            #expect(try await store.readRange("r/blob", 99_995..<200_000) == Array(bytes[99_995...]))
            #expect(try await store.readRange("r/blob", 100_000..<Int64.max).isEmpty)
            await #expect(throws: GantryError.self) { _ = try await store.readRange("r/missing", 0..<10) }
        }
    }

    @Test("a small object round-trips with its size and SHA-256", arguments: Backend.allCases)
    func smallRoundTrip(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let store = fixture.store
            let approved = Mutex<ObjectSummary?>(nil)
            let summary = try await store.put(
                "models/m/1/weights.bin", body: TestBody(bytes: Array("hello world".utf8)), limit: 1024
            ) { summary in approved.withLock { $0 = summary } }
            let expected = ObjectSummary(
                key: "models/m/1/weights.bin", size: 11,
                sha256: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
            #expect(summary == expected)
            #expect(approved.withLock { $0 } == expected)
            #expect(try await store.info("models/m/1/weights.bin") == ObjectInfo(key: "models/m/1/weights.bin", size: 11))
            #expect(try await store.readAll("models/m/1/weights.bin").bytes == Array("hello world".utf8))

            // An empty object is an object too.
            let empty = try await store.put("empty", [])
            #expect(empty.size == 0 && empty.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            #expect(try await store.info("empty")?.size == 0)
            #expect(try await store.readAll("empty").bytes.isEmpty)
        }
    }

    @Test("a reader that stops early or throws ends the read cleanly; the store stays usable", arguments: Backend.allCases)
    func abandonedReads(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let bytes = TestBytes.random(3 << 20, seed: 5)
            _ = try await fixture.store.put("read/model.gguf", bytes)
            // Return after the first chunk: the read is stopped (and its task cancelled).
            let first = try await fixture.store.withChunks(of: "read/model.gguf") { chunks in
                var iterator = chunks.makeAsyncIterator()
                return try await iterator.next()?.readableBytes ?? 0
            }
            #expect(first > 0)
            struct Stop: Error {}
            await #expect(throws: Stop.self) {
                try await fixture.store.withChunks(of: "read/model.gguf") { chunks in
                    for try await _ in chunks { throw Stop() }
                }
            }
            for _ in 0..<20 {
                _ = try await fixture.store.withChunks(of: "read/model.gguf") { chunks in
                    var iterator = chunks.makeAsyncIterator()
                    return try await iterator.next()
                }
            }
            let whole = try await fixture.store.withChunks(of: "read/model.gguf") { chunks in
                var all: [UInt8] = []
                for try await chunk in chunks { all += chunk.readableBytesView }
                return all
            }
            #expect(TestBytes.sha256(whole) == TestBytes.sha256(bytes))
            await #expect(throws: GantryError.self) {
                try await fixture.store.withChunks(of: "read/missing") { chunks in
                    for try await _ in chunks {}
                }
            }
        }
    }

    @Test("a multi-part object round-trips byte for byte, read in bounded chunks", arguments: Backend.allCases)
    func multiPartRoundTrip(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let bytes = TestBytes.random(12 << 20)
            let summary = try await fixture.store.put("big/model.gguf", bytes)
            #expect(summary == ObjectSummary(key: "big/model.gguf", size: 12 << 20, sha256: TestBytes.sha256(bytes)))
            #expect(try await fixture.store.info("big/model.gguf")?.size == 12 << 20)
            let read = try await fixture.store.readAll("big/model.gguf")
            #expect(read.bytes.count == bytes.count)
            #expect(
                TestBytes.sha256(read.bytes) == TestBytes.sha256(bytes),
                "digests, not arrays: a failed comparison of big arrays is diffed for minutes")
            #expect(read.chunks > 1 && read.largestChunk <= 1 << 20)
            // A body of exactly one part, and one of a part and a byte, are boundary cases for S3.
            for size in [Self.partSize, Self.partSize + 1] {
                let exact = TestBytes.random(size, seed: UInt64(size))
                #expect(try await fixture.store.put("big/\(size)", exact).sha256 == TestBytes.sha256(exact))
                #expect(TestBytes.sha256(try await fixture.store.readAll("big/\(size)").bytes) == TestBytes.sha256(exact))
            }
            #expect(try await fixture.leftovers().isEmpty)
        }
    }

    @Test("when approve throws, nothing is stored and an earlier object stays", arguments: Backend.allCases)
    func approveRefuses(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let store = fixture.store
            try await store.put("v/file", Array("old".utf8))
            // Larger than a part, so S3 has an upload open when approve refuses.
            let body = TestBody(bytes: TestBytes.random(Self.partSize + 4096))
            await #expect(throws: Refused.self) {
                try await store.put("v/file", body: body, limit: nil) { _ in throw Refused() }
            }
            await #expect(throws: Refused.self) {
                try await store.put("v/other", body: body, limit: nil) { _ in throw Refused() }
            }
            #expect(try await store.readAll("v/file").bytes == Array("old".utf8))
            #expect(try await store.info("v/other") == nil)
            #expect(try await store.list(prefix: "v/").map(\.key) == ["v/file"])
            #expect(try await fixture.leftovers().isEmpty)
        }
    }

    @Test("a body over the limit is refused as payloadTooLarge and leaves nothing", arguments: Backend.allCases)
    func limitExceeded(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let store = fixture.store
            let bytes = TestBytes.random(Self.partSize * 2)
            let error = await #expect(throws: GantryError.self) {
                _ = try await store.put("limited", bytes, limit: Int64(Self.partSize + 1))
            }
            #expect(error?.kind == .payloadTooLarge)
            #expect(try await store.info("limited") == nil)
            #expect(try await fixture.leftovers().isEmpty)
            // Exactly at the limit is allowed.
            #expect(try await store.put("limited", Array(bytes[..<100]), limit: 100).size == 100)
        }
    }

    @Test("a body that fails half way leaves no object, staging file or open upload", arguments: Backend.allCases)
    func bodyFailsHalfWay(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let store = fixture.store
            try await store.put("broken", Array("before".utf8))
            // After two full parts, so S3 has uploaded parts to abort.
            let body = TestBody(bytes: TestBytes.random(12 << 20), failAfter: 11 << 20)
            await #expect(throws: TestBody.Failed.self) {
                try await store.put("broken", body: body, limit: nil) { _ in }
            }
            await #expect(throws: TestBody.Failed.self) {
                try await store.put("never", body: body, limit: nil) { _ in }
            }
            #expect(try await store.readAll("broken").bytes == Array("before".utf8))
            #expect(try await store.info("never") == nil)
            #expect(try await fixture.leftovers().isEmpty)
        }
    }

    @Test("a put whose task is cancelled mid-body leaves no object, staging file or open upload", arguments: Backend.allCases)
    func cancelledPut(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let store = fixture.store
            let (stalls, stalled) = AsyncStream.makeStream(of: Void.self)
            // Past two parts, so S3 has parts uploaded (or uploading) when the cancel comes.
            let body = TestBody(bytes: TestBytes.random(12 << 20), stallAfter: 11 << 20) { stalled.yield() }
            let put = Task { try await store.put("cancelled", body: body, limit: nil) { _ in } }
            for await _ in stalls { break }
            put.cancel()
            let result = await put.result
            #expect(throws: CancellationError.self) { try result.get() }
            #expect(try await store.info("cancelled") == nil)
            #expect(try await fixture.leftovers().isEmpty)
        }
    }

    @Test("list returns the objects under a prefix, sorted by key", arguments: Backend.allCases)
    func listByPrefix(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let store = fixture.store
            for key in ["a/2", "a/1", "a/10/x", "b/1", "ab", "a-c"] {
                try await store.put(key, Array(key.utf8))
            }
            #expect(
                try await store.list(prefix: "a/") == [
                    ObjectInfo(key: "a/1", size: 3), ObjectInfo(key: "a/10/x", size: 6), ObjectInfo(key: "a/2", size: 3),
                ])
            #expect(try await store.list(prefix: "a").map(\.key) == ["a-c", "a/1", "a/10/x", "a/2", "ab"])
            #expect(try await store.list(prefix: "a/1").map(\.key) == ["a/1", "a/10/x"])
            #expect(try await store.list(prefix: "").map(\.key) == ["a-c", "a/1", "a/10/x", "a/2", "ab", "b/1"])
            #expect(try await store.list(prefix: "zzz").isEmpty)
            #expect(try await store.list(prefix: "../").isEmpty)
            try await store.deleteAll(prefix: "a/")
            #expect(try await store.list(prefix: "").map(\.key) == ["a-c", "ab", "b/1"])
        }
    }

    @Test("delete removes an object and is idempotent", arguments: Backend.allCases)
    func deleteIsIdempotent(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let store = fixture.store
            try await store.put("d/e/f", Array("x".utf8))
            try await store.put("d/keep", Array("y".utf8))
            try await store.delete("d/e/f")
            #expect(try await store.info("d/e/f") == nil)
            try await store.delete("d/e/f")
            try await store.delete("never/was")
            #expect(try await store.list(prefix: "d/").map(\.key) == ["d/keep"])
            // A directory-like prefix is no object, and deleting it deletes nothing.
            try await store.delete("d")
            #expect(try await store.readAll("d/keep").bytes == Array("y".utf8))
        }
    }

    @Test("reading a missing key is notFound; info is nil", arguments: Backend.allCases)
    func missingKey(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let error = await #expect(throws: GantryError.self) {
                try await fixture.store.read("no/such/key") { _ in Issue.record("no bytes expected") }
            }
            #expect(error?.kind == .notFound)
            #expect(try await fixture.store.info("no/such/key") == nil)
            // A key that names a directory of other objects is no object either.
            try await fixture.store.put("no/such/key/below", [1])
            #expect(try await fixture.store.info("no/such") == nil)
            await #expect(throws: GantryError.notFound("no object 'no/such'")) {
                try await fixture.store.read("no/such") { _ in }
            }
        }
    }

    @Test("keys with spaces, plus signs and Unicode round-trip", arguments: Backend.allCases)
    func unusualKeys(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let keys = [
                "dir with space/file + plus.bin", "unicode/ünïcødé/模型.gguf", "a+b=c&d;e,f@g.txt", "percent%20literal",
                "tilde~and'quote\"s", "emoji/🚀.bin",
            ]
            for (index, key) in keys.enumerated() {
                try await fixture.store.put(key, Array(key.utf8) + [UInt8(index)])
            }
            for (index, key) in keys.enumerated() {
                #expect(try await fixture.store.readAll(key).bytes == Array(key.utf8) + [UInt8(index)], "\(key)")
                #expect(try await fixture.store.info(key)?.size == Int64(key.utf8.count + 1), "\(key)")
            }
            #expect(try await fixture.store.list(prefix: "").map(\.key) == keys.sorted())
            #expect(try await fixture.store.list(prefix: "unicode/ünï").map(\.key) == ["unicode/ünïcødé/模型.gguf"])
            for key in keys { try await fixture.store.delete(key) }
            #expect(try await fixture.store.list(prefix: "").isEmpty)
        }
    }

    @Test("two concurrent puts of one key leave exactly one of the bodies, whole", arguments: Backend.allCases)
    func concurrentPuts(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            let store = fixture.store
            let first = TestBytes.random(Self.partSize + 300_000, seed: 1)
            let second = TestBytes.random(Self.partSize + 200_000, seed: 2)
            async let a = store.put("race", first)
            async let b = store.put("race", second)
            let (summaryA, summaryB) = try await (a, b)
            #expect(summaryA.sha256 == TestBytes.sha256(first) && summaryB.sha256 == TestBytes.sha256(second))
            let stored = try await store.readAll("race").bytes
            #expect(stored == first || stored == second)
            #expect(try await store.list(prefix: "").map(\.key) == ["race"])
            #expect(try await fixture.leftovers().isEmpty)
        }
    }

    @Test("keys that could leave the root are refused", arguments: Backend.allCases)
    func invalidKeys(backend: Backend) async throws {
        try await withStore(backend) { (fixture: Fixture) async throws in
            for key in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", ".", "nul\u{0}byte"] {
                let error = await #expect(throws: GantryError.self, "\(key)") {
                    _ = try await fixture.store.put(key, [1])
                }
                #expect(error?.kind == .invalidRequest, "\(key)")
                await #expect(throws: GantryError.self, "\(key)") { _ = try await fixture.store.info(key) }
            }
            #expect(try await fixture.store.list(prefix: "").isEmpty)
        }
    }
}

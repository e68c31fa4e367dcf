import AsyncHTTPClient
import Crypto
import Foundation
import GantryCore
import GantryTestSupport
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

@testable import GantryCommands
@testable import GantryRegistry

@Suite("Model files fetched by nodes: fetch tokens, ranged downloads, gantry fetch-model")
struct ModelFetchTests {
    @Test("fetch tokens open one version until they expire")
    func tokens() throws {
        let clock = Mutex(Date(timeIntervalSince1970: 1_000_000))
        let tokens = ModelFetchTokens(secret: "s", baseURL: "http://gantry:8080/", lifetime: 60) { clock.withLock { $0 } }
        let grant = tokens.grant(versionID: "mv_a")
        #expect(grant.url == "http://gantry:8080/internal/model-files/mv_a")
        try tokens.check(grant.token, versionID: "mv_a")
        #expect(throws: GantryError.self) { try tokens.check(grant.token, versionID: "mv_b") }
        #expect(throws: GantryError.self) { try tokens.check(nil, versionID: "mv_a") }
        let forged = grant.token.replacingOccurrences(of: "mv_a", with: "mv_b")
        #expect(throws: GantryError.self) { try tokens.check(forged, versionID: "mv_b") }
        // Another replica with the same secret accepts it; one with another secret does not.
        let now = { @Sendable in clock.withLock { $0 } }
        try ModelFetchTokens(secret: "s", baseURL: "x", now: now).check(grant.token, versionID: "mv_a")
        #expect(throws: GantryError.self) {
            try ModelFetchTokens(secret: "t", baseURL: "x", now: now).check(grant.token, versionID: "mv_a")
        }
        clock.withLock { $0 = $0.addingTimeInterval(61) }
        #expect(throws: GantryError.self) { try tokens.check(grant.token, versionID: "mv_a") }
    }

    @Test("byte ranges: middle, open end, suffix, past the end, and what is ignored")
    func ranges() {
        #expect(ByteRange.parse("bytes=5-9", size: 100) == .part(5..<10))
        #expect(ByteRange.parse("bytes=90-", size: 100) == .part(90..<100))
        #expect(ByteRange.parse("bytes=90-500", size: 100) == .part(90..<100))
        #expect(ByteRange.parse("bytes=-10", size: 100) == .part(90..<100))
        #expect(ByteRange.parse("bytes=100-", size: 100) == .unsatisfiable)
        for ignored in [nil, "bytes=1-2,5-6", "items=1-2", "bytes=9-3", "bytes=x-"] {
            #expect(ByteRange.parse(ignored, size: 100) == .whole, "\(ignored ?? "nil")")
        }
    }

    @Test(
        "a version's files: manifest and ranged reads with its token, refused without; fetched, kept, and a bad resume caught",
        .tags(.moto), arguments: StoreKind.allCases)
    func fetch(kind: StoreKind) async throws {
        let test = try await RegistryTestServer.make(kind)
        let weights = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let notes = Array("hello".utf8)
        try await test.server.application.test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"
            let api = LiveAPI(key: test.adminKey)
            #expect(try await api.send("POST", "\(base)/api/v1/models", #"{"name":"tiny","task":"chat"}"#).status == 201)
            let created = try await api.send(
                "POST", "\(base)/api/v1/models/tiny/versions", #"{"format":"gguf","context_limit":512}"#)
            let versionID = try #require(
                (try JSONSerialization.jsonObject(with: Data(created.body)) as? [String: Any])?["id"] as? String)
            let files = "\(base)/api/v1/models/tiny/versions/1/files/"
            for (path, bytes) in [("model.gguf", weights), ("extra/notes.txt", notes)] {
                let upload = try await api.upload(files + path, TestChunks(bytes: bytes), length: bytes.count)
                #expect(upload.status == 201)
            }
            #expect(try await api.send("POST", "\(base)/api/v1/models/tiny/versions/1/complete").status == 200)

            let token = test.server.modelFetch.grant(versionID: versionID).token
            let url = "\(base)/internal/model-files/\(versionID)"
            func get(_ url: String, token: String?, range: String? = nil) async throws -> (Int, [UInt8], String?) {
                var request = HTTPClientRequest(url: url)
                if let token { request.headers.add(name: ModelFetchGrant.header, value: token) }
                if let range { request.headers.add(name: "range", value: range) }
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                let body = try await response.body.collect(upTo: 1 << 20)
                return (Int(response.status.code), Array(body.readableBytesView), response.headers.first(name: "content-range"))
            }
            let manifest = try await get(url, token: token)
            #expect(manifest.0 == 200)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(manifest.1)) as? [String: Any])
            #expect(json["entry_file"] as? String == "model.gguf")
            #expect((json["files"] as? [[String: Any]])?.count == 2)
            #expect(try await get(url, token: nil).0 == 401)
            #expect(try await get(url, token: test.server.modelFetch.grant(versionID: "mv_other").token).0 == 401)
            let part = try await get(url + "/files/model.gguf", token: token, range: "bytes=5-9")
            #expect(part.0 == 206 && part.1 == Array(weights[5..<10]) && part.2 == "bytes 5-9/300000")
            #expect(try await get(url + "/files/model.gguf", token: token, range: "bytes=300000-").0 == 416)
            #expect(try await get(url + "/files/absent", token: token).0 == 404)

            let into = try TemporaryDirectory()
            let messages = Mutex<[String]>([])
            let fetcher = ModelFetcher(
                grant: ModelFetchGrant(url: url, token: token), directory: URL(fileURLWithPath: into.path + "/v"),
                http: HTTPClient.shared, progress: { line in messages.withLock { $0.append(line) } })
            try await fetcher.fetch()
            #expect(FileManager.default.contents(atPath: into.path + "/v/model.gguf") == Data(weights))
            #expect(FileManager.default.contents(atPath: into.path + "/v/extra/notes.txt") == Data(notes))
            #expect(FileManager.default.fileExists(atPath: into.path + "/v/.gantry-complete"))
            // Files already here and correct are kept.
            messages.withLock { $0 = [] }
            try await fetcher.fetch()
            #expect(messages.withLock { $0.filter { $0.hasPrefix("kept ") }.count } == 2)
            // A partial file is resumed with a range: a wrong prefix is caught by the digest and removed.
            try FileManager.default.removeItem(atPath: into.path + "/v/model.gguf")
            try Data(repeating: 0xEE, count: 1000).write(to: URL(fileURLWithPath: into.path + "/v/model.gguf.partial"))
            await #expect(throws: GantryError.self) { try await fetcher.fetch() }
            #expect(!FileManager.default.fileExists(atPath: into.path + "/v/model.gguf.partial"))
            // A correct prefix resumes to the whole file.
            try Data(weights[0..<123_456]).write(to: URL(fileURLWithPath: into.path + "/v/model.gguf.partial"))
            try await fetcher.fetch()
            #expect(FileManager.default.contents(atPath: into.path + "/v/model.gguf") == Data(weights))
            // A refused token stops at once with the server's answer.
            let refused = ModelFetcher(
                grant: ModelFetchGrant(url: url, token: "gmf.x.1.y"), directory: URL(fileURLWithPath: into.path + "/w"),
                http: HTTPClient.shared, progress: { _ in })
            await #expect(throws: GantryError.self) { try await refused.fetch() }
        }
    }
}

/// `bytes` in 64 KiB chunks.
struct TestChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let bytes: [UInt8]

    struct AsyncIterator: AsyncIteratorProtocol {
        var remaining: ArraySlice<UInt8>
        mutating func next() async -> ByteBuffer? {
            guard !remaining.isEmpty else { return nil }
            let chunk = remaining.prefix(65_536)
            remaining = remaining.dropFirst(chunk.count)
            return ByteBuffer(bytes: chunk)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(remaining: bytes[...]) }
}

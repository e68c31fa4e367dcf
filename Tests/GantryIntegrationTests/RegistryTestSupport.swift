import AsyncHTTPClient
import Foundation
import GantryBlobs
import GantryCommands
import GantryCore
import GantryRegistry
import GantryTestSupport
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// Which object store a registry test runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case local
    case s3

    var testDescription: String { rawValue }
}

/// A test server whose model files go to a local directory or to a fresh bucket on the test's
/// S3 server (moto, started by scripts/test.sh).
struct RegistryTestServer {
    let test: TestServer
    var server: GantryServer { test.server }
    var adminKey: String { test.adminKey }
    var directory: TemporaryDirectory { test.directory }
    var objects: any ObjectStore { test.server.objects }

    static func make(_ kind: StoreKind, flags: [GantrySetting: String] = [:]) async throws -> RegistryTestServer {
        var flags = flags
        if kind == .s3 {
            let endpoint = try TestEnvironment.require(TestEnvironment.s3Endpoint)
            // moto checks every signature against the key scripts/test.sh created for the tests.
            let s3AccessKey = try TestEnvironment.require(TestEnvironment.s3AccessKeyID)
            let s3SecretKey = try TestEnvironment.require(TestEnvironment.s3SecretAccessKey)
            let bucket = "gantry-\(UUID().uuidString.lowercased().prefix(13))"
            let admin = try S3ObjectStore(
                configuration: S3Configuration(
                    region: "us-east-1", bucket: bucket,
                    credentials: S3Credentials(accessKeyID: s3AccessKey, secretAccessKey: s3SecretKey),
                    endpoint: URL(string: endpoint)))
            do {
                try await admin.createBucketIfMissing()
                try await admin.shutdown()
            } catch {
                try? await admin.shutdown()
                throw error
            }
            flags[.objectStore] = "s3"
            flags[.s3Endpoint] = endpoint
            flags[.s3Bucket] = bucket
            flags[.s3Prefix] = "gantry/"
            flags[.s3AccessKeyID] = s3AccessKey
            flags[.s3SecretAccessKey] = s3SecretKey
            flags[.s3PartSize] = "5"
        }
        return RegistryTestServer(test: try await TestServer.make(flags: flags))
    }
}

/// Registry calls through Hummingbird's router test client.
struct RegistryAPI {
    let client: any TestClientProtocol
    let key: String

    func send(_ method: HTTPRequest.Method, _ uri: String, _ json: String? = nil) async throws -> TestResponse {
        try await client.execute(uri: uri, method: method, headers: .bearer(key), body: json.map { ByteBuffer(string: $0) })
    }

    func upload(_ uri: String, _ bytes: [UInt8], sha256: String? = nil) async throws -> TestResponse {
        var headers: HTTPFields = [.authorization: "Bearer \(key)", .contentType: "application/octet-stream"]
        if let sha256 { headers[RegistryRoutes.expectedDigestHeader] = sha256 }
        return try await client.execute(uri: uri, method: .put, headers: headers, body: ByteBuffer(bytes: bytes))
    }
}

/// Registry calls over a real socket with async-http-client, for streamed request bodies.
struct LiveAPI {
    let key: String

    func send(_ method: String, _ url: String, _ json: String? = nil) async throws -> (status: Int, body: [UInt8]) {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        request.headers.add(name: "authorization", value: "Bearer \(key)")
        if let json {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        return (Int(response.status.code), Array(try await response.body.collect(upTo: 64 << 20).readableBytesView))
    }

    func upload<Body: AsyncSequence & Sendable>(_ url: String, _ body: Body, length: Int) async throws -> (
        status: Int, body: [UInt8]
    ) where Body.Element == ByteBuffer {
        var request = HTTPClientRequest(url: url)
        request.method = .PUT
        request.headers.add(name: "authorization", value: "Bearer \(key)")
        request.body = .stream(body, length: .known(Int64(length)))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
        return (Int(response.status.code), Array(try await response.body.collect(upTo: 1 << 20).readableBytesView))
    }

    /// Whether the version whose files live under `filesURL` lists any file.
    func hasFiles(_ filesURL: String) async throws -> Bool {
        !((try await version(filesURL)["files"] as? [Any]) ?? []).isEmpty
    }

    /// The paths the server is receiving for that version right now.
    func uploadsInProgress(_ filesURL: String) async throws -> [String] {
        try await version(filesURL)["uploads_in_progress"] as? [String] ?? []
    }

    private func version(_ filesURL: String) async throws -> [String: Any] {
        let answer = try await send("GET", String(filesURL.dropLast("/files/".count)))
        return try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any] ?? [:]
    }
}

/// Lets a test hold a streamed body after its first chunk until it opens the gate.
actor Gate {
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var isOpen = false

    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func open() {
        isOpen = true
        for waiter in waiters { waiter.resume() }
        waiters = []
    }
}

/// `bytes` in 1 MiB chunks, pausing after the first until the gate opens.
struct GatedBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let bytes: [UInt8]
    let gate: Gate

    struct AsyncIterator: AsyncIteratorProtocol {
        let body: GatedBody
        var offset = 0

        mutating func next() async throws -> ByteBuffer? {
            guard offset < body.bytes.count else { return nil }
            if offset > 0 {
                await body.gate.wait()
            }
            let end = Swift.min(offset + (1 << 20), body.bytes.count)
            defer { offset = end }
            return ByteBuffer(bytes: body.bytes[offset..<end])
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(body: self) }
}

import AsyncHTTPClient
import Foundation
import GantryCore
public import Logging
public import NIOCore

/// Objects in a bucket of an S3-compatible service (AWS S3, MinIO, Ceph, moto), for Gantry
/// installations with more than one node.
///
/// Requests are signed with AWS Signature Version 4. A put holds at most about two parts in
/// memory; a read streams the response body as it arrives. The store owns an `HTTPClient`:
/// call ``shutdown()`` when done with it.
public final class S3ObjectStore: ObjectStore {
    public let configuration: S3Configuration
    let client: HTTPClient
    let signer: SigV4Signer
    let logger: Logger
    /// What every request's URL starts with and its `host` header, worked out once.
    let scheme: String
    let host: String
    let basePath: String

    public var displayName: String { "s3 bucket \(configuration.bucket) at \(configuration.resolvedEndpoint)" }

    /// - Throws: `GantryError.invalid` when `configuration` is not valid.
    public init(configuration: S3Configuration, logger: Logger = Logger(label: "gantry.blobs.s3")) throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        signer = SigV4Signer(credentials: configuration.credentials, region: configuration.region)

        let endpoint = configuration.resolvedEndpoint
        let scheme = endpoint.scheme!.lowercased()
        var host = endpoint.host!
        if host.contains(":") && !host.hasPrefix("[") { host = "[\(host)]" }
        if !configuration.usePathStyle { host = "\(configuration.bucket).\(host)" }
        if let port = endpoint.port, port != (scheme == "https" ? 443 : 80) { host += ":\(port)" }
        self.scheme = scheme
        self.host = host
        var basePath = URLComponents(url: endpoint, resolvingAgainstBaseURL: false)?.percentEncodedPath ?? ""
        while basePath.hasSuffix("/") { basePath.removeLast() }
        if configuration.usePathStyle { basePath += "/" + SigV4Signer.uriEncode(configuration.bucket, keepSlash: false) }
        self.basePath = basePath

        var http = HTTPClient.Configuration()
        http.timeout = .init(connect: configuration.connectTimeout, read: configuration.readTimeout)
        // Several puts and reads run at once; the default of 8 connections queues them.
        http.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 32
        http.redirectConfiguration = .disallow
        http.decompression = .disabled
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
    }

    /// Closes the HTTP client's connections. Call it once, after the last request.
    public func shutdown() async throws {
        try await client.shutdown()
    }

    public func read(_ key: String, into consume: @Sendable (ByteBuffer) async throws -> Void) async throws {
        try await read(key, headers: [], into: consume)
    }

    public func read(_ key: String, range: Range<Int64>, into consume: @Sendable (ByteBuffer) async throws -> Void)
        async throws
    {
        guard !range.isEmpty else { return }
        // HTTP ranges name the last byte; an open end reads to the object's end.
        let last = range.upperBound == Int64.max ? "" : String(range.upperBound - 1)
        try await read(key, headers: [("range", "bytes=\(range.lowerBound)-\(last)")], into: consume)
    }

    func read(_ key: String, headers: [(String, String)], into consume: @Sendable (ByteBuffer) async throws -> Void)
        async throws
    {
        let response = try await send(
            S3Request(method: .GET, key: try objectKey(key), headers: headers), operation: "GetObject")
        // A range that starts at or past the end is 416 for S3: nothing to read.
        if response.status == .rangeNotSatisfiable { return }
        if response.status == .notFound {
            let error = await serviceError(response)
            // A missing bucket is a broken configuration, not a missing object.
            if error.code == "NoSuchBucket" { throw error.gantryError(operation: "GetObject", key: key) }
            throw GantryError.notFound("no object '\(key)'")
        }
        try await check(response, operation: "GetObject", key: key)
        // Errors of the transfer are the store's; errors of `consume` belong to the caller, unchanged.
        var chunks = response.body.makeAsyncIterator()
        while true {
            let chunk: ByteBuffer?
            do {
                chunk = try await chunks.next()
            } catch {
                throw transferError(error, operation: "GetObject", key: key)
            }
            guard let chunk else { return }
            try await consume(chunk)
        }
    }

    public func info(_ key: String) async throws -> ObjectInfo? {
        let response = try await send(S3Request(method: .HEAD, key: try objectKey(key)), operation: "HeadObject")
        if response.status == .notFound { return nil }
        try await check(response, operation: "HeadObject", key: key)
        guard let length = response.headers.first(name: "content-length").flatMap({ Int64($0) }) else {
            throw GantryError(.badGateway, "object store: HeadObject of '\(key)' answered without a content-length")
        }
        return ObjectInfo(key: key, size: length)
    }

    public func delete(_ key: String) async throws {
        let response = try await send(S3Request(method: .DELETE, key: try objectKey(key)), operation: "DeleteObject")
        if response.status == .notFound {
            let error = await serviceError(response)
            if error.code == "NoSuchBucket" { throw error.gantryError(operation: "DeleteObject", key: key) }
            return
        }
        try await check(response, operation: "DeleteObject", key: key)
        _ = try await response.body.collect(upTo: Self.errorBodyLimit)
    }

    /// Creates the bucket unless it exists and is ours (tests, and optionally at start-up).
    public func createBucketIfMissing() async throws {
        let head = try await send(S3Request(method: .HEAD, key: nil), operation: "HeadBucket")
        if head.status == .ok { return }
        if head.status != .notFound { try await check(head, operation: "HeadBucket", key: nil) }

        var request = S3Request(method: .PUT, key: nil)
        // us-east-1 is the default and is refused when named explicitly.
        if configuration.region != "us-east-1" {
            request.body = ByteBuffer(
                string: "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    + "<LocationConstraint>\(S3XMLElement.escape(configuration.region))</LocationConstraint>"
                    + "</CreateBucketConfiguration>")
        }
        let response = try await send(request, operation: "CreateBucket")
        if response.status == .conflict {
            let error = await serviceError(response)
            if error.code == "BucketAlreadyOwnedByYou" { return }
            throw error.gantryError(operation: "CreateBucket", key: nil)
        }
        try await check(response, operation: "CreateBucket", key: nil)
        _ = try await response.body.collect(upTo: Self.errorBodyLimit)
    }

    /// The key as stored: the configured prefix and the caller's key.
    func objectKey(_ key: String) throws -> String {
        try ObjectKey.validate(key)
        return configuration.keyPrefix + key
    }
}

import AsyncHTTPClient
import Crypto
import Foundation
import GantryCore
import NIOCore
import NIOHTTP1

/// One S3 call before signing.
struct S3Request {
    var method: HTTPMethod
    /// The stored key (with the configured prefix), or nil for a call on the bucket.
    var key: String?
    var query: [(String, String)] = []
    var headers: [(String, String)] = []
    var body: ByteBuffer?
}

/// An error document of S3 (`<Error><Code>…</Code><Message>…</Message></Error>`), or what the
/// status says when there is none (HEAD has no body).
struct S3ServiceError: Error {
    var status: UInt
    var code: String
    var message: String

    /// The service answered, but not as asked: a bad gateway for Gantry's clients.
    func gantryError(operation: String, key: String?) -> GantryError {
        let subject = key.map { " of '\($0)'" } ?? ""
        let detail = message.isEmpty ? "HTTP \(status)" : message
        return GantryError(.badGateway, "object store: \(code): \(detail) (\(operation)\(subject))", code: "object_store_error")
    }
}

extension S3ObjectStore {
    /// Error documents are small; a larger body is not one.
    static let errorBodyLimit = 64 << 10
    /// Listings of 1000 keys fit well within this.
    static let documentLimit = 16 << 20

    /// Signs and sends `request`; a failure to reach the service is `GantryError(.unavailable)`.
    func send(_ request: S3Request, operation: String, timeout: TimeAmount = .seconds(60)) async throws
        -> HTTPClientResponse
    {
        var path = basePath
        if let key = request.key {
            path += "/" + SigV4Signer.uriEncode(key, keepSlash: true)
        } else if path.isEmpty {
            path = "/"
        }
        let payloadHash =
            request.body.map { body in
                body.withUnsafeReadableBytes { Hex.encode(SHA256.hash(data: $0)) }
            } ?? SigV4Signer.emptyPayloadHash
        let headers = [("host", host)] + request.headers
        let signed = signer.sign(
            method: request.method.rawValue, path: path, query: request.query, headers: headers, payloadHash: payloadHash,
            date: Date())

        let query = SigV4Signer.canonicalQuery(request.query)
        var http = HTTPClientRequest(url: "\(scheme)://\(host)\(path)" + (query.isEmpty ? "" : "?" + query))
        http.method = request.method
        for (name, value) in headers + signed { http.headers.add(name: name, value: value) }
        if let body = request.body {
            http.body = .bytes(body)
        } else if request.method == .PUT || request.method == .POST {
            http.body = .bytes(ByteBuffer())
        }

        do {
            let response = try await client.execute(http, timeout: timeout)
            logger.debug(
                "object store request",
                metadata: ["operation": "\(operation)", "key": "\(request.key ?? "")", "status": "\(response.status.code)"])
            return response
        } catch {
            throw transferError(error, operation: operation, key: request.key)
        }
    }

    /// Returns for a 2xx answer; otherwise reads the error document and throws it as a GantryError.
    func check(_ response: HTTPClientResponse, operation: String, key: String?) async throws {
        guard !(200..<300).contains(response.status.code) else { return }
        throw await serviceError(response).gantryError(operation: operation, key: key)
    }

    func serviceError(_ response: HTTPClientResponse) async -> S3ServiceError {
        let body = (try? await response.body.collect(upTo: Self.errorBodyLimit)) ?? ByteBuffer()
        let document = body.readableBytes > 0 ? S3XMLElement.parse(body) : nil
        return S3ServiceError(
            status: response.status.code,
            code: document?.value("Code") ?? "HTTP\(response.status.code)",
            message: document?.value("Message") ?? response.status.reasonPhrase)
    }

    /// Reads a whole XML answer of a successful call; S3 can report an error in a 200 answer
    /// (CompleteMultipartUpload does), so an `<Error>` document throws too.
    func document(_ response: HTTPClientResponse, operation: String, key: String?) async throws -> S3XMLElement {
        try await check(response, operation: operation, key: key)
        let body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: Self.documentLimit)
        } catch {
            throw transferError(error, operation: operation, key: key)
        }
        guard let document = S3XMLElement.parse(body) else {
            throw GantryError(.badGateway, "object store: \(operation) answered with a document that is not XML")
        }
        if document.name == "Error" {
            throw S3ServiceError(
                status: response.status.code, code: document.value("Code") ?? "Error", message: document.value("Message") ?? ""
            ).gantryError(operation: operation, key: key)
        }
        return document
    }

    /// A failure to talk to the service at all. Cancellation and Gantry's own errors pass unchanged.
    func transferError(_ error: any Error, operation: String, key: String?) -> any Error {
        if error is GantryError || error is CancellationError { return error }
        let subject = key.map { " of '\($0)'" } ?? ""
        if let error = error as? HTTPClientError, error == .readTimeout || error == .deadlineExceeded {
            return GantryError(.gatewayTimeout, "object store: \(operation)\(subject) timed out")
        }
        return GantryError(
            .unavailable, "object store \(configuration.resolvedEndpoint) unreachable during \(operation)\(subject): \(error)")
    }
}

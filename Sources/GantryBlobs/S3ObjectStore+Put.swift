import AsyncHTTPClient
import Crypto
import GantryCore
public import NIOCore

extension S3ObjectStore {
    /// S3 numbers parts 1...10000.
    static let maximumPartCount = 10_000

    struct CompletedPart: Sendable {
        var number: Int
        var etag: String
    }

    /// Bodies up to one part go up in a single PutObject once approved. Longer ones become a
    /// multipart upload: each full part is uploaded by a child task while the next one is read,
    /// with at most `partsInFlight` parts uploading, so at most `partsInFlight + 1` parts are in
    /// memory. The upload is completed only after `approve`, and
    /// aborted on any failure, so neither an object nor an open upload is left behind.
    public func put<Body: AsyncSequence & Sendable>(
        _ key: String, body: Body, limit: Int64?, approve: @Sendable (ObjectSummary) throws -> Void
    ) async throws -> ObjectSummary where Body.Element == ByteBuffer {
        let storedKey = try objectKey(key)
        let partSize = configuration.partSize
        var uploadID: String?
        do {
            return try await withThrowingTaskGroup(of: CompletedPart.self) { uploads in
                var hasher = SHA256()
                var size: Int64 = 0
                var part = ByteBuffer()
                var completed: [CompletedPart] = []
                var started = 0

                /// Hands a full part to a child task, once fewer than `partsInFlight` are running.
                func upload(_ buffer: ByteBuffer) async throws {
                    if uploadID == nil { uploadID = try await createMultipartUpload(storedKey) }
                    while started - completed.count >= configuration.partsInFlight, let done = try await uploads.next() {
                        completed.append(done)
                    }
                    started += 1
                    let number = started
                    guard number <= Self.maximumPartCount else {
                        throw GantryError(
                            .payloadTooLarge, "object is larger than \(Self.maximumPartCount) parts of \(partSize) bytes")
                    }
                    let id = uploadID!
                    uploads.addTask { try await self.uploadPart(storedKey, uploadID: id, number: number, body: buffer) }
                }

                for try await var chunk in body {
                    size += Int64(chunk.readableBytes)
                    if let limit, size > limit {
                        throw GantryError(.payloadTooLarge, "object is larger than the limit of \(limit) bytes")
                    }
                    chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
                    while chunk.readableBytes > 0 {
                        // A full part is sent only once more bytes follow, so the last part is never
                        // empty and a body of exactly one part needs no multipart upload.
                        if part.readableBytes == partSize {
                            try await upload(part)
                            // Only a large body gets here: give its next part its full size at once.
                            part = ByteBuffer()
                            part.reserveCapacity(partSize)
                        }
                        var slice = chunk.readSlice(length: min(partSize - part.readableBytes, chunk.readableBytes))!
                        part.writeBuffer(&slice)
                    }
                }

                let summary = ObjectSummary(key: key, size: size, sha256: Hex.encode(hasher.finalize()))
                try approve(summary)
                guard let id = uploadID else {
                    try await putObject(storedKey, body: part)
                    return summary
                }
                try await upload(part)
                while let done = try await uploads.next() { completed.append(done) }
                try await completeMultipartUpload(storedKey, uploadID: id, parts: completed)
                return summary
            }
        } catch {
            // The task group has awaited its uploads by now, so none can add a part after the abort.
            if let uploadID { await abortShieldedFromCancellation(storedKey, uploadID: uploadID) }
            throw error
        }
    }

    func putObject(_ storedKey: String, body: ByteBuffer) async throws {
        let response = try await send(
            S3Request(method: .PUT, key: storedKey, body: body), operation: "PutObject", timeout: uploadTimeout)
        try await check(response, operation: "PutObject", key: storedKey)
        _ = try await response.body.collect(upTo: Self.errorBodyLimit)
    }

    func createMultipartUpload(_ storedKey: String) async throws -> String {
        let response = try await send(
            S3Request(method: .POST, key: storedKey, query: [("uploads", "")]), operation: "CreateMultipartUpload")
        let document = try await document(response, operation: "CreateMultipartUpload", key: storedKey)
        guard let id = document.value("UploadId"), !id.isEmpty else {
            throw GantryError(.badGateway, "object store: CreateMultipartUpload of '\(storedKey)' answered without an UploadId")
        }
        return id
    }

    func uploadPart(_ storedKey: String, uploadID: String, number: Int, body: ByteBuffer) async throws -> CompletedPart {
        let response = try await send(
            S3Request(method: .PUT, key: storedKey, query: [("partNumber", "\(number)"), ("uploadId", uploadID)], body: body),
            operation: "UploadPart", timeout: uploadTimeout)
        try await check(response, operation: "UploadPart", key: storedKey)
        _ = try await response.body.collect(upTo: Self.errorBodyLimit)
        guard let etag = response.headers.first(name: "etag") else {
            throw GantryError(.badGateway, "object store: UploadPart of '\(storedKey)' answered without an ETag")
        }
        return CompletedPart(number: number, etag: etag)
    }

    func completeMultipartUpload(_ storedKey: String, uploadID: String, parts: [CompletedPart]) async throws {
        var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for part in parts.sorted(by: { $0.number < $1.number }) {
            xml += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\(S3XMLElement.escape(part.etag))</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let response = try await send(
            S3Request(
                method: .POST, key: storedKey, query: [("uploadId", uploadID)], headers: [("content-type", "application/xml")],
                body: ByteBuffer(string: xml)),
            operation: "CompleteMultipartUpload", timeout: uploadTimeout)
        _ = try await document(response, operation: "CompleteMultipartUpload", key: storedKey)
    }

    func abortMultipartUpload(_ storedKey: String, uploadID: String) async throws {
        let response = try await send(
            S3Request(method: .DELETE, key: storedKey, query: [("uploadId", uploadID)]), operation: "AbortMultipartUpload")
        // Already gone is as good as aborted.
        if response.status == .notFound {
            _ = try? await response.body.collect(upTo: Self.errorBodyLimit)
            return
        }
        try await check(response, operation: "AbortMultipartUpload", key: storedKey)
        _ = try await response.body.collect(upTo: Self.errorBodyLimit)
    }

    /// A put that failed because its task was cancelled must still abort its upload, or the parts
    /// stay (and are billed) in the bucket. An abort is idempotent and S3 answers 5xx now and then
    /// (moto answered 500 to an abort that crossed a cancelled part upload), so it is tried up to
    /// three times, 0.2 s and 0.4 s apart. Best effort: a last failure is only logged.
    func abortShieldedFromCancellation(_ storedKey: String, uploadID: String) async {
        await uncancelled {
            for attempt in 1...3 {
                do {
                    try await self.abortMultipartUpload(storedKey, uploadID: uploadID)
                    return
                } catch {
                    guard attempt < 3 else {
                        return self.logger.warning(
                            "could not abort a multipart upload", metadata: ["key": "\(storedKey)", "error": "\(error)"])
                    }
                    try? await Task.sleep(for: .milliseconds(200 * attempt))
                }
            }
        }
    }

    /// Sending a part takes a while on a slow link; stalls are caught by the read timeout.
    var uploadTimeout: TimeAmount { .minutes(10) }
}

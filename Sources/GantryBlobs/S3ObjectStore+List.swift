import Foundation
import GantryCore
import NIOCore

extension S3ObjectStore {
    public func list(prefix: String) async throws -> [ObjectInfo] {
        try ObjectKey.validatePrefix(prefix)
        let storedPrefix = configuration.keyPrefix + prefix
        var objects: [ObjectInfo] = []
        var continuation: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", storedPrefix)]
            if let continuation { query.append(("continuation-token", continuation)) }
            let response = try await send(S3Request(method: .GET, key: nil, query: query), operation: "ListObjectsV2")
            let page = try await document(response, operation: "ListObjectsV2", key: nil)
            for entry in page.all("Contents") {
                guard let storedKey = entry.value("Key"), storedKey.hasPrefix(storedPrefix),
                    let size = entry.value("Size").flatMap({ Int64($0) })
                else { continue }
                objects.append(ObjectInfo(key: withoutKeyPrefix(storedKey), size: size))
            }
            continuation = page.value("IsTruncated") == "true" ? page.value("NextContinuationToken") : nil
        } while continuation != nil
        return objects.sorted { $0.key < $1.key }
    }

    /// Multipart uploads still open under `prefix` (keys without the configured prefix): tests
    /// check with it that failed puts leave none behind.
    func listMultipartUploads(prefix: String) async throws -> [(key: String, uploadID: String, initiated: Date?)] {
        let storedPrefix = configuration.keyPrefix + prefix
        var uploads: [(key: String, uploadID: String, initiated: Date?)] = []
        var keyMarker: String?
        var uploadIDMarker: String?
        repeat {
            var query = [("uploads", ""), ("prefix", storedPrefix)]
            if let keyMarker { query.append(("key-marker", keyMarker)) }
            if let uploadIDMarker { query.append(("upload-id-marker", uploadIDMarker)) }
            let response = try await send(S3Request(method: .GET, key: nil, query: query), operation: "ListMultipartUploads")
            let page = try await document(response, operation: "ListMultipartUploads", key: nil)
            for upload in page.all("Upload") {
                guard let storedKey = upload.value("Key"), let id = upload.value("UploadId") else { continue }
                uploads.append((withoutKeyPrefix(storedKey), id, upload.value("Initiated").flatMap(Self.timestamp)))
            }
            let truncated = page.value("IsTruncated") == "true"
            keyMarker = truncated ? page.value("NextKeyMarker") : nil
            uploadIDMarker = truncated ? page.value("NextUploadIdMarker") : nil
        } while keyMarker != nil
        return uploads
    }

    /// Aborts the multipart uploads under the configured prefix initiated more than `age` ago:
    /// a put that died with its process (a kill, a crash) leaves its upload open, and S3 keeps
    /// its parts, invisible to `list`, until it is aborted. One whose time S3 did not say stays.
    public func removeLeftovers(olderThan age: Duration) async throws {
        let cutoff = Date().addingTimeInterval(-Double(age.components.seconds))
        for upload in try await listMultipartUploads(prefix: "") {
            guard let initiated = upload.initiated, initiated < cutoff else { continue }
            try await abortMultipartUpload(configuration.keyPrefix + upload.key, uploadID: upload.uploadID)
        }
    }

    /// S3's timestamps: ISO 8601, with milliseconds or without.
    static func timestamp(_ text: String) -> Date? {
        let precise = ISO8601DateFormatter()
        precise.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return precise.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }

    /// The caller's key of a stored one; the prefix is taken off by bytes, as S3 matched it.
    func withoutKeyPrefix(_ storedKey: String) -> String {
        String(decoding: storedKey.utf8.dropFirst(configuration.keyPrefix.utf8.count), as: UTF8.self)
    }
}

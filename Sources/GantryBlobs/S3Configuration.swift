public import Foundation
import GantryCore
public import NIOCore

/// Where and how an ``S3ObjectStore`` stores objects.
public struct S3Configuration: Sendable {
    /// The service's base URL; nil means AWS itself, `https://s3.<region>.amazonaws.com`.
    public var endpoint: URL?
    /// The region requests are signed for, e.g. `us-east-1`.
    public var region: String
    public var bucket: String
    /// Put in front of every key (usually ending in `/`) and taken off listed keys, so several
    /// installations can share a bucket. Default: empty.
    public var keyPrefix: String
    /// `http://host/bucket/key` when true, `http://bucket.host/key` when false. Default: true
    /// when `endpoint` is set (MinIO, moto, Ceph), false for AWS.
    public var usePathStyle: Bool
    /// Bytes per multipart-upload part, and so the memory a put holds (at most about two parts).
    /// At least ``minimumPartSize``; default 8 MiB. Bodies up to one part go up in a single PUT.
    public var partSize: Int
    /// Parts of one put sent at the same time; memory per put is about (this + 1) × `partSize`.
    public var partsInFlight: Int
    /// Secret: never printed by this type.
    public var credentials: S3Credentials
    /// How long to wait for a connection. Default 5 s.
    public var connectTimeout: TimeAmount
    /// How long a response may stall before the request fails. Default 60 s.
    public var readTimeout: TimeAmount

    /// S3 refuses smaller parts, except the last one.
    public static let minimumPartSize = 5 << 20
    public static let defaultPartSize = 8 << 20
    /// S3 refuses larger parts.
    public static let maximumPartSize = 5 << 30

    public init(
        region: String, bucket: String, credentials: S3Credentials, endpoint: URL? = nil, keyPrefix: String = "",
        usePathStyle: Bool? = nil, partSize: Int = S3Configuration.defaultPartSize, partsInFlight: Int = 1,
        connectTimeout: TimeAmount = .seconds(5), readTimeout: TimeAmount = .seconds(60)
    ) {
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.keyPrefix = keyPrefix
        self.usePathStyle = usePathStyle ?? (endpoint != nil)
        self.partSize = partSize
        self.partsInFlight = partsInFlight
        self.credentials = credentials
        self.connectTimeout = connectTimeout
        self.readTimeout = readTimeout
    }

    /// `endpoint`, or AWS's regional endpoint when none is set.
    public var resolvedEndpoint: URL {
        endpoint ?? URL(string: "https://s3.\(region).amazonaws.com")!
    }

    /// Throws `GantryError.invalid` for a configuration no S3 service would accept.
    public func validate() throws {
        guard !region.isEmpty else { throw GantryError.invalid("S3 region is empty", param: "region") }
        guard !bucket.isEmpty, !bucket.contains("/") else {
            throw GantryError.invalid("S3 bucket name '\(bucket)' is not valid", param: "bucket")
        }
        guard (1...64).contains(partsInFlight) else {
            throw GantryError.invalid("S3 parts in flight must be 1 to 64, not \(partsInFlight)", param: "partsInFlight")
        }
        guard (Self.minimumPartSize...Self.maximumPartSize).contains(partSize) else {
            throw GantryError.invalid(
                "S3 part size \(partSize) is outside \(Self.minimumPartSize)...\(Self.maximumPartSize) bytes", param: "partSize")
        }
        guard !keyPrefix.hasPrefix("/"), !keyPrefix.utf8.contains(0) else {
            throw GantryError.invalid("S3 key prefix '\(keyPrefix)' must not start with / or hold NUL", param: "keyPrefix")
        }
        let endpoint = resolvedEndpoint
        guard let scheme = endpoint.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = endpoint.host, !host.isEmpty
        else {
            throw GantryError.invalid("S3 endpoint \(endpoint) is not an http(s) URL", param: "endpoint")
        }
        guard !credentials.accessKeyID.isEmpty, !credentials.secretAccessKey.isEmpty else {
            throw GantryError.invalid("S3 credentials are incomplete", param: "credentials")
        }
    }
}

extension S3Configuration: CustomStringConvertible {
    /// Names the bucket and endpoint; the credentials show only their access key ID.
    public var description: String {
        "S3Configuration(endpoint: \(resolvedEndpoint), region: \(region), bucket: \(bucket), keyPrefix: \(keyPrefix), "
            + "usePathStyle: \(usePathStyle), partSize: \(partSize), credentials: \(credentials))"
    }
}

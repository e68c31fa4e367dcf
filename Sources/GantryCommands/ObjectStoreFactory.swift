import Foundation
import GantryBlobs
import GantryCore
import Logging

/// The object store the configuration names, checked before the server starts, and how to
/// close it at shutdown. The store is first cleaned of what puts killed by a crash left behind
/// (older than an hour: control replicas may share the store and have puts in progress); an
/// S3 bucket is listed once, so a wrong endpoint, bucket or key stops start-up with S3's own
/// error instead of failing the first upload.
/// Leftovers of puts older than this are removed at start-up: a put in progress writes as its body
/// arrives, and a body that stalls is cut off long before.
let leftoverAge: Duration = .seconds(3600)

func makeObjectStore(_ blobs: GantryConfiguration.Blobs, logger: Logger) async throws -> (
    store: any ObjectStore, shutdown: @Sendable () async throws -> Void
) {
    switch blobs.backend {
    case .local(let directory):
        let store = LocalDirectoryObjectStore(root: URL(fileURLWithPath: directory))
        try await store.removeLeftovers(olderThan: leftoverAge)
        logger.info("object store ready", metadata: ["store": "\(store.displayName)"])
        return (store, {})
    case .s3(let settings):
        let configuration = S3Configuration(
            region: settings.region, bucket: settings.bucket,
            credentials: S3Credentials(
                accessKeyID: settings.accessKeyID, secretAccessKey: settings.secretAccessKey,
                sessionToken: settings.sessionToken),
            endpoint: settings.endpoint.flatMap(URL.init(string:)), keyPrefix: settings.prefix,
            usePathStyle: settings.pathStyle, partSize: settings.partSizeBytes, partsInFlight: settings.partsInFlight,
            readTimeout: .seconds(300))
        let store = try S3ObjectStore(configuration: configuration, logger: logger)
        do {
            _ = try await store.list(prefix: ".gantry-start-check/")
        } catch {
            try? await store.shutdown()
            let reason = (error as? GantryError)?.message ?? "\(error)"
            throw GantryError(.unavailable, "cannot use \(store.displayName): \(reason)")
        }
        do {
            try await store.removeLeftovers(olderThan: leftoverAge)
        } catch {
            // Credentials may allow objects but not listing uploads: the store works all the same.
            logger.warning(
                "cannot remove multipart uploads left open by a crash",
                metadata: ["store": "\(store.displayName)", "error": "\(error)"])
        }
        logger.info("object store ready", metadata: ["store": "\(store.displayName)"])
        return (store, { try await store.shutdown() })
    }
}

import Foundation
import GantryCore
public import Logging

/// The access line: method, path (never the query, which could carry a secret), status and
/// duration; the request id is in the logger's metadata. Written by the router's access-log
/// middleware and by the data plane's direct relay, so both read alike.
public enum AccessLog {
    public static func log(_ logger: Logger, method: String, path: String, status: Int, duration: Duration) {
        // Nothing is formatted when the level hides the line.
        guard logger.logLevel <= .info else { return }
        logger.info(
            "request",
            metadata: [
                "method": .string(method), "path": .string(path), "status": .stringConvertible(status),
                "duration_ms": .string(String(format: "%.2f", duration.inSeconds * 1000)),
            ])
    }
}

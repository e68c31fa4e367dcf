public import GantryCore
public import Hummingbird
import Logging
import NIOCore

/// The request context every Gantry route runs with: Hummingbird's core storage plus who is
/// calling, filled in by the gateway's authentication middleware.
public struct GantryRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?
    /// The peer's IP address, for per-address protections (never for authorization).
    public let remoteAddress: String

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.principal = nil
        self.remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    /// JSON request bodies on `/api` are small; bigger ones are refused with 413.
    public var maxUploadSize: Int { 1 << 20 }

    /// The id of this request, as returned in `x-request-id` and printed on each log line.
    public var requestID: String { logger[metadataKey: RequestID.metadataKey]?.description ?? "" }

    /// The authenticated caller, or 401 when the route was reached without one.
    public func requirePrincipal() throws -> Principal {
        guard let principal else { throw GantryError(.unauthorized, "authentication required") }
        return principal
    }

    /// The authenticated caller if an administrator, else 403.
    public func requireAdmin() throws -> Principal {
        let principal = try requirePrincipal()
        guard principal.isAdmin else { throw GantryError(.forbidden, "this operation needs the admin role") }
        return principal
    }
}

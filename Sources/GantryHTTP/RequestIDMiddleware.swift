import Foundation
import GantryCore
public import HTTPTypes
public import Hummingbird
import Logging

/// Gives every request an id: the caller's `x-request-id` when it is short and printable, else a
/// new one. The id goes on every log line of the request and back in the response header.
public struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var context = context
        let id = RequestID.of(request.headers)
        context.logger[metadataKey: RequestID.metadataKey] = .string(id)
        // Errors are already responses here: APIErrorMiddleware sits inside this one.
        var response = try await next(request, context)
        response.headers[RequestID.headerName] = id
        return response
    }
}

/// Where a request's id lives: a header on the wire, a metadata key on log lines.
public enum RequestID {
    /// Replaces Hummingbird's own request id so each log line carries one id, not two.
    public static let metadataKey = "hb.request.id"
    public static let headerName = HTTPField.Name("x-request-id")!

    /// The caller's id when it is short and printable, else a new one (for the router's
    /// middleware and the direct relay alike).
    public static func of(_ fields: HTTPFields) -> String {
        of(headerValue: fields[headerName])
    }

    /// The same, from the header's value as read.
    public static func of(headerValue value: String?) -> String {
        acceptable(value) ?? Identifier.randomUUIDString()
    }

    static func acceptable(_ value: String?) -> String? {
        guard let value, !value.isEmpty, value.utf8.count <= 128,
            value.utf8.allSatisfy({ $0 > 32 && $0 < 127 })
        else { return nil }
        return value
    }
}

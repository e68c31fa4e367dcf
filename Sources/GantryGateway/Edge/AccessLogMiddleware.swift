import Foundation
import GantryHTTP
public import Hummingbird
import Logging

/// One log line per request, written when the response body has been sent: method, path (never
/// the query, which could carry a secret), status and duration. The request id is in the metadata.
public struct AccessLogMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let start = ContinuousClock.now
        var response = try await next(request, context)
        let status = response.status.code
        let method = request.method.rawValue
        let path = request.uri.path
        let logger = context.logger
        response.body = response.body.afterWrite {
            AccessLog.log(logger, method: method, path: path, status: Int(status), duration: ContinuousClock.now - start)
        }
        return response
    }
}

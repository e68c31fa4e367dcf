import GantryCore
public import Hummingbird

/// Answers 400 to a request whose path is not canonical (``CanonicalPath``) before any other
/// check or the router reads it. Added right after the request id, so the access log,
/// authentication, the CSRF check and the gateway's proxy to the control only ever see one
/// spelling of a path: the one the router matches.
public struct CanonicalPathMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard !CanonicalPath.accepts(request.head.path ?? "") else { return try await next(request, context) }
        // Outside APIErrorMiddleware, so the error is answered here, in the format its prefix
        // would have.
        let style: ErrorResponse.Style = request.uri.path.hasPrefix("/v1") ? .openAI : .problem
        return ErrorResponse(
            error: GantryError(
                .invalidRequest,
                "the request path is not in canonical form (empty, '.' or '..' segments, backslashes or encoded separators)",
                code: "invalid_path"),
            style: style
        ).response()
    }
}

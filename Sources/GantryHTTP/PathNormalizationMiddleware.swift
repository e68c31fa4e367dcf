import GantryCore
public import Hummingbird

/// Puts every request on its canonical path (``CanonicalPath``) before any other check or the
/// router reads it, and answers 400 to a path that has none. Added right after the request id,
/// so the access log, authentication, the CSRF check and the gateway's proxy all see one path.
public struct PathNormalizationMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        switch CanonicalPath.of(request.head.path ?? "") {
        case .canonical:
            return try await next(request, context)
        case .rewritten(let target):
            var head = request.head
            head.path = target
            return try await next(Request(head: head, body: request.body), context)
        case .refused:
            // Outside APIErrorMiddleware, so the error is answered here, in the format its
            // prefix would have.
            let style: ErrorResponse.Style = request.uri.path.hasPrefix("/v1") ? .openAI : .problem
            return ErrorResponse(
                error: GantryError(.invalidRequest, "the request path is not in canonical form", code: "invalid_path"),
                style: style
            ).response()
        }
    }
}

import HTTPTypes
public import Hummingbird

/// Answers `HEAD` for every path that answers `GET` (RFC 9110 section 9.3.2: the same status and
/// headers, no body). Hummingbird's router matches the method before any of its middleware runs,
/// so without this every `HEAD` was a 405: the request goes to the router as a `GET`, and the
/// answer's body is dropped unread, its length, when the body knew it, kept in `Content-Length`.
public struct HeadResponder<Context: RequestContext>: HTTPResponder {
    let router: RouterResponder<Context>

    public init(_ router: RouterResponder<Context>) {
        self.router = router
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        guard request.method == .head else { return try await router.respond(to: request, context: context) }
        var head = request.head
        head.method = .get
        var response = try await router.respond(to: Request(head: head, body: request.body), context: context)
        // The server writes `Content-Length` from the body's own length: an empty body that keeps
        // the GET's length, and writes nothing (the connection knows a HEAD's answer has no body).
        response.body = ResponseBody(contentLength: response.body.contentLength) { writer in try await writer.finish(nil) }
        return response
    }
}

import Foundation
import GantryCore
import HTTPTypes
public import Hummingbird
import Logging
import NIOCore

/// Turns every error thrown below it into a response in the format of the API it happened on:
/// the OpenAI error envelope under `/v1`, RFC 9457 problem details everywhere else.
///
/// Unknown errors become a 500 whose body says nothing of the cause (it could hold a secret);
/// the cause is logged with the request id instead.
public struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch {
            let gantryError = Self.gantryError(from: error)
            if gantryError.kind == .internal {
                context.logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            }
            let style: ErrorResponse.Style = request.uri.path.hasPrefix("/v1") ? .openAI : .problem
            return ErrorResponse(error: gantryError, style: style, instance: request.uri.path).response()
        }
    }

    static func gantryError(from error: any Error) -> GantryError {
        switch error {
        case let error as GantryError:
            return error
        case let error as DecodingError:
            return .invalid("request body does not match the expected shape: \(DecodingErrorDescription(error))")
        case let error as any HTTPResponseError:
            switch error.status {
            case .notFound: return .notFound("no route for this path", code: "not_found")
            case .methodNotAllowed: return GantryError(.invalidRequest, "method not allowed")
            case .contentTooLarge: return GantryError(.payloadTooLarge, "request body is too large")
            case .unauthorized: return GantryError(.unauthorized, "authentication required")
            default:
                if error.status.code < 500 { return .invalid("the request was rejected (\(error.status.code))") }
                return GantryError(.internal, "internal error")
            }
        default:
            return GantryError(.internal, "internal error")
        }
    }
}

/// A short description of a decoding failure that names the field but echoes no value.
func DecodingErrorDescription(_ error: DecodingError) -> String {
    func path(_ context: DecodingError.Context) -> String {
        let p = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        return p.isEmpty ? "body" : p
    }
    switch error {
    case .keyNotFound(let key, let context):
        let parent = path(context)
        return "missing field '\(parent == "body" ? key.stringValue : parent + "." + key.stringValue)'"
    case .typeMismatch(_, let context): return "field '\(path(context))' has the wrong type"
    case .valueNotFound(_, let context): return "field '\(path(context))' must not be null"
    case .dataCorrupted(let context): return "field '\(path(context))' is invalid or the body is not JSON"
    @unknown default: return "invalid body"
    }
}

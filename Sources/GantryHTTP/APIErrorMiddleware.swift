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
    /// The routes' methods by path, to answer a known path asked with another method 405 with
    /// `Allow` rather than 404 (RFC 9110, section 15.5.6).
    let methods: RouteMethods?

    public init(methods: RouteMethods? = nil) {
        self.methods = methods
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch {
            var gantryError = Self.gantryError(from: error)
            if gantryError.kind == .notFound, Self.isUnrouted(error), let methods {
                let allowed = methods.allowed(path: request.uri.path)
                if !allowed.isEmpty {
                    let names = allowed.map(\.rawValue).joined(separator: ", ")
                    gantryError = GantryError(
                        .methodNotAllowed, "\(request.method.rawValue) is not allowed here; this path takes \(names)",
                        code: "method_not_allowed", headers: ["allow": names])
                }
            }
            if gantryError.kind == .internal {
                context.logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            }
            let style: ErrorResponse.Style = request.uri.path.hasPrefix("/v1") ? .openAI : .problem
            return ErrorResponse(error: gantryError, style: style, instance: request.uri.path).response()
        }
    }

    /// Whether `error` is the router's own "no route": a handler's 404 (a missing model, say)
    /// says nothing about which methods a path takes.
    static func isUnrouted(_ error: any Error) -> Bool {
        guard !(error is GantryError), let error = error as? any HTTPResponseError else { return false }
        return error.status == .notFound
    }

    static func gantryError(from error: any Error) -> GantryError {
        switch error {
        case let error as GantryError:
            return error
        case let error as DecodingError:
            return .invalid(
                "request body does not match the expected shape: \(DecodingErrorDescription(error))",
                param: DecodingErrorField(error))
        case let error as any HTTPResponseError:
            switch error.status {
            case .notFound: return .notFound("no route for this path", code: "not_found")
            case .methodNotAllowed: return GantryError(.methodNotAllowed, "method not allowed")
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

/// The wire name (snake_case, as `/api` spells its fields) of a JSON key the decoder saw.
func wireName(_ key: any CodingKey) -> String {
    if let index = key.intValue { return String(index) }
    var name = ""
    var previousWasLower = false
    for character in key.stringValue {
        if character.isUppercase, previousWasLower { name += "_" }
        previousWasLower = character.isLowercase || character.isNumber
        name += character.lowercased()
    }
    return name
}

/// The field a decoding failure is about, dotted (`resources.gpus`), for the error's `param`.
func DecodingErrorField(_ error: DecodingError) -> String? {
    let path: [any CodingKey]
    switch error {
    case .keyNotFound(let key, let context): path = context.codingPath + [key]
    case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context): path = context.codingPath
    @unknown default: path = []
    }
    return path.isEmpty ? nil : path.map(wireName).joined(separator: ".")
}

/// A short description of a decoding failure that names the field but echoes no value.
func DecodingErrorDescription(_ error: DecodingError) -> String {
    func path(_ context: DecodingError.Context) -> String {
        let p = context.codingPath.map(wireName).joined(separator: ".")
        return p.isEmpty ? "body" : p
    }
    switch error {
    case .keyNotFound(let key, let context):
        let parent = path(context)
        return "missing field '\(parent == "body" ? wireName(key) : parent + "." + wireName(key))'"
    case .typeMismatch(_, let context): return "field '\(path(context))' has the wrong type"
    case .valueNotFound(_, let context): return "field '\(path(context))' must not be null"
    case .dataCorrupted(let context): return "field '\(path(context))' is invalid or the body is not JSON"
    @unknown default: return "invalid body"
    }
}

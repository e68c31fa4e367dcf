public import Foundation
public import GantryCore
import HTTPTypes
public import Hummingbird
import NIOCore

/// Renders a `GantryError` as an HTTP response in one of the two error formats Gantry speaks.
public struct ErrorResponse: Sendable {
    public enum Style: Sendable {
        /// `{"error":{"message","type","param","code"}}` as OpenAI clients expect on `/v1`.
        case openAI
        /// RFC 9457 `application/problem+json` on `/api`, `/auth` and operations routes.
        case problem
    }

    public var error: GantryError
    public var style: Style
    public var instance: String?

    public init(error: GantryError, style: Style, instance: String? = nil) {
        self.error = error
        self.style = style
        self.instance = instance
    }

    public var status: HTTPResponse.Status { Self.status(for: error.kind) }

    public static func status(for kind: GantryError.Kind) -> HTTPResponse.Status {
        switch kind {
        case .invalidRequest: return .badRequest
        case .unauthorized: return .unauthorized
        case .forbidden: return .forbidden
        case .notFound: return .notFound
        case .methodNotAllowed: return .methodNotAllowed
        case .conflict: return .conflict
        case .unprocessable: return .unprocessableContent
        case .payloadTooLarge: return .contentTooLarge
        case .rateLimited: return .tooManyRequests
        case .unavailable: return .serviceUnavailable
        case .badGateway: return .badGateway
        case .gatewayTimeout: return .gatewayTimeout
        case .internal: return .internalServerError
        }
    }

    /// The OpenAI `type` for each kind, as the official clients map them to exception classes.
    public static func openAIType(for kind: GantryError.Kind) -> String {
        switch kind {
        case .invalidRequest, .notFound, .methodNotAllowed, .conflict, .unprocessable, .payloadTooLarge:
            return "invalid_request_error"
        case .unauthorized: return "authentication_error"
        case .forbidden: return "permission_error"
        case .rateLimited: return "requests"
        case .unavailable, .badGateway, .gatewayTimeout, .internal: return "server_error"
        }
    }

    /// The JSON body alone, e.g. for an SSE error event.
    public func body() -> Data {
        let object: [String: Any]
        switch style {
        case .openAI:
            object = [
                "error": [
                    "message": error.message,
                    "type": error.type ?? Self.openAIType(for: error.kind),
                    "param": error.param as Any? ?? NSNull(),
                    "code": (error.code ?? Self.defaultCode(for: error.kind)) as Any? ?? NSNull(),
                ] as [String: Any]
            ]
        case .problem:
            var problem: [String: Any] = [
                "type": "about:blank",
                "title": status.reasonPhrase,
                "status": Int(status.code),
                "detail": error.message,
            ]
            if let instance { problem["instance"] = instance }
            if let code = error.code { problem["code"] = code }
            if let param = error.param { problem["param"] = param }
            object = problem
        }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    }

    static func defaultCode(for kind: GantryError.Kind) -> String? {
        switch kind {
        case .unauthorized: return "invalid_api_key"
        case .notFound: return "not_found"
        default: return nil
        }
    }

    public func response() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = style == .openAI ? "application/json" : "application/problem+json"
        if error.kind == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        if let retryAfter = error.retryAfter { headers[.retryAfter] = String(retryAfter) }
        // In one order (a dictionary has none), so the same error is always the same bytes.
        for (name, value) in error.headers.sorted(by: { $0.key < $1.key }) {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(data: body())))
    }
}

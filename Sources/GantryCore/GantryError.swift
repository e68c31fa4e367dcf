/// The one error type that crosses module boundaries.
///
/// Each HTTP surface renders it in its own format (OpenAI envelope on `/v1`, problem details on
/// `/api`), so services throw it without knowing which surface they are behind.
public struct GantryError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case invalidRequest
        case unauthorized
        case forbidden
        case notFound
        /// The path exists, the method does not (405, with the methods it has in `Allow`).
        case methodNotAllowed
        case conflict
        /// Well-formed but wrong content, such as an upload whose digest differs from the one promised (422).
        case unprocessable
        case payloadTooLarge
        case rateLimited
        case unavailable
        case badGateway
        case gatewayTimeout
        case `internal`
    }

    public var kind: Kind
    public var message: String
    /// A stable machine-readable code such as `model_not_found`.
    public var code: String?
    /// The request field the error is about, when there is one.
    public var param: String?
    /// Seconds after which a rate-limited request may be retried (`retry-after`).
    public var retryAfter: Int?
    /// The OpenAI error `type` when it is not the one of `kind` (`insufficient_quota`).
    public var type: String?
    /// Response headers that explain the error, such as `x-ratelimit-remaining-tokens` on a 429.
    public var headers: [String: String]

    public init(
        _ kind: Kind, _ message: String, code: String? = nil, type: String? = nil, param: String? = nil,
        retryAfter: Int? = nil, headers: [String: String] = [:]
    ) {
        self.type = type
        self.headers = headers
        self.kind = kind
        self.message = message
        self.code = code
        self.param = param
        self.retryAfter = retryAfter
    }

    public var description: String { "\(kind.rawValue): \(message)" }

    public static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> GantryError {
        GantryError(.invalidRequest, message, code: code, param: param)
    }

    /// Refuses the first field set below 1, naming it `object.field`.
    public static func requirePositive(_ fields: [(String, Int?)], in object: String) throws {
        for (name, value) in fields {
            if let value, value < 1 { throw invalid("\(object).\(name) must be at least 1", param: "\(object).\(name)") }
        }
    }

    public static func notFound(_ message: String, code: String? = nil) -> GantryError {
        GantryError(.notFound, message, code: code)
    }

    public static func conflict(_ message: String) -> GantryError {
        GantryError(.conflict, message)
    }
}

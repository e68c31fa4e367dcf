import Foundation
public import GantryCore
public import GantryHTTP
import HTTPTypes
public import Hummingbird
import NIOCore
import Synchronization

/// The console's way to the platform: every read and every change is a call to Gantry's own
/// `/api`, made in process through the router (its middleware included) with the browser's own
/// session cookie. So the console can do exactly what its user may do through the API, no more,
/// and a form refused shows the API's own message. Nothing is read from the store directly.
public final class ConsoleAPI: Sendable {
    private let responder = Mutex<RouterResponder<GantryRequestContext>?>(nil)

    public init() {}

    /// The router's responder, set once every route is added (the console's routes are among them).
    public func attach(_ responder: RouterResponder<GantryRequestContext>) {
        self.responder.withLock { $0 = responder }
    }

    /// One API call as the caller of `request`: its cookie or bearer credential, and for a change
    /// the session's CSRF token (the console checked its own form's token first).
    func call(
        _ method: HTTPRequest.Method, _ path: String, body: JSONValue? = nil, as request: Request,
        context: GantryRequestContext
    ) async throws -> APIAnswer {
        guard let responder = responder.withLock({ $0 }) else {
            throw GantryError(.unavailable, "the console is starting")
        }
        var fields = HTTPFields()
        for name in [HTTPField.Name.cookie, .authorization] {
            if let value = request.headers[name] { fields[name] = value }
        }
        if method != .get, case .session(let csrf)? = context.principal?.credential {
            fields[HTTPField.Name("x-csrf-token")!] = csrf
        }
        var buffer = ByteBuffer()
        if let body {
            fields[.contentType] = "application/json"
            buffer = ByteBuffer(data: try JSONEncoder().encode(body))
        }
        let head = HTTPRequest(method: method, scheme: nil, authority: nil, path: path, headerFields: fields)
        var inner = context
        inner.principal = nil
        let response = try await responder.respond(to: Request(head: head, body: .init(buffer: buffer)), context: inner)
        let collector = BodyCollector()
        try await response.body.write(collector.writer())
        return APIAnswer(status: Int(response.status.code), headers: response.headers, body: collector.collected)
    }
}

/// What an API call answered.
struct APIAnswer: Sendable {
    var status: Int
    var headers: HTTPFields
    var body: ByteBuffer

    var ok: Bool { (200..<300).contains(status) }

    var json: JSONValue {
        (try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: body))) ?? .null
    }

    /// A list answer's `data`.
    var list: [JSONValue] { json["data"].array }

    /// The problem an answer of 4xx or 5xx describes: its detail and the field it names.
    var problem: FormProblem {
        let json = self.json
        return FormProblem(
            message: json["detail"].string ?? json["error"]["message"].string ?? "the API answered \(status)",
            field: json["param"].string ?? json["error"]["param"].string)
    }
}

/// An API refusal, shown next to the form field it names (or above the form).
struct FormProblem: Sendable, Equatable {
    var message: String
    var field: String?
}

/// Collects a response body in memory: API answers the console reads are small JSON.
private final class BodyCollector: Sendable {
    private let buffer = Mutex(ByteBuffer())
    static let limit = 8 << 20

    var collected: ByteBuffer { buffer.withLock { $0 } }

    struct Writer: ResponseBodyWriter {
        let collector: BodyCollector
        mutating func write(_ part: ByteBuffer) async throws {
            try collector.buffer.withLock { buffer in
                var part = part
                guard buffer.readableBytes + part.readableBytes <= BodyCollector.limit else {
                    throw GantryError(.internal, "an API answer to the console was larger than 8 MiB")
                }
                buffer.writeBuffer(&part)
            }
        }
        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }

    func writer() -> Writer { Writer(collector: self) }
}

extension JSONValue {
    subscript(key: String) -> JSONValue {
        if case .object(let object) = self { return object[key] ?? .null }
        return .null
    }

    var string: String? {
        switch self {
        case .string(let value): value
        case .number(let value): value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
        case .bool(let value): String(value)
        default: nil
        }
    }

    var int: Int? {
        if case .number(let value) = self, value.isFinite, abs(value) < 1e15 { return Int(value) }
        return nil
    }

    var double: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    var array: [JSONValue] {
        if case .array(let values) = self { return values }
        return []
    }

    var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The text of a scalar for a table cell; empty for null.
    var text: String { string ?? "" }
}

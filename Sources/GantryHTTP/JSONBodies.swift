public import Foundation
import GantryCore
public import Hummingbird
import NIOCore

/// Shared JSON handling for `/api` routes: snake_case on the wire, ISO 8601 dates.
public enum JSONCoding {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}

extension Request {
    /// Collects at most `limit` bytes of body and decodes it as JSON; a body over the limit is a 413 and
    /// one that is not the expected JSON is a 400 naming the field.
    public func decodeJSON<T: Decodable>(as type: T.Type, limit: Int = 1 << 20) async throws -> T {
        let buffer = try await collectBody(limit: limit)
        guard buffer.readableBytes > 0 else { throw GantryError.invalid("request body is empty; expected JSON") }
        return try JSONCoding.decoder().decode(T.self, from: Data(buffer: buffer))
    }

    /// Decodes an `application/x-www-form-urlencoded` body (HTML forms, RFC 7662 introspection).
    public func decodeForm<T: Decodable>(as type: T.Type, limit: Int = 16 * 1024) async throws -> T {
        let buffer = try await collectBody(limit: limit)
        do {
            return try URLEncodedFormDecoder().decode(T.self, from: String(buffer: buffer))
        } catch {
            throw GantryError.invalid("the form is incomplete or malformed")
        }
    }

    /// The whole body, at most `limit` bytes; more is a 413.
    private func collectBody(limit: Int) async throws -> ByteBuffer {
        var request = self
        do {
            return try await request.collectBody(upTo: limit)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw GantryError(.payloadTooLarge, "request body is larger than \(limit) bytes")
        }
    }
}

/// A JSON response with an explicit status, encoded with `JSONCoding`.
public struct JSONResponse<Value: Encodable & Sendable>: ResponseGenerator {
    public var status: HTTPResponse.Status
    public var value: Value

    public init(_ value: Value, status: HTTPResponse.Status = .ok) {
        self.value = value
        self.status = status
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = try JSONCoding.encoder().encode(value)
        return Response(
            status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: data)))
    }
}

/// `{"data": [...]}`: the list shape of every `/api` collection.
public struct ListResponse<Item: Encodable & Sendable>: Encodable, Sendable {
    public var data: [Item]
    public init(_ data: [Item]) { self.data = data }
}

/// A record's own fields plus one more, e.g. a model with its `versions`: `{...model, "versions": [...]}`.
public struct RecordWithField<Record: Encodable & Sendable, Value: Encodable & Sendable>: Encodable, Sendable {
    public var record: Record
    public var name: String
    public var value: Value

    public init(_ record: Record, adding name: String, _ value: Value) {
        self.record = record
        self.name = name
        self.value = value
    }

    public func encode(to encoder: any Encoder) throws {
        try record.encode(to: encoder)
        var container = encoder.container(keyedBy: FieldName.self)
        try container.encode(value, forKey: FieldName(stringValue: name))
    }

    struct FieldName: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

/// `{"data": [...], "next_cursor": "..."}`: one page of a collection. Pass `next_cursor` back as
/// `?cursor=` for the next page; it is null on the last page.
public struct PageResponse<Item: Encodable & Sendable>: Encodable, Sendable {
    public var data: [Item]
    public var nextCursor: String?

    public init(_ data: [Item], nextCursor: String?) {
        self.data = data
        self.nextCursor = nextCursor
    }
}

/// Opaque page cursors: base64url of the last key of the previous page, so clients cannot come
/// to depend on what is inside.
public enum PageCursor {
    public static func encode(_ key: String) -> String {
        Data(key.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public static func decode(_ cursor: String) throws -> String {
        var base64 = cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard cursor.count <= 1024, let data = Data(base64Encoded: base64), let key = String(data: data, encoding: .utf8) else {
            throw GantryError.invalid("cursor is not one this server issued", param: "cursor")
        }
        return key
    }

    /// The `limit` query parameter: 1 to `maximum`, `fallback` when absent.
    public static func limit(_ raw: String?, fallback: Int = 100, maximum: Int = 1000) throws -> Int {
        guard let raw else { return fallback }
        guard let value = Int(raw), (1...maximum).contains(value) else {
            throw GantryError.invalid("limit must be an integer from 1 to \(maximum)", param: "limit")
        }
        return value
    }
}

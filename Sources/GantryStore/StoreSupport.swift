import Foundation
import GantryCore
import PostgresKit
import SQLKit
import SQLiteKit

extension Date {
    /// Timestamps are stored as integer milliseconds: one representation on both databases.
    var millisecondsSince1970: Int64 { Int64((timeIntervalSince1970 * 1000).rounded()) }

    init(millisecondsSince1970 value: Int64) {
        self.init(timeIntervalSince1970: Double(value) / 1000)
    }
}

extension SQLRow {
    func date(_ column: String) throws -> Date {
        Date(millisecondsSince1970: try decode(column: column, as: Int64.self))
    }

    func optionalDate(_ column: String) throws -> Date? {
        try decode(column: column, as: Int64?.self).map(Date.init(millisecondsSince1970:))
    }

    func string(_ column: String) throws -> String {
        try decode(column: column, as: String.self)
    }

    func int(_ column: String) throws -> Int {
        Int(try decode(column: column, as: Int64.self))
    }

    func enumValue<E: RawRepresentable>(_ column: String, as type: E.Type) throws -> E where E.RawValue == String {
        let raw = try string(column)
        guard let value = E(rawValue: raw) else {
            throw GantryError(.internal, "stored value '\(raw)' in column \(column) is not a valid \(E.self)")
        }
        return value
    }
}

/// Runs an insert and turns a uniqueness violation from either database into a `.conflict`.
func insertUnique(_ what: String, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as SQLiteError
        where [.constraint, .constraintUniqueFailed, .constraintPrimaryKeyFailed].contains(error.reason)
    {
        throw GantryError.conflict("\(what) already exists")
    } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
        throw GantryError.conflict("\(what) already exists")
    }
}

/// JSON columns are TEXT on both databases; the plain encoder keeps keys exactly as written.
func jsonText<T: Encodable>(_ value: T?) throws -> String? {
    guard let value else { return nil }
    return String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
}

/// A value stored by `jsonText`.
func decodeJSONText<T: Decodable>(_ text: String, as type: T.Type) throws -> T {
    try JSONDecoder().decode(T.self, from: Data(text.utf8))
}

extension SQLRow {
    /// A JSON column's value; nil when the column is NULL.
    func json<T: Decodable>(_ column: String, as type: T.Type) throws -> T? {
        try decode(column: column, as: String?.self).map { try decodeJSONText($0, as: T.self) }
    }
}

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

import Foundation
import GantryCore

/// Usage records as one JSON array of rows, each row an array in `columns` order: ids and names as strings, counts and epoch milliseconds as integers, absent values as
/// null. Written by hand because a batch is written every few milliseconds at full load and a
/// general encoder costs more than the rest of the write.
enum UsageRowsJSON {
    /// One column of `usage_records`: its name and how a record fills it. The JSON rows and the
    /// INSERT that unpacks them (`SQLUsageRepository`) both follow this list.
    struct Column: Sendable {
        enum Cell {
            case text(String?)
            case integer(Int64?)
        }

        let name: String
        let isInteger: Bool
        let cell: @Sendable (UsageRecord) -> Cell

        static func text(_ name: String, _ value: @escaping @Sendable (UsageRecord) -> String?) -> Column {
            Column(name: name, isInteger: false) { .text(value($0)) }
        }

        static func integer(_ name: String, _ value: @escaping @Sendable (UsageRecord) -> Int64?) -> Column {
            Column(name: name, isInteger: true) { .integer(value($0)) }
        }
    }

    static let columns: [Column] = [
        .text("id") { $0.id },
        .integer("created_at") { $0.createdAt.millisecondsSince1970 },
        .text("key_id") { $0.keyID },
        .text("user_id") { $0.userID },
        .text("deployment") { $0.deployment },
        .text("version") { $0.version },
        .text("instance_id") { $0.instanceID },
        .text("endpoint") { $0.endpoint },
        .integer("prompt_tokens") { Int64($0.promptTokens) },
        .integer("completion_tokens") { Int64($0.completionTokens) },
        .integer("ttft_ms") { $0.timeToFirstTokenMs.map(Int64.init) },
        .integer("latency_ms") { Int64($0.latencyMs) },
        .integer("status") { Int64($0.status) },
        .text("error_type") { $0.errorType },
        .integer("engine_ms") { Int64(($0.engineSeconds * 1000).rounded()) },
        .integer("estimated") { $0.estimated ? 1 : 0 },
    ]

    static func encode(_ records: some Collection<UsageRecord>) -> String {
        var out = [UInt8]()
        out.reserveCapacity(records.count * 320)
        out.append(UInt8(ascii: "["))
        for (index, record) in records.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "["))
            for column in columns {
                switch column.cell(record) {
                case .text(let value): appendString(value, to: &out)
                case .integer(let value): appendInteger(value, to: &out)
                }
            }
            out[out.count - 1] = UInt8(ascii: "]")
        }
        out.append(UInt8(ascii: "]"))
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the value and a comma (the row's last comma becomes its closing bracket).
    private static func appendInteger(_ value: Int64?, to out: inout [UInt8]) {
        if let value {
            out.append(contentsOf: String(value).utf8)
        } else {
            out.append(contentsOf: "null".utf8)
        }
        out.append(UInt8(ascii: ","))
    }

    private static func appendString(_ value: String?, to out: inout [UInt8]) {
        guard let value else {
            out.append(contentsOf: "null,".utf8)
            return
        }
        out.append(UInt8(ascii: "\""))
        // Ids and names seldom need escaping: copy them whole.
        if value.utf8.allSatisfy({ $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) {
            out.append(contentsOf: value.utf8)
            out.append(contentsOf: "\",".utf8)
            return
        }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(UInt8(ascii: "\\"))
                out.append(byte)
            case 0:
                // PostgreSQL text cannot hold NUL and SQLite's JSON functions cut the text there;
                // one such record must not fail its whole batch on every retry.
                out.append(contentsOf: "\u{FFFD}".utf8)
            case 1..<0x20:
                // Control characters as \u00XX; everything else, UTF-8 included, is valid as is.
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: "\\u00".utf8)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0f)])
            default:
                out.append(byte)
            }
        }
        out.append(contentsOf: "\",".utf8)
    }
}

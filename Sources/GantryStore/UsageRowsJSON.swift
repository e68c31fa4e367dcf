import Foundation
import GantryCore

/// Usage records as one JSON array of rows, each row an array in `SQLUsageRepository.columns`
/// order: ids and names as strings, counts and epoch milliseconds as integers, absent values as
/// null. Written by hand because a batch is written every few milliseconds at full load and a
/// general encoder costs more than the rest of the write.
enum UsageRowsJSON {
    static func encode(_ records: some Collection<UsageRecord>) -> String {
        var out = [UInt8]()
        out.reserveCapacity(records.count * 320)
        out.append(UInt8(ascii: "["))
        for (index, r) in records.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "["))
            appendString(r.id, to: &out)
            appendInteger(r.createdAt.millisecondsSince1970, to: &out)
            appendString(r.keyID, to: &out)
            appendString(r.userID, to: &out)
            appendString(r.deployment, to: &out)
            appendString(r.version, to: &out)
            appendString(r.instanceID, to: &out)
            appendString(r.endpoint, to: &out)
            appendInteger(Int64(r.promptTokens), to: &out)
            appendInteger(Int64(r.completionTokens), to: &out)
            appendInteger(r.timeToFirstTokenMs.map(Int64.init), to: &out)
            appendInteger(Int64(r.latencyMs), to: &out)
            appendInteger(Int64(r.status), to: &out)
            appendString(r.errorType, to: &out)
            appendInteger(Int64((r.engineSeconds * 1000).rounded()), to: &out)
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

public import Foundation
import Synchronization

/// Opaque identifiers for stored records: a short type prefix and a random UUID, so an id in a log
/// line says what it names.
public enum Identifier {
    /// `prefix_` and the UUID's 32 lower-case hex digits. Built byte by byte: one is made per
    /// usage record, and the string replacement this replaces was 3 % of a request's CPU.
    /// A random (version 4) UUID in lower case, for request ids (not secrets): `UUID()` opened,
    /// read and closed /dev/urandom on every call.
    public static func randomUUIDString() -> String {
        let digits = Array("0123456789abcdef".utf8)
        var raw = (FastRandom.next(), FastRandom.next())
        raw.0 = (raw.0 & ~(0xF << 52)) | (0x4 << 52)  // version 4: the high half of byte 6 (little-endian)
        let bytes = withUnsafeBytes(of: &raw) { Array($0) }
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (index, byte) in bytes.enumerated() {
            if [4, 6, 8, 10].contains(index) { text.append(UInt8(ascii: "-")) }
            let value = index == 8 ? (byte & 0x3F) | 0x80 : byte
            text.append(digits[Int(value >> 4)])
            text.append(digits[Int(value & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// `prefix_`, then the time in milliseconds (12 hex digits) and 80 random bits (20): ids made
    /// later sort later, so a table keyed by them grows at its end. For usage records, written
    /// thousands a second: random keys dirtied a different index page per row (measured: most of
    /// SQLite's writes, and a sixth of the gateway's CPU).
    public static func makeTimeOrdered(_ prefix: String, now: Date = Date()) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var bytes = Array(prefix.utf8)
        bytes.reserveCapacity(bytes.count + 33)
        bytes.append(UInt8(ascii: "_"))
        let milliseconds = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        for shift in stride(from: 44, through: 0, by: -4) { bytes.append(digits[Int((milliseconds >> UInt64(shift)) & 0xF)]) }
        var random = FastRandom.next()
        for _ in 0..<16 {
            bytes.append(digits[Int(random & 0xF)])
            random >>= 4
        }
        random = FastRandom.next()
        for _ in 0..<4 {
            bytes.append(digits[Int(random & 0xF)])
            random >>= 4
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public static func make(_ prefix: String) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var bytes = Array(prefix.utf8)
        bytes.reserveCapacity(bytes.count + 33)
        bytes.append(UInt8(ascii: "_"))
        // 128 random bits from the system generator (getrandom): `UUID()` here opened, read and
        // closed /dev/urandom on every call, 4 % of a request's CPU.
        var generator = SystemRandomNumberGenerator()
        withUnsafeBytes(of: (generator.next(), generator.next())) { raw in
            for byte in raw {
                bytes.append(digits[Int(byte >> 4)])
                bytes.append(digits[Int(byte & 0x0f)])
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Names that become part of URLs, process arguments and `model` fields: DNS labels.
public enum ResourceName {
    /// Lower-case letters, digits and `-`, 1 to 63 characters, starting and ending alphanumeric.
    public static func validate(_ name: String, field: String) throws {
        let allowed = name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
        guard !name.isEmpty, name.utf8.count <= 63, allowed, name.first != "-", name.last != "-" else {
            throw GantryError.invalid(
                "\(field) must be a DNS label: 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit",
                param: field
            )
        }
    }
}

extension Duration {
    /// The duration as fractional seconds, for arithmetic with dates and for messages.
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// A fast generator for ids that must be unique, not secret (request ids, usage records):
/// xoshiro256** seeded from the system, under a lock. Two `getrandom` calls per id were measurable
/// at the gateway's request rate. Keys, secrets and sessions use `SystemRandomNumberGenerator`.
public enum FastRandom {
    private static let state = Mutex<(UInt64, UInt64, UInt64, UInt64)>(
        {
            var system = SystemRandomNumberGenerator()
            return (system.next(), system.next(), system.next(), system.next() | 1)
        }())

    public static func next() -> UInt64 {
        state.withLock { s in
            let result = rotate(s.1 &* 5, 7) &* 9
            let t = s.1 << 17
            s.2 ^= s.0
            s.3 ^= s.1
            s.1 ^= s.2
            s.0 ^= s.3
            s.2 ^= t
            s.3 = rotate(s.3, 45)
            return result
        }
    }

    private static func rotate(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

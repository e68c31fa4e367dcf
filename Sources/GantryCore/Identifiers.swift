public import Foundation
import Synchronization

/// Opaque identifiers for stored records: a short type prefix and a random UUID, so an id in a log
/// line says what it names.
public enum Identifier {
    /// `prefix_` and 32 lower-case hex digits of 128 random bits from the system generator
    /// (getrandom). Built byte by byte, without `UUID()`: it opened, read and closed /dev/urandom
    /// on every call (4 % of a relayed request's CPU).
    public static func make(_ prefix: String) -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = prefixed(prefix)
        appendHex(generator.next(), digits: 16, to: &bytes)
        appendHex(generator.next(), digits: 16, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `prefix_`, then the time in milliseconds (12 hex digits) and 80 random bits (20): ids made
    /// later sort later, so a table keyed by them grows at its end. For usage records, written
    /// thousands a second: random keys dirtied a different index page per row (measured: most of
    /// SQLite's writes, and a sixth of the gateway's CPU). Unique, not secret (`FastRandom`).
    public static func makeTimeOrdered(_ prefix: String, now: Date = Date()) -> String {
        var bytes = prefixed(prefix)
        appendHex(UInt64(max(0, now.timeIntervalSince1970 * 1000)), digits: 12, to: &bytes)
        appendHex(FastRandom.next(), digits: 16, to: &bytes)
        appendHex(FastRandom.next(), digits: 4, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A random (version 4) UUID in lower case, for request ids (unique, not secret).
    public static func randomUUIDString() -> String {
        let high = (FastRandom.next() & ~0xF000) | 0x4000  // version 4: digit 13
        let low = (FastRandom.next() & ~(0xC << 60)) | (0x8 << 60)  // variant 10: the top bits of digit 17
        var bytes: [UInt8] = []
        bytes.reserveCapacity(36)
        for (part, digits) in [(high >> 32, 8), ((high >> 16) & 0xFFFF, 4), (high & 0xFFFF, 4), (low >> 48, 4)] {
            appendHex(part, digits: digits, to: &bytes)
            bytes.append(UInt8(ascii: "-"))
        }
        appendHex(low & 0xFFFF_FFFF_FFFF, digits: 12, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func prefixed(_ prefix: String) -> [UInt8] {
        var bytes = Array(prefix.utf8)
        bytes.reserveCapacity(bytes.count + 33)
        bytes.append(UInt8(ascii: "_"))
        return bytes
    }

    /// The low `digits` hex digits of `value`, most significant first.
    private static func appendHex(_ value: UInt64, digits: Int, to bytes: inout [UInt8]) {
        let alphabet: StaticString = "0123456789abcdef"
        for shift in stride(from: (digits - 1) * 4, through: 0, by: -4) {
            bytes.append(alphabet.utf8Start[Int((value >> UInt64(shift)) & 0xF)])
        }
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

import Crypto
import Foundation
import GantryCore

/// The shape of a Gantry API key: `gk_<id>_<secret>`.
///
/// The id (12 lower-case alphanumerics) names the key in lists and logs without revealing it;
/// the secret is 32 random bytes, base64url. Only SHA-256 of the secret is stored: with 256 bits
/// of entropy a slow password hash adds nothing but latency on every request.
public struct APIKeyFormat: Sendable {
    public static let prefix = "gk_"

    public struct Parsed: Sendable, Equatable {
        public var id: String
        public var secret: String
    }

    /// Creates a new key: its public id and the full plaintext shown once to the caller.
    public static func generate() -> (id: String, plaintext: String) {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        let id = String((0..<12).map { _ in alphabet[Int(generator.next(upperBound: UInt(alphabet.count)))] })
        return (id, prefix + id + "_" + RandomToken.make())
    }

    /// Splits a presented key; nil when it is not shaped like a Gantry key (no lookup is made then).
    public static func parse(_ presented: String) -> Parsed? {
        guard presented.hasPrefix(prefix), presented.utf8.count <= 128 else { return nil }
        let rest = presented.dropFirst(prefix.count)
        guard let separator = rest.firstIndex(of: "_") else { return nil }
        let id = String(rest[..<separator])
        let secret = String(rest[rest.index(after: separator)...])
        let idIsValid = id.utf8.count == 12 && id.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) }
        let secretIsValid =
            secret.utf8.count == 43
            && secret.utf8.allSatisfy {
                ($0 >= 97 && $0 <= 122) || ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 95
            }
        guard idIsValid, secretIsValid else { return nil }
        return Parsed(id: id, secret: secret)
    }

    public static func hash(secret: String) -> String {
        RandomToken.sha256Hex(secret)
    }

    /// The digest as bytes (`hash(secret:)` is its hex), for comparisons that need no text.
    static func digest(secret: String) -> SHA256Digest {
        SHA256.hash(data: Array(secret.utf8))
    }

    /// Compares two digests in time independent of where they differ.
    public static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        GantryCore.constantTimeEqual(a, b)
    }
}

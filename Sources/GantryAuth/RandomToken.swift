import Crypto
public import Foundation
import GantryCore

/// Unguessable strings for keys, sessions, `state`, `nonce` and PKCE verifiers.
public enum RandomToken {
    /// `byteCount` random bytes, base64url without padding (43 characters for 32 bytes).
    public static func make(byteCount: Int = 32) -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<byteCount).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return base64URL(Data(bytes))
    }

    public static func base64URL(_ data: Data) -> String {
        data.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Hex SHA-256, the form in which secrets are stored.
    static func sha256Hex(_ text: String) -> String {
        Hex.encode(SHA256.hash(data: Array(text.utf8)))
    }

    /// PKCE S256 (RFC 7636): the challenge sent to the provider for a verifier kept here.
    public static func pkceChallenge(for verifier: String) -> String {
        base64URL(Data(SHA256.hash(data: Data(verifier.utf8))))
    }
}

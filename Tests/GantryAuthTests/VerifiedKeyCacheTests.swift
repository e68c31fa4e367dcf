import Crypto
import Foundation
import GantryCore
import Testing

@testable import GantryAuth

@Suite("Verified key cache")
struct VerifiedKeyCacheTests {
    static let principal = Principal(userID: "u", userName: "ann", role: .user, credential: .apiKey(id: "k"))
    static let digest = SHA256.hash(data: Array("secret".utf8))

    @Test("while the control role cannot be asked: served up to the grace after the last check, never past the key's expiry")
    func offlineGrace() {
        let cache = VerifiedKeyCache<String>(lifetime: .seconds(5))
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var expiring = Self.principal
        expiring.keyExpiry = start + 100
        cache.remember(expiring, keyID: "k", secretDigest: Self.digest, now: start)
        cache.remember(Self.principal, keyID: "forever", secretDigest: Self.digest, now: start)
        #expect(cache.principal(keyID: "k", secretDigest: Self.digest, now: start + 6) == nil, "no longer fresh")
        #expect(cache.stalePrincipal(keyID: "k", secretDigest: Self.digest, now: start + 60, maxAge: 60) == expiring)
        #expect(cache.stalePrincipal(keyID: "k", secretDigest: Self.digest, now: start + 61, maxAge: 60) == nil, "past the grace")
        #expect(cache.stalePrincipal(keyID: "k", secretDigest: Self.digest, now: start + 100, maxAge: 600) == nil, "expired")
        #expect(
            cache.stalePrincipal(keyID: "forever", secretDigest: Self.digest, now: start + 500, maxAge: 600) == Self.principal)
        let other = SHA256.hash(data: Array("other".utf8))
        #expect(cache.stalePrincipal(keyID: "k", secretDigest: other, now: start + 10, maxAge: 60) == nil, "another secret")
        #expect(cache.stalePrincipal(keyID: "k", secretDigest: Self.digest, now: start + 10, maxAge: 0) == nil, "grace 0: never")
        // The control role answers again: everything remembered is forgotten, stale entries too.
        cache.removeAll()
        #expect(cache.stalePrincipal(keyID: "forever", secretDigest: Self.digest, now: start + 10, maxAge: 600) == nil)
    }
}

import Crypto
import Foundation
import GantryCore
import Synchronization

/// API keys verified recently, by a key (the key id, or the digest of a whole token) and the
/// SHA-256 of the presented secret (never the secret), each remembered for `lifetime` and never
/// past the key's own expiry. Bounded: when full, expired entries go, and if none has expired
/// everything goes (a burst of new keys costs store reads, never memory).
final class VerifiedKeyCache<Key: Hashable & Sendable>: Sendable {
    struct Entry {
        var principal: Principal
        /// Compared as bytes (in constant time): a hex string per check cost a noticeable share
        /// of the data plane's CPU.
        var secretDigest: SHA256Digest
        var until: Date
    }

    let lifetime: TimeInterval
    let capacity: Int
    private let entries = Mutex<[Key: Entry]>([:])

    init(lifetime: Duration, capacity: Int = 10_000) {
        self.lifetime = lifetime.inSeconds
        self.capacity = capacity
    }

    func principal(keyID: Key, secretDigest: SHA256Digest, now: Date) -> Principal? {
        guard lifetime > 0 else { return nil }
        return entries.withLock { entries in
            // swift-crypto compares digests in constant time.
            guard let entry = entries[keyID], entry.until > now, entry.secretDigest == secretDigest
            else { return nil }
            return entry.principal
        }
    }

    func remember(_ principal: Principal, keyID: Key, secretDigest: SHA256Digest, keyExpiry: Date?, now: Date) {
        guard lifetime > 0 else { return }
        let until = min(now.addingTimeInterval(lifetime), keyExpiry ?? .distantFuture)
        entries.withLock { entries in
            if entries.count >= capacity {
                entries = entries.filter { $0.value.until > now }
                if entries.count >= capacity { entries.removeAll() }
            }
            entries[keyID] = Entry(principal: principal, secretDigest: secretDigest, until: until)
        }
    }

    func removeAll() {
        entries.withLock { $0.removeAll() }
    }
}

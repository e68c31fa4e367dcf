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
        /// When the key was last found good (its own expiry is the principal's `keyExpiry`).
        var verifiedAt: Date
    }

    struct State {
        var entries: [Key: Entry] = [:]
        /// Counts `removeAll` calls: a verification that read the store before one must not
        /// remember what it read after it (that would undo a revocation for a lifetime).
        var generation = 0
    }

    let lifetime: TimeInterval
    let capacity: Int
    private let state = Mutex(State())

    init(lifetime: Duration, capacity: Int = 10_000) {
        self.lifetime = lifetime.inSeconds
        self.capacity = capacity
    }

    func principal(keyID: Key, secretDigest: SHA256Digest, now: Date) -> Principal? {
        guard lifetime > 0 else { return nil }
        return state.withLock { state in
            // swift-crypto compares digests in constant time.
            guard let entry = state.entries[keyID], entry.until > now, entry.secretDigest == secretDigest
            else { return nil }
            return entry.principal
        }
    }

    /// A verification older than the cache's lifetime, at most `maxAge` old, for a key that has
    /// not expired: what a gateway may serve while the control role cannot be asked. Everything
    /// remembered is forgotten as soon as the control role answers again (`removeAll`, through
    /// the route watch), so a revocation made meanwhile applies then.
    func stalePrincipal(keyID: Key, secretDigest: SHA256Digest, now: Date, maxAge: TimeInterval) -> Principal? {
        guard lifetime > 0, maxAge > 0 else { return nil }
        return state.withLock { state in
            guard let entry = state.entries[keyID], entry.secretDigest == secretDigest,
                now.timeIntervalSince(entry.verifiedAt) <= maxAge, entry.principal.keyExpiry.map({ $0 > now }) ?? true
            else { return nil }
            return entry.principal
        }
    }

    /// Taken before reading the store, and handed to `remember`.
    var generation: Int { state.withLock { $0.generation } }

    /// Remembers a verification, unless `removeAll` ran since `generation` was taken.
    func remember(
        _ principal: Principal, keyID: Key, secretDigest: SHA256Digest, now: Date, generation: Int? = nil
    ) {
        guard lifetime > 0 else { return }
        let until = min(now.addingTimeInterval(lifetime), principal.keyExpiry ?? .distantFuture)
        state.withLock { state in
            if let generation, generation != state.generation { return }
            if state.entries.count >= capacity {
                state.entries = state.entries.filter { $0.value.until > now }
                if state.entries.count >= capacity { state.entries.removeAll() }
            }
            state.entries[keyID] = Entry(
                principal: principal, secretDigest: secretDigest, until: until, verifiedAt: now)
        }
    }

    func removeAll() {
        state.withLock { state in
            state.entries.removeAll()
            state.generation += 1
        }
    }
}

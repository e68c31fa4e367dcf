import Foundation
import GantryCore
import Synchronization

/// API keys verified recently, by key id and the SHA-256 of the presented secret (never the
/// secret), each remembered for `lifetime` and never past the key's own expiry. Bounded: when
/// full, expired entries go, and if none has expired everything goes (a burst of new keys costs
/// store reads, never memory).
final class VerifiedKeyCache: Sendable {
    struct Entry {
        var principal: Principal
        var secretHash: String
        var until: Date
    }

    let lifetime: TimeInterval
    let capacity: Int
    private let entries = Mutex<[String: Entry]>([:])

    init(lifetime: Duration, capacity: Int = 10_000) {
        self.lifetime = lifetime.inSeconds
        self.capacity = capacity
    }

    func principal(keyID: String, secretHash: String, now: Date) -> Principal? {
        guard lifetime > 0 else { return nil }
        return entries.withLock { entries in
            guard let entry = entries[keyID], entry.until > now,
                APIKeyFormat.constantTimeEqual(entry.secretHash, secretHash)
            else { return nil }
            return entry.principal
        }
    }

    func remember(_ principal: Principal, keyID: String, secretHash: String, keyExpiry: Date?, now: Date) {
        guard lifetime > 0 else { return }
        let until = min(now.addingTimeInterval(lifetime), keyExpiry ?? .distantFuture)
        entries.withLock { entries in
            if entries.count >= capacity {
                entries = entries.filter { $0.value.until > now }
                if entries.count >= capacity { entries.removeAll() }
            }
            entries[keyID] = Entry(principal: principal, secretHash: secretHash, until: until)
        }
    }

    func removeAll() {
        entries.withLock { $0.removeAll() }
    }
}

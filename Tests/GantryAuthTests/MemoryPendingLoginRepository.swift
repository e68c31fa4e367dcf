import Foundation
import GantryCore

/// A pending-login store in memory, for the unit tests of `PendingLogins` (the SQL one is tested
/// against SQLite and PostgreSQL in StoreConformanceTests).
actor MemoryPendingLoginRepository: PendingLoginRepository {
    private var entries: [String: (payload: Data, expiresAt: Date)] = [:]
    private(set) var keys: [String] = []

    func insertPendingLogin(kind: String, key: String, payload: Data, expiresAt: Date, capacity: Int, now: Date) throws {
        entries = entries.filter { $0.value.expiresAt > now }
        guard entries.keys.filter({ $0.hasPrefix(kind + "/") }).count < capacity else {
            throw GantryError(.rateLimited, "too many logins in progress", retryAfter: 60)
        }
        entries[kind + "/" + key] = (payload, expiresAt)
        keys.append(key)
    }

    func takePendingLogin(kind: String, key: String, now: Date) -> Data? {
        guard let entry = entries.removeValue(forKey: kind + "/" + key), entry.expiresAt > now else { return nil }
        return entry.payload
    }

    func pendingLogin(kind: String, key: String, now: Date) -> Data? {
        guard let entry = entries[kind + "/" + key], entry.expiresAt > now else { return nil }
        return entry.payload
    }

    func deletePendingLogin(kind: String, key: String) {
        entries[kind + "/" + key] = nil
    }
}

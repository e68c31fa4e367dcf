import Foundation
import GantryAuth
import GantryCore
import GantryStore
import GantryTestSupport
import Logging
import Testing

@Suite("API keys")
struct APIKeyTests {
    @Test("generated keys parse, are unique and carry 256 bits of secret")
    func format() {
        let (id, key) = APIKeyFormat.generate()
        #expect(key.hasPrefix("gk_\(id)_"))
        let parsed = APIKeyFormat.parse(key)
        #expect(parsed?.id == id)
        #expect(parsed?.secret.count == 43)
        #expect(APIKeyFormat.generate().plaintext != key)
        for malformed in ["", "gk_", "sk-abc", "gk_short_x", key + "x", "gk_\(id)_" + String(repeating: "'", count: 43)] {
            #expect(APIKeyFormat.parse(malformed) == nil, "\(malformed) parsed")
        }
    }

    @Test("digests compare equal only when equal")
    func constantTime() {
        #expect(APIKeyFormat.constantTimeEqual("abc", "abc"))
        #expect(!APIKeyFormat.constantTimeEqual("abc", "abd"))
        #expect(!APIKeyFormat.constantTimeEqual("abc", "abcd"))
    }

    /// Verified keys are remembered for an hour here, so a slow run cannot outlast the cache
    /// between two steps that rely on it; the store is closed whether the body passes or throws.
    func withIdentity(_ body: (IdentityService, Repositories) async throws -> Void) async throws {
        let store = try await SQLStore.open(.sqliteInMemory, logger: Logger(label: "test"))
        do {
            try await store.migrate(logger: Logger(label: "test"))
            try await body(
                IdentityService(
                    repositories: store.repositories, logger: Logger(label: "test"), keyCacheLifetime: .seconds(3600)),
                store.repositories)
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    @Test("verification accepts a valid key and rejects wrong, revoked, expired and disabled-owner keys")
    func verification() async throws {
        try await withIdentity { (identity: IdentityService, repositories: Repositories) async throws in
            let bootstrap = try #require(try await identity.bootstrapAdminKeyIfNeeded())
            #expect(try await identity.bootstrapAdminKeyIfNeeded() == nil, "the bootstrap key is made once")
            let admin = try await identity.verify(bearer: bootstrap)
            #expect(admin.role == .admin && admin.userName == "admin")
            #expect(try await repositories.keys.key(id: admin.keyID!)?.secretHash != bootstrap)

            let user = try await identity.ensureUser(name: "bob", role: .user)
            let (record, key) = try await identity.issueKey(userID: user.id, name: "laptop", expiresAt: nil)
            #expect(try await identity.verify(bearer: key).userID == user.id)
            #expect(try await repositories.keys.key(id: record.id)?.lastUsedAt != nil)

            // Same id, different secret.
            let forged = "gk_\(record.id)_" + String(repeating: "A", count: 43)
            await #expect(throws: GantryError.self) { try await identity.verify(bearer: forged) }
            await #expect(throws: GantryError.self) { try await identity.verify(bearer: "gk_' OR 1=1 --_x") }

            try await repositories.keys.revokeKey(id: record.id, at: Date())
            // Revoked behind the service's back (as another process would): the verification is
            // remembered for the cache lifetime; revoking through the service forgets it at once.
            #expect(try await identity.verify(bearer: key).userID == user.id)
            await identity.credentialsChanged()
            await #expect(throws: GantryError(.unauthorized, "API key has been revoked", code: "invalid_api_key")) {
                try await identity.verify(bearer: key)
            }

            // Verified (and remembered) while valid; refused once expired, remembered or not. Two
            // seconds of validity: on two busy cores, 0.3 s once passed before the first verify.
            let expiry = Date().addingTimeInterval(2)
            let (_, expiring) = try await identity.issueKey(userID: user.id, name: "short", expiresAt: expiry)
            #expect(try await identity.verify(bearer: expiring).userID == user.id)
            // The service reads the wall clock (there is none to inject), so the test waits for the
            // expiry itself: the sleep is computed from it, not guessed.
            try await Task.sleep(for: .seconds(max(0, expiry.timeIntervalSinceNow) + 0.1))
            await #expect(throws: GantryError(.unauthorized, "API key has expired", code: "invalid_api_key")) {
                try await identity.verify(bearer: expiring)
            }

            let (_, other) = try await identity.issueKey(userID: user.id, name: "other", expiresAt: nil)
            try await repositories.users.setDisabled(userID: user.id, disabled: true)
            await #expect(throws: GantryError.self) { try await identity.verify(bearer: other) }
        }
    }
}

/// A key store that holds back each key it has read until the test lets it go: to revoke a key
/// exactly while a verification of it is between its read and its cache entry.
final class PausingKeys: APIKeyRepository {
    let base: any APIKeyRepository
    let reads = AsyncStream<Void>.makeStream()
    let releases = AsyncStream<Void>.makeStream()

    init(_ base: any APIKeyRepository) { self.base = base }

    func key(id: String) async throws -> APIKeyRecord? {
        let record = try await base.key(id: id)
        reads.continuation.yield()
        var waiting = releases.stream.makeAsyncIterator()
        _ = await waiting.next()
        return record
    }

    func createKey(_ key: APIKeyRecord, maxActiveKeys: Int?) async throws {
        try await base.createKey(key, maxActiveKeys: maxActiveKeys)
    }
    func listKeys(userID: String?) async throws -> [APIKeyRecord] { try await base.listKeys(userID: userID) }
    func revokeKey(id: String, at: Date) async throws { try await base.revokeKey(id: id, at: at) }
    func updateKeyLimits(id: String, limits: UsageLimits?) async throws { try await base.updateKeyLimits(id: id, limits: limits) }
    func touchKey(id: String, at: Date) async throws { try await base.touchKey(id: id, at: at) }
    func countKeys() async throws -> Int { try await base.countKeys() }
}

@Suite("API key revocation")
struct APIKeyRevocationTests {
    @Test("a key revoked while a verification of it is in flight is refused on the very next request")
    func revocationDuringVerification() async throws {
        let store = try await SQLStore.open(.sqliteInMemory, logger: Logger(label: "test"))
        try await store.migrate(logger: Logger(label: "test"))
        var repositories = store.repositories
        let pausing = PausingKeys(repositories.keys)
        repositories.keys = pausing
        let identity = IdentityService(
            repositories: repositories, logger: Logger(label: "test"), keyCacheLifetime: .seconds(3600))
        let user = try await identity.ensureUser(name: "ann", role: .user)
        let (record, key) = try await IdentityService(repositories: store.repositories, logger: Logger(label: "test"))
            .issueKey(userID: user.id, name: "k", expiresAt: nil)

        // A verification reads the key while it is valid, and is held there.
        let inFlight = Task { try await identity.verify(bearer: key) }
        var reads = pausing.reads.stream.makeAsyncIterator()
        _ = await reads.next()
        // The key is revoked as the API does it: in the store, then the remembered keys go.
        try await store.repositories.keys.revokeKey(id: record.id, at: Date())
        await identity.credentialsChanged()
        pausing.releases.continuation.yield()
        #expect(try await inFlight.value.userID == user.id, "the request that read the key first is served")

        // The next request reads the store again (the read before the revocation was not
        // remembered) and is refused. Its read is let through ahead of time.
        pausing.releases.continuation.yield()
        await #expect(throws: GantryError.self) { try await identity.verify(bearer: key) }
        try await store.close()
    }
}

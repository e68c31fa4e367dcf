public import Foundation
public import GantryCore

/// Opens browser sessions: after an OIDC login (`LoginService`), or for a caller who proved an
/// API key (`POST /auth/key-session`, the console's login where no provider is configured).
public struct BrowserSessions: Sendable {
    let sessions: any SessionRepository
    public let lifetime: TimeInterval

    public init(repositories: Repositories, lifetime: TimeInterval) {
        self.sessions = repositories.sessions
        self.lifetime = lifetime
    }

    /// A new session of `userID`; returns the cookie's token (only its hash is stored).
    public func open(userID: String) async throws -> String {
        let token = RandomToken.make()
        let now = Date()
        try await sessions.createSession(
            BrowserSession(
                tokenHash: RandomToken.sha256Hex(token), userID: userID, csrfToken: RandomToken.make(), createdAt: now,
                expiresAt: now.addingTimeInterval(lifetime)))
        try? await sessions.deleteExpiredSessions(before: now)
        return token
    }
}

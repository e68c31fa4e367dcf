public import Foundation
public import GantryCore
public import Logging

/// Browser and CLI login with the OIDC provider, and the browser sessions that follow.
public struct LoginService: Sendable {
    public let oidc: OIDCClient
    let identity: IdentityService
    let users: any UserRepository
    let sessions: any SessionRepository
    let pending: PendingLogins
    /// Where the provider sends the browser back: `<public URL>/auth/callback`.
    public let redirectURI: String
    public let sessionLifetime: TimeInterval
    let browserSessions: BrowserSessions
    let logger: Logger

    public init(
        oidc: OIDCClient, identity: IdentityService, repositories: Repositories, publicURL: String,
        sessionLifetime: TimeInterval, logger: Logger
    ) {
        self.oidc = oidc
        self.identity = identity
        self.users = repositories.users
        self.sessions = repositories.sessions
        self.pending = PendingLogins(repository: repositories.pendingLogins)
        self.redirectURI = (publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL) + "/auth/callback"
        self.sessionLifetime = sessionLifetime
        self.browserSessions = BrowserSessions(repositories: repositories, lifetime: sessionLifetime)
        self.logger = logger
    }

    // MARK: Browser

    /// Starts a login: returns the provider URL to redirect to and the `state` the browser must
    /// bring back (also set as a cookie, binding the callback to this browser).
    public func beginBrowserLogin(returnTo: String) async throws -> (authorizationURL: String, state: String) {
        let state = RandomToken.make()
        let nonce = RandomToken.make()
        let verifier = RandomToken.make(byteCount: 48)
        try await pending.addBrowser(
            state: state, .init(nonce: nonce, verifier: verifier, returnTo: Self.safeReturnPath(returnTo)))
        let metadata = try await oidc.metadata()
        var components = URLComponents(string: metadata.authorizationEndpoint)
        let existingItems = components?.queryItems ?? []
        components?.queryItems =
            existingItems + [
                URLQueryItem(name: "response_type", value: "code"),
                URLQueryItem(name: "client_id", value: oidc.settings.clientID),
                URLQueryItem(name: "redirect_uri", value: redirectURI),
                URLQueryItem(name: "scope", value: oidc.settings.scopes),
                URLQueryItem(name: "state", value: state),
                URLQueryItem(name: "nonce", value: nonce),
                URLQueryItem(name: "code_challenge", value: RandomToken.pkceChallenge(for: verifier)),
                URLQueryItem(name: "code_challenge_method", value: "S256"),
            ]
        guard let url = components?.url?.absoluteString else {
            throw GantryError(.unavailable, "the provider's authorization endpoint is not a URL")
        }
        return (url, state)
    }

    /// Completes a login at the callback: checks `state` against the pending login and the
    /// browser's cookie, exchanges the code with the PKCE verifier, validates the ID token and its
    /// nonce, and opens a session. Returns the session token (for the cookie) and where to go.
    public func completeBrowserLogin(code: String, state: String, cookieState: String?) async throws -> (
        sessionToken: String, returnTo: String
    ) {
        guard let cookieState, APIKeyFormat.constantTimeEqual(cookieState, state) else {
            // The login was started in another browser (or by an attacker): drop it.
            _ = try await pending.takeBrowser(state: state)
            throw GantryError(.invalidRequest, "login state does not match this browser; start again at /auth/login")
        }
        guard let login = try await pending.takeBrowser(state: state) else {
            throw GantryError(.invalidRequest, "unknown or already used login state; start again at /auth/login")
        }
        let tokens: TokenResponse
        do {
            tokens = try await oidc.exchange(code: code, verifier: login.verifier, redirectURI: redirectURI)
        } catch let error as OIDCClient.ProviderError {
            throw GantryError(.unauthorized, "the identity provider refused the login (\(error.code))", code: error.code)
        }
        guard let idToken = tokens.idToken else { throw GantryError(.unauthorized, "the provider returned no ID token") }
        let verified = try await oidc.validateIDToken(idToken, nonce: login.nonce)
        let user = try await upsertUser(try await oidc.addingUserInfo(to: verified, accessToken: tokens.accessToken))
        let token = try await openSession(userID: user.id)
        logger.info("browser login", metadata: ["user_id": "\(user.id)", "role": "\(user.role.rawValue)"])
        return (token, login.returnTo)
    }

    /// Only this platform's own paths, in canonical form and spelled with the characters of a
    /// URI path and query: never `//host` or `/\host`, which browsers treat as another site, and
    /// nothing a browser drops or rewrites before reading it (it strips tabs and newlines, so
    /// `next=/%09/evil.example` became `//evil.example`). Anything else returns to `/`.
    static func safeReturnPath(_ path: String) -> String {
        // CanonicalPath refuses what does not start with one `/`, `//host` included.
        guard path.utf8.count <= 512, path.utf8.allSatisfy(isReturnPathByte), CanonicalPath.accepts(path)
        else { return "/" }
        return path
    }

    /// RFC 3986's unreserved characters, `%` escapes, and the delimiters a path and a query use.
    private static func isReturnPathByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "-._~%/?=&+,:@".utf8.contains(byte)
        }
    }

    // MARK: Sessions

    func openSession(userID: String) async throws -> String {
        try await browserSessions.open(userID: userID)
    }

    public func endSession(token: String) async throws {
        try await sessions.deleteSession(tokenHash: RandomToken.sha256Hex(token))
    }

    // MARK: Users

    /// Finds the user for a provider identity (unique on issuer and subject), creating it on
    /// first login, and refreshes name, email and role from the claims on every login.
    func upsertUser(_ verified: VerifiedIdentity) async throws -> User {
        let role: Role = verified.isAdmin ? .admin : .user
        if var existing = try await users.user(issuer: verified.issuer, subject: verified.subject) {
            guard !existing.disabled else { throw GantryError(.forbidden, "this account is disabled") }
            existing.email = verified.email
            existing.role = role
            try await users.updateProfile(userID: existing.id, name: existing.name, email: existing.email, role: role)
            return existing
        }
        let base = Self.userName(for: verified)
        var name = base
        var attempt = 0
        while true {
            let user = User(
                id: Identifier.make("usr"), name: name, email: verified.email, role: role, disabled: false, createdAt: Date(),
                issuer: verified.issuer, subject: verified.subject)
            do {
                try await users.createUser(user)
                return user
            } catch let error as GantryError where error.kind == .conflict {
                // Same person racing in twice, or another person with the same name.
                if let raced = try await users.user(issuer: verified.issuer, subject: verified.subject) { return raced }
                attempt += 1
                guard attempt < 5 else { throw error }
                name = String(base.prefix(50)) + "-" + String(RandomToken.sha256Hex(verified.subject + "\(attempt)").prefix(6))
            }
        }
    }

    /// A DNS-label user name from `preferred_username`, the email's local part, or the subject.
    static func userName(for verified: VerifiedIdentity) -> String {
        let candidates = [
            verified.preferredUsername, verified.email?.split(separator: "@").first.map(String.init), verified.subject,
        ]
        for candidate in candidates.compactMap({ $0 }) {
            let lowered = candidate.lowercased().map { ($0.isLetter && $0.isASCII) || ($0.isNumber && $0.isASCII) ? $0 : "-" }
            let trimmed = String(lowered).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
            let name = String(trimmed.prefix(63)).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
            if !name.isEmpty { return name }
        }
        return "user"
    }

    // MARK: Device (CLI)

    public struct DeviceStart: Encodable, Sendable {
        /// Gantry's handle for this login: the CLI polls with it. The provider's device code stays here.
        public var deviceCode: String
        public var userCode: String
        public var verificationUri: String
        public var verificationUriComplete: String?
        public var expiresIn: Int
        public var interval: Int
    }

    public func beginDeviceLogin() async throws -> DeviceStart {
        let started = try await oidc.startDeviceAuthorization()
        let handle = RandomToken.make()
        let interval = max(1, started.interval ?? 5)
        try await pending.addDevice(
            handle: handle, .init(providerDeviceCode: started.deviceCode), lifetime: TimeInterval(started.expiresIn))
        return DeviceStart(
            deviceCode: handle, userCode: started.userCode, verificationUri: started.verificationUri,
            verificationUriComplete: started.verificationUriComplete, expiresIn: started.expiresIn, interval: interval)
    }

    public enum DeviceOutcome: Sendable {
        case pending
        case slowDown
        case approved(CLIKey)
    }

    /// Polls the provider once for a device login; on approval issues the CLI an API key.
    public func pollDeviceLogin(handle: String) async throws -> DeviceOutcome {
        guard let device = try await pending.device(handle: handle) else {
            throw GantryError(.invalidRequest, "unknown or expired device login", code: "expired_token")
        }
        switch try await oidc.pollDevice(deviceCode: device.providerDeviceCode) {
        case .pending: return .pending
        case .slowDown: return .slowDown
        case .failed(let code):
            try await pending.removeDevice(handle: handle)
            throw GantryError(.unauthorized, "the identity provider refused the device login (\(code))", code: code)
        case .completed(let tokens):
            try await pending.removeDevice(handle: handle)
            guard let idToken = tokens.idToken else { throw GantryError(.unauthorized, "the provider returned no ID token") }
            let verified = try await oidc.validateIDToken(idToken, nonce: nil)
            let user = try await upsertUser(try await oidc.addingUserInfo(to: verified, accessToken: tokens.accessToken))
            return .approved(try await issueCLIKey(for: user, via: "device login"))
        }
    }

    // MARK: Loopback (CLI, RFC 8252)

    /// A CLI listening on `127.0.0.1:port` asks for a browser login. Returns the id under which
    /// the request waits for the browser to come back with a session.
    public func beginLoopbackLogin(port: Int, state: String, codeChallenge: String) async throws -> String {
        guard (1024...65535).contains(port) else { throw GantryError.invalid("port must be 1024-65535", param: "port") }
        let urlSafe = { (text: String) in
            text.utf8.allSatisfy {
                ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 95
            }
        }
        guard (16...128).contains(state.count), urlSafe(state) else {
            throw GantryError.invalid("state must be 16-128 URL-safe characters", param: "state")
        }
        guard codeChallenge.count == 43, urlSafe(codeChallenge) else {
            throw GantryError.invalid("code_challenge must be an S256 challenge (43 characters)", param: "code_challenge")
        }
        let id = RandomToken.make()
        try await pending.addCLIRequest(id: id, .init(port: port, state: state, codeChallenge: codeChallenge))
        return id
    }

    /// The browser is back with a session: hand the CLI a one-time code on its loopback port.
    /// Returns the loopback URL to redirect to.
    public func completeLoopbackLogin(requestID: String, userID: String) async throws -> String {
        guard let request = try await pending.takeCLIRequest(id: requestID) else {
            throw GantryError.invalid("unknown or expired CLI login; run 'gantry login --browser' again")
        }
        let code = RandomToken.make()
        try await pending.addCLICode(code, .init(userID: userID, codeChallenge: request.codeChallenge))
        return "http://127.0.0.1:\(request.port)/callback?code=\(code)&state=\(request.state)"
    }

    /// The CLI exchanges its one-time code and PKCE verifier for an API key.
    public func redeemLoopbackCode(_ code: String, verifier: String) async throws -> CLIKey {
        guard let entry = try await pending.takeCLICode(code) else {
            throw GantryError(.unauthorized, "unknown, used or expired login code", code: "invalid_grant")
        }
        guard APIKeyFormat.constantTimeEqual(RandomToken.pkceChallenge(for: verifier), entry.codeChallenge) else {
            throw GantryError(.unauthorized, "code_verifier does not match the login's challenge", code: "invalid_grant")
        }
        guard let user = try await users.user(id: entry.userID), !user.disabled else {
            throw GantryError(.unauthorized, "the account is disabled", code: "invalid_grant")
        }
        return try await issueCLIKey(for: user, via: "loopback login")
    }

    /// What a CLI login ends with: a new API key (plaintext, shown once) and its owner.
    public struct CLIKey: Sendable {
        public var key: String
        public var keyID: String
        public var user: User
    }

    /// Keys issued to the CLI expire after 30 days; `gantry login` again renews.
    static let cliKeyLifetime: TimeInterval = 30 * 24 * 3600

    func issueCLIKey(for user: User, via method: String) async throws -> CLIKey {
        let (record, key) = try await identity.issueKey(
            userID: user.id, name: "gantry login \(Date().formatted(.iso8601))",
            expiresAt: Date().addingTimeInterval(Self.cliKeyLifetime))
        logger.info("\(method)", metadata: ["user_id": "\(user.id)", "key_id": "\(record.id)"])
        return CLIKey(key: key, keyID: record.id, user: user)
    }
}

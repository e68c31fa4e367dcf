public import AsyncHTTPClient
public import Foundation
import GantryCore
import JWTKit
public import Logging
import NIOCore

/// Gantry's side of OpenID Connect: discovery, the JWKS cache, the token endpoint and token
/// validation. One per process; safe to share.
public actor OIDCClient {
    public let settings: OIDCSettings
    let httpClient: HTTPClient
    let logger: Logger
    let now: @Sendable () -> Date

    private var cachedMetadata: OIDCProviderMetadata?
    private var keys: JWTKeyCollection?
    private var knownKeyIDs: Set<String> = []
    private var keysFetchedAt: Date?

    public init(settings: OIDCSettings, httpClient: HTTPClient, logger: Logger, now: @escaping @Sendable () -> Date = Date.init) {
        self.settings = settings
        self.httpClient = httpClient
        self.logger = logger
        self.now = now
    }

    // MARK: Discovery and keys

    /// The provider's discovery document, fetched once and checked against the configured issuer.
    public func metadata() async throws -> OIDCProviderMetadata {
        if let cachedMetadata { return cachedMetadata }
        let base = settings.issuer.hasSuffix("/") ? String(settings.issuer.dropLast()) : settings.issuer
        let document: OIDCProviderMetadata = try await getJSON(base + "/.well-known/openid-configuration")
        guard document.issuer == settings.issuer else {
            throw GantryError(
                .unavailable, "the provider's discovery document names issuer \(document.issuer), not \(settings.issuer)")
        }
        cachedMetadata = document
        return document
    }

    /// The signing keys, refetched when a token names a key id not seen yet (at most once per
    /// `jwksMinimumRefetchInterval`, so forged key ids cannot make Gantry hammer the provider).
    private func signingKeys(for keyID: String?) async throws -> JWTKeyCollection {
        let stale = keysFetchedAt.map { now().timeIntervalSince($0) >= settings.jwksMinimumRefetchInterval } ?? true
        let unknown = keyID.map { !knownKeyIDs.contains($0) } ?? false
        if keys == nil || (unknown && stale) {
            let jwks: JWKS = try await getJSON(try await metadata().jwksUri)
            let collection = JWTKeyCollection()
            try await collection.add(jwks: jwks)
            keys = collection
            knownKeyIDs = Set(jwks.keys.compactMap { $0.keyIdentifier?.string })
            keysFetchedAt = now()
            logger.debug("fetched provider keys", metadata: ["kids": "\(knownKeyIDs.sorted())"])
        }
        guard let keys else { throw GantryError(.unavailable, "no provider keys") }
        return keys
    }

    // MARK: Token validation

    /// Validates an ID token: signature (allowed algorithms only), `iss`, `aud` (and `azp`),
    /// `exp` / `nbf` / `iat` with the configured clock skew, and `nonce` when one was sent.
    public func validateIDToken(_ token: String, nonce: String?) async throws -> VerifiedIdentity {
        try await validate(token, audience: settings.clientID, nonce: nonce, isIDToken: true)
    }

    /// Validates a provider access token presented as a bearer credential (when enabled).
    public func validateAccessToken(_ token: String) async throws -> VerifiedIdentity {
        guard settings.acceptAccessTokens, let audience = settings.accessTokenAudience else {
            throw GantryError(.unauthorized, "provider access tokens are not accepted", code: "invalid_api_key")
        }
        return try await validate(token, audience: audience, nonce: nil, isIDToken: false)
    }

    func validate(_ token: String, audience: String, nonce: String?, isIDToken: Bool) async throws -> VerifiedIdentity {
        func reject(_ reason: String) -> GantryError {
            GantryError(.unauthorized, "invalid token: \(reason)", code: "invalid_token")
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let header = Self.decodeSegment(parts[0]), let payload = Self.decodeSegment(parts[1]) else {
            throw reject("not a signed JWT")
        }
        guard let algorithm = header["alg"] as? String, settings.allowedAlgorithms.contains(algorithm) else {
            throw reject("signature algorithm not allowed")
        }
        let keyID = header["kid"] as? String
        let collection = try await signingKeys(for: keyID)
        if let keyID, !knownKeyIDs.contains(keyID) { throw reject("unknown signing key") }
        let claims: TokenClaims
        do {
            claims = try await collection.verify(token, as: TokenClaims.self)
        } catch {
            throw reject("signature verification failed")
        }
        let current = now().timeIntervalSince1970
        guard claims.iss == settings.issuer else { throw reject("wrong issuer") }
        guard claims.aud.value.contains(audience) else { throw reject("wrong audience") }
        if isIDToken, claims.aud.value.count > 1, claims.azp != settings.clientID { throw reject("wrong authorized party") }
        guard claims.exp + settings.clockSkew > current else { throw reject("expired") }
        if let notBefore = claims.nbf, notBefore - settings.clockSkew > current { throw reject("not yet valid") }
        if let issuedAt = claims.iat, issuedAt - settings.clockSkew > current { throw reject("issued in the future") }
        if let nonce, claims.nonce != nonce { throw reject("nonce mismatch") }
        return VerifiedIdentity(
            issuer: claims.iss, subject: claims.sub, email: claims.email, displayName: claims.name,
            preferredUsername: claims.preferredUsername,
            isAdmin: Self.claim(payload[settings.adminClaim], contains: settings.adminValue),
            expiresAt: Date(timeIntervalSince1970: claims.exp))
    }

    /// Completes an identity with the provider's UserInfo answer (OIDC Core 5.3): many providers
    /// put email, names and groups there rather than in the ID token. The UserInfo `sub` must be
    /// the ID token's; values in the ID token win.
    public func addingUserInfo(to identity: VerifiedIdentity, accessToken: String?) async throws -> VerifiedIdentity {
        guard let accessToken, let endpoint = try await metadata().userinfoEndpoint else { return identity }
        var request = HTTPClientRequest(url: endpoint)
        request.headers.add(name: "authorization", value: "Bearer \(accessToken)")
        request.headers.add(name: "accept", value: "application/json")
        guard let response = try? await httpClient.execute(request, timeout: .seconds(10)), response.status == .ok,
            let body = try? await response.body.collect(upTo: 1 << 20),
            let claims = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any]
        else {
            logger.warning("UserInfo request failed; using the ID token's claims only")
            return identity
        }
        guard claims["sub"] as? String == identity.subject else {
            throw GantryError(.unauthorized, "invalid token: UserInfo subject does not match the ID token", code: "invalid_token")
        }
        var enriched = identity
        enriched.email = identity.email ?? claims["email"] as? String
        enriched.displayName = identity.displayName ?? claims["name"] as? String
        enriched.preferredUsername = identity.preferredUsername ?? claims["preferred_username"] as? String
        enriched.isAdmin = identity.isAdmin || Self.claim(claims[settings.adminClaim], contains: settings.adminValue)
        return enriched
    }

    /// A role claim may be a string, a list of strings, or space-separated.
    static func claim(_ value: Any?, contains wanted: String) -> Bool {
        switch value {
        case let list as [Any]: return list.contains { ($0 as? String) == wanted }
        case let text as String: return text == wanted || text.split(separator: " ").contains { $0 == wanted }
        default: return false
        }
    }

    static func decodeSegment(_ segment: Substring) -> [String: Any]? {
        var base64 = segment.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard let data = Data(base64Encoded: base64) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    // MARK: Token endpoint

    /// Exchanges an authorization code (with its PKCE verifier) for tokens.
    func exchange(code: String, verifier: String, redirectURI: String) async throws -> TokenResponse {
        try await postForm(
            try await metadata().tokenEndpoint,
            ["grant_type": "authorization_code", "code": code, "redirect_uri": redirectURI, "code_verifier": verifier])
    }

    /// Starts a device authorization (RFC 8628) at the provider.
    func startDeviceAuthorization() async throws -> DeviceAuthorizationResponse {
        guard let endpoint = try await metadata().deviceAuthorizationEndpoint else {
            throw GantryError(.unavailable, "the identity provider does not offer the device authorization grant")
        }
        return try await postForm(endpoint, ["scope": settings.scopes])
    }

    enum DevicePoll: Sendable {
        case pending
        case slowDown
        case completed(TokenResponse)
        case failed(String)
    }

    /// Asks the provider once whether a device authorization has been approved.
    func pollDevice(deviceCode: String) async throws -> DevicePoll {
        do {
            let tokens: TokenResponse = try await postForm(
                try await metadata().tokenEndpoint,
                ["grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": deviceCode])
            return .completed(tokens)
        } catch let error as ProviderError {
            switch error.code {
            case "authorization_pending": return .pending
            case "slow_down": return .slowDown
            default: return .failed(error.code)
            }
        }
    }

    // MARK: HTTP

    /// An OAuth error answer from the provider (`{"error": "..."}`); its description is not
    /// passed on, since providers may echo request values in it.
    struct ProviderError: Error {
        var code: String
    }

    private func getJSON<T: Decodable>(_ url: String) async throws -> T {
        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
        } catch {
            throw GantryError(.unavailable, "the identity provider could not be reached")
        }
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok else {
            throw GantryError(.unavailable, "the identity provider answered \(response.status.code) for \(url)")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer: body))
        } catch {
            throw GantryError(.unavailable, "the identity provider sent an unreadable document from \(url)")
        }
    }

    private func postForm<T: Decodable>(_ url: String, _ fields: [String: String]) async throws -> T {
        var fields = fields
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "accept", value: "application/json")
        if let secret = settings.clientSecret {
            let credentials = "\(Self.formEncode(settings.clientID)):\(Self.formEncode(secret))"
            request.headers.add(name: "authorization", value: "Basic " + Data(credentials.utf8).base64EncodedString())
        } else {
            fields["client_id"] = settings.clientID
        }
        request.body = .bytes(ByteBuffer(string: Self.formBody(fields)))
        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(request, timeout: .seconds(15))
        } catch {
            throw GantryError(.unavailable, "the identity provider could not be reached")
        }
        let data = Data(buffer: try await response.body.collect(upTo: 1 << 20))
        guard response.status == .ok else {
            let code = ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any])?["error"] as? String
            throw ProviderError(code: code ?? "http_\(response.status.code)")
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw GantryError(.unavailable, "the identity provider sent an unreadable token response")
        }
    }

    static func formEncode(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }

    static func formBody(_ fields: [String: String]) -> String {
        fields.sorted { $0.key < $1.key }.map { "\(formEncode($0.key))=\(formEncode($0.value))" }.joined(separator: "&")
    }
}

/// The registered claims Gantry reads from ID and access tokens. Checks that need the clock or
/// the request (expiry, audience, nonce) are made by `OIDCClient.validate`, with skew.
struct TokenClaims: JWTPayload {
    var iss: String
    var sub: String
    var aud: AudienceClaim
    var exp: Double
    var nbf: Double?
    var iat: Double?
    var nonce: String?
    var azp: String?
    var email: String?
    var name: String?
    var preferredUsername: String?

    enum CodingKeys: String, CodingKey {
        case iss, sub, aud, exp, nbf, iat, nonce, azp, email, name
        case preferredUsername = "preferred_username"
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

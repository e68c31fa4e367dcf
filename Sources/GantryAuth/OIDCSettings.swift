public import Foundation

/// How Gantry talks to its OpenID Connect provider. OIDC is off when `issuer` is nil.
public struct OIDCSettings: Sendable {
    public var issuer: String
    public var clientID: String
    /// Secret of a confidential client; nil for a public client (PKCE only).
    public var clientSecret: String?
    public var scopes: String
    /// The ID-token claim that decides the role, e.g. `groups`.
    public var adminClaim: String
    /// A user whose `adminClaim` equals or contains this value is an admin.
    public var adminValue: String
    /// Also accept the provider's JWT access tokens as bearer credentials on `/v1` and `/api`.
    public var acceptAccessTokens: Bool
    /// The `aud` such access tokens must carry.
    public var accessTokenAudience: String?
    /// Tolerated clock difference for `exp`, `nbf` and `iat`.
    public var clockSkew: TimeInterval
    /// An unknown `kid` refetches the JWKS at most this often.
    public var jwksMinimumRefetchInterval: TimeInterval
    /// Signature algorithms accepted in ID and access tokens; never `none` or an HMAC.
    public var allowedAlgorithms: Set<String>

    public static let defaultAlgorithms: Set<String> = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]

    public init(
        issuer: String, clientID: String, clientSecret: String?, scopes: String = "openid profile email",
        adminClaim: String = "groups", adminValue: String = "gantry-admins", acceptAccessTokens: Bool = false,
        accessTokenAudience: String? = nil, clockSkew: TimeInterval = 60, jwksMinimumRefetchInterval: TimeInterval = 30,
        allowedAlgorithms: Set<String> = OIDCSettings.defaultAlgorithms
    ) {
        self.issuer = issuer
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.scopes = scopes
        self.adminClaim = adminClaim
        self.adminValue = adminValue
        self.acceptAccessTokens = acceptAccessTokens
        self.accessTokenAudience = accessTokenAudience
        self.clockSkew = clockSkew
        self.jwksMinimumRefetchInterval = jwksMinimumRefetchInterval
        self.allowedAlgorithms = allowedAlgorithms
    }
}

/// The parts of the provider's discovery document Gantry uses.
public struct OIDCProviderMetadata: Decodable, Sendable {
    public var issuer: String
    public var authorizationEndpoint: String
    public var tokenEndpoint: String
    public var jwksUri: String
    public var deviceAuthorizationEndpoint: String?
    public var endSessionEndpoint: String?
    public var userinfoEndpoint: String?
    public var codeChallengeMethodsSupported: [String]?

    enum CodingKeys: String, CodingKey {
        case issuer
        case authorizationEndpoint = "authorization_endpoint"
        case tokenEndpoint = "token_endpoint"
        case jwksUri = "jwks_uri"
        case deviceAuthorizationEndpoint = "device_authorization_endpoint"
        case endSessionEndpoint = "end_session_endpoint"
        case userinfoEndpoint = "userinfo_endpoint"
        case codeChallengeMethodsSupported = "code_challenge_methods_supported"
    }
}

/// An identity proven by a validated token.
public struct VerifiedIdentity: Sendable, Equatable {
    public var issuer: String
    public var subject: String
    public var email: String?
    public var displayName: String?
    public var preferredUsername: String?
    public var isAdmin: Bool
    public var expiresAt: Date
}

/// The provider's token endpoint answer.
struct TokenResponse: Decodable, Sendable {
    var accessToken: String?
    var idToken: String?
    var tokenType: String?
    var expiresIn: Int?

    enum CodingKeys: String, CodingKey {
        case accessToken = "access_token"
        case idToken = "id_token"
        case tokenType = "token_type"
        case expiresIn = "expires_in"
    }
}

/// The provider's device authorization answer (RFC 8628 section 3.2).
struct DeviceAuthorizationResponse: Decodable, Sendable {
    var deviceCode: String
    var userCode: String
    var verificationUri: String
    var verificationUriComplete: String?
    var expiresIn: Int
    var interval: Int?

    enum CodingKeys: String, CodingKey {
        case deviceCode = "device_code"
        case userCode = "user_code"
        case verificationUri = "verification_uri"
        case verificationUriComplete = "verification_uri_complete"
        case expiresIn = "expires_in"
        case interval
    }
}

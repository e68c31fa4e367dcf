import Foundation
public import GantryCore
public import GantryHTTP
import HTTPTypes
public import Hummingbird

/// Authenticates requests: `Authorization: Bearer` (API key, or provider access token where
/// enabled) or the browser session cookie.
///
/// Under the protected prefixes (`/v1/`, `/api/`) a credential is required. Elsewhere (the
/// self-service page, `/auth`) a valid session is attached when present, so pages can greet a
/// logged-in user. Operations routes need no credential. Requests authenticated by cookie that
/// change state under `/api/` must carry the session's CSRF token in `x-csrf-token`.
public struct AuthenticationMiddleware: RouterMiddleware {
    public typealias Context = GantryRequestContext

    public static let sessionCookie = "gantry_session"
    static let csrfHeader = HTTPField.Name("x-csrf-token")!

    let verifier: any CredentialVerifier
    let limiter: FailedAuthenticationLimiter
    let protectedPrefixes: [String]
    /// The credential gateway processes present (`auth.introspectionSecret`), accepted as an admin
    /// on `servicePaths` only: introspection, the route watch and the gateways' reports.
    let serviceCredential: String?
    let servicePaths: Set<String>
    /// `/metrics` needs an admin's credential or this token (`auth.metricsToken`): its series name
    /// every service, instance and failure class.
    let metricsToken: String?
    static let metricsPath = "/metrics"

    public init(
        verifier: any CredentialVerifier, limiter: FailedAuthenticationLimiter = FailedAuthenticationLimiter(),
        protectedPrefixes: [String] = ["/v1/", "/api/"], serviceCredential: String? = nil,
        servicePaths: Set<String> = [
            "/auth/introspect", "/api/v1/routes", "/api/v1/routes/reports", "/api/v1/limits/sync",
        ],
        metricsToken: String? = nil
    ) {
        self.verifier = verifier
        self.limiter = limiter
        self.protectedPrefixes = protectedPrefixes
        self.serviceCredential = serviceCredential
        self.servicePaths = servicePaths
        self.metricsToken = metricsToken
    }

    /// The principal of a gateway process presenting the service credential.
    static let gatewayService = Principal(
        userID: "gantry-gateway", userName: "gantry-gateway", role: .admin, credential: .providerToken)

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let path = request.uri.path
        let isMetrics = path == Self.metricsPath
        let isProtected = isMetrics || protectedPrefixes.contains { path.hasPrefix($0) }
        let header = request.headers[.authorization]
        let cookie = request.cookies[Self.sessionCookie]?.value
        guard header != nil || cookie != nil else {
            guard !isProtected else {
                throw GantryError(
                    .unauthorized, "no API key provided: send 'Authorization: Bearer <key>'", code: "missing_api_key")
            }
            return try await next(request, context)
        }
        var context = context
        // The configured secrets (the gateways' service credential on its paths, the metrics
        // token on /metrics) come before the per-address slowdown: a gateway's address is every
        // client's behind it, and bad keys sent through it must not block the gateway's own
        // introspection (which made every key through it fail for a minute).
        let bearer = header.flatMap(BearerCredential.credential(fromAuthorization:))
        if let bearer, let serviceCredential, servicePaths.contains(path), constantTimeEqual(bearer, serviceCredential) {
            context.principal = Self.gatewayService
            return try await next(request, context)
        }
        if let bearer, let metricsToken, isMetrics, constantTimeEqual(bearer, metricsToken) {
            return try await next(request, context)
        }
        // Behind a gateway, the client's address as the gateway proved it (see ForwardedClient).
        let address = ForwardedClient.address(in: request.headers, secret: serviceCredential) ?? context.remoteAddress
        if let retryAfter = limiter.retryAfter(for: address) {
            throw GantryError(
                .rateLimited, "too many failed authentication attempts from this address", code: "too_many_failed_attempts",
                retryAfter: retryAfter)
        }
        do {
            if header != nil {
                guard let bearer else {
                    throw GantryError(
                        .unauthorized, "the Authorization header must use the Bearer scheme", code: "invalid_api_key")
                }
                context.principal = try await verifier.verify(bearer: bearer)
            } else if let cookie {
                context.principal = try await verifier.verify(sessionToken: cookie)
            }
        } catch let error as GantryError where error.kind == .unauthorized {
            limiter.recordFailure(for: address)
            // A stale cookie on a public page is not an error: the page shows the login link.
            guard isProtected || header != nil else { return try await next(request, context) }
            throw error
        }
        if isMetrics, context.principal?.isAdmin != true {
            throw GantryError(.forbidden, "/metrics is for admins and the metrics token (auth.metricsToken)")
        }
        if let principal = context.principal {
            if case .session(let csrfToken) = principal.credential, isProtected, request.method != .get, request.method != .head {
                guard let presented = request.headers[Self.csrfHeader], presented == csrfToken else {
                    throw GantryError(.forbidden, "requests authenticated by session cookie must send x-csrf-token")
                }
            }
            if let keyID = principal.keyID { context.logger[metadataKey: "key_id"] = .string(keyID) }
            context.logger[metadataKey: "user_id"] = .string(principal.userID)
        }
        return try await next(request, context)
    }
}

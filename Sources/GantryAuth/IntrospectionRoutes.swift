public import AsyncHTTPClient
import Crypto
import Foundation
public import GantryCore
public import GantryHTTP
public import Hummingbird
import NIOCore

/// `POST /auth/introspect` (RFC 7662): lets a gateway running as its own process ask whether a
/// credential is active. The caller is the gateway's service credential (`auth.introspectionSecret`,
/// recognised by the authentication middleware) or an admin presenting a bearer credential.
public struct IntrospectionRoutes: Sendable {
    let verifier: any CredentialVerifier

    public init(verifier: any CredentialVerifier) {
        self.verifier = verifier
    }

    struct IntrospectionRequest: Decodable {
        var token: String?
    }

    /// RFC 7662 section 2.2, with Gantry's own fields prefixed `gantry_`.
    public struct Answer: Codable, Sendable, Equatable {
        public var active: Bool
        public var sub: String?
        public var username: String?
        public var tokenType: String?
        public var clientId: String?
        public var gantryRole: Role?
        /// Deployments the credential may call; absent means all.
        public var gantryDeployments: [String]?
        /// The key's own limits and quota, which the gateway enforces.
        public var gantryLimits: UsageLimits?
        /// The user's limits and quota over all their credentials, which the gateway enforces too.
        public var gantryUserLimits: UsageLimits?
        /// When the key expires, in seconds since 1970 (RFC 7662's `exp`); absent when it does not.
        public var exp: Int64?

        enum CodingKeys: String, CodingKey {
            case active, sub, username
            case tokenType = "token_type"
            case clientId = "client_id"
            case gantryRole = "gantry_role"
            case gantryDeployments = "gantry_deployments"
            case gantryLimits = "gantry_limits"
            case gantryUserLimits = "gantry_user_limits"
            case exp
        }
    }

    public func add(to router: Router<GantryRequestContext>) {
        router.post("/auth/introspect") { request, context in
            let caller = try context.requirePrincipal()
            // Not with a browser session: introspection takes no CSRF token.
            if case .session = caller.credential {
                throw GantryError(.forbidden, "introspection needs the service credential or an admin key")
            }
            guard caller.isAdmin else {
                throw GantryError(.forbidden, "introspection needs the service credential or an admin key")
            }
            guard let token = try await request.decodeForm(as: IntrospectionRequest.self, limit: 8192).token, !token.isEmpty
            else {
                throw GantryError.invalid("the token parameter is required", param: "token")
            }
            let answer: Answer
            do {
                let principal = try await verifier.verify(bearer: token)
                answer = Answer(
                    active: true, sub: principal.userID, username: principal.userName,
                    tokenType: principal.keyID == nil ? "access_token" : "api_key", clientId: principal.keyID,
                    gantryRole: principal.role, gantryDeployments: principal.allowedDeployments,
                    gantryLimits: principal.keyLimits, gantryUserLimits: principal.userLimits,
                    exp: principal.keyExpiry.map { Int64($0.timeIntervalSince1970.rounded(.down)) })
            } catch let error as GantryError where error.kind == .unauthorized {
                answer = Answer(active: false)
            }
            let data = try JSONEncoder().encode(answer)
            return Response(
                status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(data: data)))
        }
    }
}

/// A `CredentialVerifier` that asks a control-role process over HTTP, for a gateway that runs as
/// its own process. Active answers are remembered for `cacheLifetime` (bounded, by the token's
/// digest), so a revocation reaches the gateway within that time; inactive answers are not
/// remembered, so a new key works at once.
public struct IntrospectionClient: CredentialVerifier {
    let control: ControlEndpoints
    let serviceSecret: String
    let httpClient: HTTPClient
    /// Keyed by the token's digest: the token may not be an API key, so it has no id of its own,
    /// and a digest key needs no text made per request.
    let remembered: VerifiedKeyCache<SHA256Digest>

    /// How long past its last verification a remembered key is still served while no control
    /// replica can be reached (`gateway.offlineKeyGraceSeconds`); zero: never.
    let offlineGrace: Duration

    public init(
        control: ControlEndpoints, serviceSecret: String, httpClient: HTTPClient, cacheLifetime: Duration = .zero,
        offlineGrace: Duration = .zero
    ) {
        self.control = control
        self.offlineGrace = offlineGrace
        self.serviceSecret = serviceSecret
        self.httpClient = httpClient
        self.remembered = VerifiedKeyCache(lifetime: cacheLifetime)
    }

    public func verify(bearer: String) async throws -> Principal {
        let digest = SHA256.hash(data: Array(bearer.utf8))
        let now = Date()
        if let principal = remembered.principal(keyID: digest, secretDigest: digest, now: now) { return principal }
        // A `forgetRemembered` (a revocation pushed by the route watch) while this introspection
        // is in flight must win over its answer.
        let generation = remembered.generation
        let answer: IntrospectionRoutes.Answer
        do {
            answer = try await introspect(bearer)
        } catch let error as GantryError where error.kind == .unavailable {
            // No control replica answers: a key verified recently enough (and not expired) is
            // still served, so the gateway keeps serving the callers it knows.
            guard
                let principal = remembered.stalePrincipal(
                    keyID: digest, secretDigest: digest, now: now, maxAge: offlineGrace.inSeconds),
                // API keys only: a provider token's own expiry is not known here.
                principal.keyID != nil
            else { throw error }
            return principal
        }
        guard answer.active, let sub = answer.sub, let username = answer.username, let role = answer.gantryRole else {
            throw GantryError(.unauthorized, "invalid API key", code: "invalid_api_key")
        }
        let credential: Credential = answer.clientId.map { .apiKey(id: $0) } ?? .providerToken
        let principal = Principal(
            userID: sub, userName: username, role: role, credential: credential, allowedDeployments: answer.gantryDeployments,
            keyLimits: answer.gantryLimits, userLimits: answer.gantryUserLimits,
            keyExpiry: answer.exp.map { Date(timeIntervalSince1970: TimeInterval($0)) })
        remembered.remember(principal, keyID: digest, secretDigest: digest, now: now, generation: generation)
        return principal
    }

    /// Forgets every remembered answer: the control role said credentials changed.
    public func forgetRemembered() {
        remembered.removeAll()
    }

    public func rememberedPrincipal(bearer: String) -> Principal? {
        let digest = SHA256.hash(data: Array(bearer.utf8))
        return remembered.principal(keyID: digest, secretDigest: digest, now: Date())
    }

    public func verify(sessionToken: String) async throws -> Principal {
        throw GantryError(.unauthorized, "browser sessions are served by the control role", code: "invalid_session")
    }

    /// Asks the control replicas in turn (introspection changes nothing, so any may answer, and
    /// again): one that cannot be reached or answers 5xx passes the question to the next.
    func introspect(_ token: String) async throws -> IntrospectionRoutes.Answer {
        try await control.first { base in try await introspect(token, at: base + "/auth/introspect") }
    }

    private func introspect(_ token: String, at endpoint: String) async throws -> IntrospectionRoutes.Answer {
        var request = HTTPClientRequest(url: endpoint)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "authorization", value: "Bearer \(serviceSecret)")
        request.body = .bytes(ByteBuffer(string: "token=" + OIDCClient.formEncode(token)))
        let data: Data
        do {
            let response = try await httpClient.execute(request, timeout: .seconds(5))
            guard response.status == .ok else {
                throw GantryError(.unavailable, "the control role answered \(response.status.code) to introspection")
            }
            data = Data(buffer: try await response.body.collect(upTo: 64 * 1024))
        } catch let error as GantryError {
            throw error
        } catch {
            throw GantryError(.unavailable, "the control role could not be reached for introspection")
        }
        do {
            return try JSONDecoder().decode(IntrospectionRoutes.Answer.self, from: data)
        } catch {
            throw GantryError(.unavailable, "the control role's introspection answer was unreadable")
        }
    }
}

import Foundation
import GantryCore
public import GantryHTTP
import HTTPTypes
public import Hummingbird
import NIOCore

/// `/auth/*`: browser login (authorization code + PKCE), logout, and the device login the CLI uses.
public struct AuthRoutes: Sendable {
    static let loginCookie = "gantry_login"
    public static let sessionCookie = "gantry_session"

    let login: LoginService?
    /// Sessions for a caller who proves an API key (the console's login without a provider).
    let keySessions: BrowserSessions?
    /// Cookies get `Secure` when Gantry is reached over https.
    let secureCookies: Bool

    public init(login: LoginService?, keySessions: BrowserSessions? = nil, secureCookies: Bool) {
        self.login = login
        self.keySessions = keySessions
        self.secureCookies = secureCookies
    }

    func requireLogin() throws -> LoginService {
        guard let login else {
            throw GantryError.notFound(
                "OIDC login is not configured on this server (set auth.oidc.issuer)", code: "oidc_not_configured")
        }
        return login
    }

    public func add(to router: Router<GantryRequestContext>) {
        let group = router.group("/auth")
        group.get("login") { request, _ in
            let login = try requireLogin()
            let returnTo = request.uri.queryParameters["next"].map(String.init) ?? "/"
            let (url, state) = try await login.beginBrowserLogin(returnTo: returnTo)
            var response = Response(status: .found, headers: [.location: url, .cacheControl: "no-store"])
            response.setCookie(
                Cookie(
                    name: Self.loginCookie, value: state, maxAge: 600, path: "/auth", secure: secureCookies, httpOnly: true,
                    sameSite: .lax))
            return response
        }
        group.get("callback") { request, _ in
            let login = try requireLogin()
            let query = request.uri.queryParameters
            if let error = query["error"] {
                let safe = String(error.prefix(64)).filter { $0.isLetter || $0 == "_" }
                throw GantryError(.unauthorized, "the identity provider did not log you in (\(safe))", code: "login_failed")
            }
            guard let code = query["code"], let state = query["state"] else {
                throw GantryError.invalid("the callback needs code and state")
            }
            let (token, returnTo) = try await login.completeBrowserLogin(
                code: String(code), state: String(state), cookieState: request.cookies[Self.loginCookie]?.value)
            var response = Response(status: .found, headers: [.location: returnTo, .cacheControl: "no-store"])
            response.setCookie(
                Cookie(
                    name: Self.sessionCookie, value: token, maxAge: Int(login.sessionLifetime), path: "/", secure: secureCookies,
                    httpOnly: true, sameSite: .lax))
            response.setCookie(Cookie(name: Self.loginCookie, value: "", maxAge: 0, path: "/auth", secure: secureCookies))
            return response
        }
        // A browser session for the holder of an API key, sent as `Authorization: Bearer` (so the
        // gateway's authentication checks it and counts a wrong one against the address, and no
        // other site's form can post it). Only a key that may do all its user may do opens one:
        // a session has no service scope or limits of its own to carry a key's.
        group.post("key-session") { _, context in
            guard let keySessions else { throw GantryError.notFound("no route for this path", code: "not_found") }
            let principal = try context.requirePrincipal()
            guard case .apiKey = principal.credential else {
                throw GantryError(.unauthorized, "send the API key as 'Authorization: Bearer <key>'", code: "missing_api_key")
            }
            guard principal.allowedDeployments == nil, principal.keyLimits == nil else {
                throw GantryError(
                    .forbidden,
                    "this key is limited to some services or has limits of its own; log in with a key without either")
            }
            let token = try await keySessions.open(userID: principal.userID)
            var response = Response(status: .noContent, headers: [.cacheControl: "no-store"])
            response.setCookie(
                Cookie(
                    name: Self.sessionCookie, value: token, maxAge: Int(keySessions.lifetime), path: "/",
                    secure: secureCookies, httpOnly: true, sameSite: .lax))
            return response
        }
        group.get("logout") { request, _ in try await logout(request) }
        group.post("logout") { request, _ in try await logout(request) }

        // Loopback login for the CLI (RFC 8252), for providers without the device grant.
        group.get("cli") { request, _ in
            let login = try requireLogin()
            let query = request.uri.queryParameters
            guard let port = query["port"].flatMap({ Int(String($0)) }), let state = query["state"],
                let challenge = query["code_challenge"]
            else { throw GantryError.invalid("port, state and code_challenge are required") }
            let id = try await login.beginLoopbackLogin(port: port, state: String(state), codeChallenge: String(challenge))
            let next = "/auth/cli/complete?request=\(id)"
            return Response(
                status: .found,
                headers: [.location: "/auth/login?next=" + OIDCClient.formEncode(next), .cacheControl: "no-store"])
        }
        group.get("cli/complete") { request, context in
            let login = try requireLogin()
            guard let id = request.uri.queryParameters["request"] else { throw GantryError.invalid("request is required") }
            guard let principal = context.principal, case .session = principal.credential else {
                throw GantryError(.unauthorized, "log in first at /auth/login")
            }
            let target = try await login.completeLoopbackLogin(requestID: String(id), userID: principal.userID)
            return Response(status: .found, headers: [.location: target, .cacheControl: "no-store"])
        }
        group.post("cli/token") { request, _ in
            let body = try await request.decodeJSON(as: LoopbackRedeem.self, limit: 4096)
            return JSONResponse(
                DeviceApproved(try await requireLogin().redeemLoopbackCode(body.code, verifier: body.codeVerifier)))
        }

        group.post("device") { _, _ in
            JSONResponse(try await requireLogin().beginDeviceLogin())
        }
        group.post("device/token") { request, _ in
            let poll = try await request.decodeJSON(as: DevicePoll.self, limit: 4096)
            switch try await requireLogin().pollDeviceLogin(handle: poll.deviceCode) {
            case .pending:
                throw GantryError.invalid("the login has not been approved yet", code: "authorization_pending")
            case .slowDown:
                throw GantryError.invalid("poll less often", code: "slow_down")
            case .approved(let login):
                return JSONResponse(DeviceApproved(login))
            }
        }
    }

    /// Ends the browser session (if any) and clears its cookie.
    func logout(_ request: Request) async throws -> Response {
        if let token = request.cookies[Self.sessionCookie]?.value, let login {
            try await login.endSession(token: token)
        }
        var response = Response(status: .seeOther, headers: [.location: "/", .cacheControl: "no-store"])
        response.setCookie(Cookie(name: Self.sessionCookie, value: "", maxAge: 0, path: "/", secure: secureCookies))
        return response
    }
}

struct LoopbackRedeem: Decodable {
    var code: String
    var codeVerifier: String
}

struct DevicePoll: Decodable {
    var deviceCode: String
}

/// The answer to a finished CLI login (device or loopback).
struct DeviceApproved: Encodable, Sendable {
    var apiKey: String
    var keyId: String
    var user: String
    var role: Role

    init(_ login: LoginService.CLIKey) {
        apiKey = login.key
        keyId = login.keyID
        user = login.user.name
        role = login.user.role
    }
}

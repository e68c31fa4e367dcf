import AsyncHTTPClient
import Foundation
import GantryAuth
import GantryCommands
import GantryCore
import GantryGateway
import GantryServing
import GantryTestSupport
import Logging
import NIOCore
import Testing

/// Login with a real OpenID Connect provider (nanoidp, started by scripts/test.sh), driven as a
/// browser and a CLI would, without a browser: Gantry's redirect, the provider's login form, the
/// callback, the session, the self-service page, the device flow, key rotation at the provider.
@Suite("Login with nanoidp", .serialized, .tags(.nanoidp))
struct AuthFlowTests {
    let idp: NanoIDP
    static let introspectionSecret = "introspection-secret-for-tests-0123456789"

    init() throws {
        idp = try NanoIDP.fromEnvironment()
    }

    var flags: [GantrySetting: String] {
        [
            .oidcIssuer: idp.issuer, .oidcClientID: idp.clientID, .oidcClientSecret: idp.clientSecret,
            .oidcJWKSRefetch: "0", .oidcAcceptAccessTokens: "true", .oidcAccessTokenAudience: idp.accessTokenAudience,
            .introspectionSecret: Self.introspectionSecret, .logLevel: "trace",
        ]
    }

    /// Walks the authorization code flow for `user` and returns the final callback page.
    func logIn(
        _ browser: BrowserAgent, base: String, user: (username: String, password: String), next: String = "/"
    ) async throws -> BrowserAgent.Page {
        let start = try await browser.get("\(base)/auth/login?next=\(BrowserAgent.encode(next))")
        #expect(start.status == 302)
        let authorize = try #require(start.location)
        #expect(authorize.hasPrefix(idp.issuer + "/authorize?"))
        #expect(authorize.contains("code_challenge_method=S256") && authorize.contains("nonce="))
        let form = try await browser.get(authorize)
        #expect(form.status == 200)
        let transaction = try #require(Self.field("transaction_id", in: form.body))
        let submitted = try await browser.postForm(
            authorize, [("transaction_id", transaction), ("username", user.username), ("password", user.password)])
        #expect(submitted.status == 302)
        let callback = try #require(submitted.location)
        #expect(callback.hasPrefix("\(base)/auth/callback?"))
        return try await browser.get(callback)
    }

    static func field(_ name: String, in html: String) -> String? {
        guard let range = html.range(of: #"name="\#(name)" value=""#) else { return nil }
        let rest = html[range.upperBound...]
        return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
    }

    func request(_ url: String, method: String = "GET", bearer: String? = nil, body: String? = nil) async throws -> (Int, String)
    {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        if let bearer { request.headers.add(name: "authorization", value: "Bearer \(bearer)") }
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    @Test("browser login: admin by group claim, session cookie, self-service keys, CSRF, logout, and no secret in any log")
    func browserLogin() async throws {
        let logs = CapturedLogs()
        var secrets: [String] = [idp.clientSecret, idp.managementSecret, NanoIDP.admin.password, NanoIDP.user.password]
        let browser = BrowserAgent()
        defer { Task { try? await browser.shutdown() } }
        let port = try FreePort.find()
        let origin = "127.0.0.1:\(port)"
        secrets += try await TestServer.running(port: port, flags: flags, logger: logs.logger()) { test, base in
            var found = [test.adminKey]
            let done = try await logIn(browser, base: base, user: NanoIDP.admin, next: "/")
            #expect(done.status == 302)
            #expect(done.location == "/")
            let sessionHeader = try #require(done.setCookies.first { $0.hasPrefix("gantry_session=") })
            #expect(sessionHeader.contains("HttpOnly") && sessionHeader.contains("SameSite=Lax"))
            let session = try #require(browser.cookie("gantry_session", origin: origin))
            found.append(session)

            let home = try await browser.get(base + "/")
            #expect(home.body.contains("Signed in as <strong>alice</strong> (admin)"))
            let csrf = try #require(Self.field("csrf", in: home.body))

            // Create a key from the page: shown once, works, then revoked from the page.
            let created = try await browser.postForm(base + "/me/keys", [("csrf", csrf), ("name", "laptop <b>")])
            #expect(created.status == 200)
            #expect(created.body.contains("laptop &lt;b&gt;"), "names are escaped")
            let key = try #require(
                created.body.range(of: #"<code id="new-key">"#).map { range in
                    String(created.body[range.upperBound...].prefix { $0 != "<" })
                })
            found.append(key)
            #expect(try await request(base + "/api/v1/nodes", bearer: key).0 == 200, "alice is an admin")
            let again = try await browser.get(base + "/")
            #expect(!again.body.contains(key), "a key is shown only once")

            // Without the CSRF token the page's forms are refused.
            #expect(try await browser.postForm(base + "/me/keys", [("name", "sneaky")]).status == 403)
            // The session authenticates /api reads; writes need x-csrf-token too.
            #expect(try await browser.get(base + "/api/v1/keys").status == 200)
            #expect(try await browser.postJSON(base + "/api/v1/keys", #"{"name":"x"}"#).status == 403)
            // Other spellings of the path, which the router would match, are refused before any
            // check: none mints a key without the token.
            let before = try await browser.get(base + "/api/v1/keys").body
            for spelling in ["//api/v1/keys", "/api//v1/keys", "/api/v1/keys/", "///api/v1//keys//", "/api/v1/../v1/keys"] {
                #expect(try await browser.postJSON(base + spelling, #"{"name":"x"}"#).status == 400, "\(spelling)")
            }
            #expect(try await browser.get(base + "/api/v1/keys").body == before, "no key was created")
            #expect(
                try await browser.postJSON(base + "/api/v1/keys", #"{"name":"x"}"#, headers: [("x-csrf-token", csrf)]).status
                    == 201)

            let keyID = String(key.dropFirst(3).prefix(12))
            let revoked = try await browser.postForm(base + "/me/keys/\(keyID)/revoke", [("csrf", csrf)])
            #expect(revoked.status == 303)
            #expect(try await request(base + "/api/v1/nodes", bearer: key).0 == 401)

            // The provider's access token is accepted for a user who has logged in.
            let token = try await providerAccessToken(NanoIDP.admin)
            found.append(token)
            #expect(try await request(base + "/api/v1/models", bearer: token).0 == 200)

            let loggedOut = try await browser.postForm(base + "/auth/logout", [])
            #expect(loggedOut.status == 303)
            #expect(browser.cookie("gantry_session", origin: origin) == nil)
            browser.setCookie("gantry_session", session, origin: origin)
            #expect(try await browser.get(base + "/api/v1/keys").status == 401, "a logged-out session is dead everywhere")
            return found
        }
        let lines = logs.all
        #expect(lines.contains { $0.contains("browser login") }, "the capture saw the run")
        for secret in secrets {
            #expect(!lines.contains { $0.contains(secret) }, "a secret appeared in the logs")
        }
        #expect(!lines.contains { $0.contains("gk_") }, "no API key material in the logs")
        #expect(!lines.contains { $0.contains("code=") || $0.contains("state=") }, "no authorization code or state in the logs")
        #expect(!lines.contains { $0.contains("eyJ") }, "no JWT (ID or access token) in the logs")
    }

    /// An access token straight from the provider (password grant, enabled in nanoidp's dev profile).
    func providerAccessToken(_ user: (username: String, password: String)) async throws -> String {
        var request = HTTPClientRequest(url: idp.issuer + "/token")
        request.method = .POST
        let basic = Data("\(idp.clientID):\(idp.clientSecret)".utf8).base64EncodedString()
        request.headers.add(name: "authorization", value: "Basic \(basic)")
        request.headers.add(name: "content-type", value: "application/x-www-form-urlencoded")
        request.body = .bytes(
            ByteBuffer(string: "grant_type=password&username=\(user.username)&password=\(user.password)&scope=openid"))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        let json = try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any]
        return try #require(json?["access_token"] as? String)
    }

    @Test("state and PKCE: replayed state, foreign browser, swapped code, provider error and foreign redirects are refused")
    func stateAttacks() async throws {
        let port = try FreePort.find()
        try await TestServer.running(port: port, flags: flags) { _, base in
            let browser = BrowserAgent()
            defer { Task { try? await browser.shutdown() } }

            // A normal login, then the same callback replayed.
            let start = try await browser.get("\(base)/auth/login?next=//evil.example/steal")
            let authorize = try #require(start.location)
            let form = try await browser.get(authorize)
            let transaction = try #require(Self.field("transaction_id", in: form.body))
            let submitted = try await browser.postForm(
                authorize, [("transaction_id", transaction), ("username", "bob"), ("password", "bob-pw")])
            let callback = try #require(submitted.location)
            let stateCookie = try #require(browser.cookie("gantry_login", origin: "127.0.0.1:\(port)"))
            let done = try await browser.get(callback)
            #expect(done.status == 302)
            #expect(done.location == "/", "a return path to another host is replaced by /")
            browser.setCookie("gantry_login", stateCookie, origin: "127.0.0.1:\(port)")
            #expect(try await browser.get(callback).status == 400, "a replayed state is refused")

            // The callback reaching a browser that did not start the login.
            let stranger = BrowserAgent()
            defer { Task { try? await stranger.shutdown() } }
            let second = try await logInUntilCallback(browser, base: base)
            #expect(try await stranger.get(second).status == 400)

            // A code from one login delivered with another login's state: the other login's PKCE
            // verifier does not match, so the provider refuses the exchange.
            let victim = try await logInUntilCallback(browser, base: base)
            let attackerStart = try await browser.get("\(base)/auth/login")
            let attackerLocation = try #require(attackerStart.location)
            let attackerState = try #require(
                URLComponents(string: attackerLocation)?.queryItems?.first { $0.name == "state" }?.value)
            var swapped = try #require(URLComponents(string: victim))
            swapped.queryItems = swapped.queryItems?.map {
                $0.name == "state" ? URLQueryItem(name: "state", value: attackerState) : $0
            }
            let swappedURL = try #require(swapped.string)
            let refused = try await browser.get(swappedURL)
            #expect(refused.status == 401)
            #expect(refused.body.contains("invalid_grant"))

            let error = try await browser.get("\(base)/auth/callback?error=access_denied&state=x")
            #expect(error.status == 401)
            #expect(try await browser.get("\(base)/auth/callback?state=x").status == 400)
        }
    }

    @Test(
        "two control replicas on one PostgreSQL: a login started on one completes on the other, once",
        .tags(.postgres))
    func loginAcrossReplicas() async throws {
        try await withTwoReplicas { baseA, portA, baseB, portB, browser in
            let callback = try await logInUntilCallback(browser, base: baseA)
            #expect(callback.hasPrefix(baseA + "/auth/callback?"))
            // The login cookie follows the browser to replica B's address.
            let stateCookie = try #require(browser.cookie("gantry_login", origin: "127.0.0.1:\(portA)"))
            browser.setCookie("gantry_login", stateCookie, origin: "127.0.0.1:\(portB)")
            let onB = baseB + callback.dropFirst(baseA.count)
            let done = try await browser.get(onB)
            #expect(done.status == 302, "replica B finished the login replica A started: \(done.body)")
            let session = try #require(browser.cookie("gantry_session", origin: "127.0.0.1:\(portB)"))
            // The session is in the shared store too: replica A knows it.
            browser.setCookie("gantry_session", session, origin: "127.0.0.1:\(portA)")
            #expect(try await browser.get(baseA + "/").body.contains("Signed in as <strong>bob</strong>"))
            // Replayed on A, the state is gone: it was taken once, on B.
            browser.setCookie("gantry_login", stateCookie, origin: "127.0.0.1:\(portA)")
            #expect(try await browser.get(callback).status == 400)
        }
    }

    /// Two control replicas on one fresh PostgreSQL database behind one public URL (A's), as
    /// replicas behind a load balancer are: the provider sends the browser back to that URL, and
    /// whichever replica answers must finish the login. `body` gets A's and B's base URLs and ports
    /// and a browser.
    func withTwoReplicas(
        _ body: @Sendable (_ baseA: String, _ portA: Int, _ baseB: String, _ portB: Int, BrowserAgent) async throws -> Void
    ) async throws {
        let database = try await PostgresTestDatabase.create()
        let (portA, portB) = (try FreePort.find(), try FreePort.find())
        let shared = flags.merging([.databaseURL: database, .publicURL: "http://127.0.0.1:\(portA)"]) { $1 }
        try await TestServer.running(port: portA, flags: shared) { first, baseA in
            // The store is bootstrapped already: the second replica makes no key of its own.
            try await TestServer.running(port: portB, flags: shared, adminKey: first.adminKey) { _, baseB in
                let browser = BrowserAgent()
                defer { Task { try? await browser.shutdown() } }
                try await body(baseA, portA, baseB, portB, browser)
            }
        }
    }

    @Test(
        "two control replicas on one PostgreSQL: a device login and a loopback CLI login started on one complete on the other, once",
        .tags(.postgres))
    func cliLoginsAcrossReplicas() async throws {
        try await withTwoReplicas { baseA, portA, baseB, portB, browser in
            // Device flow: started on A, approved at the provider, collected on B, then spent.
            let (status, started) = try await request(baseA + "/auth/device", method: "POST")
            #expect(status == 200)
            let start = try #require(try JSONSerialization.jsonObject(with: Data(started.utf8)) as? [String: Any])
            let handle = try #require(start["device_code"] as? String)
            let userCode = try #require(start["user_code"] as? String)
            let pending = try await request(
                baseB + "/auth/device/token", method: "POST", body: #"{"device_code":"\#(handle)"}"#)
            #expect(pending.1.contains("authorization_pending"), "B knows the login A started: \(pending.1)")
            _ = try await browser.postForm(
                idp.issuer + "/device",
                [("user_code", userCode), ("username", "bob"), ("password", "bob-pw"), ("action", "authorize")])
            let collected = try await request(
                baseB + "/auth/device/token", method: "POST", body: #"{"device_code":"\#(handle)"}"#)
            #expect(collected.0 == 200, "\(collected.1)")
            let again = try await request(
                baseA + "/auth/device/token", method: "POST", body: #"{"device_code":"\#(handle)"}"#)
            #expect(again.0 == 400, "collected once, on either replica")

            // Loopback flow: requested on A, handed over on B, redeemed on A.
            let verifier = "a-verifier-with-enough-entropy-for-pkce-0123456789"
            let challenge = RandomToken.pkceChallenge(for: verifier)
            let state = "cli-state-0123456789abcdef"
            let loopback = try await loopbackCode(
                browser, base: baseA, challenge: challenge, state: state,
                handoffBase: {
                    // The session follows the browser to B, which hands over the request A stored.
                    let session = try #require(browser.cookie("gantry_session", origin: "127.0.0.1:\(portA)"))
                    browser.setCookie("gantry_session", session, origin: "127.0.0.1:\(portB)")
                    return baseB
                })
            let code = try #require(loopback.queryItems?.first { $0.name == "code" }?.value)
            let redeemed = try await request(
                baseA + "/auth/cli/token", method: "POST", body: #"{"code":"\#(code)","code_verifier":"\#(verifier)"}"#)
            #expect(redeemed.0 == 200, "A redeems the code B issued: \(redeemed.1)")
            let replay = try await request(
                baseB + "/auth/cli/token", method: "POST", body: #"{"code":"\#(code)","code_verifier":"\#(verifier)"}"#)
            #expect(replay.0 == 401, "redeemed once, on either replica")
        }
    }

    /// Walks from /auth/cli through the provider back to the CLI's loopback URL. `handoffBase`,
    /// when given, is asked once the login is done for the base URL of the hand-over step (another
    /// replica's, after moving the session there).
    func loopbackCode(
        _ browser: BrowserAgent, base: String, challenge: String, state: String,
        handoffBase: (() throws -> String)? = nil
    ) async throws -> URLComponents {
        let cli = try await browser.get("\(base)/auth/cli?port=45678&state=\(state)&code_challenge=\(challenge)")
        #expect(cli.status == 302)
        let toLogin = try #require(cli.location)
        let start = try await browser.get(base + toLogin)
        let authorize = try #require(start.location)
        let form = try await browser.get(authorize)
        let transaction = try #require(Self.field("transaction_id", in: form.body))
        let submitted = try await browser.postForm(
            authorize, [("transaction_id", transaction), ("username", "bob"), ("password", "bob-pw")])
        let callbackURL = try #require(submitted.location)
        let callback = try await browser.get(callbackURL)
        let complete = try #require(callback.location)
        #expect(complete.hasPrefix("/auth/cli/complete?request="))
        let handoff = try await browser.get((try handoffBase?() ?? base) + complete)
        #expect(handoff.status == 302, "\(handoff.body)")
        let handoffLocation = try #require(handoff.location)
        let loopback = try #require(URLComponents(string: handoffLocation))
        #expect(loopback.host == "127.0.0.1" && loopback.port == 45678 && loopback.path == "/callback")
        #expect(loopback.queryItems?.first { $0.name == "state" }?.value == state)
        return loopback
    }

    /// Starts a login and submits the provider's form; returns the callback URL without visiting it.
    func logInUntilCallback(_ browser: BrowserAgent, base: String) async throws -> String {
        let start = try await browser.get("\(base)/auth/login")
        let authorize = try #require(start.location)
        let form = try await browser.get(authorize)
        let transaction = try #require(Self.field("transaction_id", in: form.body))
        let submitted = try await browser.postForm(
            authorize, [("transaction_id", transaction), ("username", "bob"), ("password", "bob-pw")])
        return try #require(submitted.location)
    }

    @Test("device login for the CLI, key rotation at the provider, disabling a user, introspection")
    func deviceRotationDisableIntrospection() async throws {
        let port = try FreePort.find()
        try await TestServer.running(port: port, flags: flags) { test, base in
            let browser = BrowserAgent()
            defer { Task { try? await browser.shutdown() } }

            // Device flow: start, pending, approve at the provider, collect a key.
            let (status, started) = try await request(base + "/auth/device", method: "POST")
            #expect(status == 200)
            let start = try #require(try JSONSerialization.jsonObject(with: Data(started.utf8)) as? [String: Any])
            let handle = try #require(start["device_code"] as? String)
            let userCode = try #require(start["user_code"] as? String)
            #expect((start["verification_uri"] as? String)?.hasPrefix(idp.issuer) == true)
            let pending = try await request(base + "/auth/device/token", method: "POST", body: #"{"device_code":"\#(handle)"}"#)
            #expect(pending.0 == 400)
            #expect(pending.1.contains("authorization_pending"))
            let approved = try await browser.postForm(
                idp.issuer + "/device",
                [("user_code", userCode), ("username", "bob"), ("password", "bob-pw"), ("action", "authorize")])
            #expect(approved.body.contains("authorized"))
            let collected = try await request(base + "/auth/device/token", method: "POST", body: #"{"device_code":"\#(handle)"}"#)
            #expect(collected.0 == 200)
            let answer = try #require(try JSONSerialization.jsonObject(with: Data(collected.1.utf8)) as? [String: Any])
            let bobKey = try #require(answer["api_key"] as? String)
            #expect(answer["role"] as? String == "user")
            #expect(try await request(base + "/api/v1/models", bearer: bobKey).0 == 200)
            #expect(try await request(base + "/api/v1/nodes", bearer: bobKey).0 == 403, "a user is authenticated but not allowed")
            #expect(
                try await request(base + "/auth/device/token", method: "POST", body: #"{"device_code":"\#(handle)"}"#).0 == 400,
                "a device handle is used once")

            // The provider rotates its signing key; the next login still validates.
            var rotate = HTTPClientRequest(url: idp.issuer + "/api/keys/rotate")
            rotate.method = .POST
            rotate.headers.add(name: "x-management-secret", value: idp.managementSecret)
            #expect(try await HTTPClient.shared.execute(rotate, timeout: .seconds(10)).status == .ok)
            let afterRotation = try await logIn(browser, base: base, user: NanoIDP.admin)
            #expect(afterRotation.status == 302)
            #expect(afterRotation.location == "/")

            // Introspection for a gateway in another process.
            func introspect(_ token: String, caller: String?) async throws -> (Int, String) {
                var request = HTTPClientRequest(url: base + "/auth/introspect")
                request.method = .POST
                request.headers.add(name: "content-type", value: "application/x-www-form-urlencoded")
                if let caller { request.headers.add(name: "authorization", value: "Bearer \(caller)") }
                request.body = .bytes(ByteBuffer(string: "token=" + BrowserAgent.encode(token)))
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 65536)))
            }
            let active = try await introspect(bobKey, caller: Self.introspectionSecret)
            #expect(active.0 == 200)
            #expect(active.1.contains(#""active":true"#) && active.1.contains(#""gantry_role":"user""#))
            #expect(try await introspect("gk_nonsense", caller: Self.introspectionSecret).1 == #"{"active":false}"#)
            #expect(try await introspect(bobKey, caller: nil).0 == 401)
            #expect(try await introspect(bobKey, caller: bobKey).0 == 403)
            #expect(try await introspect(bobKey, caller: test.adminKey).0 == 200)

            // An admin disables bob: his key stops at once and he cannot log in again.
            let users = try await request(base + "/api/v1/users", bearer: test.adminKey)
            let list = try #require(try JSONSerialization.jsonObject(with: Data(users.1.utf8)) as? [String: Any])
            let bob = try #require((list["data"] as? [[String: Any]])?.first { $0["name"] as? String == "bob" })
            let bobID = try #require(bob["id"] as? String)
            #expect(bob["email"] as? String == "bob@example.test", "profile claims come from UserInfo")
            // A gateway in another process learns the user's limits with the key's, and enforces both.
            let limited = try await request(
                base + "/api/v1/users/\(bobID)", method: "PATCH", bearer: test.adminKey,
                body: #"{"limits":{"requests_per_minute":7,"token_quota":99}}"#)
            #expect(limited.0 == 200)
            let withLimits = try await introspect(bobKey, caller: Self.introspectionSecret)
            #expect(withLimits.1.contains(#""gantry_user_limits":{"#), "\(withLimits.1)")
            let gatewaySide = try await IntrospectionClient(
                control: try ControlEndpoints(base), serviceSecret: Self.introspectionSecret, httpClient: .shared
            ).verify(bearer: bobKey)
            #expect(gatewaySide.userLimits == UsageLimits(requestsPerMinute: 7, tokenQuota: 99))
            #expect(QuotaScope.scopes(for: gatewaySide).map(\.holder) == [.user(bobID)])

            let disabled = try await request(
                base + "/api/v1/users/\(bobID)", method: "PATCH", bearer: test.adminKey, body: #"{"disabled":true}"#)
            #expect(disabled.0 == 200)
            #expect(try await request(base + "/api/v1/models", bearer: bobKey).0 == 401)
            #expect(try await introspect(bobKey, caller: Self.introspectionSecret).1 == #"{"active":false}"#)
            let fresh = BrowserAgent()
            defer { Task { try? await fresh.shutdown() } }
            #expect(try await logIn(fresh, base: base, user: NanoIDP.user).status == 403)
        }
    }

    @Test("loopback CLI login (RFC 8252): one-time code on the CLI's port, redeemed once with the PKCE verifier")
    func loopbackLogin() async throws {
        let port = try FreePort.find()
        try await TestServer.running(port: port, flags: flags) { _, base in
            let browser = BrowserAgent()
            defer { Task { try? await browser.shutdown() } }

            let verifier = "a-verifier-with-enough-entropy-for-pkce-0123456789"
            let challenge = RandomToken.pkceChallenge(for: verifier)
            let state = "cli-state-0123456789abcdef"

            let first = try await loopbackCode(browser, base: base, challenge: challenge, state: state)
            let firstCode = try #require(first.queryItems?.first { $0.name == "code" }?.value)
            let wrong = try await request(
                base + "/auth/cli/token", method: "POST", body: #"{"code":"\#(firstCode)","code_verifier":"wrong-verifier"}"#)
            #expect(wrong.0 == 401, "a code with the wrong verifier is refused")
            let burned = try await request(
                base + "/auth/cli/token", method: "POST", body: #"{"code":"\#(firstCode)","code_verifier":"\#(verifier)"}"#)
            #expect(burned.0 == 401, "a code is good for one try only")

            let second = try await loopbackCode(browser, base: base, challenge: challenge, state: state)
            let code = try #require(second.queryItems?.first { $0.name == "code" }?.value)
            let redeemed = try await request(
                base + "/auth/cli/token", method: "POST", body: #"{"code":"\#(code)","code_verifier":"\#(verifier)"}"#)
            #expect(redeemed.0 == 200)
            let answer = try #require(try JSONSerialization.jsonObject(with: Data(redeemed.1.utf8)) as? [String: Any])
            let key = try #require(answer["api_key"] as? String)
            #expect(try await request(base + "/api/v1/models", bearer: key).0 == 200)
            let replay = try await request(
                base + "/auth/cli/token", method: "POST", body: #"{"code":"\#(code)","code_verifier":"\#(verifier)"}"#)
            #expect(replay.0 == 401)

            #expect(try await browser.get("\(base)/auth/cli?port=80&state=\(state)&code_challenge=\(challenge)").status == 400)
            let stranger = BrowserAgent()
            defer { Task { try? await stranger.shutdown() } }
            #expect(try await stranger.get(base + "/auth/cli/complete?request=x").status == 401, "a session is required")
        }
    }
}

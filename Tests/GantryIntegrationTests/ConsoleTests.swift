import AsyncHTTPClient
import Foundation
import GantryCommands
import GantryCore
import GantryServing
import GantryTestSupport
import NIOCore
import Testing

@testable import GantryConsole

/// The console's rules at the HTTP level, with real sessions from nanoidp: login and back, CSRF,
/// 403 for users on admin pages, the policy header, and the API's refusals by their fields. The
/// journeys in a real browser are scripts/console-test.sh.
@Suite("Console", .serialized, .tags(.nanoidp))
struct ConsoleTests {
    let idp: NanoIDP

    init() throws {
        idp = try NanoIDP.fromEnvironment()
    }

    var flags: [GantrySetting: String] {
        [.oidcIssuer: idp.issuer, .oidcClientID: idp.clientID, .oidcClientSecret: idp.clientSecret]
    }

    /// Logs `user` in by walking the redirects from `path`, as a browser would, and returns where
    /// the login ended.
    func logIn(_ browser: BrowserAgent, base: String, from path: String, user: (username: String, password: String))
        async throws -> String
    {
        let page = try await browser.get(base + path)
        #expect(page.status == 303, "no session: off to log in")
        let login = try #require(page.location)
        #expect(login == "/auth/login?next=" + path)
        let start = try await browser.get(base + login)
        let authorize = try #require(start.location)
        let form = try await browser.get(authorize)
        let transaction = try #require(AuthFlowTests.field("transaction_id", in: form.body))
        let submitted = try await browser.postForm(
            authorize, [("transaction_id", transaction), ("username", user.username), ("password", user.password)])
        let done = try await browser.get(try #require(submitted.location))
        return try #require(done.location)
    }

    static func csrf(_ html: String) throws -> String {
        let marker = #"<meta name="csrf-token" content=""#
        let range = try #require(html.range(of: marker))
        return String(html[range.upperBound...].prefix { $0 != "\"" })
    }

    @Test("login and back, the policy on every page, CSRF on every form, the API's message by its field, 403 for users")
    func sessions() async throws {
        let port = try FreePort.find()
        let admin = BrowserAgent()
        let user = BrowserAgent()
        defer {
            Task {
                try? await admin.shutdown()
                try? await user.shutdown()
            }
        }
        try await TestServer.running(port: port, flags: flags) { _, base in
            // No session: to the login, and back to the page asked for.
            #expect(try await logIn(admin, base: base, from: "/console/keys", user: NanoIDP.admin) == "/console/keys")
            for path in [
                "/console", "/console/models", "/console/services", "/console/resources", "/console/users",
                "/console/keys", "/console/usage", "/console/playground",
            ] {
                let page = try await admin.get(base + path)
                #expect(page.status == 200, "\(path)")
                #expect(page.body.contains("<script src=\"/console/assets/console.js\" defer></script>"))
                #expect(!page.body.contains("<script>") && !page.body.contains("style=\""), "no inline script or style")
            }
            let keys = try await admin.get(base + "/console/keys")
            let csrf = try Self.csrf(keys.body)
            #expect(csrf.count > 20)

            // Without the page's token a form is refused and changes nothing.
            let forged = try await admin.postForm(base + "/console/keys", [("name", "forged")])
            #expect(forged.status == 403 && forged.body.contains("stale"))
            let wrong = try await admin.postForm(base + "/console/keys", [("csrf", csrf + "x"), ("name", "forged")])
            #expect(wrong.status == 403)
            #expect(!(try await admin.get(base + "/console/keys")).body.contains("forged"))
            // With it, the key is made and shown once.
            let made = try await admin.postForm(base + "/console/keys", [("csrf", csrf), ("name", "laptop <b>")])
            #expect(made.status == 200 && made.body.contains(#"<code id="new-key">gk_"#))
            #expect(made.body.contains("laptop &lt;b&gt;"), "escaped")
            #expect(!(try await admin.get(base + "/console/keys")).body.contains("id=\"new-key\""))

            // The API refuses a name: its message is by the field, the typed values stay.
            let refused = try await admin.postForm(
                base + "/console/models", [("csrf", csrf), ("name", "Not A Name"), ("description", "kept")])
            #expect(refused.status == 400)
            #expect(refused.body.contains(#"<p class="field-error" id="error-name">name must be a DNS label"#))
            #expect(refused.body.contains(#"name="description" type="text" value="kept""#))
            // A number field the API cannot decode is named by the API too.
            _ = try await admin.postForm(base + "/console/models", [("csrf", csrf), ("name", "m1"), ("task", "chat")])
            let badNumber = try await admin.postForm(
                base + "/console/models/m1/versions", [("csrf", csrf), ("format", "gguf"), ("context_limit", "lots")])
            #expect(badNumber.status == 400 && badNumber.body.contains(#"id="error-context_limit""#))

            // A session that no longer holds is the same as none: to the login, and back.
            let stale = BrowserAgent()
            stale.setCookie("gantry_session", "forged-session", origin: "127.0.0.1:\(port)")
            let page = try await stale.get(base + "/console/usage?from=2026-01-01")
            #expect(page.status == 303 && page.location == "/auth/login?next=/console/usage%3Ffrom%3D2026-01-01")
            try await stale.shutdown()

            // A user: their pages, 403 on an admin's, and the API's own refusal if they post one.
            #expect(try await logIn(user, base: base, from: "/console", user: NanoIDP.user) == "/console")
            let home = try await user.get(base + "/console")
            #expect(home.status == 303 && home.location == "/console/services")
            for path in ["/console/models", "/console/resources", "/console/users", "/console/models/m1"] {
                let page = try await user.get(base + path)
                #expect(page.status == 403 && page.body.contains(#"id="forbidden""#), "\(path)")
            }
            let userCSRF = try Self.csrf((try await user.get(base + "/console/keys")).body)
            let notTheirs = try await user.postForm(base + "/console/models", [("csrf", userCSRF), ("name", "mine")])
            #expect(notTheirs.status == 403)
            #expect(!(try await admin.get(base + "/console/models")).body.contains(">mine<"))
            let nav = try await user.get(base + "/console/keys")
            #expect(!nav.body.contains("href=\"/console/users\""), "no admin entries in a user's navigation")
        }
    }

    @Test("every page carries the strict policy; the assets are this origin's")
    func policy() async throws {
        let test = try await TestServer.make(flags: flags)
        try await test.server.application.test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"
            var request = HTTPClientRequest(url: base + "/console/services")
            request.headers.add(name: "authorization", value: "Bearer \(test.adminKey)")
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            #expect(response.status == .ok)
            #expect(
                response.headers.first(name: "content-security-policy")
                    == "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
                    + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
            #expect(response.headers.first(name: "cache-control") == "no-store")
            for (asset, type) in [("console.js", "text/javascript"), ("console.css", "text/css")] {
                let answer = try await HTTPClient.shared.execute(
                    HTTPClientRequest(url: base + "/console/assets/" + asset), timeout: .seconds(30))
                #expect(answer.status == .ok && answer.headers.first(name: "content-type")?.hasPrefix(type) == true)
            }
        }
    }

    @Test("form fields decode as browsers send them; CSV fields are quoted and never run as formulas")
    func encodings() {
        let form = ConsoleForm("name=a+b%26c&method=api_key&method=oidc&empty=&csrf=x%2By")
        #expect(form["name"] == "a b&c" && form["csrf"] == "x+y" && form["empty"] == nil && form["absent"] == nil)
        #expect(form.all("method") == ["api_key", "oidc"])
        #expect(form.number("name") == .string("a b&c"))
        #expect(ConsolePages.csvField("plain") == "plain")
        #expect(ConsolePages.csvField("a,b") == "\"a,b\"")
        #expect(ConsolePages.csvField("say \"hi\"") == "\"say \"\"hi\"\"\"")
        #expect(ConsolePages.csvField("=HYPERLINK(1)") == "'=HYPERLINK(1)")
        #expect(ConsolePages.csvField("-12") == "-12", "a negative number stays a number")
        let chart = SVGChart.sparkline(title: "<x>", values: [1, nil, 2, 3], format: { "\($0)" })
        #expect(chart.contains("&lt;x&gt;") && !chart.contains("<x>"))
        #expect(chart.contains("<circle") && chart.contains("<polyline"), "a gap splits the line")
    }
}

/// The console on a server without an identity provider (the embedded default): a session from
/// an API key the page's script sends as a bearer credential.
@Suite("Console without a provider")
struct ConsoleKeyLoginTests {
    @Test("an API key opens a session; a missing, wrong, scoped or limited key does not")
    func keyLogin() async throws {
        let test = try await TestServer.make()
        try await test.server.application.test(.live) { client in
            let port = try #require(client.port)
            let base = "http://127.0.0.1:\(port)"
            let browser = BrowserAgent()
            defer { Task { try? await browser.shutdown() } }
            let page = try await browser.get(base + "/console/keys")
            #expect(page.status == 401 && page.body.contains(#"data-key-login data-next="/console/keys""#))

            func open(_ key: String?) async throws -> BrowserAgent.Page {
                try await browser.postForm(
                    base + "/auth/key-session", [], headers: key.map { [("authorization", "Bearer \($0)")] } ?? [])
            }
            #expect(try await open(nil).status == 401)
            #expect(try await open("gk_notakey_000000000000000000000000000000000000000").status == 401)
            for limits in [#""scope":["chat"]"#, #""limits":{"requests_per_minute":5}"#] {
                var request = HTTPClientRequest(url: base + "/api/v1/keys")
                request.method = .POST
                request.headers.add(name: "authorization", value: "Bearer \(test.adminKey)")
                request.headers.add(name: "content-type", value: "application/json")
                request.body = .bytes(ByteBuffer(string: #"{"name":"narrow",\#(limits)}"#))
                let made = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                let body = try await made.body.collect(upTo: 1 << 16)
                let json = try #require(try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any])
                let narrow = try #require(json["key"] as? String)
                #expect(try await open(narrow).status == 403, "\(limits)")
            }
            #expect(browser.cookie("gantry_session", origin: "127.0.0.1:\(port)") == nil)

            let opened = try await open(test.adminKey)
            #expect(opened.status == 204)
            let cookie = try #require(opened.setCookies.first { $0.hasPrefix("gantry_session=") })
            #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"))
            let keys = try await browser.get(base + "/console/keys")
            #expect(keys.status == 200 && keys.body.contains(#"<meta name="csrf-token" content=""#))
            #expect(!keys.body.contains(test.adminKey), "the key itself is never on a page")
        }
    }
}

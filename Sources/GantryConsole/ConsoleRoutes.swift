import Foundation
public import GantryCore
public import GantryHTTP
import HTTPTypes
public import Hummingbird
import NIOCore

/// `/console`: the web console, served by `gantry` itself. Pages are HTML rendered here from
/// Gantry's own API (see `ConsoleAPI`); forms post to the console, which checks the page's CSRF
/// token and makes the API call. Admins see every page; users see their keys, their usage, the
/// services they may use and the playground. Without a session a page sends the browser to log
/// in and back; a user on an admin page gets 403.
public struct ConsoleRoutes: Sendable {
    let api: ConsoleAPI
    /// Whether OIDC login is configured (else the console is reachable with an API key only).
    let loginAvailable: Bool

    public init(api: ConsoleAPI, loginAvailable: Bool) {
        self.api = api
        self.loginAvailable = loginAvailable
    }

    /// What a page handler gets: the caller, the layout and a way to call the API as them.
    struct Visit: Sendable {
        let request: Request
        let context: GantryRequestContext
        let principal: Principal
        let api: ConsoleAPI
        let layout: ConsoleLayout

        var csrf: String { layout.csrf }

        func get(_ path: String) async throws -> APIAnswer {
            try await api.call(.get, path, as: request, context: context)
        }

        func send(_ method: HTTPRequest.Method, _ path: String, _ body: JSONValue? = nil) async throws -> APIAnswer {
            try await api.call(method, path, body: body, as: request, context: context)
        }

        /// A list the API answered, or an empty one where it refused (the page says so elsewhere).
        func list(_ path: String) async throws -> [JSONValue] {
            let answer = try await get(path)
            return answer.ok ? answer.list : []
        }

        func page(_ title: String, _ body: String, status: HTTPResponse.Status = .ok) -> Response {
            ConsoleLayout.response(layout.render(title: title, body: body), status: status)
        }

        func redirect(_ location: String) -> Response {
            Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
        }
    }

    public func add(to router: Router<GantryRequestContext>) {
        ConsoleAssets.add(to: router)
        let pages = ConsolePages()
        get(router, "/console", .overview) { visit in
            guard visit.principal.isAdmin else { return visit.redirect("/console/services") }
            return try await pages.overview(visit)
        }
        get(router, "/console/models", .models, adminOnly: true) { try await pages.models($0, problem: nil, form: nil) }
        post(router, "/console/models", .models, adminOnly: true) { try await pages.createModel($0, $1) }
        get(router, "/console/models/{name}", .models, adminOnly: true) { try await pages.model($0, problem: nil, form: nil) }
        post(router, "/console/models/{name}/versions", .models, adminOnly: true) { try await pages.createVersion($0, $1) }
        post(router, "/console/models/{name}/versions/{version}/complete", .models, adminOnly: true) {
            try await pages.versionAction($0, $1, action: .complete)
        }
        post(router, "/console/models/{name}/versions/{version}/deprecate", .models, adminOnly: true) {
            try await pages.versionAction($0, $1, action: .deprecate)
        }
        post(router, "/console/models/{name}/versions/{version}/delete", .models, adminOnly: true) {
            try await pages.versionAction($0, $1, action: .delete)
        }
        post(router, "/console/models/{name}/delete", .models, adminOnly: true) { try await pages.deleteModel($0, $1) }
        get(router, "/console/services", .services) { try await pages.services($0, problem: nil, form: nil) }
        post(router, "/console/services", .services, adminOnly: true) { try await pages.createService($0, $1) }
        get(router, "/console/services/{name}", .services) { try await pages.service($0, problem: nil) }
        post(router, "/console/services/{name}/action", .services, adminOnly: true) { try await pages.serviceAction($0, $1) }
        get(router, "/console/services/{name}/instances/{id}/log", .services, adminOnly: true) { try await pages.logTail($0) }
        get(router, "/console/resources", .resources, adminOnly: true) { try await pages.resources($0) }
        get(router, "/console/users", .users, adminOnly: true) { try await pages.users($0, problem: nil, form: nil) }
        post(router, "/console/users", .users, adminOnly: true) { try await pages.createUser($0, $1) }
        post(router, "/console/users/{id}", .users, adminOnly: true) { try await pages.updateUser($0, $1) }
        get(router, "/console/keys", .keys) { try await pages.keys($0, problem: nil, form: nil, created: nil) }
        post(router, "/console/keys", .keys) { try await pages.createKey($0, $1) }
        post(router, "/console/keys/{id}/revoke", .keys) { try await pages.revokeKey($0, $1) }
        post(router, "/console/keys/{id}/limits", .keys, adminOnly: true) { try await pages.updateKeyLimits($0, $1) }
        get(router, "/console/usage", .usage) { try await pages.usage($0) }
        get(router, "/console/usage.csv", .usage) { try await pages.usageCSV($0) }
        get(router, "/console/playground", .playground) { try await pages.playground($0) }
    }

    // MARK: - The checks every page makes

    /// A page's visitor, or the answer that sends them elsewhere (to log in, or a 403).
    enum Admission {
        case visit(Visit)
        case answer(Response)
    }

    private func visit(_ request: Request, _ context: GantryRequestContext, _ section: ConsoleLayout.Section, adminOnly: Bool)
        -> Admission
    {
        guard let principal = context.principal else {
            // No session, or one that expired: log in, then come back here.
            let back = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
            guard loginAvailable else {
                // No identity provider: a browser session from an API key, sent by the page's
                // script as a bearer credential (`POST /auth/key-session`), then back here.
                return .answer(ConsoleLayout.response(Self.keyLoginPage(next: back), status: .unauthorized))
            }
            return .answer(
                Response(
                    status: .seeOther,
                    headers: [
                        .location: "/auth/login?next=" + ConsolePages.segment(back, keepingSlashes: true),
                        .cacheControl: "no-store",
                    ]))
        }
        let layout = ConsoleLayout(principal: principal, section: section)
        if adminOnly, !principal.isAdmin {
            return .answer(
                ConsoleLayout.response(
                    layout.render(
                        title: "Not for your role",
                        body: "<p id=\"forbidden\">This page is for administrators. "
                            + "<a href=\"/console/services\">Your services</a>, <a href=\"/console/keys\">your API keys</a>.</p>"),
                    status: .forbidden))
        }
        return .visit(Visit(request: request, context: context, principal: principal, api: api, layout: layout))
    }

    private func get(
        _ router: Router<GantryRequestContext>, _ path: RouterPath, _ section: ConsoleLayout.Section, adminOnly: Bool = false,
        _ handler: @escaping @Sendable (Visit) async throws -> Response
    ) {
        router.get(path) { request, context in
            switch visit(request, context, section, adminOnly: adminOnly) {
            case .answer(let response): return response
            case .visit(let visit): return try await handler(visit)
            }
        }
    }

    private func post(
        _ router: Router<GantryRequestContext>, _ path: RouterPath, _ section: ConsoleLayout.Section, adminOnly: Bool = false,
        _ handler: @escaping @Sendable (Visit, ConsoleForm) async throws -> Response
    ) {
        router.post(path) { request, context in
            switch visit(request, context, section, adminOnly: adminOnly) {
            case .answer(let response): return response
            case .visit(let visit):
                var request = request
                let body = try await request.collectBody(upTo: 256 * 1024)
                let form = ConsoleForm(String(buffer: body))
                // Forms posted with the session cookie carry the session's token; an API key
                // caller has no cookie to abuse.
                if case .session(let expected) = visit.principal.credential {
                    guard let presented = form["csrf"], constantTimeEqual(presented, expected) else {
                        return visit.page(
                            "Stale form",
                            "<p class=\"form-error\" role=\"alert\">The form is stale or was not sent from this site: go back and reload the page.</p>",
                            status: .forbidden)
                    }
                }
                return try await handler(visit, form)
            }
        }
    }

    /// The login of a server without an identity provider: an API key for a browser session.
    static func keyLoginPage(next: String) -> String {
        bare(
            "Log in to Gantry",
            """
            <p>This server has no identity provider configured. Log in with one of your API keys \
            (a key limited to some services or with limits of its own cannot open a session).</p>
            <form id="key-login" class="stacked" data-key-login data-next="\(HTML.escape(next))">
            <label>API key <input name="key" type="password" autocomplete="off" required></label>
            <button>Log in</button><p class="form-error" role="alert" hidden></p></form>
            <script src="/console/assets/console.js" defer></script>
            """)
    }

    static func bare(_ title: String, _ body: String) -> String {
        """
        <!doctype html><html lang="en"><head><meta charset="utf-8">\
        <meta name="viewport" content="width=device-width, initial-scale=1"><title>\(HTML.escape(title))</title>\
        <link rel="stylesheet" href="/console/assets/console.css"></head><body><main><h1>\(HTML.escape(title))</h1>\(body)</main></body></html>
        """
    }
}

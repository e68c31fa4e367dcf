import Foundation
public import GantryCore
public import GantryHTTP
public import Hummingbird
import NIOCore

/// The page a platform user lands on after logging in (server-rendered HTML, no scripts): who
/// they are, their API keys, a form to create one (shown once) and buttons to revoke.
public struct SelfServicePage: Sendable {
    let identity: IdentityService
    let keys: any APIKeyRepository
    let loginAvailable: Bool

    public init(identity: IdentityService, repositories: Repositories, loginAvailable: Bool) {
        self.identity = identity
        self.keys = repositories.keys
        self.loginAvailable = loginAvailable
    }

    struct CreateForm: Decodable {
        var name: String
        var expiresDays: String?
        var csrf: String?

        enum CodingKeys: String, CodingKey {
            case name
            case expiresDays = "expires_days"
            case csrf
        }
    }

    struct CSRFForm: Decodable {
        var csrf: String?
    }

    public func add(to router: Router<GantryRequestContext>) {
        router.get("/") { _, context in
            guard let principal = context.principal else { return html(anonymousPage()) }
            return html(try await page(for: principal, newKey: nil))
        }
        router.post("/me/keys") { request, context in
            let principal = try context.requirePrincipal()
            let form = try await request.decodeForm(as: CreateForm.self)
            try checkCSRF(principal, form.csrf)
            var expiresAt: Date?
            if let days = form.expiresDays, !days.isEmpty {
                guard let count = Int(days), (1...3650).contains(count) else {
                    throw GantryError.invalid("expires_days must be a whole number of days from 1 to 3650", param: "expires_days")
                }
                expiresAt = Date().addingTimeInterval(TimeInterval(count) * 86400)
            }
            let (_, plaintext) = try await identity.issueKey(userID: principal.userID, name: form.name, expiresAt: expiresAt)
            return html(try await page(for: principal, newKey: plaintext))
        }
        router.post("/me/keys/{id}/revoke") { request, context in
            let principal = try context.requirePrincipal()
            try checkCSRF(principal, try await request.decodeForm(as: CSRFForm.self).csrf)
            let id = try context.parameters.require("id")
            guard let record = try await keys.key(id: id), record.userID == principal.userID else {
                throw GantryError.notFound("API key '\(id)' not found")
            }
            try await keys.revokeKey(id: id, at: Date())
            await identity.credentialsChanged()
            return Response(status: .seeOther, headers: [.location: "/"])
        }
    }

    /// Forms posted with the session cookie must carry the session's CSRF token; an API key
    /// caller has no cookie to abuse and needs none.
    func checkCSRF(_ principal: Principal, _ presented: String?) throws {
        guard case .session(let expected) = principal.credential else { return }
        guard let presented, APIKeyFormat.constantTimeEqual(presented, expected) else {
            throw GantryError(.forbidden, "the form is stale or was not sent from this site; reload the page")
        }
    }

    func html(_ body: String) -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
                .contentSecurityPolicy:
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    func anonymousPage() -> String {
        let action =
            loginAvailable
            ? #"<p><a href="/auth/login">Log in</a> to see and manage your API keys.</p>"#
            : "<p>Single sign-on is not configured. Call the API with an API key from your administrator.</p>"
        return layout(title: "Gantry", body: "<h1>Gantry</h1>" + action)
    }

    func page(for principal: Principal, newKey: String?) async throws -> String {
        let records = try await keys.listKeys(userID: principal.userID)
        let csrf: String
        if case .session(let token) = principal.credential { csrf = token } else { csrf = "" }
        var body = "<h1>Gantry</h1>"
        body += "<p>Signed in as <strong>\(HTML.escape(principal.userName))</strong> (\(principal.role.rawValue)).</p>"
        body += #"<form method="post" action="/auth/logout"><button>Log out</button></form>"#
        if let newKey {
            body += """
                <div class="new"><p>Your new API key. Copy it now: it is shown only this once.</p>
                <code id="new-key">\(HTML.escape(newKey))</code></div>
                """
        }
        body += "<h2>Your API keys</h2>"
        let active = records.filter { $0.revokedAt == nil }
        if active.isEmpty {
            body += "<p>You have no API keys yet.</p>"
        } else {
            body += "<table><tr><th>Name</th><th>Id</th><th>Created</th><th>Expires</th><th>Last used</th><th></th></tr>"
            for record in active {
                body += "<tr><td>\(HTML.escape(record.name))</td><td><code>\(HTML.escape(record.id))</code></td>"
                body += "<td>\(HTML.date(record.createdAt))</td><td>\(record.expiresAt.map(HTML.date) ?? "never")</td>"
                body += "<td>\(record.lastUsedAt.map(HTML.date) ?? "never")</td>"
                body += #"<td><form method="post" action="/me/keys/\#(HTML.escape(record.id))/revoke">"#
                body +=
                    #"<input type="hidden" name="csrf" value="\#(HTML.escape(csrf))"><button>Revoke</button></form></td></tr>"#
            }
            body += "</table>"
        }
        body += """
            <h2>Create a key</h2>
            <form method="post" action="/me/keys">
            <input type="hidden" name="csrf" value="\(HTML.escape(csrf))">
            <label>Name <input name="name" required maxlength="100"></label>
            <label>Expires after (days, empty for never) <input name="expires_days" inputmode="numeric"></label>
            <button>Create key</button>
            </form>
            <p><a href="/console">Open the console</a>: services, usage and the playground.</p>
            """
        return layout(title: "Gantry: your API keys", body: body)
    }

    func layout(title: String, body: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>\(HTML.escape(title))</title>
        <style>body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}
        table{border-collapse:collapse}td,th{padding:.3rem .6rem;border-bottom:1px solid #ddd;text-align:left}
        .new{background:#eef7ee;padding:.5rem 1rem;border:1px solid #9c9}label{display:block;margin:.4rem 0}</style>
        </head><body>\(body)</body></html>
        """
    }
}

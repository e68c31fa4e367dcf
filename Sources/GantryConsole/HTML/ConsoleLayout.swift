import Foundation
import GantryCore
import GantryHTTP
import HTTPTypes
import Hummingbird
import NIOCore

/// The frame of every console page: the navigation for the caller's role, the CSRF token for the
/// page's scripts, one stylesheet and one script from `/console/assets` (no inline script or style,
/// so the policy allows nothing but this origin's files).
struct ConsoleLayout {
    let principal: Principal
    /// Which navigation entry is the current page.
    let section: Section

    enum Section: String, CaseIterable {
        case overview, models, services, resources, users, keys, usage, playground

        var title: String {
            switch self {
            case .overview: "Overview"
            case .models: "Models"
            case .services: "Services"
            case .resources: "Resources"
            case .users: "Users"
            case .keys: "API keys"
            case .usage: "Usage"
            case .playground: "Playground"
            }
        }

        var path: String { self == .overview ? "/console" : "/console/" + rawValue }

        /// The pages a user who is not an admin has: their keys, usage and the services they may use.
        var forUsers: Bool { [.services, .keys, .usage, .playground].contains(self) }
    }

    /// The content security policy of every console page: this origin's script and stylesheet,
    /// images drawn inline as SVG, requests to this origin only, forms posted here only.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    var csrf: String {
        if case .session(let token) = principal.credential { return token }
        return ""
    }

    func render(title: String, body: String) -> String {
        let entries = Section.allCases.filter { principal.isAdmin || $0.forUsers }
        let nav = entries.map { entry in
            let current = entry == section ? #" aria-current="page""# : ""
            return #"<a href="\#(entry.path)"\#(current)>\#(entry.title)</a>"#
        }.joined()
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="csrf-token" content="\(HTML.escape(csrf))">
            <title>\(HTML.escape(title)) · Gantry</title>
            <link rel="stylesheet" href="/console/assets/console.css">
            <script src="/console/assets/console.js" defer></script>
            </head><body>
            <header><a class="brand" href="/console">Gantry</a><nav>\(nav)</nav>
            <form method="post" action="/auth/logout" class="logout"><span>\(HTML.escape(principal.userName))</span> <button>Log out</button></form>
            </header>
            <main id="page-\(section.rawValue)"><h1>\(HTML.escape(title))</h1>
            \(body)
            </main></body></html>
            """
    }

    static func response(_ html: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status,
            headers: [
                .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
                .contentSecurityPolicy: contentSecurityPolicy, HTTPField.Name("x-content-type-options")!: "nosniff",
                HTTPField.Name("referrer-policy")!: "same-origin",
            ],
            body: .init(byteBuffer: ByteBuffer(string: html)))
    }
}

/// Small pieces of markup the pages share.
enum Markup {
    static func table(_ headers: [String], _ rows: [[String]], id: String? = nil, empty: String = "Nothing yet.") -> String {
        guard !rows.isEmpty else { return "<p class=\"empty\">\(HTML.escape(empty))</p>" }
        let head = headers.map { "<th>\(HTML.escape($0))</th>" }.joined()
        let body = rows.map { "<tr>" + $0.map { "<td>\($0)</td>" }.joined() + "</tr>" }.joined()
        let idAttribute = id.map { " id=\"\(HTML.escape($0))\"" } ?? ""
        return "<div class=\"scroll\"><table\(idAttribute)><thead><tr>\(head)</tr></thead><tbody>\(body)</tbody></table></div>"
    }

    static func link(_ text: String, _ href: String) -> String {
        "<a href=\"\(HTML.escape(href))\">\(HTML.escape(text))</a>"
    }

    static func status(_ text: String) -> String {
        "<span class=\"status status-\(HTML.escape(text))\">\(HTML.escape(text))</span>"
    }

    /// A form field with its label, and the API's message under it when the API refused it.
    static func field(
        _ label: String, name: String, value: String = "", type: String = "text", problem: FormProblem? = nil,
        attributes: String = "", hint: String? = nil
    ) -> String {
        let error = problem.flatMap { $0.field == name ? $0.message : nil }
        let invalid = error == nil ? "" : #" aria-invalid="true" aria-describedby="error-\#(name)""#
        var html = "<label>\(HTML.escape(label)) "
        html += "<input name=\"\(name)\" type=\"\(type)\" value=\"\(HTML.escape(value))\"\(invalid) \(attributes)></label>"
        if let hint { html += "<small>\(HTML.escape(hint))</small>" }
        if let error { html += "<p class=\"field-error\" id=\"error-\(name)\">\(HTML.escape(error))</p>" }
        return html
    }

    static func textarea(_ label: String, name: String, value: String = "", problem: FormProblem? = nil, hint: String? = nil)
        -> String
    {
        let error = problem.flatMap { $0.field == name ? $0.message : nil }
        var html = "<label>\(HTML.escape(label)) <textarea name=\"\(name)\" rows=\"4\">\(HTML.escape(value))</textarea></label>"
        if let hint { html += "<small>\(HTML.escape(hint))</small>" }
        if let error { html += "<p class=\"field-error\" id=\"error-\(name)\">\(HTML.escape(error))</p>" }
        return html
    }

    static func select(_ label: String, name: String, options: [(value: String, text: String)], selected: String? = nil)
        -> String
    {
        let list = options.map { option in
            let mark = option.value == selected ? " selected" : ""
            return "<option value=\"\(HTML.escape(option.value))\"\(mark)>\(HTML.escape(option.text))</option>"
        }.joined()
        return "<label>\(HTML.escape(label)) <select name=\"\(name)\">\(list)</select></label>"
    }

    /// The API's refusal of a whole form (no field named, or one the form does not show).
    static func formProblem(_ problem: FormProblem?, fields: Set<String>) -> String {
        guard let problem, problem.field.map({ !fields.contains($0) }) ?? true else { return "" }
        return "<p class=\"form-error\" role=\"alert\">\(HTML.escape(problem.message))</p>"
    }

    static func csrf(_ token: String) -> String {
        "<input type=\"hidden\" name=\"csrf\" value=\"\(HTML.escape(token))\">"
    }

    /// A one-button form posting to `action` (an action on a thing: delete, revoke, roll back).
    static func button(_ text: String, action: String, csrf token: String, confirm: String? = nil, extra: String = "")
        -> String
    {
        let confirmation = confirm.map { " data-confirm=\"\(HTML.escape($0))\"" } ?? ""
        return "<form method=\"post\" action=\"\(HTML.escape(action))\" class=\"inline\"\(confirmation)>"
            + csrf(token) + extra + "<button>\(HTML.escape(text))</button></form>"
    }

    static func bytes(_ value: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = value
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(Int(value)) B" : String(format: "%.1f", value) + " " + units[unit]
    }
}

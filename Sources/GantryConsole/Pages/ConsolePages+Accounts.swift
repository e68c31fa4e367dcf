import Foundation
import GantryCore
import GantryHTTP
import Hummingbird

extension ConsolePages {
    static let usageLimitKeys: [(key: String, label: String)] = [
        ("requests_per_minute", "Requests a minute"), ("tokens_per_minute", "Tokens a minute"),
        ("concurrent_requests", "Concurrent requests"), ("token_quota", "Token quota"),
    ]

    /// A user's or key's limits from a form: each number given, and the quota's period.
    static func usageLimits(_ form: ConsoleForm) -> JSONValue {
        var limits: [String: JSONValue] = [:]
        for item in usageLimitKeys { if let value = form.number(item.key) { limits[item.key] = value } }
        if limits["token_quota"] != nil { limits["quota_period"] = .string(form["quota_period"] ?? "month") }
        return .object(limits)
    }

    static func usageLimitFields(_ values: JSONValue, _ form: ConsoleForm?, _ problem: FormProblem?) -> String {
        usageLimitKeys.map { item in
            Markup.field(
                item.label, name: item.key, value: form?[item.key] ?? values[item.key].text, type: "number",
                problem: renamed(problem, "limits." + item.key, to: item.key), attributes: "min=\"1\"")
        }.joined()
            + Markup.select(
                "Quota period", name: "quota_period", options: [("month", "month"), ("day", "day")],
                selected: form?["quota_period"] ?? values["quota_period"].string)
    }

    static func usageLimitsText(_ limits: JSONValue) -> String {
        var parts = usageLimitKeys.compactMap { item in limits[item.key].int.map { "\(item.label.lowercased()) \($0)" } }
        if let period = limits["quota_period"].string, limits["token_quota"].int != nil { parts.append("per \(period)") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }

    // MARK: - Resources

    /// Nodes, every GPU with its memory and utilisation, and every allocation.
    func resources(_ visit: ConsoleRoutes.Visit) async throws -> Response {
        let nodes = try await visit.list("/api/v1/nodes")
        let allocations = try await visit.list("/api/v1/allocations")
        var body = Markup.table(
            ["Node", "GPU source", "CPU threads", "Memory", "GPUs", "Observed"],
            nodes.map { node in
                [
                    HTML.escape(node["name"].text),
                    HTML.escape(node["gpu_source"].text)
                        + (node["simulated"].bool == true ? " (simulated)" : ""),
                    node["cpu_count"].text, Markup.bytes(node["memory_bytes"].double ?? 0), "\(node["gpus"].array.count)",
                    HTML.escape(node["observed_at"].text),
                ]
            }, id: "nodes")
        body += "<h2>GPUs</h2>"
        body += Markup.table(
            ["Node", "GPU", "Product", "Memory used", "Utilisation", "Temperature", "Power"],
            nodes.flatMap { node in
                node["gpus"].array.map { gpu in
                    let total = gpu["memory_total_mib"].double ?? 0
                    let used = gpu["memory_used_mib"].double ?? 0
                    let utilization = gpu["utilization_percent"].double
                    return [
                        HTML.escape(node["name"].text), gpu["index"].text, HTML.escape(gpu["name"].text),
                        SVGChart.bar(fraction: total > 0 ? used / total : 0, label: "\(Int(used)) of \(Int(total)) MiB")
                            + " \(Int(used)) / \(Int(total)) MiB",
                        utilization.map { SVGChart.bar(fraction: $0 / 100, label: "\(Int($0)) %") + " \(Int($0)) %" } ?? "–",
                        gpu["temperature_celsius"].int.map { "\($0) °C" } ?? "–",
                        gpu["power_watts"].double.map { String(format: "%.0f W", $0) } ?? "–",
                    ]
                }
            }, id: "gpus", empty: "No GPU.")
        body += "<h2>Allocations</h2>"
        body += Markup.table(
            ["Id", "Owner", "Node", "GPUs", "CPU threads", "Since"],
            allocations.map { allocation in
                [
                    "<code>\(HTML.escape(allocation["id"].text))</code>", HTML.escape(allocation["owner"].text),
                    HTML.escape(allocation["node"].text), "\(allocation["gpu_uuids"].array.count)",
                    allocation["cpu_threads"].text, HTML.escape(allocation["created_at"].text),
                ]
            }, id: "allocations", empty: "Nothing is allocated.")
        return visit.page("Resources", body)
    }

    // MARK: - Users

    func users(_ visit: ConsoleRoutes.Visit, problem: FormProblem?, form: ConsoleForm?) async throws -> Response {
        let users = try await visit.list("/api/v1/users")
        var body = ""
        for user in users {
            let id = user["id"].text
            let name = user["name"].text
            body += """
                <details class="user" id="user-\(HTML.escape(name))"><summary><strong>\(HTML.escape(name))</strong> \
                \(HTML.escape(user["role"].text))\(user["disabled"].bool == true ? " <span class=\"tag\">disabled</span>" : "") \
                · limits: \(HTML.escape(Self.usageLimitsText(user["limits"])))</summary>
                <form method="post" action="/console/users/\(HTML.escape(Self.segment(id)))" class="stacked">\(Markup.csrf(visit.csrf))
                \(Markup.select("Role", name: "role", options: [("user", "user"), ("admin", "admin")], selected: user["role"].text))
                <label><input type="checkbox" name="disabled" value="true"\(user["disabled"].bool == true ? " checked" : "")> Disabled</label>
                \(Self.usageLimitFields(user["limits"], nil, form?["user_id"] == id ? problem : nil))
                \(Markup.field("Most keys", name: "max_keys", value: user["max_keys"].text, type: "number"))
                <input type="hidden" name="user_id" value="\(HTML.escape(id))">
                \(form?["user_id"] == id ? Markup.formProblem(problem, fields: Set(Self.usageLimitKeys.map(\.key))) : "")
                <button>Save</button></form></details>
                """
        }
        let creating = form?["user_id"] == nil ? problem : nil
        body += """
            <h2>Create a user</h2>
            <p>Users who log in with the identity provider are created on their first login; create one here to give them keys or limits before.</p>
            <form method="post" action="/console/users" id="create-user" class="stacked">\(Markup.csrf(visit.csrf))
            \(Markup.formProblem(creating, fields: ["name", "email"]))
            \(Markup.field("Name", name: "name", value: form?["name"] ?? "", problem: creating, attributes: "required"))
            \(Markup.field("Email", name: "email", value: form?["email"] ?? "", type: "email", problem: creating))
            \(Markup.select("Role", name: "role", options: [("user", "user"), ("admin", "admin")], selected: form?["role"]))
            <button>Create user</button></form>
            """
        return visit.page("Users", body, status: problem == nil ? .ok : .badRequest)
    }

    func createUser(_ visit: ConsoleRoutes.Visit, _ form: ConsoleForm) async throws -> Response {
        var body: [String: JSONValue] = ["name": .string(form["name"] ?? ""), "role": .string(form["role"] ?? "user")]
        if let email = form["email"] { body["email"] = .string(email) }
        let answer = try await visit.send(.post, "/api/v1/users", .object(body))
        guard answer.ok else { return try await users(visit, problem: answer.problem, form: form) }
        return visit.redirect("/console/users")
    }

    func updateUser(_ visit: ConsoleRoutes.Visit, _ form: ConsoleForm) async throws -> Response {
        let id = try visit.context.parameters.require("id")
        var body: [String: JSONValue] = [
            "role": .string(form["role"] ?? "user"), "disabled": .bool(form["disabled"] == "true"),
            "limits": Self.usageLimits(form),
        ]
        body["max_keys"] = form.number("max_keys") ?? .null
        let answer = try await visit.send(.patch, "/api/v1/users/\(Self.segment(id))", .object(body))
        guard answer.ok else { return try await users(visit, problem: answer.problem, form: form) }
        return visit.redirect("/console/users")
    }

    // MARK: - Keys

    /// The visitor's keys (an admin's: everyone's), the form to create one, shown once when made.
    func keys(_ visit: ConsoleRoutes.Visit, problem: FormProblem?, form: ConsoleForm?, created: JSONValue?) async throws
        -> Response
    {
        let admin = visit.principal.isAdmin
        let keys = try await visit.list(admin ? "/api/v1/keys?all=true" : "/api/v1/keys")
        let users = admin ? try await visit.list("/api/v1/users") : []
        let names = Dictionary(users.map { ($0["id"].text, $0["name"].text) }, uniquingKeysWith: { first, _ in first })
        var body = ""
        if let created {
            body += """
                <div class="new-key" role="status"><p>The new key <strong>\(HTML.escape(created["name"].text))</strong>. \
                Copy it now: it is shown only this once.</p><code id="new-key">\(HTML.escape(created["key"].text))</code></div>
                """
        }
        let active = keys.filter { $0["revoked_at"].isNull }
        body += Markup.table(
            (admin ? ["User"] : []) + ["Name", "Id", "Limits", "Created", "Expires", "Last used", ""],
            active.map { key in
                let id = key["id"].text
                return (admin ? [HTML.escape(names[key["user_id"].text] ?? key["user_id"].text)] : []) + [
                    HTML.escape(key["name"].text), "<code>\(HTML.escape(id))</code>",
                    HTML.escape(Self.usageLimitsText(key["limits"])), HTML.escape(String(key["created_at"].text.prefix(10))),
                    key["expires_at"].isNull ? "never" : HTML.escape(String(key["expires_at"].text.prefix(10))),
                    key["last_used_at"].isNull ? "never" : HTML.escape(key["last_used_at"].text),
                    Markup.button(
                        "Revoke", action: "/console/keys/\(Self.segment(id))/revoke", csrf: visit.csrf,
                        confirm: "Revoke the key \(key["name"].text)? Programs using it stop working.")
                        + (admin ? Self.keyLimitsForm(key, csrf: visit.csrf, form: form, problem: problem) : ""),
                ]
            }, id: "keys", empty: "No API key yet.")
        // A refusal of one key's limits is shown by that key's form, not this one.
        let creating = form?["key_id"] == nil ? problem : nil
        let fields = Set(["name", "expires_at", "user"] + Self.usageLimitKeys.map(\.key))
        body += """
            <h2>Create a key</h2>
            <form method="post" action="/console/keys" id="create-key" class="stacked">\(Markup.csrf(visit.csrf))
            \(Markup.formProblem(creating, fields: fields))
            \(Markup.field("Name", name: "name", value: form?["name"] ?? "", problem: creating, attributes: "required maxlength=\"100\""))
            \(Markup.field("Expires after (days, empty for never)", name: "expires_days", value: form?["expires_days"] ?? "", type: "number", problem: Self.renamed(creating, "expires_at", to: "expires_days")))
            """
        if admin {
            body += Markup.select(
                "For user", name: "user", options: [("", "me")] + users.map { ($0["name"].text, $0["name"].text) },
                selected: form?["user"])
            body +=
                "<fieldset><legend>Limits of this key (empty: none)</legend>"
                + Self.usageLimitFields(.null, form?["key_id"] == nil ? form : nil, creating) + "</fieldset>"
        }
        body += "<button>Create key</button></form>"
        return visit.page("API keys", body, status: problem == nil ? .ok : .badRequest)
    }

    /// An admin's form to change one key's limits and quota, folded away under the key's row.
    static func keyLimitsForm(_ key: JSONValue, csrf: String, form: ConsoleForm?, problem: FormProblem?) -> String {
        let id = key["id"].text
        let mine = form?["key_id"] == id
        return """
            <details class="key-limits" id="key-limits-\(HTML.escape(id))"><summary>Limits</summary>
            <form method="post" action="/console/keys/\(HTML.escape(segment(id)))/limits" class="stacked">\(Markup.csrf(csrf))
            <input type="hidden" name="key_id" value="\(HTML.escape(id))">
            \(mine ? Markup.formProblem(problem, fields: Set(usageLimitKeys.map(\.key))) : "")
            \(usageLimitFields(key["limits"], mine ? form : nil, mine ? problem : nil))
            <button>Save limits</button></form></details>
            """
    }

    func updateKeyLimits(_ visit: ConsoleRoutes.Visit, _ form: ConsoleForm) async throws -> Response {
        let id = try visit.context.parameters.require("id")
        let limits = Self.usageLimits(form)
        let empty = if case .object(let fields) = limits { fields.isEmpty } else { true }
        let answer = try await visit.send(
            .patch, "/api/v1/keys/\(Self.segment(id))", .object(["limits": empty ? .null : limits]))
        guard answer.ok else { return try await keys(visit, problem: answer.problem, form: form, created: nil) }
        return visit.redirect("/console/keys")
    }

    func createKey(_ visit: ConsoleRoutes.Visit, _ form: ConsoleForm) async throws -> Response {
        var body: [String: JSONValue] = ["name": .string(form["name"] ?? "")]
        if let days = form["expires_days"] {
            guard let count = Int(days), (1...3650).contains(count) else {
                return try await keys(
                    visit, problem: FormProblem(message: "a whole number of days from 1 to 3650", field: "expires_days"),
                    form: form, created: nil)
            }
            body["expires_at"] = .string(Date().addingTimeInterval(Double(count) * 86400).formatted(.iso8601))
        }
        if visit.principal.isAdmin {
            if let user = form["user"] { body["user"] = .string(user) }
            if case .object(let limits) = Self.usageLimits(form), !limits.isEmpty { body["limits"] = .object(limits) }
        }
        let answer = try await visit.send(.post, "/api/v1/keys", .object(body))
        guard answer.ok else { return try await keys(visit, problem: answer.problem, form: form, created: nil) }
        return try await keys(visit, problem: nil, form: nil, created: answer.json)
    }

    func revokeKey(_ visit: ConsoleRoutes.Visit, _ form: ConsoleForm) async throws -> Response {
        let id = try visit.context.parameters.require("id")
        let answer = try await visit.send(.delete, "/api/v1/keys/\(Self.segment(id))")
        guard answer.ok else { return try await keys(visit, problem: answer.problem, form: nil, created: nil) }
        return visit.redirect("/console/keys")
    }
}

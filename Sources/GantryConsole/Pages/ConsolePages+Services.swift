import Foundation
import GantryCore
import GantryHTTP
import Hummingbird
import NIOCore

extension ConsolePages {
    /// The model services the visitor may see; for admins also the form to create one, beside
    /// what is free right now on each node.
    func services(_ visit: ConsoleRoutes.Visit, problem: FormProblem?, form: ConsoleForm?) async throws -> Response {
        let deployments = try await visit.list("/api/v1/deployments")
        var body = Markup.table(
            ["Service", "Status", "Version", "Replicas", "Context", "Limits"],
            deployments.map { deployment in
                let name = deployment["name"].text
                return [
                    Markup.link(name, "/console/services/\(Self.segment(name))"), Markup.status(deployment["status"].text),
                    HTML.escape(deployment["version"].text), HTML.escape(deployment["replicas"].text),
                    HTML.escape(deployment["context_limit"].text), HTML.escape(Self.limitsText(deployment["limits"])),
                ]
            }, id: "services", empty: visit.principal.isAdmin ? "No model service yet." : "No model service is open to you yet.")
        guard visit.principal.isAdmin else {
            body +=
                "<p>Call them with an <a href=\"/console/keys\">API key</a> and any OpenAI client, "
                + "or try them in the <a href=\"/console/playground\">playground</a>.</p>"
            return visit.page("Model services", body)
        }
        let models = try await visit.list("/api/v1/models?limit=1000")
        var modelOptions: [(value: String, text: String)] = []
        for model in models {
            let name = model["name"].text
            let versions = try await visit.list("/api/v1/models/\(Self.segment(name))/versions?limit=1000")
            for version in versions where version["status"].text == "ready" && version["deprecated"].bool != true {
                let value = name + "@" + version["version"].text
                modelOptions.append((value, value + " (" + version["format"].text + ")"))
            }
        }
        let nodes = try await visit.list("/api/v1/nodes")
        let summary = try await visit.list("/api/v1/resources/summary")
        let products = Set(nodes.flatMap { $0["gpus"].array.map { $0["name"].text } }).sorted()
        body += "<h2>Free right now</h2>"
        body += Markup.table(
            ["Node", "GPUs free", "CPU threads free"],
            summary.map { node in
                [
                    HTML.escape(node["node"].text), "\(node["gpus_free"].text) of \(node["gpus_total"].text)",
                    "\(node["cpu_threads_free"].text) of \(node["cpu_threads_total"].text)",
                ]
            }, id: "free-resources")
        let fields: Set<String> = [
            "name", "model", "version", "engine", "resources.gpus", "resources.gpu_name", "resources.node", "replicas",
            "min_replicas", "max_replicas", "access", "limits", "limits.requests_per_minute", "limits.tokens_per_minute",
            "limits.concurrent_requests", "limits.requests_per_minute_per_key", "limits.tokens_per_minute_per_key",
        ]
        let methods = Set(form?.all("method") ?? ["api_key", "oidc"])
        body += """
            <h2>Create a model service</h2>
            <form method="post" action="/console/services" id="create-service" class="stacked">
            \(Markup.csrf(visit.csrf))\(Markup.formProblem(problem, fields: fields))
            \(Markup.field("Name", name: "name", value: form?["name"] ?? "", problem: problem, attributes: "required"))
            \(Markup.select("Model and version", name: "model", options: modelOptions, selected: form?["model"]))
            \(Self.fieldError(problem, ["model", "version"]))
            \(Markup.select("Engine", name: "engine", options: [("", "the version's default")] + ["llama-cpp", "vllm", "sglang", "tgi", "custom"].map { ($0, $0) }, selected: form?["engine"]))
            \(Self.fieldError(problem, ["engine"]))
            <fieldset><legend>GPUs per replica</legend>
            \(Markup.field("Count", name: "gpus", value: form?["gpus"] ?? "0", type: "number", problem: Self.renamed(problem, "resources.gpus", to: "gpus"), attributes: "min=\"0\""))
            \(Markup.select("Product", name: "gpu_name", options: [("", "any")] + products.map { ($0, $0) }, selected: form?["gpu_name"]))
            \(Markup.select("Node", name: "node", options: [("", "any node")] + nodes.map { ($0["name"].text, $0["name"].text) }, selected: form?["node"]))
            \(Self.fieldError(problem, ["resources", "resources.node", "resources.gpu_name"]))
            </fieldset>
            <fieldset><legend>Replicas</legend>
            \(Markup.field("Fixed count", name: "replicas", value: form?["replicas"] ?? "1", type: "number", problem: problem, hint: "or leave empty and give a range to autoscale"))
            \(Markup.field("Autoscale from", name: "min_replicas", value: form?["min_replicas"] ?? "", type: "number", problem: problem))
            \(Markup.field("to", name: "max_replicas", value: form?["max_replicas"] ?? "", type: "number", problem: problem))
            </fieldset>
            <fieldset><legend>Who may call it</legend>
            <label><input type="checkbox" name="method" value="api_key"\(methods.contains("api_key") ? " checked" : "")> API keys</label>
            <label><input type="checkbox" name="method" value="oidc"\(methods.contains("oidc") ? " checked" : "")> OIDC tokens and console sessions</label>
            \(Self.fieldError(problem, ["access", "access.methods"]))
            </fieldset>
            <fieldset><legend>Frequency limits (empty: none)</legend>
            \(Self.limitFields(form, problem))
            </fieldset>
            <button>Create service</button></form>
            """
        return visit.page("Model services", body, status: problem == nil ? .ok : .badRequest)
    }

    static let limitKeys: [(key: String, label: String)] = [
        ("requests_per_minute", "Requests a minute"), ("tokens_per_minute", "Tokens a minute"),
        ("concurrent_requests", "Concurrent requests"), ("requests_per_minute_per_key", "Requests a minute per key"),
        ("tokens_per_minute_per_key", "Tokens a minute per key"),
    ]

    static func limitFields(_ form: ConsoleForm?, _ problem: FormProblem?, values: JSONValue = .null) -> String {
        limitKeys.map { item in
            Markup.field(
                item.label, name: item.key, value: form?[item.key] ?? values[item.key].text, type: "number",
                problem: renamed(problem, "limits." + item.key, to: item.key), attributes: "min=\"1\"")
        }.joined()
    }

    static func limitsBody(_ form: ConsoleForm) -> JSONValue {
        var limits: [String: JSONValue] = [:]
        for item in limitKeys { if let value = form.number(item.key) { limits[item.key] = value } }
        return .object(limits)
    }

    static func limitsText(_ limits: JSONValue) -> String {
        let parts = limitKeys.compactMap { item in limits[item.key].int.map { "\(item.label.lowercased()) \($0)" } }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }

    /// The API names nested fields with dots (`resources.gpus`); a form field is named plainly.
    static func renamed(_ problem: FormProblem?, _ apiField: String, to formField: String) -> FormProblem? {
        guard var problem, problem.field == apiField else { return problem }
        problem.field = formField
        return problem
    }

    /// The API's message for fields the form shows as a group (a select, checkboxes).
    static func fieldError(_ problem: FormProblem?, _ fields: [String]) -> String {
        guard let problem, let field = problem.field, fields.contains(field) else { return "" }
        return "<p class=\"field-error\">\(HTML.escape(problem.message))</p>"
    }

    func createService(_ visit: ConsoleRoutes.Visit, _ form: ConsoleForm) async throws -> Response {
        var body: [String: JSONValue] = ["name": .string(form["name"] ?? "")]
        if let picked = form["model"] {
            let parts = picked.split(separator: "@", maxSplits: 1).map(String.init)
            body["model"] = .string(parts[0])
            if parts.count == 2 { body["version"] = .string(parts[1]) }
        }
        if let engine = form["engine"] { body["engine"] = .string(engine) }
        var resources: [String: JSONValue] = ["gpus": form.number("gpus") ?? .number(0)]
        if let product = form["gpu_name"] { resources["gpu_name"] = .string(product) }
        if let node = form["node"] { resources["node"] = .string(node) }
        body["resources"] = .object(resources)
        if let minimum = form.number("min_replicas") {
            body["min_replicas"] = minimum
            body["max_replicas"] = form.number("max_replicas") ?? minimum
        } else if let replicas = form.number("replicas") {
            body["replicas"] = replicas
        }
        body["access"] = .object(["methods": .array(form.all("method").map { .string($0) })])
        body["limits"] = Self.limitsBody(form)
        let answer = try await visit.send(.post, "/api/v1/deployments", .object(body))
        guard answer.ok else { return try await services(visit, problem: answer.problem, form: form) }
        return visit.redirect("/console/services/\(Self.segment(answer.json["name"].text))")
    }

    /// One service: status, instances, the six metrics, events, the engine log tail (updated live
    /// by the page's script) and, for admins, the actions.
    func service(_ visit: ConsoleRoutes.Visit, problem: FormProblem?) async throws -> Response {
        let name = try visit.context.parameters.require("name")
        let path = "/api/v1/deployments/\(Self.segment(name))"
        let answer = try await visit.get(path)
        guard answer.ok else {
            return visit.page("Service not found", Self.problemParagraph(answer.problem), status: .notFound)
        }
        let deployment = answer.json
        var body =
            "<p id=\"service-status\">" + Markup.status(deployment["status"].text) + " "
            + HTML.escape(deployment["status_message"].text) + "</p>"
        body +=
            "<p>version \(HTML.escape(deployment["version"].text)), context \(deployment["context_limit"].text) tokens"
            + ", limits: \(HTML.escape(Self.limitsText(deployment["limits"])))</p>"
        body +=
            "<p>Call it as <code>\(HTML.escape(name))</code> with any OpenAI client, or in the "
            + Markup.link("playground", "/console/playground?service=\(Self.segment(name))") + ".</p>"
        guard visit.principal.isAdmin else { return visit.page("Service \(name)", body) }

        let instances = deployment["instances"].array
        body += "<h2>Instances</h2>"
        body += Markup.table(
            ["Instance", "Node", "GPUs", "State", "Restarts", "Since"],
            instances.map { instance in
                [
                    "<code>\(HTML.escape(instance["id"].text))</code>", HTML.escape(instance["node"].text),
                    "\(instance["gpu_uuids"].array.count)",
                    Markup.status(instance["state"].text)
                        + " " + HTML.escape(instance["state_message"].text),
                    instance["restarts"].text, HTML.escape(instance["updated_at"].text),
                ]
            }, id: "instances", empty: "No instance.")
        let history = try await visit.get(path + "/metrics")
        body +=
            "<h2>The last hour</h2><div class=\"charts\">"
            + Self.sixCharts(history.ok ? history.json["minutes"].array : [], service: name) + "</div>"
        if let first = instances.first(where: { $0["state"].text != "stopped" }) ?? instances.first {
            let id = first["id"].text
            body += """
                <h2>Engine log of <code>\(HTML.escape(id))</code></h2>
                <pre class="log" id="engine-log" data-log="/console/services/\(HTML.escape(Self.segment(name)))/instances/\(HTML.escape(Self.segment(id)))/log">loading…</pre>
                """
        }
        let events = try await visit.list(path + "/events?limit=50")
        body +=
            "<h2>Events</h2><ol class=\"timeline\" id=\"events\">"
            + events.map { event in
                "<li><time>\(HTML.escape(event["created_at"].text))</time> <span class=\"tag\">\(HTML.escape(event["kind"].text))</span> "
                    + HTML.escape(event["message"].text) + "</li>"
            }.joined() + "</ol>"
        body += Self.actions(deployment, name: name, csrf: visit.csrf, problem: problem)
        return visit.page("Service \(name)", body, status: problem == nil ? .ok : .badRequest)
    }

    static func actions(_ deployment: JSONValue, name: String, csrf: String, problem: FormProblem?) -> String {
        let action = "/console/services/\(segment(name))/action"
        let canary = deployment["canary"]
        var html = "<h2>Actions</h2>" + Markup.formProblem(problem, fields: [])
        html += """
            <form method="post" action="\(action)" class="inline" id="scale">\(Markup.csrf(csrf))
            <input type="hidden" name="op" value="scale">
            \(Markup.field("Replicas", name: "replicas", value: deployment["replicas"].text, type: "number", attributes: "min=\"0\""))
            <button>Scale</button></form>
            <form method="post" action="\(action)" class="inline" id="autoscale">\(Markup.csrf(csrf))
            <input type="hidden" name="op" value="autoscale">
            \(Markup.field("Autoscale from", name: "min_replicas", value: deployment["scaling"]["min_replicas"].text, type: "number"))
            \(Markup.field("to", name: "max_replicas", value: deployment["scaling"]["max_replicas"].text, type: "number"))
            <button>Autoscale</button></form>
            <form method="post" action="\(action)" class="inline" id="update">\(Markup.csrf(csrf))
            <input type="hidden" name="op" value="update">
            \(Markup.field("Version", name: "version", value: "", attributes: "required"))
            <button>Rolling update</button></form>
            """
        if !deployment["previous_revision"].isNull {
            let previous = deployment["previous_revision"]["version"].text
            html += Markup.button(
                "Roll back to version \(previous)", action: action, csrf: csrf,
                confirm: "Roll \(name) back to version \(previous)?",
                extra: "<input type=\"hidden\" name=\"op\" value=\"rollback\">"
                    + "<input type=\"hidden\" name=\"version\" value=\"\(HTML.escape(previous))\">")
        }
        html += """
            <form method="post" action="\(action)" class="inline" id="canary">\(Markup.csrf(csrf))
            <input type="hidden" name="op" value="canary">
            \(Markup.field("Canary version", name: "version", value: canary["revision"]["version"].text))
            \(Markup.field("Weight (%; 0 removes it)", name: "weight", value: canary["weight"].text.isEmpty ? "0" : canary["weight"].text, type: "number", attributes: "min=\"0\" max=\"99\""))
            <button>Set canary</button></form>
            <form method="post" action="\(action)" class="inline" id="limits">\(Markup.csrf(csrf))
            <input type="hidden" name="op" value="limits">\(limitFields(nil, nil, values: deployment["limits"]))
            <button>Set limits</button></form>
            """
        html += Markup.button(
            "Delete service", action: action, csrf: csrf, confirm: "Delete \(name)? Its instances stop.",
            extra: "<input type=\"hidden\" name=\"op\" value=\"delete\">")
        return html
    }

    /// The tail of an instance's engine log for the page's script, read every two seconds. An
    /// instance whose engine has not started has no log yet: that is said, not an error.
    func logTail(_ visit: ConsoleRoutes.Visit) async throws -> Response {
        let name = try visit.context.parameters.require("name")
        let id = try visit.context.parameters.require("id")
        let answer = try await visit.get(
            "/api/v1/deployments/\(Self.segment(name))/instances/\(Self.segment(id))/logs?max_bytes=16384")
        let text: String
        switch answer.status {
        case 200: text = String(buffer: answer.body)
        case 404: text = "(no log yet: \(answer.problem.message))"
        default: return Response(status: .init(code: answer.status), body: .init(byteBuffer: answer.body))
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    func serviceAction(_ visit: ConsoleRoutes.Visit, _ form: ConsoleForm) async throws -> Response {
        let name = try visit.context.parameters.require("name")
        let path = "/api/v1/deployments/\(Self.segment(name))"
        let answer: APIAnswer
        switch form["op"] ?? "" {
        case "scale":
            answer = try await visit.send(.patch, path, .object(["replicas": form.number("replicas") ?? .null]))
        case "autoscale":
            answer = try await visit.send(
                .patch, path,
                .object([
                    "min_replicas": form.number("min_replicas") ?? .null, "max_replicas": form.number("max_replicas") ?? .null,
                ]))
        case "update", "rollback":
            answer = try await visit.send(.patch, path, .object(["version": .string(form["version"] ?? "")]))
        case "canary":
            var canary: [String: JSONValue] = ["weight": form.number("weight") ?? .number(0)]
            if let version = form["version"] { canary["version"] = .string(version) }
            answer = try await visit.send(.patch, path, .object(["canary": .object(canary)]))
        case "limits":
            answer = try await visit.send(.patch, path, .object(["limits": Self.limitsBody(form)]))
        case "delete":
            answer = try await visit.send(.delete, path)
            if answer.ok { return visit.redirect("/console/services") }
        default:
            return try await service(visit, problem: FormProblem(message: "unknown action", field: nil))
        }
        guard answer.ok else { return try await service(visit, problem: answer.problem) }
        return visit.redirect("/console/services/\(Self.segment(name))")
    }
}

import Foundation
import GantryCore
import GantryHTTP
import Hummingbird

extension ConsolePages {
    enum VersionAction: Sendable { case complete, deprecate, delete }

    /// The registered models, filtered by name or task, and the form to register one.
    func models(_ visit: ConsoleRoutes.Visit, problem: FormProblem?, form: ConsoleForm?) async throws -> Response {
        let query = visit.request.uri.queryParameters
        let filter = query["q"].map { String($0).lowercased() } ?? ""
        let task = query["task"].map(String.init) ?? ""
        let models = try await visit.list("/api/v1/models?limit=1000").filter { model in
            (filter.isEmpty || model["name"].text.contains(filter) || model["description"].text.lowercased().contains(filter))
                && (task.isEmpty || model["task"].text == task)
        }
        var body = """
            <form method="get" action="/console/models" class="filters" id="model-filter">
            \(Markup.field("Name or description", name: "q", value: filter, type: "search"))
            \(Markup.select("Task", name: "task", options: [("", "any")] + ModelTask.allCases.map { ($0.rawValue, $0.rawValue) }, selected: task))
            <button>Filter</button></form>
            """
        body += Markup.table(
            ["Name", "Task", "Description", "Owner", "Created"],
            models.map { model in
                [
                    Markup.link(model["name"].text, "/console/models/\(Self.segment(model["name"].text))"),
                    HTML.escape(model["task"].text), HTML.escape(model["description"].text), HTML.escape(model["owner"].text),
                    HTML.escape(String(model["created_at"].text.prefix(10))),
                ]
            }, id: "models", empty: "No model matches.")
        let fields: Set<String> = ["name", "description", "task"]
        body += """
            <h2>Register a model</h2>
            <form method="post" action="/console/models" id="register-model" class="stacked">
            \(Markup.csrf(visit.csrf))\(Markup.formProblem(problem, fields: fields))
            \(Markup.field("Name", name: "name", value: form?["name"] ?? "", problem: problem, attributes: "required", hint: "lower-case letters, digits and '-'"))
            \(Markup.field("Description", name: "description", value: form?["description"] ?? "", problem: problem))
            \(Markup.select("Task", name: "task", options: ModelTask.allCases.map { ($0.rawValue, $0.rawValue) }, selected: form?["task"]))
            <button>Register</button></form>
            """
        return visit.page("Models", body, status: problem == nil ? .ok : .badRequest)
    }

    func createModel(_ visit: ConsoleRoutes.Visit, _ form: ConsoleForm) async throws -> Response {
        var fields: [String: JSONValue] = ["name": .string(form["name"] ?? "")]
        if let description = form["description"] { fields["description"] = .string(description) }
        if let task = form["task"] { fields["task"] = .string(task) }
        let answer = try await visit.send(.post, "/api/v1/models", .object(fields))
        guard answer.ok else { return try await models(visit, problem: answer.problem, form: form) }
        return visit.redirect("/console/models/\(Self.segment(answer.json["name"].text))")
    }

    /// One model: its versions with their files and status, the form to register a version, the
    /// upload of a version's files (with progress, skipping files already stored), and the actions.
    func model(_ visit: ConsoleRoutes.Visit, problem: FormProblem?, form: ConsoleForm?) async throws -> Response {
        let name = try visit.context.parameters.require("name")
        let model = try await visit.get("/api/v1/models/\(Self.segment(name))")
        guard model.ok else { return visit.page("Model not found", Self.problemParagraph(model.problem), status: .notFound) }
        let versions = try await visit.list("/api/v1/models/\(Self.segment(name))/versions?limit=1000")
        let base = "/console/models/\(Self.segment(name))"
        var body = "<p>\(HTML.escape(model.json["description"].text))</p><p>task \(HTML.escape(model.json["task"].text))</p>"
        body += "<h2>Versions</h2>"
        if versions.isEmpty { body += "<p class=\"empty\">No version yet.</p>" }
        for version in versions {
            let number = version["version"].text
            let status = version["status"].text
            let deprecated = version["deprecated"].bool == true
            let versionPath = "\(base)/versions/\(Self.segment(number))"
            let apiFiles = "/api/v1/models/\(Self.segment(name))/versions/\(Self.segment(number))/files/"
            body +=
                "<article class=\"version\" id=\"version-\(HTML.escape(number))\"><h3>\(HTML.escape(name))@\(HTML.escape(number)) "
                + Markup.status(status) + (deprecated ? " <span class=\"tag\">deprecated</span>" : "") + "</h3>"
            body +=
                "<p>\(HTML.escape(version["format"].text)), context \(version["context_limit"].text) tokens"
                + (version["default_engine"].isNull ? "" : ", engine \(HTML.escape(version["default_engine"].text))")
                + ". \(HTML.escape(version["description"].text))</p>"
            let detail = try await visit.get("/api/v1/models/\(Self.segment(name))/versions/\(Self.segment(number))")
            let stored = detail.json["files"].array
            body += Markup.table(
                ["File", "Size", "SHA-256"],
                stored.map {
                    [
                        HTML.escape($0["path"].text), Markup.bytes($0["size"].double ?? 0),
                        "<code>\(HTML.escape(String($0["sha256"].text.prefix(16))))…</code>",
                    ]
                }, empty: "No file yet.")
            if status != "ready" {
                let known = stored.map { "\($0["path"].text)\t\($0["size"].text)" }.joined(separator: "\n")
                body += """
                    <form class="upload" data-upload="\(HTML.escape(apiFiles))" data-known="\(HTML.escape(known))">
                    <label>Files <input type="file" name="files" multiple></label>
                    <button type="submit">Upload</button>
                    <progress max="1" value="0" hidden></progress><output></output></form>
                    """
                body += Markup.button("Mark complete", action: "\(versionPath)/complete", csrf: visit.csrf)
            }
            if !deprecated { body += Markup.button("Deprecate", action: "\(versionPath)/deprecate", csrf: visit.csrf) }
            body += Markup.button(
                "Delete version", action: "\(versionPath)/delete", csrf: visit.csrf,
                confirm: "Delete \(name)@\(number) and its files?")
            body += "</article>"
        }
        let fields: Set<String> = [
            "version", "format", "context_limit", "description", "default_engine", "input_schema", "output_schema",
            "artifact_uri",
        ]
        body += """
            <h2>Register a version</h2>
            <form method="post" action="\(base)/versions" id="register-version" class="stacked">
            \(Markup.csrf(visit.csrf))\(Markup.formProblem(problem, fields: fields))
            \(Markup.field("Version", name: "version", value: form?["version"] ?? "", problem: problem, hint: "empty: the next number"))
            \(Markup.field("Format", name: "format", value: form?["format"] ?? "gguf", problem: problem, attributes: "required"))
            \(Markup.field("Context limit (tokens)", name: "context_limit", value: form?["context_limit"] ?? "", problem: problem, attributes: "required inputmode=\"numeric\""))
            \(Markup.field("Description", name: "description", value: form?["description"] ?? "", problem: problem))
            \(Markup.field("Default engine", name: "default_engine", value: form?["default_engine"] ?? "", problem: problem, hint: "llama-cpp, vllm, sglang, tgi or custom"))
            \(Markup.textarea("Input JSON Schema", name: "input_schema", value: form?["input_schema"] ?? "", problem: problem))
            \(Markup.textarea("Output JSON Schema", name: "output_schema", value: form?["output_schema"] ?? "", problem: problem))
            \(Markup.field("Artifact URI", name: "artifact_uri", value: form?["artifact_uri"] ?? "", problem: problem, hint: "instead of uploading: file://, s3:// or https://"))
            <button>Register version</button></form>
            <h2>Delete</h2>
            \(Markup.button("Delete model", action: "\(base)/delete", csrf: visit.csrf, confirm: "Delete \(name), every version and file?"))
            """
        return visit.page("Model \(name)", body, status: problem == nil ? .ok : .badRequest)
    }

    func createVersion(_ visit: ConsoleRoutes.Visit, _ form: ConsoleForm) async throws -> Response {
        let name = try visit.context.parameters.require("name")
        var fields: [String: JSONValue] = ["format": .string(form["format"] ?? "")]
        fields["context_limit"] = form.number("context_limit") ?? .null
        for key in ["version", "description", "default_engine", "artifact_uri"] {
            if let value = form[key] { fields[key] = .string(value) }
        }
        for key in ["input_schema", "output_schema"] {
            guard let text = form[key] else { continue }
            guard let schema = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else {
                return try await model(visit, problem: FormProblem(message: "\(key) is not JSON", field: key), form: form)
            }
            fields[key] = schema
        }
        let answer = try await visit.send(.post, "/api/v1/models/\(Self.segment(name))/versions", .object(fields))
        guard answer.ok else { return try await model(visit, problem: answer.problem, form: form) }
        return visit.redirect("/console/models/\(Self.segment(name))#version-\(Self.segment(answer.json["version"].text))")
    }

    func versionAction(_ visit: ConsoleRoutes.Visit, _ form: ConsoleForm, action: VersionAction) async throws -> Response {
        let name = try visit.context.parameters.require("name")
        let version = try visit.context.parameters.require("version")
        let path = "/api/v1/models/\(Self.segment(name))/versions/\(Self.segment(version))"
        let answer: APIAnswer =
            switch action {
            case .complete: try await visit.send(.post, path + "/complete")
            case .deprecate: try await visit.send(.patch, path, .object(["deprecated": .bool(true)]))
            case .delete: try await visit.send(.delete, path)
            }
        guard answer.ok else { return try await model(visit, problem: answer.problem, form: nil) }
        return visit.redirect("/console/models/\(Self.segment(name))")
    }

    func deleteModel(_ visit: ConsoleRoutes.Visit, _ form: ConsoleForm) async throws -> Response {
        let name = try visit.context.parameters.require("name")
        let answer = try await visit.send(.delete, "/api/v1/models/\(Self.segment(name))")
        guard answer.ok else { return try await model(visit, problem: answer.problem, form: nil) }
        return visit.redirect("/console/models")
    }

    static func problemParagraph(_ problem: FormProblem) -> String {
        "<p class=\"form-error\" role=\"alert\">\(HTML.escape(problem.message))</p>"
    }
}

import ArgumentParser
import Foundation
import GantryCore

/// `gantry models`: the model registry from the command line.
struct ModelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models", abstract: "Register, upload, list, deprecate and delete models and their versions.",
        subcommands: [List.self, Show.self, Create.self, Push.self, Deprecate.self, Delete.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List models.")
        @Option(help: "Only models for this task (chat, completion, embedding).") var task: String?
        @Option(help: "Only models with this label, as key=value (repeatable).") var label: [String] = []

        func run() async throws {
            let client = try APIClient.configured()
            var cursor: String?
            repeat {
                var query = ["limit=200"]
                if let task { query.append("task=\(APIClient.encodeSegment(task))") }
                query += label.map { "label=\(APIClient.encodeSegment($0))" }
                if let cursor { query.append("cursor=\(cursor)") }
                let page = try await client.expect("GET", "/api/v1/models?" + query.joined(separator: "&"))
                for model in page["data"] as? [[String: Any]] ?? [] {
                    print(
                        "\(model["name"] as? String ?? "?")  \(model["task"] as? String ?? "")  \(model["description"] as? String ?? "")"
                    )
                }
                cursor = page["next_cursor"] as? String
            } while cursor != nil
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a model and its versions, or one version and its files.")
        @Argument(help: "NAME or NAME@VERSION.") var reference: String

        func run() async throws {
            let (name, version) = try ModelsCommand.split(reference)
            let client = try APIClient.configured()
            let path = version.map { APIClient.modelPath(name, "versions", $0) } ?? APIClient.modelPath(name)
            let answer = try await client.expect("GET", path)
            let data = try JSONSerialization.data(withJSONObject: answer, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a model (without versions).")
        @Argument(help: "Model name: a DNS label.") var name: String
        @Option(help: "What the model does.") var description: String?
        @Option(help: "chat, completion or embedding.") var task: String = "chat"
        @Option(help: "A label as key=value (repeatable).") var label: [String] = []

        func run() async throws {
            var body: [String: Any] = ["name": name, "task": task, "labels": try ModelsCommand.labels(label)]
            if let description { body["description"] = description }
            _ = try await APIClient.configured().expect("POST", "/api/v1/models", json: APIClient.json(body))
            print("registered model \(name)")
        }
    }

    struct Deprecate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Mark a version deprecated (or not, with --undo).")
        @Argument(help: "NAME@VERSION.") var reference: String
        @Flag(help: "Clear the deprecated flag.") var undo = false

        func run() async throws {
            let (name, version) = try ModelsCommand.split(reference)
            guard let version else { throw ValidationError("name a version: NAME@VERSION") }
            _ = try await APIClient.configured().expect(
                "PATCH", APIClient.modelPath(name, "versions", version), json: APIClient.json(["deprecated": !undo]))
            print(undo ? "\(reference) is no longer deprecated" : "\(reference) is deprecated")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a model with all its versions, or one version; refused while a deployment uses it.")
        @Argument(help: "NAME or NAME@VERSION.") var reference: String

        func run() async throws {
            let (name, version) = try ModelsCommand.split(reference)
            let path = version.map { APIClient.modelPath(name, "versions", $0) } ?? APIClient.modelPath(name)
            _ = try await APIClient.configured().expect("DELETE", path)
            print("deleted \(reference)")
        }
    }

    /// `name@version` → (name, version); a plain name has no version.
    static func split(_ reference: String) throws -> (String, String?) {
        let parts = reference.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let name = parts.first, !name.isEmpty, parts.count == 1 || !parts[1].isEmpty else {
            throw ValidationError("'\(reference)' is not NAME or NAME@VERSION")
        }
        return (name, parts.count == 2 ? parts[1] : nil)
    }

    static func labels(_ pairs: [String]) throws -> [String: String] {
        var labels: [String: String] = [:]
        for pair in pairs {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("label '\(pair)' is not key=value") }
            labels[parts[0]] = parts[1]
        }
        return labels
    }
}

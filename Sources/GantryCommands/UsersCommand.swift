import ArgumentParser
import Foundation
import GantryCore

/// `gantry users`: admins list users and set the limits, token quota and key cap that hold over
/// all of a user's keys.
struct UsersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "users", abstract: "List users and set their limits (admins).",
        subcommands: [List.self, Limit.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users with their role and limits.")
        func run() async throws {
            let answer = try await APIClient.configured().expect("GET", "/api/v1/users")
            for user in answer["data"] as? [[String: Any]] ?? [] {
                var line = "\(user["id"] as? String ?? "?")  \(user["name"] as? String ?? "")  \(user["role"] as? String ?? "")"
                if user["disabled"] as? Bool == true { line += "  disabled" }
                if let limits = user["limits"] as? [String: Any] {
                    line += "  limits " + limits.keys.sorted().map { "\($0)=\(limits[$0] ?? "")" }.joined(separator: ",")
                }
                if let cap = user["max_keys"] as? Int { line += "  max_keys=\(cap)" }
                print(line)
            }
        }
    }

    struct Limit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a user's limits, token quota and key cap over all their keys; with no option, remove them.")
        @Argument(help: "The user's id.") var id: String
        @OptionGroup var limits: LimitOptions
        @Option(help: "The most active API keys the user may hold.") var maxKeys: Int?

        func run() async throws {
            let limits = try limits.limits
            let body: [String: Any] = [
                "limits": try limits?.jsonObject() ?? NSNull(), "max_keys": maxKeys.map { $0 as Any } ?? NSNull(),
            ]
            _ = try await APIClient.configured().expect(
                "PATCH", APIClient.resourcePath("users", [id]), json: APIClient.json(body))
            print(limits == nil && maxKeys == nil ? "removed the limits of \(id)" : "set the limits of \(id)")
        }
    }
}

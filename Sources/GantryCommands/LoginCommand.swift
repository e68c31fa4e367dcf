import ArgumentParser
import Foundation
import GantryCore
import GantryHTTP

/// `gantry login`: signs in through the server's OIDC provider with the device authorization
/// grant (RFC 8628) and stores an API key for the other commands.
struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login", abstract: "Log in with your identity provider and store an API key for the CLI.")

    @Option(help: "Gantry's URL. [env: GANTRY_SERVER]")
    var server: String = ProcessInfo.processInfo.environment["GANTRY_SERVER"] ?? "http://127.0.0.1:8080"

    @Flag(help: "Log in with a browser on this machine (loopback redirect, RFC 8252) instead of a device code.")
    var browser = false

    func run() async throws {
        let base = server.hasSuffix("/") ? String(server.dropLast()) : server
        let api = APIClient(server: base, apiKey: nil)
        if browser {
            return try await LoopbackLogin(base: base).run()
        }
        let start: [String: Any]
        do {
            start = try await api.expect("POST", "/auth/device")
        } catch let error as GantryError where error.message.contains("does not offer the device authorization grant") {
            print("The identity provider has no device login; using a browser on this machine instead.")
            return try await LoopbackLogin(base: base).run()
        }
        guard let handle = start["device_code"] as? String, let code = start["user_code"] as? String,
            let uri = start["verification_uri"] as? String
        else { throw GantryError(.unavailable, "the server's device login answer is incomplete") }
        let interval = max(1, start["interval"] as? Int ?? 5)
        let expiresIn = start["expires_in"] as? Int ?? 600
        print("To log in, open \(start["verification_uri_complete"] as? String ?? uri)")
        print("and confirm the code: \(code)")
        flushStandardOutput()

        var wait = interval
        let deadline = Date().addingTimeInterval(TimeInterval(expiresIn))
        while Date() < deadline {
            try await Task.sleep(for: .seconds(wait))
            let (status, body) = try await api.call("POST", "/auth/device/token", json: APIClient.json(["device_code": handle]))
            let answer = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
            if status == 200 { return try saveLogin(answer, server: base) }
            switch answer["code"] as? String {
            case "authorization_pending": continue
            case "slow_down": wait += 5
            default: throw GantryError(.unauthorized, "login failed: \(answer["detail"] as? String ?? "HTTP \(status)")")
            }
        }
        throw GantryError(.unauthorized, "the login code expired; run 'gantry login' again")
    }
}

/// Stores the key a login answered with (`api_key`, `key_id`, `user`, `role`).
func saveLogin(_ answer: [String: Any], server: String) throws {
    guard let key = answer["api_key"] as? String, let keyID = answer["key_id"] as? String, let user = answer["user"] as? String
    else { throw GantryError(.unavailable, "the server's login answer is incomplete") }
    let path = CLICredentials.path()
    try CLICredentials(server: server, apiKey: key, keyId: keyID, user: user).save(to: path)
    print("Logged in as \(user) (\(answer["role"] as? String ?? "user")). Credentials saved to \(path).")
}

/// `gantry keys`: the caller's API keys, with the stored CLI credential.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "List, create and revoke your API keys.",
        subcommands: [List.self, Create.self, Limit.self, Revoke.self])

    /// GANTRY_SERVER and GANTRY_API_KEY when set, else the credential `gantry login` stored.
    static func client() throws -> APIClient {
        try APIClient.configured()
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List your API keys (never their secrets).")
        func run() async throws {
            let answer = try await KeysCommand.client().expect("GET", "/api/v1/keys")
            for key in answer["data"] as? [[String: Any]] ?? [] {
                let state = key["revoked_at"] != nil ? "revoked" : "active"
                print("\(key["id"] as? String ?? "?")  \(state)  \(key["name"] as? String ?? "")")
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an API key; it is printed once.")
        @Argument(help: "A name for the key.") var name: String
        @Option(help: "Days until the key expires.") var expiresDays: Int?
        @Option(help: "Comma-separated deployments the key may call (default: all).") var scope: String?
        @Option(help: "Issue the key for this user (admins only).") var user: String?
        @OptionGroup var limits: LimitOptions

        func run() async throws {
            var body: [String: Any] = ["name": name]
            if let user { body["user"] = user }
            if let limits = try limits.limits { body["limits"] = try limits.jsonObject() }
            if let expiresDays {
                body["expires_at"] = Date().addingTimeInterval(TimeInterval(expiresDays) * 86400).formatted(.iso8601)
            }
            if let scope { body["scope"] = scope.split(separator: ",").map(String.init) }
            let answer = try await KeysCommand.client().expect("POST", "/api/v1/keys", json: APIClient.json(body))
            print(answer["key"] as? String ?? "")
        }
    }

    struct Limit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a key's limits and token quota (admins); with no option, remove them.")
        @Argument(help: "The key's id.") var id: String
        @OptionGroup var limits: LimitOptions

        func run() async throws {
            let limits = try limits.limits
            let body: [String: Any] = ["limits": try limits?.jsonObject() ?? NSNull()]
            _ = try await KeysCommand.client().expect(
                "PATCH", APIClient.resourcePath("keys", [id]), json: APIClient.json(body))
            print(limits == nil ? "removed the limits of \(id)" : "set the limits of \(id)")
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke one of your API keys.")
        @Argument(help: "The key's id.") var id: String
        func run() async throws {
            _ = try await KeysCommand.client().expect("DELETE", APIClient.resourcePath("keys", [id]))
            print("revoked \(id)")
        }
    }
}

/// Limits and a token quota as options, shared by `keys create`, `keys limit` and `users limit`.
struct LimitOptions: ParsableArguments {
    @Option(help: "Requests per minute, across all deployments.") var rpm: Int?
    @Option(help: "Tokens per minute, across all deployments.") var tpm: Int?
    @Option(help: "Concurrent requests.") var concurrency: Int?
    @Option(help: "Tokens per quota period; then requests get insufficient_quota.") var tokenQuota: Int?
    @Option(help: "The quota's period: day or month (default month).") var quotaPeriod: String?

    /// The API's own type, checked as the server checks it; nil when no option is given.
    var limits: UsageLimits? {
        get throws {
            guard [rpm, tpm, concurrency, tokenQuota].contains(where: { $0 != nil }) || quotaPeriod != nil else { return nil }
            let period = try quotaPeriod.map { text in
                guard let period = QuotaPeriod(rawValue: text) else {
                    throw ValidationError("--quota-period takes day or month, not '\(text)'")
                }
                return period
            }
            let limits = UsageLimits(
                requestsPerMinute: rpm, tokensPerMinute: tpm, concurrentRequests: concurrency, tokenQuota: tokenQuota,
                quotaPeriod: period)
            do {
                try limits.validate()
            } catch let error as GantryError {
                throw ValidationError(error.message)
            }
            return limits
        }
    }
}

extension UsageLimits {
    /// As the API's JSON (snake_case), to put into a request body built as a dictionary.
    func jsonObject() throws -> Any {
        try JSONSerialization.jsonObject(with: JSONCoding.encoder().encode(self))
    }
}

import ArgumentParser
import Foundation

/// `gantry usage`: metered requests, or daily sums per model service, from `/api/v1/usage`.
struct UsageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage", abstract: "Show token usage: recent requests, or daily sums with --daily.")

    @Flag(help: "Daily sums per model service instead of single requests.") var daily = false
    @Option(help: "Only this model service.") var model: String?
    @Option(help: "Only this API key (its id).") var keyId: String?
    @Option(help: "Only this user (its id; admins only).") var user: String?
    @Option(help: "From this day or time (YYYY-MM-DD or ISO 8601, UTC).") var from: String?
    @Option(help: "Before this day or time.") var to: String?
    @Option(help: "At most this many requests (1-1000).") var limit = 50

    func run() async throws {
        var query: [URLQueryItem] = []
        if daily {
            query.append(URLQueryItem(name: "group_by", value: "day"))
        } else {
            query.append(URLQueryItem(name: "limit", value: String(limit)))
        }
        for (name, value) in [("model", model), ("key_id", keyId), ("user", user), ("from", from), ("to", to)] {
            if let value { query.append(URLQueryItem(name: name, value: value)) }
        }
        var components = URLComponents()
        components.path = "/api/v1/usage"
        components.queryItems = query
        let answer = try await APIClient.configured().expect("GET", components.string ?? "/api/v1/usage")
        let rows = answer["data"] as? [[String: Any]] ?? []
        if daily {
            print("day         model                 requests  failed  prompt  completion")
            for row in rows {
                print(
                    Self.columns([
                        (row["day"] as? String ?? "", 10), (row["deployment"] as? String ?? "", 20),
                        (String(row["requests"] as? Int ?? 0), 8), (String(row["failed_requests"] as? Int ?? 0), 6),
                        (String(row["prompt_tokens"] as? Int ?? 0), 6), (String(row["completion_tokens"] as? Int ?? 0), 10),
                    ]))
            }
            return
        }
        print("time                  model                 status  prompt  completion  ttft_ms  latency_ms")
        for row in rows {
            print(
                Self.columns([
                    (row["created_at"] as? String ?? "", 20), (row["deployment"] as? String ?? "", 20),
                    (String(row["status"] as? Int ?? 0), 6), (String(row["prompt_tokens"] as? Int ?? 0), 6),
                    (String(row["completion_tokens"] as? Int ?? 0), 10),
                    ((row["time_to_first_token_ms"] as? Int).map(String.init) ?? "-", 7),
                    (String(row["latency_ms"] as? Int ?? 0), 10),
                ]))
        }
    }

    static func columns(_ cells: [(String, Int)]) -> String {
        cells.map { text, width in text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
    }
}

import Foundation
import GantryCore
import GantryHTTP
import Hummingbird
import NIOCore

extension ConsolePages {
    /// The query the usage page and its CSV pass on to `GET /api/v1/usage`: the filters the
    /// visitor set, from 30 days ago by default.
    static func usageQuery(_ request: Request) -> [(String, String)] {
        let query = request.uri.queryParameters
        var parameters: [(String, String)] = []
        for name in ["user", "key_id", "model", "to"] {
            if let value = query[Substring(name)].map(String.init), !value.isEmpty { parameters.append((name, value)) }
        }
        let from = query["from"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        parameters.append(("from", from ?? HTML.date(Date().addingTimeInterval(-30 * 86400))))
        return parameters
    }

    static func queryString(_ parameters: [(String, String)]) -> String {
        parameters.map { "\($0.0)=\(segment($0.1))" }.joined(separator: "&")
    }

    /// Usage per day and service (a chart and a table), per key and, for admins, per user, with
    /// filters and a CSV of every record.
    func usage(_ visit: ConsoleRoutes.Visit) async throws -> Response {
        let parameters = Self.usageQuery(visit.request)
        let value = { (name: String) in parameters.first { $0.0 == name }?.1 ?? "" }
        let daily = try await visit.get("/api/v1/usage?group_by=day&" + Self.queryString(parameters))
        var body = """
            <form method="get" action="/console/usage" class="filters" id="usage-filter">
            \(Markup.field("From", name: "from", value: value("from"), type: "date"))
            \(Markup.field("To (exclusive)", name: "to", value: value("to"), type: "date"))
            \(Markup.field("Service", name: "model", value: value("model")))
            \(Markup.field("Key id", name: "key_id", value: value("key_id")))
            \(visit.principal.isAdmin ? Markup.field("User id", name: "user", value: value("user")) : "")
            <button>Show</button></form>
            <p><a id="usage-csv" href="/console/usage.csv?\(HTML.escape(Self.queryString(parameters)))" download>Download every record as CSV</a></p>
            """
        guard daily.ok else { return visit.page("Usage", body + Self.problemParagraph(daily.problem), status: .badRequest) }
        let rows = daily.list
        var perDay: [String: (requests: Double, tokens: Double)] = [:]
        for row in rows {
            let day = row["day"].text
            let tokens = (row["prompt_tokens"].double ?? 0) + (row["completion_tokens"].double ?? 0)
            perDay[day, default: (0, 0)].requests += row["requests"].double ?? 0
            perDay[day, default: (0, 0)].tokens += tokens
        }
        let days = perDay.keys.sorted()
        body +=
            "<div class=\"charts\">"
            + SVGChart.bars(
                title: "Requests per day", values: days.map { ($0, perDay[$0]!.requests) }, format: Self.formatNumber,
                id: "usage-requests")
            + SVGChart.bars(
                title: "Tokens per day", values: days.map { ($0, perDay[$0]!.tokens) }, format: Self.formatNumber,
                id: "usage-tokens") + "</div>"
        body += "<h2>Per day and service</h2>"
        body += Markup.table(
            ["Day", "Service", "Requests", "Failed", "Prompt tokens", "Completion tokens"],
            rows.map { row in
                [
                    HTML.escape(row["day"].text), HTML.escape(row["deployment"].text), row["requests"].text,
                    row["failed_requests"].text, row["prompt_tokens"].text, row["completion_tokens"].text,
                ]
            }, id: "usage-daily", empty: "No usage in this period.")
        // Per key (and per user for admins): the same sums, asked of the API one key at a time.
        let keys = try await visit.list(visit.principal.isAdmin ? "/api/v1/keys?all=true" : "/api/v1/keys")
        var keyRows: [[String]] = []
        for key in keys.prefix(100) {
            let sums = try await visit.list(
                "/api/v1/usage?group_by=day&key_id=\(Self.segment(key["id"].text))&" + Self.queryString(parameters))
            let requests = sums.reduce(0) { $0 + ($1["requests"].int ?? 0) }
            guard requests > 0 else { continue }
            let tokens = sums.reduce(0) { $0 + ($1["prompt_tokens"].int ?? 0) + ($1["completion_tokens"].int ?? 0) }
            keyRows.append([
                HTML.escape(key["name"].text), "<code>\(HTML.escape(key["id"].text))</code>", "\(requests)", "\(tokens)",
            ])
        }
        body +=
            "<h2>Per key</h2>"
            + Markup.table(["Key", "Id", "Requests", "Tokens"], keyRows, id: "usage-keys", empty: "No key was used.")
        if visit.principal.isAdmin {
            var userRows: [[String]] = []
            for user in try await visit.list("/api/v1/users").prefix(200) {
                let sums = try await visit.list(
                    "/api/v1/usage?group_by=day&user=\(Self.segment(user["id"].text))&"
                        + Self.queryString(parameters.filter { $0.0 != "user" }))
                let requests = sums.reduce(0) { $0 + ($1["requests"].int ?? 0) }
                guard requests > 0 else { continue }
                let tokens = sums.reduce(0) { $0 + ($1["prompt_tokens"].int ?? 0) + ($1["completion_tokens"].int ?? 0) }
                userRows.append([HTML.escape(user["name"].text), "\(requests)", "\(tokens)"])
            }
            body +=
                "<h2>Per user</h2>" + Markup.table(["User", "Requests", "Tokens"], userRows, id: "usage-users", empty: "Nobody.")
        }
        return visit.page("Usage", body)
    }

    static let csvColumns = [
        "created_at", "user_id", "key_id", "deployment", "version", "instance_id", "endpoint", "status", "error_type",
        "prompt_tokens", "completion_tokens", "time_to_first_token_ms", "latency_ms", "estimated",
    ]

    /// Every record the filters select, newest first, as CSV: read from the API a page of 1,000 at
    /// a time and written as it is read, so a long period never sits in memory.
    func usageCSV(_ visit: ConsoleRoutes.Visit) async throws -> Response {
        let parameters = Self.queryString(Self.usageQuery(visit.request))
        let first = try await visit.get("/api/v1/usage?limit=1000&" + parameters)
        guard first.ok else { return visit.page("Usage", Self.problemParagraph(first.problem), status: .badRequest) }
        let body = ResponseBody { writer in
            try await writer.write(ByteBuffer(string: Self.csvColumns.joined(separator: ",") + "\r\n"))
            var page = first
            while true {
                let records = page.list
                try await writer.write(ByteBuffer(string: records.map(Self.csvLine).joined()))
                guard page.json["has_more"].bool == true, let last = records.last?["id"].string else { break }
                page = try await visit.get("/api/v1/usage?limit=1000&before=\(Self.segment(last))&" + parameters)
                guard page.ok else { break }
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [
                .contentType: "text/csv; charset=utf-8", .cacheControl: "no-store",
                .contentDisposition: "attachment; filename=\"gantry-usage.csv\"",
            ],
            body: body)
    }

    static func csvLine(_ record: JSONValue) -> String {
        csvColumns.map { csvField(record[$0].text) }.joined(separator: ",") + "\r\n"
    }

    /// Quotes a field where CSV needs it, and defuses text a spreadsheet would run as a formula.
    static func csvField(_ text: String) -> String {
        var text = text
        if let first = text.first, "=+-@\t\r".contains(first), Double(text) == nil { text = "'" + text }
        guard text.contains(where: { ",\"\r\n".contains($0) }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Chat with a service the visitor may use, streamed, with the tokens, the time to the first
    /// token and the latency (the page's script calls `/v1/chat/completions` with the session).
    func playground(_ visit: ConsoleRoutes.Visit) async throws -> Response {
        let deployments = try await visit.list("/api/v1/deployments")
        let picked = visit.request.uri.queryParameters["service"].map(String.init)
        let options = deployments.map { ($0["name"].text, $0["name"].text + " (" + $0["status"].text + ")") }
        let body = """
            <form id="playground" class="stacked" data-playground>
            \(Markup.select("Service", name: "model", options: options, selected: picked))
            <label>System prompt <textarea name="system" rows="2"></textarea></label>
            <label>Message <textarea name="message" rows="4" required>Say hello in five words.</textarea></label>
            \(Markup.field("Most tokens", name: "max_tokens", value: "64", type: "number", attributes: "min=\"1\""))
            <label><input type="checkbox" name="stream" value="true" checked> Stream</label>
            <button>Send</button></form>
            <div class="playground-answer"><pre id="answer" aria-live="polite"></pre>
            <dl id="answer-stats"><dt>Prompt tokens</dt><dd id="stat-prompt">–</dd><dt>Completion tokens</dt><dd id="stat-completion">–</dd>
            <dt>Time to first token</dt><dd id="stat-ttft">–</dd><dt>Latency</dt><dd id="stat-latency">–</dd></dl>
            <p class="form-error" id="answer-error" role="alert" hidden></p></div>
            """
        return visit.page("Playground", options.isEmpty ? "<p class=\"empty\">No model service is open to you yet.</p>" : body)
    }
}

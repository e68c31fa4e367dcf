import Foundation
import GantryCore
import GantryHTTP
import Hummingbird

extension ConsolePages {
    /// Nodes and GPUs with memory and utilisation bars, and every model service with its status,
    /// replicas and the six metrics of its last hour, drawn as SVG by the server.
    func overview(_ visit: ConsoleRoutes.Visit) async throws -> Response {
        let nodes = try await visit.list("/api/v1/nodes")
        let allocations = try await visit.list("/api/v1/allocations")
        let deployments = try await visit.list("/api/v1/deployments")
        var holders: [String: String] = [:]  // instance id -> service name
        var details: [String: JSONValue] = [:]
        for deployment in deployments {
            let name = deployment["name"].text
            let detail = try await visit.get("/api/v1/deployments/\(Self.segment(name))")
            guard detail.ok else { continue }
            details[name] = detail.json
            for instance in detail.json["instances"].array { holders[instance["id"].text] = name }
        }
        var heldBy: [String: String] = [:]  // GPU uuid -> who holds it
        for allocation in allocations {
            let owner = allocation["owner"].text
            for uuid in allocation["gpu_uuids"].array {
                heldBy[uuid.text] = holders[owner].map { "service \($0)" } ?? owner
            }
        }

        var body = "<section id=\"nodes\"><h2>Nodes and GPUs</h2>"
        if nodes.isEmpty { body += "<p class=\"empty\">No node has reported yet.</p>" }
        for node in nodes {
            let name = node["name"].text
            let simulated = node["simulated"].bool == true ? " <span class=\"tag\">simulated GPUs</span>" : ""
            body += "<h3>\(HTML.escape(name))\(simulated)</h3>"
            body += "<p>\(node["cpu_count"].text) CPU threads, \(Markup.bytes(node["memory_bytes"].double ?? 0)) memory</p>"
            let rows = node["gpus"].array.map { gpu -> [String] in
                let total = gpu["memory_total_mib"].double ?? 0
                let used = gpu["memory_used_mib"].double
                let utilization = gpu["utilization_percent"].double
                let memory =
                    used.map {
                        SVGChart.bar(fraction: total > 0 ? $0 / total : 0, label: "memory \(Int($0)) of \(Int(total)) MiB")
                            + " \(Markup.bytes($0 * 1_048_576)) of \(Markup.bytes(total * 1_048_576))"
                    } ?? "unknown"
                let busy =
                    utilization.map {
                        SVGChart.bar(fraction: $0 / 100, label: "utilisation \(Int($0)) %") + " \(Int($0)) %"
                    } ?? "not reported"
                return [
                    gpu["index"].text, HTML.escape(gpu["name"].text), memory, busy,
                    HTML.escape(heldBy[gpu["uuid"].text] ?? "free"),
                ]
            }
            body += Markup.table(["GPU", "Product", "Memory", "Utilisation", "Held by"], rows, empty: "No GPU on this node.")
        }
        body += "</section><section id=\"services\"><h2>Model services</h2>"
        if deployments.isEmpty {
            body += "<p class=\"empty\">No model service yet. <a href=\"/console/services\">Create one</a>.</p>"
        }
        for deployment in deployments {
            let name = deployment["name"].text
            let instances = details[name]?["instances"].array ?? []
            let ready = instances.count { $0["state"].text == "ready" }
            let history = try await visit.get("/api/v1/deployments/\(Self.segment(name))/metrics")
            let minutes = history.ok ? history.json["minutes"].array : []
            body +=
                "<article class=\"service\" id=\"service-\(HTML.escape(name))\"><h3>"
                + Markup.link(name, "/console/services/\(Self.segment(name))") + " "
                + Markup.status(deployment["status"].text) + "</h3>"
            body +=
                "<p>version \(HTML.escape(deployment["version"].text)) · \(ready) of \(deployment["replicas"].text) replicas ready"
                + " · \(HTML.escape(deployment["status_message"].text))</p>"
            body += "<div class=\"charts\">" + Self.sixCharts(minutes, service: name) + "</div></article>"
        }
        body += "</section>"
        return visit.page("Overview", body)
    }

    /// The six metrics of a service's last hour: latency, throughput, GPU utilisation, error rate,
    /// token usage and concurrent requests, from the minutes of `GET .../metrics`.
    static func sixCharts(_ minutes: [JSONValue], service: String) -> String {
        func per(_ minute: JSONValue, _ key: String) -> Double { minute[key].double ?? 0 }
        let latency: [Double?] = minutes.map { minute in
            let requests = per(minute, "requests")
            return requests > 0 ? per(minute, "latency_seconds") / requests : nil
        }
        let throughput: [Double?] = minutes.map { per($0, "requests") / 60 }
        let gpu: [Double?] = minutes.map { minute in
            let samples = per(minute, "gpu_samples")
            return samples > 0 ? per(minute, "gpu_utilization_sum") / samples : nil
        }
        let errors: [Double?] = minutes.map { minute in
            let requests = per(minute, "requests")
            return requests > 0 ? per(minute, "server_errors") / requests : nil
        }
        let tokens: [Double?] = minutes.map { per($0, "prompt_tokens") + per($0, "completion_tokens") }
        // Little's law: the sum of the minute's latencies over its length is the mean in flight.
        let concurrency: [Double?] = minutes.map { per($0, "latency_seconds") / 60 }
        let id = "chart-" + service + "-"
        return SVGChart.sparkline(title: "Latency", values: latency, format: formatSeconds, id: id + "latency")
            + SVGChart.sparkline(
                title: "Throughput", values: throughput, format: { formatNumber($0) + " req/s" }, id: id + "throughput")
            + SVGChart.sparkline(title: "GPU utilisation", values: gpu, ceiling: 1, format: formatPercent, id: id + "gpu")
            + SVGChart.sparkline(title: "Error rate", values: errors, ceiling: 0.05, format: formatPercent, id: id + "errors")
            + SVGChart.sparkline(
                title: "Tokens", values: tokens, format: { formatNumber($0) + "/min" }, id: id + "tokens")
            + SVGChart.sparkline(
                title: "Concurrent requests", values: concurrency, format: formatNumber, id: id + "concurrency")
    }
}

public import AsyncHTTPClient
import Foundation
public import GantryKubernetes
public import NIOCore

/// Finds NVIDIA's dcgm-exporter pods among the cluster's pods (the labels its Helm chart and the
/// GPU Operator give them) and reads each one's `/metrics`, so that the cluster's GPUs show
/// utilisation and memory in use. Exporters are read at once, each with a deadline and a bound
/// on the body; one that does not answer leaves its node's GPUs without readings.
public struct DCGMExporterScraper: Sendable {
    /// `key=value` labels any one of which marks an exporter pod.
    public static let podLabels = [
        ("app.kubernetes.io/name", "dcgm-exporter"), ("app", "nvidia-dcgm-exporter"), ("app", "dcgm-exporter"),
    ]
    public static let defaultPort = 9400
    static let maxBodyBytes = 8 << 20

    let httpClient: HTTPClient
    let port: Int
    let timeout: TimeAmount

    public init(httpClient: HTTPClient, port: Int = defaultPort, timeout: TimeAmount = .seconds(3)) {
        self.httpClient = httpClient
        self.port = port
        self.timeout = timeout
    }

    static func isExporter(_ pod: Pod) -> Bool {
        let labels = pod.metadata.labels ?? [:]
        return podLabels.contains { labels[$0.0] == $0.1 } && pod.status?.phase == "Running"
            && !(pod.status?.podIP ?? "").isEmpty && pod.spec?.nodeName != nil
    }

    /// The readings of every exporter among `pods`, keyed by the node its pod runs on.
    public func readings(among pods: some Collection<Pod>) async -> [String: [DCGMReading]] {
        let exporters = pods.filter(Self.isExporter)
        return await withTaskGroup(of: (String, [DCGMReading]).self) { group in
            for pod in exporters {
                guard let node = pod.spec?.nodeName, let address = pod.status?.podIP else { continue }
                let host = address.contains(":") ? "[\(address)]" : address
                group.addTask {
                    let request = HTTPClientRequest(url: "http://\(host):\(port)/metrics")
                    guard let response = try? await httpClient.execute(request, timeout: timeout), response.status == .ok,
                        let body = try? await response.body.collect(upTo: Self.maxBodyBytes)
                    else { return (node, []) }
                    return (node, DCGMExporterText.parse(String(buffer: body)))
                }
            }
            var byNode: [String: [DCGMReading]] = [:]
            for await (node, readings) in group where !readings.isEmpty { byNode[node, default: []] += readings }
            return byNode
        }
    }
}

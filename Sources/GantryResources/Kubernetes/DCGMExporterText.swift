/// One GPU's readings from NVIDIA's dcgm-exporter.
public struct DCGMReading: Sendable, Equatable {
    public var uuid: String
    /// The `Hostname` label: the node's name where the exporter's DaemonSet sets NODE_NAME.
    public var hostname: String
    /// The `gpu` label: the GPU's index on its node.
    public var index: Int?
    public var modelName: String
    public var utilizationPercent: Int?
    public var memoryUsedMiB: Int?
    public var memoryFreeMiB: Int?
    /// `namespace/pod` of the pod using the GPU, where the exporter maps GPUs to pods (its
    /// Kubernetes mode labels `namespace` and `pod`; older releases `pod_namespace`, `pod_name`).
    public var pod: String? = nil
}

/// Reads the Prometheus text exposition dcgm-exporter serves, keeping the three families
/// Gantry shows: `DCGM_FI_DEV_GPU_UTIL` (%), `DCGM_FI_DEV_FB_USED` and `DCGM_FI_DEV_FB_FREE`
/// (MiB), one reading per `UUID`. Pure: other families, comments and malformed lines are
/// skipped, never fatal, since an exporter's counters are configurable.
public enum DCGMExporterText {
    static let utilization = "DCGM_FI_DEV_GPU_UTIL"
    static let memoryUsed = "DCGM_FI_DEV_FB_USED"
    static let memoryFree = "DCGM_FI_DEV_FB_FREE"

    public static func parse(_ text: String) -> [DCGMReading] {
        var readings: [String: DCGMReading] = [:]
        var order: [String] = []
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            guard let sample = Sample(line),
                [utilization, memoryUsed, memoryFree].contains(String(sample.name)),
                let uuid = sample.labels["UUID"], !uuid.isEmpty
            else { continue }
            if readings[uuid] == nil {
                order.append(uuid)
                readings[uuid] = DCGMReading(
                    uuid: uuid, hostname: sample.labels["Hostname"] ?? "", index: sample.labels["gpu"].flatMap { Int($0) },
                    modelName: sample.labels["modelName"] ?? "")
            }
            if readings[uuid]?.pod == nil, let pod = sample.labels["pod"] ?? sample.labels["pod_name"], !pod.isEmpty,
                let namespace = sample.labels["namespace"] ?? sample.labels["pod_namespace"], !namespace.isEmpty
            {
                readings[uuid]?.pod = namespace + "/" + pod
            }
            // NaN or infinite readings (a GPU that fell off the bus) stay unknown.
            let value = sample.value.isFinite ? Int(sample.value.rounded()) : nil
            switch String(sample.name) {
            case utilization: readings[uuid]?.utilizationPercent = value.map { min(100, max(0, $0)) }
            case memoryUsed: readings[uuid]?.memoryUsedMiB = value
            default: readings[uuid]?.memoryFreeMiB = value
            }
        }
        return order.compactMap { readings[$0] }
    }

    /// One sample line: `name{label="value",...} value [timestamp]`.
    struct Sample {
        var name: Substring
        var labels: [String: String] = [:]
        var value: Double

        init?(_ line: Substring) {
            var rest = line.drop { $0 == " " || $0 == "\t" }
            guard let first = rest.first, first != "#" else { return nil }
            let nameEnd = rest.firstIndex { $0 == "{" || $0 == " " || $0 == "\t" } ?? rest.endIndex
            name = rest[..<nameEnd]
            rest = rest[nameEnd...]
            if rest.first == "{" {
                rest = rest.dropFirst()
                guard let parsed = Self.labels(&rest) else { return nil }
                labels = parsed
            }
            let fields = rest.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let text = fields.first, let number = Self.number(text) else { return nil }
            value = number
        }

        /// Reads `key="value",...}` (escapes `\\`, `\"`, `\n`), leaving `rest` after the brace.
        static func labels(_ rest: inout Substring) -> [String: String]? {
            var labels: [String: String] = [:]
            while true {
                rest = rest.drop { $0 == " " }
                if rest.first == "}" {
                    rest = rest.dropFirst()
                    return labels
                }
                guard let equals = rest.firstIndex(of: "=") else { return nil }
                let key = rest[..<equals].trimmingSpaces
                rest = rest[rest.index(after: equals)...]
                guard rest.first == "\"" else { return nil }
                rest = rest.dropFirst()
                var value = ""
                var escaped = false
                var closed = false
                while let character = rest.first {
                    rest = rest.dropFirst()
                    if escaped {
                        value.append(character == "n" ? "\n" : character)
                        escaped = false
                    } else if character == "\\" {
                        escaped = true
                    } else if character == "\"" {
                        closed = true
                        break
                    } else {
                        value.append(character)
                    }
                }
                guard closed, !key.isEmpty else { return nil }
                labels[String(key)] = value
                // A pair ends with a comma or the closing brace, nothing else.
                rest = rest.drop { $0 == " " }
                if rest.first == "," {
                    rest = rest.dropFirst()
                } else if rest.first != "}" {
                    return nil
                }
            }
        }

        static func number(_ text: Substring) -> Double? {
            switch text {
            case "NaN": .nan
            case "+Inf", "Inf": .infinity
            case "-Inf": -.infinity
            default: Double(text)
            }
        }
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var slice = self
        while slice.first == " " { slice = slice.dropFirst() }
        while slice.last == " " { slice = slice.dropLast() }
        return slice
    }
}

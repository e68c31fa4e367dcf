import Foundation
public import GantryCore

/// Finds the GPUs of this machine.
public protocol GPUDiscovery: Sendable {
    /// `nvidia-smi`, `fixture` or `none`, as reported on the node.
    var sourceName: String { get }
    var isSimulated: Bool { get }
    func discover() async throws -> [GPUInfo]
}

/// The fields asked of `nvidia-smi`, in the order the parser expects them.
public enum NvidiaSMIQuery {
    public static let fields = [
        "index", "uuid", "name", "memory.total", "memory.used", "utilization.gpu", "temperature.gpu", "power.draw",
    ]
    public static var arguments: [String] {
        ["--query-gpu=" + fields.joined(separator: ","), "--format=csv,noheader,nounits"]
    }
}

/// Runs `nvidia-smi` and parses its CSV.
public struct NvidiaSMIDiscovery: GPUDiscovery {
    public var binary: String
    public var sourceName: String { "nvidia-smi" }
    public var isSimulated: Bool { false }

    public init(binary: String = "nvidia-smi") {
        self.binary = binary
    }

    public func discover() async throws -> [GPUInfo] {
        try NvidiaSMIParser.parse(try await ExternalCommand.run([binary] + NvidiaSMIQuery.arguments))
    }
}

/// Replays recorded `nvidia-smi` output from a file, for tests and demos; nodes are marked simulated.
public struct FixtureDiscovery: GPUDiscovery {
    public var path: String
    public var sourceName: String { "fixture" }
    public var isSimulated: Bool { true }

    public init(path: String) {
        self.path = path
    }

    public func discover() async throws -> [GPUInfo] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw GantryError.invalid("cannot read the GPU fixture \(path)")
        }
        return try NvidiaSMIParser.parse(text)
    }
}

/// A CPU-only machine.
public struct NoGPUDiscovery: GPUDiscovery {
    public var sourceName: String { "none" }
    public var isSimulated: Bool { false }
    public init() {}
    public func discover() async throws -> [GPUInfo] { [] }
}

/// Parses `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`.
public enum NvidiaSMIParser {
    /// Readings a GPU or driver does not provide come back as these; they become nil.
    static let missing: Set<String> = ["[N/A]", "N/A", "[Not Supported]", "Not Supported", "[Unknown Error]", ""]

    public static func parse(_ text: String) throws -> [GPUInfo] {
        var gpus: [GPUInfo] = []
        for (number, rawLine) in text.split(whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            guard fields.count == NvidiaSMIQuery.fields.count else {
                throw GantryError.invalid(
                    "nvidia-smi line \(number + 1) has \(fields.count) fields, expected \(NvidiaSMIQuery.fields.count)")
            }
            func value(_ index: Int) -> String? { missing.contains(fields[index]) ? nil : fields[index] }
            guard let gpuIndex = value(0).flatMap(Int.init), let uuid = value(1), let name = value(2),
                let total = value(3).flatMap(Double.init)
            else {
                throw GantryError.invalid("nvidia-smi line \(number + 1) lacks index, uuid, name or total memory")
            }
            gpus.append(
                GPUInfo(
                    index: gpuIndex, uuid: uuid, name: name, memoryTotalMiB: Int(total),
                    memoryUsedMiB: value(4).flatMap(Double.init).map { Int($0) },
                    utilizationPercent: value(5).flatMap(Double.init).map { Int($0) },
                    temperatureCelsius: value(6).flatMap(Double.init).map { Int($0) },
                    powerWatts: value(7).flatMap(Double.init)))
        }
        return gpus.sorted { $0.index < $1.index }
    }
}

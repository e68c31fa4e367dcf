import Foundation
public import GantryCore

/// What an allocation asks for.
public struct ResourceRequest: Sendable, Equatable {
    public var gpus: Int
    /// Only GPUs whose name contains this (case-insensitive), e.g. `H100`.
    public var gpuName: String?
    /// Only GPUs with at least this much memory free now.
    public var minFreeMemoryMiB: Int?
    public var cpuThreads: Int
    /// Restrict to one node.
    public var node: String?

    public init(gpus: Int, gpuName: String? = nil, minFreeMemoryMiB: Int? = nil, cpuThreads: Int = 0, node: String? = nil) {
        self.gpus = gpus
        self.gpuName = gpuName
        self.minFreeMemoryMiB = minFreeMemoryMiB
        self.cpuThreads = cpuThreads
        self.node = node
    }

    /// "2 GPUs matching 'H100' with ≥ 40960 MiB free", for placement failures.
    var summary: String {
        var parts: [String] = []
        if gpus > 0 {
            var text = "\(gpus) GPU\(gpus == 1 ? "" : "s")"
            if let gpuName { text += " matching '\(gpuName)'" }
            if let minFreeMemoryMiB { text += " with ≥ \(minFreeMemoryMiB) MiB free" }
            parts.append(text)
        }
        if cpuThreads > 0 { parts.append("\(cpuThreads) CPU thread\(cpuThreads == 1 ? "" : "s")") }
        return parts.joined(separator: " and ")
    }
}

public enum PlacementStrategy: String, Codable, Sendable {
    /// Fill the busiest node that fits, keeping whole nodes free for large requests.
    case binpack
    /// Use the least busy node that fits, spreading load and failure domains.
    case spread
}

/// Chooses a node and GPUs for a request, given what is already allocated.
public enum Placement {
    public struct Choice: Sendable, Equatable {
        public var node: String
        public var gpuUUIDs: [String]

        public init(node: String, gpuUUIDs: [String]) {
            self.node = node
            self.gpuUUIDs = gpuUUIDs
        }
    }

    /// The choice, or a `.conflict` error whose message gives the reason for every node.
    public static func choose(
        _ request: ResourceRequest, nodes: [NodeInventory], allocatedGPUs: Set<String>, allocatedCPU: [String: Int],
        strategy: PlacementStrategy
    ) throws -> Choice {
        var candidates: [(node: NodeInventory, free: [GPUInfo], busy: Int)] = []
        var reasons: [String] = []
        for node in nodes.sorted(by: { $0.name < $1.name }) where request.node == nil || request.node == node.name {
            let eligible = node.gpus.filter { gpu in
                !allocatedGPUs.contains(key(node: node.name, gpu: gpu.uuid))
                    && (request.gpuName.map { gpu.name.localizedCaseInsensitiveContains($0) } ?? true)
                    && (request.minFreeMemoryMiB.map { gpu.memoryTotalMiB - (gpu.memoryUsedMiB ?? 0) >= $0 } ?? true)
            }
            let freeCPU = node.cpuCount - allocatedCPU[node.name, default: 0]
            guard eligible.count >= request.gpus, freeCPU >= request.cpuThreads else {
                var has: [String] = []
                if request.gpus > 0 { has.append("\(eligible.count) such GPU\(eligible.count == 1 ? "" : "s")") }
                if request.cpuThreads > 0 { has.append("\(freeCPU) free CPU threads") }
                reasons.append("node \(node.name) has \(has.joined(separator: " and "))")
                continue
            }
            let allocatedHere = node.gpus.count { allocatedGPUs.contains(key(node: node.name, gpu: $0.uuid)) }
            candidates.append((node, eligible.sorted { $0.index < $1.index }, allocatedHere))
        }
        if let wanted = request.node, !nodes.contains(where: { $0.name == wanted }) {
            throw GantryError.notFound("node '\(wanted)' does not exist")
        }
        let ordered = candidates.sorted { a, b in
            if a.busy != b.busy { return strategy == .binpack ? a.busy > b.busy : a.busy < b.busy }
            // Among equally busy nodes prefer the one that leaves the most whole GPUs for others
            // under binpack (the smallest), and the roomiest under spread.
            if a.free.count != b.free.count {
                return strategy == .binpack ? a.free.count < b.free.count : a.free.count > b.free.count
            }
            return a.node.name < b.node.name
        }
        guard let best = ordered.first else {
            throw GantryError.conflict(
                "needs \(request.summary): " + (reasons.isEmpty ? "no nodes" : reasons.joined(separator: ", ")))
        }
        return Choice(node: best.node.name, gpuUUIDs: best.free.prefix(request.gpus).map(\.uuid))
    }

    static func key(node: String, gpu: String) -> String { node + "/" + gpu }
}

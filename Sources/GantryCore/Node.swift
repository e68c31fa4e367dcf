public import Foundation

/// One GPU as discovery sees it. Readings a driver does not report (`[N/A]`) are nil.
public struct GPUInfo: Codable, Sendable, Equatable {
    public var index: Int
    public var uuid: String
    public var name: String
    public var memoryTotalMiB: Int
    public var memoryUsedMiB: Int?
    /// 0-100.
    public var utilizationPercent: Int?
    public var temperatureCelsius: Int?
    public var powerWatts: Double?
    /// The Gantry engine instance using the GPU, where the node reports it (dcgm-exporter's pod
    /// mapping on Kubernetes); on a node Gantry places on itself, its allocations say who holds what.
    public var heldBy: String?

    enum CodingKeys: String, CodingKey {
        case index, uuid, name
        case memoryTotalMiB = "memory_total_mib"
        case memoryUsedMiB = "memory_used_mib"
        case utilizationPercent = "utilization_percent"
        case temperatureCelsius = "temperature_celsius"
        case powerWatts = "power_watts"
        case heldBy = "held_by"
    }

    public init(
        index: Int, uuid: String, name: String, memoryTotalMiB: Int, memoryUsedMiB: Int?, utilizationPercent: Int?,
        temperatureCelsius: Int?, powerWatts: Double?, heldBy: String? = nil
    ) {
        self.index = index
        self.uuid = uuid
        self.name = name
        self.memoryTotalMiB = memoryTotalMiB
        self.memoryUsedMiB = memoryUsedMiB
        self.utilizationPercent = utilizationPercent
        self.temperatureCelsius = temperatureCelsius
        self.powerWatts = powerWatts
        self.heldBy = heldBy
    }
}

/// A machine engines can run on.
public struct NodeInventory: Codable, Sendable, Equatable {
    public var name: String
    public var cpuCount: Int
    public var memoryBytes: UInt64
    public var labels: [String: String]
    public var gpus: [GPUInfo]
    /// How the GPUs were found: `nvidia-smi`, `fixture`, or `none`.
    public var gpuSource: String
    /// True when the GPUs come from recorded output, not from hardware.
    public var simulated: Bool
    public var observedAt: Date
    /// Cluster nodes only: why new pods cannot land here (not Ready, cordoned, a NoSchedule
    /// taint); empty when they can. Local nodes leave it nil.
    public var unschedulableReasons: [String]?
    /// Cluster nodes only: GPUs requested by the pods on this node that have not ended, Gantry's
    /// or not. Local nodes leave it nil: there Gantry's own ledger says what is held.
    public var gpusRequested: Int?

    public init(
        name: String, cpuCount: Int, memoryBytes: UInt64, labels: [String: String], gpus: [GPUInfo], gpuSource: String,
        simulated: Bool, observedAt: Date, unschedulableReasons: [String]? = nil, gpusRequested: Int? = nil
    ) {
        self.unschedulableReasons = unschedulableReasons
        self.gpusRequested = gpusRequested
        self.name = name
        self.cpuCount = cpuCount
        self.memoryBytes = memoryBytes
        self.labels = labels
        self.gpus = gpus
        self.gpuSource = gpuSource
        self.simulated = simulated
        self.observedAt = observedAt
    }
}

/// Where nodes come from: this machine (local), or a Kubernetes cluster's Nodes.
public protocol NodeSource: Sendable {
    func nodes() async throws -> [NodeInventory]
}

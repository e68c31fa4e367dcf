import Foundation
public import GantryCore

/// This machine as a node: its CPUs and memory, and the GPUs its discovery finds.
public struct LocalNodeSource: NodeSource {
    let discovery: any GPUDiscovery
    let name: String
    let labels: [String: String]
    /// CPU threads offered for allocation; the machine's cores unless set (simulated nodes in tests).
    let cpuCount: Int

    public init(discovery: any GPUDiscovery, name: String? = nil, labels: [String: String] = [:], cpuCount: Int? = nil) {
        self.discovery = discovery
        self.name = name ?? ProcessInfo.processInfo.hostName
        self.labels = labels
        self.cpuCount = cpuCount ?? ProcessInfo.processInfo.activeProcessorCount
    }

    /// The discovery a setting names: `auto` (NVML when the driver's library loads, else
    /// nvidia-smi when on PATH, else none), `nvml`, `nvidia-smi`, `none`, or `fixture:PATH`.
    public static func discovery(for setting: String) throws -> any GPUDiscovery {
        switch setting {
        case "auto":
            if NVMLDiscovery.isAvailable { return NVMLDiscovery() }
            return ExternalCommand.exists("nvidia-smi") ? NvidiaSMIDiscovery() : NoGPUDiscovery()
        case "nvml": return NVMLDiscovery()
        case "nvidia-smi": return NvidiaSMIDiscovery()
        case "none": return NoGPUDiscovery()
        default:
            guard setting.hasPrefix("fixture:"), setting.count > "fixture:".count else {
                throw GantryError.invalid("GPU source must be auto, nvml, nvidia-smi, none or fixture:PATH, not '\(setting)'")
            }
            return FixtureDiscovery(path: String(setting.dropFirst("fixture:".count)))
        }
    }

    public func nodes() async throws -> [NodeInventory] {
        [
            NodeInventory(
                name: name, cpuCount: cpuCount,
                memoryBytes: ProcessInfo.processInfo.physicalMemory, labels: labels, gpus: try await discovery.discover(),
                gpuSource: discovery.sourceName, simulated: discovery.isSimulated, observedAt: Date())
        ]
    }
}

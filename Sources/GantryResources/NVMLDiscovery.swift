import CNVML
import Foundation
public import GantryCore

/// GPU discovery through NVML, the library behind nvidia-smi, loaded at run time (`dlopen`), so
/// Gantry needs no NVIDIA driver to build or to run on CPU-only machines.
public struct NVMLDiscovery: GPUDiscovery {
    public var sourceName: String { "nvml" }
    public var isSimulated: Bool { false }

    public init() {}

    /// Whether the NVIDIA management library can be loaded here.
    public static var isAvailable: Bool { gantry_nvml_available() != 0 }

    public func discover() async throws -> [GPUInfo] {
        let capacity = 64
        var gpus = [gantry_nvml_gpu](repeating: gantry_nvml_gpu(), count: capacity)
        var error = [CChar](repeating: 0, count: 256)
        let count = gantry_nvml_query(&gpus, Int32(capacity), &error, Int32(error.count))
        guard count >= 0 else {
            let message = error.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw GantryError(.unavailable, "NVML: \(message)")
        }
        return gpus.prefix(Int(min(count, Int32(capacity)))).map { gpu in
            var copy = gpu
            let uuid = withUnsafeBytes(of: &copy.uuid) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            let name = withUnsafeBytes(of: &copy.name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            return GPUInfo(
                index: Int(gpu.index), uuid: uuid, name: name, memoryTotalMiB: Int(gpu.memory_total_bytes / 1_048_576),
                memoryUsedMiB: Int(gpu.memory_used_bytes / 1_048_576),
                utilizationPercent: gpu.has_utilization != 0 ? Int(gpu.utilization_percent) : nil,
                temperatureCelsius: gpu.has_temperature != 0 ? Int(gpu.temperature_celsius) : nil,
                powerWatts: gpu.has_power != 0 ? Double(gpu.power_milliwatts) / 1000 : nil)
        }
    }
}

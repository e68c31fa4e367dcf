import ArgumentParser
import Foundation
import GantryCore
import GantryResources

/// `gantry resources`: what this machine offers as a node (CPUs, memory, GPUs), found the same
/// way the server finds it.
struct ResourcesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resources", abstract: "Show this machine's CPUs, memory and GPUs as Gantry sees them.")

    @Option(name: .customLong("gpu-source"), help: "auto, nvml, nvidia-smi, none or fixture:PATH (default: auto).")
    var gpuSource: String = "auto"

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() async throws {
        let nodes = try await LocalNodeSource(discovery: try LocalNodeSource.discovery(for: gpuSource)).nodes()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            print(String(decoding: try encoder.encode(nodes), as: UTF8.self))
            return
        }
        for node in nodes {
            let memory = Double(node.memoryBytes) / 1_073_741_824
            let simulated = node.simulated ? " (simulated)" : ""
            print(
                "node \(node.name): \(node.cpuCount) CPUs, \(String(format: "%.1f", memory)) GiB memory, GPUs from \(node.gpuSource)\(simulated)"
            )
            if node.gpus.isEmpty {
                print("  no GPUs: CPU-only node")
                continue
            }
            print("  idx  name                         memory used/total (MiB)  util  temp  power")
            for gpu in node.gpus {
                let used = gpu.memoryUsedMiB.map(String.init) ?? "-"
                let util = gpu.utilizationPercent.map { "\($0)%" } ?? "-"
                let temp = gpu.temperatureCelsius.map { "\($0)C" } ?? "-"
                let power = gpu.powerWatts.map { String(format: "%.0fW", $0) } ?? "-"
                let name = gpu.name.padding(toLength: 28, withPad: " ", startingAt: 0)
                let memoryText = "\(used)/\(gpu.memoryTotalMiB)".padding(toLength: 25, withPad: " ", startingAt: 0)
                print(
                    "  \(String(gpu.index).padding(toLength: 4, withPad: " ", startingAt: 0)) \(name) \(memoryText) \(util.padding(toLength: 5, withPad: " ", startingAt: 0)) \(temp.padding(toLength: 5, withPad: " ", startingAt: 0)) \(power)"
                )
            }
        }
    }
}

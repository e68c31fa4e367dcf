import Foundation
import GantryCore
public import GantryHTTP
public import Hummingbird

/// The machine Gantry runs on, as a schedulable node. GPU discovery arrives with the resource
/// management issue; until then a node reports its CPUs and memory and an empty GPU list.
public struct NodeInfo: Codable, Sendable, Equatable {
    public var name: String
    public var cpuCount: Int
    public var memoryBytes: UInt64
    public var gpus: [String]

    public static func local() -> NodeInfo {
        NodeInfo(
            name: ProcessInfo.processInfo.hostName, cpuCount: ProcessInfo.processInfo.activeProcessorCount,
            memoryBytes: ProcessInfo.processInfo.physicalMemory, gpus: [])
    }
}

/// `GET /api/v1/nodes` (admins only: it describes the cluster's hardware).
public enum ResourceRoutes {
    public static func add(to router: Router<GantryRequestContext>) {
        router.get("/api/v1/nodes") { _, context in
            _ = try context.requireAdmin()
            return JSONResponse(ListResponse([NodeInfo.local()]))
        }
    }
}

import Foundation
public import GantryCore
public import GantryHTTP
public import Hummingbird

/// `GET /api/v1/nodes` and `GET /api/v1/gpus` (admins only: they describe the hardware).
public struct ResourceRoutes: Sendable {
    let inventory: ResourceInventory

    public init(inventory: ResourceInventory) {
        self.inventory = inventory
    }

    /// A GPU with the node it sits in, for the flat `/gpus` list.
    struct PlacedGPU: Encodable, Sendable {
        var node: String
        var simulated: Bool
        var gpu: GPUInfo

        func encode(to encoder: any Encoder) throws {
            try gpu.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(node, forKey: .node)
            try container.encode(simulated, forKey: .simulated)
        }
        enum Key: String, CodingKey { case node, simulated }
    }

    public func add(to router: Router<GantryRequestContext>) {
        router.get("/api/v1/nodes") { _, context in
            _ = try context.requireAdmin()
            return JSONResponse(ListResponse(await inventory.nodes()))
        }
        router.get("/api/v1/gpus") { _, context in
            _ = try context.requireAdmin()
            let gpus = await inventory.nodes().flatMap { node in
                node.gpus.map { PlacedGPU(node: node.name, simulated: node.simulated, gpu: $0) }
            }
            return JSONResponse(ListResponse(gpus))
        }
    }
}

import Foundation
import GantryCore
public import GantryHTTP
public import Hummingbird

/// `GET /api/v1/nodes` and `GET /api/v1/gpus` (admins only: they describe the hardware).
public struct ResourceRoutes: Sendable {
    let inventory: ResourceInventory
    let allocations: AllocationService

    public init(inventory: ResourceInventory, allocations: AllocationService) {
        self.inventory = inventory
        self.allocations = allocations
    }

    struct CreateAllocation: Decodable {
        var owner: String
        var gpus: Int?
        var gpuName: String?
        var minFreeMemoryMib: Int?
        var cpuThreads: Int?
        var node: String?
        var strategy: PlacementStrategy?
    }

    public func add(to router: Router<GantryRequestContext>) {
        router.get("/api/v1/nodes") { _, context in
            _ = try context.requireAdmin()
            return JSONResponse(ListResponse(await inventory.nodes()))
        }
        router.get("/api/v1/gpus") { _, context in
            _ = try context.requireAdmin()
            let gpus = await inventory.nodes().flatMap { node in
                // Each GPU with the node it sits in, for a flat list.
                node.gpus.map {
                    RecordWithField(RecordWithField($0, adding: "node", node.name), adding: "simulated", node.simulated)
                }
            }
            return JSONResponse(ListResponse(gpus))
        }
        let group = router.group("/api/v1/allocations")
        group.post { request, context in
            _ = try context.requireAdmin()
            let body = try await request.decodeJSON(as: CreateAllocation.self)
            let allocation = try await allocations.allocate(
                owner: body.owner,
                request: ResourceRequest(
                    gpus: body.gpus ?? 0, gpuName: body.gpuName, minFreeMemoryMiB: body.minFreeMemoryMib,
                    cpuThreads: body.cpuThreads ?? 0, node: body.node),
                strategy: body.strategy ?? .binpack)
            return JSONResponse(allocation, status: .created)
        }
        group.get { _, context in
            _ = try context.requireAdmin()
            return JSONResponse(ListResponse(try await allocations.ledger.listAllocations()))
        }
        group.delete("{id}") { request, context in
            _ = try context.requireAdmin()
            guard let owner = request.uri.queryParameters["owner"] else {
                throw GantryError.invalid("name the allocation's owner: ?owner=...", param: "owner")
            }
            try await allocations.release(id: try context.parameters.require("id"), owner: String(owner))
            return Response(status: .noContent)
        }
        router.get("/api/v1/resources/summary") { _, context in
            _ = try context.requireAdmin()
            return JSONResponse(ListResponse(try await allocations.summary()))
        }
    }
}

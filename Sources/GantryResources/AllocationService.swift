import Foundation
public import GantryCore

/// Allocates and releases resources: placement on the current inventory, then an atomic write
/// to the ledger, retried on the rare conflict with a concurrent allocation.
public struct AllocationService: Sendable {
    let inventory: ResourceInventory
    let ledger: any AllocationRepository

    public init(inventory: ResourceInventory, ledger: any AllocationRepository) {
        self.inventory = inventory
        self.ledger = ledger
    }

    public func allocate(owner: String, request: ResourceRequest, strategy: PlacementStrategy = .binpack) async throws
        -> Allocation
    {
        guard !owner.isEmpty, owner.count <= 128 else {
            throw GantryError.invalid("owner must be 1-128 characters", param: "owner")
        }
        guard request.gpus >= 0, request.cpuThreads >= 0 else {
            throw GantryError.invalid("gpus and cpu_threads cannot be negative", param: request.gpus < 0 ? "gpus" : "cpu_threads")
        }
        guard request.gpus > 0 || request.cpuThreads > 0 else {
            throw GantryError.invalid("ask for at least one GPU or one CPU thread", param: "gpus")
        }
        let nodes = await inventory.nodes()
        var lastConflict: GantryError?
        for _ in 0..<8 {
            let held = try await ledger.listAllocations()
            let allocatedGPUs = Set(
                held.flatMap { allocation in allocation.gpuUUIDs.map { Placement.key(node: allocation.node, gpu: $0) } })
            let allocatedCPU = held.reduce(into: [String: Int]()) { $0[$1.node, default: 0] += $1.cpuThreads }
            let choice = try Placement.choose(
                request, nodes: nodes, allocatedGPUs: allocatedGPUs, allocatedCPU: allocatedCPU, strategy: strategy)
            let allocation = Allocation(
                id: Identifier.make("alc"), owner: owner, node: choice.node, gpuUUIDs: choice.gpuUUIDs,
                cpuThreads: request.cpuThreads, createdAt: Date())
            let cpuCount = nodes.first { $0.name == choice.node }?.cpuCount ?? 0
            do {
                try await ledger.allocate(allocation, nodeCPUCount: cpuCount)
                return allocation
            } catch let error as GantryError where error.kind == .conflict {
                // Someone else took a chosen GPU between our read and our write: look again.
                lastConflict = error
            }
        }
        throw lastConflict ?? GantryError.conflict("could not allocate after repeated conflicts")
    }

    /// Releases an allocation; only its owner may (admins pass `owner: nil`).
    public func release(id: String, owner: String?) async throws {
        guard let allocation = try await ledger.allocation(id: id) else {
            throw GantryError.notFound("allocation '\(id)' not found (already released?)")
        }
        if let owner, allocation.owner != owner {
            throw GantryError(.forbidden, "allocation '\(id)' belongs to another owner")
        }
        try await ledger.deleteAllocation(id: id)
    }

    /// Releases allocations whose owner is gone (e.g. instances of a previous run).
    @discardableResult
    public func releaseOrphans(ownerExists: (String) async throws -> Bool) async throws -> Int {
        var released = 0
        for allocation in try await ledger.listAllocations() where try await !ownerExists(allocation.owner) {
            try await ledger.deleteAllocation(id: allocation.id)
            released += 1
        }
        return released
    }

    public struct NodeSummary: Codable, Sendable, Equatable {
        public var node: String
        public var simulated: Bool
        public var gpusTotal: Int
        public var gpusFree: Int
        public var cpuThreadsTotal: Int
        public var cpuThreadsFree: Int
    }

    /// What is free, per node.
    public func summary() async throws -> [NodeSummary] {
        let held = try await ledger.listAllocations()
        return await inventory.nodes().map { node in
            let here = held.filter { $0.node == node.name }
            let gpusHeld = Set(here.flatMap(\.gpuUUIDs))
            // On a cluster the pods' requests say what is taken (kube-scheduler places, not Gantry).
            let gpusFree =
                node.gpusRequested.map { max(0, node.gpus.count - $0) } ?? node.gpus.count { !gpusHeld.contains($0.uuid) }
            return NodeSummary(
                node: node.name, simulated: node.simulated, gpusTotal: node.gpus.count,
                gpusFree: gpusFree, cpuThreadsTotal: node.cpuCount,
                cpuThreadsFree: node.cpuCount - here.reduce(0) { $0 + $1.cpuThreads })
        }
    }
}

extension AllocationService: ResourceAllocator {
    public func reserve(owner: String, resources: ReplicaResources) async throws -> Allocation {
        try await allocate(owner: owner, request: ResourceRequest(resources))
    }

    public func releaseAll(owner: String) async throws {
        for allocation in try await ledger.listAllocations() where allocation.owner == owner {
            try await ledger.deleteAllocation(id: allocation.id)
        }
    }

    public func checkSatisfiable(_ resources: ReplicaResources) async throws {
        do {
            _ = try Placement.choose(
                ResourceRequest(resources), nodes: await inventory.nodes(), allocatedGPUs: [], allocatedCPU: [:],
                strategy: .binpack)
        } catch let error as GantryError where error.kind == .conflict {
            throw GantryError.invalid("no node could ever run this: \(error.message)", param: "resources")
        } catch let error as GantryError where error.kind == .notFound {
            throw GantryError.invalid(error.message, param: "resources.node")
        }
    }
}

extension ResourceRequest {
    init(_ resources: ReplicaResources) {
        self.init(
            gpus: resources.gpus, gpuName: resources.gpuName, minFreeMemoryMiB: resources.minFreeMemoryMib,
            cpuThreads: resources.cpuThreads ?? 0, node: resources.node)
    }
}

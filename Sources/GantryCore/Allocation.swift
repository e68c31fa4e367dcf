public import Foundation

/// Resources held by one owner (an engine instance, or whoever asked through the API).
public struct Allocation: Codable, Sendable, Equatable {
    public var id: String
    public var owner: String
    public var node: String
    /// UUIDs of the GPUs held, in the order they were assigned.
    public var gpuUUIDs: [String]
    public var cpuThreads: Int
    public var createdAt: Date

    public init(id: String, owner: String, node: String, gpuUUIDs: [String], cpuThreads: Int, createdAt: Date) {
        self.id = id
        self.owner = owner
        self.node = node
        self.gpuUUIDs = gpuUUIDs
        self.cpuThreads = cpuThreads
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case id, owner, node
        case gpuUUIDs = "gpu_uuids"
        case cpuThreads = "cpu_threads"
        case createdAt = "created_at"
    }
}

/// The allocation ledger. A GPU is held by at most one allocation, and CPU threads never exceed a
/// node's cores: the store enforces both inside one transaction (a unique key on node and GPU,
/// and a per-node lock), so concurrent requests, in one process or many, never share a GPU.
public protocol AllocationRepository: Sendable {
    /// Records the allocation if every GPU is free and the node has `cpuThreads` to spare;
    /// throws `.conflict` when another allocation got there first.
    func allocate(_ allocation: Allocation, nodeCPUCount: Int) async throws
    func allocation(id: String) async throws -> Allocation?
    func listAllocations() async throws -> [Allocation]
    func deleteAllocation(id: String) async throws
}

/// How the orchestrator reserves resources for an instance before starting it.
public protocol ResourceAllocator: Sendable {
    /// Reserves `resources` for `owner` (an instance id); throws `.conflict` with the placement
    /// reason when nothing fits now.
    func reserve(owner: String, resources: ReplicaResources) async throws -> Allocation
    /// Releases everything `owner` holds; holding nothing is fine.
    func releaseAll(owner: String) async throws
    /// Throws `.invalid` with the reason when no node could hold `resources` even with nothing
    /// else running (more GPUs than any node has, no GPU of that name).
    func checkSatisfiable(_ resources: ReplicaResources) async throws
}

/// A Node: what it offers (allocatable CPU, memory, `nvidia.com/gpu`), its labels (GPU Feature
/// Discovery's among them), whether it is Ready and schedulable, and its taints.
public struct Node: KubernetesResource, Equatable {
    public static let plural = "nodes"
    public static let namespaced = false

    public var apiVersion: String? = "v1"
    public var kind: String? = "Node"
    public var metadata: ObjectMeta
    public var spec: NodeSpec?
    public var status: NodeStatus?

    public init(metadata: ObjectMeta, spec: NodeSpec? = nil) {
        self.metadata = metadata
        self.spec = spec
    }
}

public struct NodeSpec: Codable, Sendable, Equatable {
    public var unschedulable: Bool?
    public var taints: [Taint]?

    public init(unschedulable: Bool? = nil, taints: [Taint]? = nil) {
        self.unschedulable = unschedulable
        self.taints = taints
    }
}

public struct Taint: Codable, Sendable, Equatable {
    public var key: String
    public var value: String?
    public var effect: String

    public init(key: String, value: String? = nil, effect: String) {
        self.key = key
        self.value = value
        self.effect = effect
    }
}

public struct NodeStatus: Codable, Sendable, Equatable {
    public struct Address: Codable, Sendable, Equatable {
        public var type: String
        public var address: String
    }
    public var capacity: [String: String]?
    public var allocatable: [String: String]?
    public var conditions: [Condition]?
    public var addresses: [Address]?
}

/// A Pod, as much of it as Gantry writes (its instances) and reads (status, and the GPU requests
/// of every pod on a node). Optional fields left nil are not sent, so an applied manifest holds
/// only the fields Gantry owns.
public struct Pod: KubernetesResource, Equatable {
    public static let plural = "pods"
    public static let namespaced = true

    public var apiVersion: String? = "v1"
    public var kind: String? = "Pod"
    public var metadata: ObjectMeta
    public var spec: PodSpec?
    public var status: PodStatus?

    public init(metadata: ObjectMeta, spec: PodSpec) {
        self.metadata = metadata
        self.spec = spec
    }
}

public struct PodSpec: Codable, Sendable, Equatable {
    public var nodeName: String?
    public var nodeSelector: [String: String]?
    public var initContainers: [Container]?
    public var containers: [Container]
    public var volumes: [Volume]?
    public var restartPolicy: String?
    public var terminationGracePeriodSeconds: Int?
    public var automountServiceAccountToken: Bool?
    public var enableServiceLinks: Bool?
    public var tolerations: [Toleration]?
    public var affinity: Affinity?

    public init(containers: [Container]) {
        self.containers = containers
    }
}

public struct Container: Codable, Sendable, Equatable {
    public var name: String
    public var image: String?
    public var command: [String]?
    public var args: [String]?
    public var env: [EnvVar]?
    public var ports: [ContainerPort]?
    public var resources: ResourceRequirements?
    public var readinessProbe: Probe?
    public var volumeMounts: [VolumeMount]?

    public init(name: String, image: String) {
        self.name = name
        self.image = image
    }
}

public struct EnvVar: Codable, Sendable, Equatable {
    public var name: String
    public var value: String?
    public var valueFrom: EnvVarSource?

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }

    /// A variable the kubelet fills from the pod itself, e.g. `status.podIP`.
    public init(name: String, fieldPath: String) {
        self.name = name
        self.valueFrom = EnvVarSource(fieldRef: .init(fieldPath: fieldPath))
    }
}

public struct EnvVarSource: Codable, Sendable, Equatable {
    public struct FieldSelector: Codable, Sendable, Equatable {
        public var fieldPath: String
    }
    public var fieldRef: FieldSelector?
}

public struct ContainerPort: Codable, Sendable, Equatable {
    public var name: String?
    public var containerPort: Int

    public init(name: String? = nil, containerPort: Int) {
        self.name = name
        self.containerPort = containerPort
    }
}

/// Requests and limits as Kubernetes quantities (`"2"`, `"16Gi"`, `"500m"`).
public struct ResourceRequirements: Codable, Sendable, Equatable {
    public var requests: [String: String]?
    public var limits: [String: String]?

    public init(requests: [String: String]? = nil, limits: [String: String]? = nil) {
        self.requests = requests
        self.limits = limits
    }
}

public struct Probe: Codable, Sendable, Equatable {
    public struct HTTPGet: Codable, Sendable, Equatable {
        public var path: String
        public var port: Int
    }
    public var httpGet: HTTPGet?
    public var initialDelaySeconds: Int?
    public var periodSeconds: Int?
    public var timeoutSeconds: Int?
    public var failureThreshold: Int?

    public init(httpGetPath path: String, port: Int, periodSeconds: Int, failureThreshold: Int) {
        self.httpGet = HTTPGet(path: path, port: port)
        self.periodSeconds = periodSeconds
        self.failureThreshold = failureThreshold
    }
}

public struct Volume: Codable, Sendable, Equatable {
    public struct EmptyDir: Codable, Sendable, Equatable {
        public var sizeLimit: String?
    }
    public struct HostPath: Codable, Sendable, Equatable {
        public var path: String
        public var type: String?
    }
    public var name: String
    public var emptyDir: EmptyDir?
    public var hostPath: HostPath?

    public static func emptyDir(_ name: String, sizeLimit: String? = nil) -> Volume {
        Volume(name: name, emptyDir: EmptyDir(sizeLimit: sizeLimit))
    }

    public static func hostPath(_ name: String, path: String) -> Volume {
        Volume(name: name, hostPath: HostPath(path: path, type: "DirectoryOrCreate"))
    }
}

public struct VolumeMount: Codable, Sendable, Equatable {
    public var name: String
    public var mountPath: String
    public var readOnly: Bool?

    public init(name: String, mountPath: String, readOnly: Bool? = nil) {
        self.name = name
        self.mountPath = mountPath
        self.readOnly = readOnly
    }
}

public struct Toleration: Codable, Sendable, Equatable {
    public var key: String?
    public var `operator`: String?
    public var effect: String?

    public init(key: String, operator: String, effect: String) {
        self.key = key
        self.operator = `operator`
        self.effect = effect
    }
}

public struct PodStatus: Codable, Sendable, Equatable {
    public var phase: String?
    public var reason: String?
    public var message: String?
    public var podIP: String?
    public var conditions: [Condition]?
    public var initContainerStatuses: [ContainerStatus]?
    public var containerStatuses: [ContainerStatus]?

    public init() {}

    public func condition(_ type: String) -> Condition? { conditions?.first { $0.type == type } }
}

public struct ContainerStatus: Codable, Sendable, Equatable {
    public var name: String
    public var ready: Bool?
    public var restartCount: Int?
    public var state: ContainerState?
    public var lastState: ContainerState?
}

public struct ContainerState: Codable, Sendable, Equatable {
    public struct Waiting: Codable, Sendable, Equatable {
        public var reason: String?
        public var message: String?
    }
    public struct Running: Codable, Sendable, Equatable {
        public var startedAt: String?
    }
    public struct Terminated: Codable, Sendable, Equatable {
        public var exitCode: Int
        public var reason: String?
        public var message: String?
    }
    public var waiting: Waiting?
    public var running: Running?
    public var terminated: Terminated?
}

/// Only the required node affinity: a pod may run on a node matching any one term.
public struct Affinity: Codable, Sendable, Equatable {
    public var nodeAffinity: NodeAffinity?

    public init(requiredNodeTerms: [NodeSelectorTerm]) {
        nodeAffinity = NodeAffinity(
            requiredDuringSchedulingIgnoredDuringExecution: NodeSelector(nodeSelectorTerms: requiredNodeTerms))
    }
}

public struct NodeAffinity: Codable, Sendable, Equatable {
    public var requiredDuringSchedulingIgnoredDuringExecution: NodeSelector?
}

public struct NodeSelector: Codable, Sendable, Equatable {
    public var nodeSelectorTerms: [NodeSelectorTerm]
}

/// Every expression of a term must hold.
public struct NodeSelectorTerm: Codable, Sendable, Equatable {
    public var matchExpressions: [NodeSelectorRequirement]?

    public init(matchExpressions: [NodeSelectorRequirement]) {
        self.matchExpressions = matchExpressions
    }
}

public struct NodeSelectorRequirement: Codable, Sendable, Equatable {
    public var key: String
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`.
    public var `operator`: String
    public var values: [String]?

    public init(key: String, operator: String, values: [String]? = nil) {
        self.key = key
        self.operator = `operator`
        self.values = values
    }
}

/// Settings of the Kubernetes runtime (`orchestrator.kubernetes.*`).
public struct KubernetesRuntimeConfiguration: Sendable {
    /// Where engine pods are made.
    public var namespace: String
    /// Tells Gantry installations sharing a namespace apart: each adopts and cleans up only its own.
    public var installation: String
    /// An image per engine, replacing the engine project's published one.
    public var images: [String: String]
    /// The port every engine listens on inside its pod.
    public var enginePort: Int
    public var terminationGracePeriodSeconds: Int
    public var readinessPeriodSeconds: Int
    /// A memory request per instance (`"8Gi"`); nil asks none.
    public var memoryPerInstance: String?
    /// Where the model files are in the engine container.
    public var modelMountPath: String
    /// A node-local directory holding model files across pods (a hostPath volume); nil uses an
    /// emptyDir per pod.
    public var nodeModelCache: String?
    /// The image whose `gantry fetch-model` puts the model files on the node (init container).
    public var gantryImage: String

    public init(
        namespace: String, installation: String = "gantry", images: [String: String] = [:], enginePort: Int = 8080,
        terminationGracePeriodSeconds: Int = 30, readinessPeriodSeconds: Int = 2, memoryPerInstance: String? = nil,
        modelMountPath: String = "/models", nodeModelCache: String? = nil, gantryImage: String = "gantry:latest"
    ) {
        self.gantryImage = gantryImage
        self.namespace = namespace
        self.installation = installation
        self.images = images
        self.enginePort = enginePort
        self.terminationGracePeriodSeconds = terminationGracePeriodSeconds
        self.readinessPeriodSeconds = readinessPeriodSeconds
        self.memoryPerInstance = memoryPerInstance
        self.modelMountPath = modelMountPath
        self.nodeModelCache = nodeModelCache
    }
}

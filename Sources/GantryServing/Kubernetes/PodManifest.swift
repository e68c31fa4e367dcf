import Foundation
public import GantryCore
public import GantryKubernetes

/// The Pod of one engine instance: Gantry's labels, the engine's image and arguments, the port,
/// CPU, memory and `nvidia.com/gpu` requests, a node selector on the GPU product, a readiness
/// probe on the engine's health path, and a grace period. Pure, so every field is tested.
public enum PodManifest {
    public static let managedByLabel = "app.kubernetes.io/managed-by"
    public static let installationLabel = "gantry.dev/installation"
    public static let deploymentLabel = "gantry.dev/deployment"
    public static let revisionLabel = "gantry.dev/revision"
    public static let instanceLabel = "gantry.dev/instance"
    /// The container that runs the engine (logs and restarts are read from it).
    public static let engineContainer = "engine"

    /// Every pod of one Gantry installation carries these; pods of other managers never do.
    public static func selector(installation: String) -> String {
        "\(managedByLabel)=gantry,\(installationLabel)=\(installation)"
    }

    /// The init container that fetches the model files.
    public static let fetchContainer = "fetch-model"

    /// Where a version's files are in the pod.
    public static func modelDirectory(_ spec: EngineLaunchSpec, configuration: KubernetesRuntimeConfiguration) -> String {
        configuration.modelMountPath + "/" + (spec.modelVersion?.id ?? "model")
    }

    /// The label GPU Feature Discovery puts the GPU product in.
    public static let gpuProductLabelKey = "nvidia.com/gpu.product"

    /// `grant` opens the version's files for the init container; nil makes none (the files are
    /// expected on the node already). `gpuProducts`: the cluster's GPU products whose names
    /// contain the wanted `gpuName` (`matchingProducts`).
    public static func make(
        _ spec: EngineLaunchSpec, adapter: any EngineAdapter, image: String, podName: String,
        configuration: KubernetesRuntimeConfiguration, grant: ModelFetchGrant? = nil, gpuProducts: [String] = []
    ) -> Pod {
        var spec = spec
        let directory = modelDirectory(spec, configuration: configuration)
        spec.modelPath = spec.modelEntryFile.map { directory + "/" + $0 } ?? directory
        let port = configuration.enginePort
        // The engine listens on the pod's own address, which the kubelet puts in POD_IP and expands
        // in the arguments: every pod can use the same port.
        let managed = adapter.command(for: spec, host: "$(POD_IP)", port: port).arguments
        let programWords = min(adapter.programArgumentCount, managed.count)
        var engine = Container(name: engineContainer, image: image)
        engine.command = adapter.containerCommand ?? Array(managed.prefix(programWords))
        engine.args = Array(managed.dropFirst(programWords))
        engine.env = [EnvVar(name: "POD_IP", fieldPath: "status.podIP")]
        engine.ports = [ContainerPort(name: "http", containerPort: port)]
        var requests = ["cpu": String(max(1, spec.cpuThreads))]
        var limits: [String: String] = [:]
        if let memory = configuration.memoryPerInstance { requests["memory"] = memory }
        if spec.gpuCount > 0 {
            // Extended resources are requested through limits (the request follows them).
            limits["nvidia.com/gpu"] = String(spec.gpuCount)
        }
        engine.resources = ResourceRequirements(requests: requests, limits: limits.isEmpty ? nil : limits)
        engine.readinessProbe = Probe(
            httpGetPath: adapter.healthPath, port: port, periodSeconds: configuration.readinessPeriodSeconds,
            failureThreshold: 3)
        engine.volumeMounts = [VolumeMount(name: "models", mountPath: configuration.modelMountPath)]

        var podSpec = PodSpec(containers: [engine])
        if let grant {
            var fetch = Container(name: fetchContainer, image: configuration.gantryImage)
            fetch.command = ["gantry", "fetch-model", "--from", grant.url, "--into", directory]
            // Short-lived and good for this version only; kept out of the command line.
            fetch.env = [EnvVar(name: "GANTRY_FETCH_TOKEN", value: grant.token)]
            fetch.volumeMounts = [VolumeMount(name: "models", mountPath: configuration.modelMountPath)]
            podSpec.initContainers = [fetch]
        }
        podSpec.restartPolicy = "Always"
        podSpec.terminationGracePeriodSeconds = configuration.terminationGracePeriodSeconds
        // Engines need no access to the Kubernetes API, and no service links in their environment.
        podSpec.automountServiceAccountToken = false
        podSpec.enableServiceLinks = false
        podSpec.volumes = [
            configuration.nodeModelCache.map { Volume.hostPath("models", path: $0) } ?? Volume.emptyDir("models")
        ]
        if spec.gpuCount > 0 {
            // GPU nodes are commonly tainted so that only GPU work lands there.
            podSpec.tolerations = [Toleration(key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule")]
            if let product = spec.gpuName, !product.isEmpty {
                // `gpu_name` matches a part of the product name, which a selector cannot say: the
                // pod may go to any product the cluster has that contains it. With none, the
                // exact label stays, and the scheduler reports that no node matches.
                let values = gpuProducts.isEmpty ? [gpuProductLabel(product)] : gpuProducts.sorted()
                podSpec.affinity = Affinity(requiredNodeTerms: [
                    NodeSelectorTerm(matchExpressions: [
                        NodeSelectorRequirement(key: gpuProductLabelKey, operator: "In", values: values)
                    ])
                ])
            }
        }
        if let node = spec.node, !node.isEmpty {
            // A service pinned to a node: the well-known label every kubelet sets to its node's name.
            podSpec.nodeSelector = ["kubernetes.io/hostname": node]
        }
        let labels = [
            managedByLabel: "gantry",
            installationLabel: configuration.installation,
            deploymentLabel: labelValue(spec.deploymentName),
            revisionLabel: labelValue(spec.revisionID),
            instanceLabel: labelValue(spec.instanceID),
        ]
        let metadata = ObjectMeta(
            name: podName, namespace: configuration.namespace, labels: labels,
            annotations: ["gantry.dev/deployment-name": spec.deploymentName])
        return Pod(metadata: metadata, spec: podSpec)
    }

    /// The products among `labels` (nodes' `nvidia.com/gpu.product` values) whose names contain
    /// `wanted`, ignoring case and spaces written as dashes, as `gpu_name` matches on a local node.
    public static func matchingProducts(_ wanted: String, among labels: some Sequence<String>) -> [String] {
        let needle = wanted.lowercased().replacingOccurrences(of: " ", with: "-")
        return Set(labels.filter { $0.lowercased().contains(needle) }).sorted()
    }

    /// GPU Feature Discovery writes the product with spaces as dashes (`NVIDIA-H100-80GB-HBM3`);
    /// an admin may have typed either.
    static func gpuProductLabel(_ product: String) -> String {
        labelValue(product.replacingOccurrences(of: " ", with: "-"))
    }

    /// A pod name per start: a restarted instance gets a new pod while the old one terminates.
    public static func podName(instanceID: String) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        let suffix = String((0..<5).map { _ in alphabet.randomElement()! })
        let base = "gantry-" + instanceID.lowercased().map { $0.isLetter || $0.isNumber ? String($0) : "-" }.joined()
        return String(base.prefix(56)) + "-" + suffix
    }

    /// A label value: at most 63 characters of letters, digits, `-`, `_` and `.`, beginning and
    /// ending with a letter or digit.
    static func labelValue(_ text: String) -> String {
        var value = String(
            text.map { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) ? $0 : "-" }.prefix(63))
        while let last = value.last, !(last.isLetter || last.isNumber) { value.removeLast() }
        while let first = value.first, !(first.isLetter || first.isNumber) { value.removeFirst() }
        return value
    }
}

public import GantryCore
public import GantryKubernetes

/// What a pod's status says of its instance, in the runtime protocol's terms. Pure: the
/// scheduler's and the kubelet's words go through verbatim.
public enum PodObservation {
    /// Waiting reasons that no waiting cures: the image or the container's configuration is wrong.
    static let fatalWaitingReasons: Set<String> = [
        "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError",
        "CreateContainerError",
    ]

    /// `nodeExists` is nil when the nodes are not known.
    public static func observe(_ pod: Pod, port: Int, nodeExists: Bool?) -> EngineObservation {
        let node = pod.spec?.nodeName
        let status = pod.status
        let engine = status?.containerStatuses?.first { $0.name == PodManifest.engineContainer }
        let endpoint = status?.podIP.flatMap { $0.isEmpty ? nil : "http://\($0.contains(":") ? "[\($0)]" : $0):\(port)" }
        func result(_ health: EngineHealth) -> EngineObservation {
            EngineObservation(health: health, node: node, endpoint: endpoint, restarts: engine?.restartCount ?? 0)
        }
        let name = "\(pod.metadata.namespace ?? "")/\(pod.metadata.name ?? "")"
        if pod.metadata.deletionTimestamp != nil { return result(.exited("its pod \(name) is being deleted")) }
        if let node, nodeExists == false { return result(.exited("its node \(node) is gone")) }
        switch status?.phase {
        case "Failed":
            let why = [status?.reason, status?.message].compactMap { $0 }.joined(separator: ": ")
            return result(.exited("its pod \(name) failed" + (why.isEmpty ? "" : ": \(why)")))
        case "Succeeded":
            return result(.exited("its engine exited"))
        default:
            break
        }
        if let scheduled = status?.condition("PodScheduled"), scheduled.status == "False" {
            return result(.unschedulable(scheduled.message ?? scheduled.reason ?? "no node fits"))
        }
        guard node != nil else { return result(.starting) }
        for container in (status?.initContainerStatuses ?? []) + (status?.containerStatuses ?? []) {
            if let waiting = container.state?.waiting, let reason = waiting.reason, fatalWaitingReasons.contains(reason) {
                return result(.exited("\(reason): \(waiting.message ?? "container \(container.name) cannot start")"))
            }
        }
        // Init containers fetch the model; one that keeps failing is a failed start.
        for container in status?.initContainerStatuses ?? [] where container.state?.terminated?.exitCode != 0 {
            if container.state?.waiting?.reason == "CrashLoopBackOff", let last = container.lastState?.terminated {
                return result(
                    .exited(
                        "fetching the model files failed (exit code \(last.exitCode)"
                            + (last.message.map { ": \($0)" } ?? "") + ")"))
            }
            return result(.fetching)
        }
        guard let engine else { return result(.starting) }
        if engine.ready == true { return result(.ready) }
        if let terminated = engine.state?.terminated ?? (engine.state?.waiting != nil ? engine.lastState?.terminated : nil) {
            let reason = terminated.reason.map { " (\($0))" } ?? ""
            return result(.unhealthy("the engine exited with code \(terminated.exitCode)\(reason); the kubelet restarts it"))
        }
        return result(.starting)
    }
}

/// A core/v1 Event: what the scheduler and the kubelet say about a pod (`FailedScheduling`,
/// `Scheduled`, `BackOff`, ...).
public struct Event: KubernetesResource, Equatable {
    public static let plural = "events"
    public static let namespaced = true

    public struct InvolvedObject: Codable, Sendable, Equatable {
        public var kind: String?
        public var name: String?
        public var uid: String?
    }

    public var metadata: ObjectMeta
    public var involvedObject: InvolvedObject
    public var reason: String?
    public var message: String?
    public var type: String?
    public var count: Int?
}

/// A Namespace: Gantry only checks that its own exists (and tests make their own).
public struct Namespace: KubernetesResource, Equatable {
    public static let plural = "namespaces"
    public static let namespaced = false

    public var apiVersion: String? = "v1"
    public var kind: String? = "Namespace"
    public var metadata: ObjectMeta

    public init(name: String) {
        self.metadata = ObjectMeta(name: name)
    }
}

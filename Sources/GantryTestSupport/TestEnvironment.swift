import Foundation

/// The real services tests use are started by `scripts/test.sh` and found through these
/// variables. A missing one is an error, not a skip: CI must run every test.
public enum TestEnvironment {
    /// Superuser URL of the private PostgreSQL cluster, e.g. `postgres://postgres@127.0.0.1:5433/postgres`.
    public static let postgresURL = "GANTRY_TEST_POSTGRES_URL"
    /// Path of a `llama-server` binary.
    public static let llamaServer = "GANTRY_TEST_LLAMA_SERVER"
    /// Path of the demo GGUF model.
    public static let model = "GANTRY_TEST_MODEL"
    /// Base URL of the S3-compatible server (moto), e.g. `http://127.0.0.1:5000`.
    public static let s3Endpoint = "GANTRY_TEST_S3_ENDPOINT"
    /// An access key of that server, which checks the signature of every request made with it.
    public static let s3AccessKeyID = "GANTRY_TEST_S3_ACCESS_KEY_ID"
    /// The secret of ``s3AccessKeyID``.
    public static let s3SecretAccessKey = "GANTRY_TEST_S3_SECRET_ACCESS_KEY"
    /// The interpreter of the test peers' environment (scripts/peers/test.txt), with the pinned
    /// `openai` client; never the system's python3.
    public static let python = "GANTRY_TEST_PYTHON"

    /// Kubeconfig files of the test control plane (scripts/lib.sh start_kubernetes_control_plane):
    /// an administrator, Gantry's own user (the RBAC grants of its ClusterRole), and a user with
    /// no grants at all.
    public static let kubeconfigAdmin = "GANTRY_TEST_KUBECONFIG"
    public static let kubeconfigGantry = "GANTRY_TEST_KUBECONFIG_GANTRY"
    public static let kubeconfigLimited = "GANTRY_TEST_KUBECONFIG_LIMITED"
    /// The test control plane's etcd (plain HTTP on 127.0.0.1), for compacting its history.
    public static let etcdURL = "GANTRY_TEST_ETCD_URL"

    public struct Missing: Error, CustomStringConvertible {
        public var name: String
        public var description: String {
            "\(name) is not set: run the tests with scripts/test.sh, which starts PostgreSQL and installs the engine and model"
        }
    }

    public static func require(_ name: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { throw Missing(name: name) }
        return value
    }
}

/// A directory removed when the value is released.
public final class TemporaryDirectory: Sendable {
    public let path: String

    public init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("gantry-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

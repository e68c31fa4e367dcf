public import Foundation
import Yams

/// Where the API server is and how to prove who Gantry is: read from a kubeconfig file, or from
/// the service account Kubernetes mounts into a pod.
public struct KubeConfig: Sendable, Equatable {
    public enum Credential: Sendable, Equatable {
        case none
        /// A bearer token, e.g. a service account's.
        case token(String)
        /// A file read again for every request, so a projected, rotated token keeps working.
        case tokenFile(String)
        /// A client certificate and key, both PEM.
        case clientCertificate(certificatePEM: [UInt8], keyPEM: [UInt8])
    }

    /// `https://host:port`, no trailing slash.
    public var server: String
    /// PEM of the certificate authorities trusted for the server; nil trusts the system's roots.
    public var certificateAuthorityPEM: [UInt8]?
    /// `insecure-skip-tls-verify` in a kubeconfig: the server's certificate is not checked.
    public var skipsTLSVerification: Bool
    public var credential: Credential
    /// The namespace the kubeconfig's context names, or the pod's own namespace in a cluster.
    public var namespace: String?

    public init(
        server: String, certificateAuthorityPEM: [UInt8]? = nil, skipsTLSVerification: Bool = false,
        credential: Credential, namespace: String? = nil
    ) {
        self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.skipsTLSVerification = skipsTLSVerification
        self.credential = credential
        self.namespace = namespace
    }

    /// The service account mounted into every pod that has one: token, CA and namespace under
    /// `/var/run/secrets/kubernetes.io/serviceaccount`, the server from the environment.
    public static func inCluster(
        directory: String = "/var/run/secrets/kubernetes.io/serviceaccount",
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> KubeConfig {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], let port = environment["KUBERNETES_SERVICE_PORT"] else {
            throw KubernetesError.configuration(
                "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set): pass --kubeconfig")
        }
        let tokenPath = directory + "/token"
        guard FileManager.default.isReadableFile(atPath: tokenPath) else {
            throw KubernetesError.configuration("no service account token at \(tokenPath): pass --kubeconfig")
        }
        let namespace = try? String(contentsOfFile: directory + "/namespace", encoding: .utf8)
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return KubeConfig(
            server: "https://\(hostPart):\(port)", certificateAuthorityPEM: try read(directory + "/ca.crt"),
            credential: .tokenFile(tokenPath), namespace: namespace?.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The current context (or `context`) of a kubeconfig file. Relative file paths in it are
    /// relative to the file, as kubectl reads them.
    public static func load(path: String, context wanted: String? = nil) throws -> KubeConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw KubernetesError.configuration("cannot read the kubeconfig \(path): \(error.localizedDescription)")
        }
        let file: KubeConfigFile
        do {
            file = try YAMLDecoder().decode(KubeConfigFile.self, from: text)
        } catch {
            throw KubernetesError.configuration("\(path) is not a kubeconfig: \(error)")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        func resolve(_ file: String) -> String {
            file.hasPrefix("/") ? file : base.appendingPathComponent(file).path
        }
        guard let contextName = wanted ?? file.currentContext, !contextName.isEmpty else {
            throw KubernetesError.configuration("\(path) names no current-context")
        }
        guard let context = file.contexts?.first(where: { $0.name == contextName })?.context else {
            throw KubernetesError.configuration("\(path) has no context '\(contextName)'")
        }
        guard let cluster = file.clusters?.first(where: { $0.name == context.cluster })?.cluster else {
            throw KubernetesError.configuration("\(path) has no cluster '\(context.cluster)'")
        }
        let user = context.user.flatMap { name in file.users?.first { $0.name == name }?.user }
        var ca: [UInt8]?
        if let data = cluster.certificateAuthorityData {
            ca = try decodeBase64(data, what: "certificate-authority-data", in: path)
        } else if let file = cluster.certificateAuthority {
            ca = try read(resolve(file))
        }
        let credential: Credential
        if let token = user?.token {
            credential = .token(token)
        } else if let file = user?.tokenFile {
            credential = .tokenFile(resolve(file))
        } else if let user, user.clientCertificate != nil || user.clientCertificateData != nil {
            let certificate =
                try user.clientCertificateData.map { try decodeBase64($0, what: "client-certificate-data", in: path) }
                ?? read(resolve(user.clientCertificate ?? ""))
            let key =
                try user.clientKeyData.map { try decodeBase64($0, what: "client-key-data", in: path) }
                ?? read(resolve(user.clientKey ?? ""))
            credential = .clientCertificate(certificatePEM: certificate, keyPEM: key)
        } else if user?.exec != nil || user?.authProvider != nil {
            throw KubernetesError.configuration(
                "\(path): user '\(context.user ?? "")' authenticates with an exec or auth-provider plugin, which Gantry does not run; use a token or a client certificate"
            )
        } else {
            credential = .none
        }
        return KubeConfig(
            server: cluster.server, certificateAuthorityPEM: ca, skipsTLSVerification: cluster.insecureSkipTLSVerify ?? false,
            credential: credential, namespace: context.namespace)
    }

    static func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw KubernetesError.configuration("cannot read \(path)")
        }
        return [UInt8](data)
    }

    static func decodeBase64(_ text: String, what: String, in path: String) throws -> [UInt8] {
        guard let data = Data(base64Encoded: text, options: .ignoreUnknownCharacters) else {
            throw KubernetesError.configuration("\(path): \(what) is not base64")
        }
        return [UInt8](data)
    }
}

/// The kubeconfig file's shape, as much of it as Gantry reads.
struct KubeConfigFile: Decodable {
    struct NamedCluster: Decodable {
        var name: String
        var cluster: Cluster
    }
    struct Cluster: Decodable {
        var server: String
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?

        enum CodingKeys: String, CodingKey {
            case server
            case certificateAuthority = "certificate-authority"
            case certificateAuthorityData = "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
        }
    }
    struct NamedUser: Decodable {
        var name: String
        var user: User?
    }
    struct User: Decodable {
        var token: String?
        var tokenFile: String?
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var exec: JSONAny?
        var authProvider: JSONAny?

        enum CodingKeys: String, CodingKey {
            case token, tokenFile, exec
            case clientCertificate = "client-certificate"
            case clientCertificateData = "client-certificate-data"
            case clientKey = "client-key"
            case clientKeyData = "client-key-data"
            case authProvider = "auth-provider"
        }
    }
    struct NamedContext: Decodable {
        var name: String
        var context: Context
    }
    struct Context: Decodable {
        var cluster: String
        var user: String?
        var namespace: String?
    }

    var clusters: [NamedCluster]?
    var users: [NamedUser]?
    var contexts: [NamedContext]?
    var currentContext: String?

    enum CodingKeys: String, CodingKey {
        case clusters, users, contexts
        case currentContext = "current-context"
    }
}

/// Any YAML value: only whether it is present matters.
struct JSONAny: Decodable {
    init(from decoder: any Decoder) throws {}
}

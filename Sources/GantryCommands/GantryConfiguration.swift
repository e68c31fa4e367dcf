public import Configuration
public import Foundation
public import GantryAuth
import GantryCore
public import GantryGateway
public import GantryOrchestrator
public import GantryServing
public import GantryStore
public import Logging
import NIOCore

/// The whole typed configuration, read once at start from (highest first) command-line flags,
/// `GANTRY_*` environment variables, a JSON config file, and built-in defaults.
public struct GantryConfiguration: Sendable {
    public struct HTTP: Sendable {
        public var host: String
        public var port: Int
        /// Head, body and idle deadlines on every client connection.
        public var clientTimeouts: ClientTimeouts
    }

    public struct Engine: Sendable {
        public var llamaServer: String
        public var threads: Int
        public var startupTimeout: Duration
        public var vllm: String
        public var sglangPython: String
        public var tgi: String
        /// The custom engine's command template; nil turns that engine off.
        public var customCommand: String?
        public var logMaxBytes: Int
    }

    /// Which part of the platform this process runs.
    public enum Role: String, Sendable {
        /// Everything in one process (the default).
        case all
        /// Everything: the API, the orchestrator and engines, and `/v1` too; gateways put it behind them.
        case control
        /// Only the data plane: serves `/v1` itself, proxies everything else to the control role,
        /// verifies keys by introspection and follows the route table from there.
        case gateway
    }

    public struct Gateway: Sendable {
        public var role: Role
        /// The control role's base URL (gateway role).
        public var controlURL: String?
        public var maxRequestBytes: Int
        public var upstreamTimeout: Duration
        public var queueTimeout: Duration
        /// How long a gateway serves a key it checked once no control replica answers.
        public var offlineKeyGrace: Duration
        public var maxQueuedRequests: Int
        /// Which of the relay's own HTTP/1.1 pieces serve `/v1` (`gateway.relay`).
        public var relay: RelayMode
        /// What a gateway does with limited requests when no ledger answers.
        public var sharedLimitsFallback: SharedLimitsFallback
        /// Limits and quotas are shared through the leader's ledger with these roles; a process
        /// with `all` serves alone and keeps them itself.
        public var sharesLimits: Bool { role != .all }
    }

    public var http: HTTP
    public var dataDirectory: String
    public var cacheDirectory: String
    public var database: DatabaseLocation
    public var engine: Engine
    public var gateway: Gateway
    public var reconcileInterval: Duration
    /// The leader lease of the control replicas sharing the store.
    public var leadership: LeaderElection.Settings
    public var logLevel: Logger.Level
    public var auth: Auth
    public var resources: Resources
    public var runtime: RuntimeKind
    public var kubernetes: Kubernetes
    public var blobs: Blobs

    /// The object store for model files, the upload limit and the node's artifact cache.
    public struct Blobs: Sendable {
        public enum Backend: Sendable {
            case local(directory: String)
            case s3(S3Settings)
        }

        public var backend: Backend
        public var maxFileBytes: Int64
        public var artifactCacheDirectory: String
        public var artifactCacheMaxBytes: Int64
    }

    /// S3 settings as configured, credentials already resolved from configuration or `AWS_*`.
    public struct S3Settings: Sendable {
        public var endpoint: String?
        public var region: String
        public var bucket: String
        public var prefix: String
        public var pathStyle: Bool
        public var accessKeyID: String
        /// Never logged or printed.
        public var secretAccessKey: String
        public var sessionToken: String?
        public var partSizeBytes: Int
        public var partsInFlight: Int
    }

    public enum RuntimeKind: String, Sendable {
        case local
        case kubernetes
    }

    /// Settings of the Kubernetes runtime; read (and so checked) whichever runtime is chosen.
    public struct Kubernetes: Sendable {
        /// nil: the pod's service account.
        public var kubeconfig: String?
        /// nil: the kubeconfig context's, else the pod's own, else `default`.
        public var namespace: String?
        public var installation: String
        public var images: [String: String]
        public var readinessPeriodSeconds: Int
        /// nil: `auth.publicURL`.
        public var registryURL: String?
        public var gantryImage: String
    }

    public struct Resources: Sendable {
        /// `auto`, `nvidia-smi`, `none` or `fixture:PATH`.
        public var gpuSource: String
        public var pollInterval: Duration
    }

    public struct Auth: Sendable {
        public var publicURL: String
        /// nil when OIDC login is off.
        public var oidc: OIDCSettings?
        public var sessionLifetime: TimeInterval
        public var introspectionSecret: String?
        /// The bearer token `/metrics` accepts besides admin credentials.
        public var metricsToken: String?
        public var maxFailedAttemptsPerMinute: Int
    }

    /// The client deadlines set, the rest at `ClientTimeouts`' defaults.
    private static func clientTimeouts(_ values: SettingReader) throws -> ClientTimeouts {
        let defaults = ClientTimeouts()
        func seconds(_ setting: GantrySetting, in range: ClosedRange<Int>) throws -> TimeAmount? {
            try values.int(setting, in: range).map { .seconds(Int64($0)) }
        }
        return ClientTimeouts(
            head: try seconds(.headTimeout, in: 1...3600) ?? defaults.head,
            body: try seconds(.bodyTimeout, in: 1...3600) ?? defaults.body,
            idle: try seconds(.idleTimeout, in: 1...86_400) ?? defaults.idle)
    }

    /// Reads and validates every key; the first invalid one is reported by name.
    public init(reader: ConfigReader, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let values = SettingReader(reader: reader)
        let home = environment["HOME"] ?? NSHomeDirectory()
        http = HTTP(
            host: try values.string(.host) ?? "127.0.0.1",
            port: try values.int(.port, in: 0...65535) ?? 8080,
            clientTimeouts: try Self.clientTimeouts(values))
        dataDirectory = Self.expandTilde(try values.string(.dataDir) ?? "~/.gantry", home: home)
        let defaultCache = environment["XDG_CACHE_HOME"].map { $0 + "/gantry" } ?? home + "/.cache/gantry"
        cacheDirectory = Self.expandTilde(try values.string(.cacheDir) ?? defaultCache, home: home)
        if let url = try values.string(.databaseURL) {
            do {
                database = try DatabaseLocation(url: url)
            } catch let error as GantryError {
                throw ConfigurationError(setting: .databaseURL, problem: error.message)
            }
        } else {
            database = .sqlite(path: dataDirectory + "/gantry.sqlite")
        }
        let defaultThreads = min(8, max(1, ProcessInfo.processInfo.activeProcessorCount / 2))
        engine = Engine(
            llamaServer: Self.expandTilde(
                try values.string(.llamaServer)
                    ?? LlamaCppInstaller(cacheDirectory: cacheDirectory, progress: { _ in }).binaryPath, home: home),
            threads: try values.int(.engineThreads, in: 1...256) ?? defaultThreads,
            startupTimeout: .seconds(try values.int(.engineStartupTimeout, in: 1...86_400) ?? 300),
            vllm: try values.string(.vllmProgram) ?? "vllm", sglangPython: try values.string(.sglangPython) ?? "python3",
            tgi: try values.string(.tgiProgram) ?? "text-generation-launcher",
            customCommand: try values.string(.customEngineCommand).flatMap { $0.isEmpty ? nil : $0 },
            logMaxBytes: try values.int(.engineLogMaxBytes, in: 4096...(1 << 40)) ?? (10 << 20))
        let roleText = try values.string(.role) ?? "all"
        guard let role = Role(rawValue: roleText) else {
            throw ConfigurationError(setting: .role, problem: "'\(roleText)' is not one of all, control, gateway")
        }
        let controlURL = try values.string(.controlURL).flatMap { $0.isEmpty ? nil : $0 }
        if role == .gateway, controlURL == nil {
            throw ConfigurationError(setting: .controlURL, problem: "is required with --role gateway")
        }
        if let controlURL {
            do { _ = try ControlEndpoints(controlURL) } catch let error as GantryError {
                throw ConfigurationError(setting: .controlURL, problem: error.message)
            }
        }
        gateway = Gateway(
            role: role, controlURL: controlURL,
            maxRequestBytes: try values.int(.maxRequestBytes, in: 1024...(1 << 30)) ?? (4 << 20),
            upstreamTimeout: .seconds(try values.int(.upstreamTimeout, in: 1...86_400) ?? 600),
            queueTimeout: .seconds(try values.int(.queueTimeout, in: 1...86_400) ?? 120),
            offlineKeyGrace: .seconds(try values.int(.offlineKeyGrace, in: 0...86_400) ?? 60),
            maxQueuedRequests: try values.int(.maxQueuedRequests, in: 0...1_000_000) ?? 100,
            relay: try Self.readRelay(values), sharedLimitsFallback: try Self.readSharedLimitsFallback(values))
        reconcileInterval = .seconds(try values.int(.reconcileInterval, in: 1...3600) ?? 5)
        let lease = Duration.seconds(try values.int(.leaderLease, in: 2...60) ?? 3)
        // SQLite serves one process: nothing to elect.
        let sole = if case .sqlite = database { true } else { false }
        leadership = LeaderElection.Settings(duration: lease, renewInterval: lease / 3, sole: sole)
        let level = try values.string(.logLevel) ?? "info"
        guard let parsedLevel = Logger.Level(rawValue: level) else {
            throw ConfigurationError(setting: .logLevel, problem: "'\(level)' is not a log level")
        }
        logLevel = parsedLevel
        auth = try Self.readAuth(values, http: http)
        if role == .gateway, auth.introspectionSecret == nil {
            throw ConfigurationError(
                setting: .introspectionSecret, problem: "is required with --role gateway (the same as the control role's)")
        }
        let gpuSource = try values.string(.gpuSource) ?? "auto"
        guard
            ["auto", "nvml", "nvidia-smi", "none"].contains(gpuSource) || (gpuSource.hasPrefix("fixture:") && gpuSource.count > 8)
        else {
            throw ConfigurationError(
                setting: .gpuSource, problem: "'\(gpuSource)' is not auto, nvml, nvidia-smi, none or fixture:PATH")
        }
        resources = Resources(gpuSource: gpuSource, pollInterval: .seconds(try values.int(.resourcePoll, in: 1...3600) ?? 10))
        blobs = try Self.readBlobs(values, dataDirectory: dataDirectory, home: home, environment: environment)
        let runtimeName = try values.string(.runtime) ?? "local"
        guard let runtime = RuntimeKind(rawValue: runtimeName) else {
            throw ConfigurationError(setting: .runtime, problem: "'\(runtimeName)' is not local or kubernetes")
        }
        self.runtime = runtime
        kubernetes = try Self.readKubernetes(values, home: home)
    }

    static func readKubernetes(_ values: SettingReader, home: String) throws -> Kubernetes {
        let installation = try values.string(.kubeInstallation) ?? "gantry"
        let labelCharacters = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_."))
        guard (1...63).contains(installation.count), installation.unicodeScalars.allSatisfy(labelCharacters.contains),
            installation.first?.isLetter == true || installation.first?.isNumber == true,
            installation.last?.isLetter == true || installation.last?.isNumber == true
        else {
            throw ConfigurationError(
                setting: .kubeInstallation, problem: "'\(installation)' is not a Kubernetes label value (1-63 of a-z, 0-9, -_.)")
        }
        var images: [String: String] = [:]
        for pair in (try values.string(.kubeImages) ?? "").split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw ConfigurationError(setting: .kubeImages, problem: "'\(pair)' is not engine=image")
            }
            images[parts[0]] = parts[1]
        }
        return Kubernetes(
            kubeconfig: try values.string(.kubeconfig).map { expandTilde($0, home: home) },
            namespace: try values.string(.kubeNamespace), installation: installation, images: images,
            readinessPeriodSeconds: try values.int(.kubeReadinessPeriod, in: 1...300) ?? 5,
            registryURL: try values.string(.kubeRegistryURL), gantryImage: try values.string(.kubeGantryImage) ?? "gantry:latest")
    }

    static func readBlobs(_ values: SettingReader, dataDirectory: String, home: String, environment: [String: String]) throws
        -> Blobs
    {
        // Every key is read (and so checked) whichever store is chosen, so a typo in an unused
        // one is still reported.
        let store = try values.string(.objectStore) ?? "local"
        let directory = expandTilde(try values.string(.blobsDir) ?? dataDirectory + "/blobs", home: home)
        let s3 = try readS3(values, environment: environment)
        let backend: Blobs.Backend
        switch store {
        case "local":
            backend = .local(directory: directory)
        case "s3":
            guard let bucket = s3.bucket else {
                throw ConfigurationError(setting: .s3Bucket, problem: "required when blobs.store is s3")
            }
            guard let accessKeyID = s3.accessKeyID else {
                throw ConfigurationError(
                    setting: .s3AccessKeyID, problem: "required (or AWS_ACCESS_KEY_ID) when blobs.store is s3")
            }
            guard let secret = s3.secretAccessKey else {
                throw ConfigurationError(
                    setting: .s3SecretAccessKey, problem: "required (or AWS_SECRET_ACCESS_KEY) when blobs.store is s3")
            }
            backend = .s3(
                S3Settings(
                    endpoint: s3.endpoint, region: s3.region, bucket: bucket, prefix: s3.prefix,
                    pathStyle: s3.pathStyle ?? (s3.endpoint != nil), accessKeyID: accessKeyID, secretAccessKey: secret,
                    sessionToken: s3.sessionToken, partSizeBytes: s3.partSizeBytes, partsInFlight: s3.partsInFlight))
        case let other:
            throw ConfigurationError(setting: .objectStore, problem: "'\(other)' is not local or s3")
        }
        let maxFileBytes = try values.int(.maxFileBytes, in: 1...Int.max) ?? (100 << 30)
        return Blobs(
            backend: backend, maxFileBytes: Int64(maxFileBytes),
            artifactCacheDirectory: expandTilde(
                try values.string(.artifactCacheDir) ?? dataDirectory + "/artifacts", home: home),
            artifactCacheMaxBytes: Int64(try values.int(.artifactCacheMaxBytes, in: 1...Int.max) ?? (100 << 30)))
    }

    /// The S3 keys as given, with the `AWS_*` variables filling what configuration leaves out.
    static func readS3(_ values: SettingReader, environment: [String: String]) throws -> (
        endpoint: String?, region: String, bucket: String?, prefix: String, pathStyle: Bool?, accessKeyID: String?,
        secretAccessKey: String?, sessionToken: String?, partSizeBytes: Int, partsInFlight: Int
    ) {
        func nonEmpty(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let endpoint = try values.string(.s3Endpoint) ?? nonEmpty("AWS_ENDPOINT_URL_S3") ?? nonEmpty("AWS_ENDPOINT_URL")
        if let endpoint {
            guard let url = URL(string: endpoint), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                throw ConfigurationError(setting: .s3Endpoint, problem: "'\(endpoint)' is not an http(s) URL")
            }
        }
        return (
            endpoint: endpoint,
            region: try values.string(.s3Region) ?? nonEmpty("AWS_REGION") ?? nonEmpty("AWS_DEFAULT_REGION") ?? "us-east-1",
            bucket: try values.string(.s3Bucket), prefix: try values.string(.s3Prefix) ?? "",
            pathStyle: try values.bool(.s3PathStyle),
            accessKeyID: try values.string(.s3AccessKeyID) ?? nonEmpty("AWS_ACCESS_KEY_ID"),
            secretAccessKey: try values.string(.s3SecretAccessKey) ?? nonEmpty("AWS_SECRET_ACCESS_KEY"),
            sessionToken: try values.string(.s3SessionToken) ?? nonEmpty("AWS_SESSION_TOKEN"),
            partSizeBytes: (try values.int(.s3PartSize, in: 5...512) ?? 8) << 20,
            partsInFlight: try values.int(.s3PartsInFlight, in: 1...64) ?? 3
        )
    }

    static func readRelay(_ values: SettingReader) throws -> RelayMode {
        let text = try values.string(.relay) ?? RelayMode.full.rawValue
        guard let mode = RelayMode(rawValue: text) else {
            throw ConfigurationError(setting: .relay, problem: "'\(text)' is not one of off, engine, full")
        }
        return mode
    }

    static func readSharedLimitsFallback(_ values: SettingReader) throws -> SharedLimitsFallback {
        let text = try values.string(.sharedLimitsFallback) ?? SharedLimitsFallback.local.rawValue
        guard let fallback = SharedLimitsFallback(rawValue: text) else {
            throw ConfigurationError(setting: .sharedLimitsFallback, problem: "'\(text)' is not one of local, refuse")
        }
        return fallback
    }

    static func readAuth(_ values: SettingReader, http: HTTP) throws -> Auth {
        let publicURL = try values.string(.publicURL) ?? "http://\(http.host):\(http.port)"
        guard let parsed = URL(string: publicURL), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
            throw ConfigurationError(setting: .publicURL, problem: "'\(publicURL)' is not an http(s) URL")
        }
        var oidc: OIDCSettings?
        if let issuer = try values.string(.oidcIssuer) {
            guard let url = URL(string: issuer), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                throw ConfigurationError(setting: .oidcIssuer, problem: "'\(issuer)' is not an http(s) URL")
            }
            guard let clientID = try values.string(.oidcClientID) else {
                throw ConfigurationError(setting: .oidcClientID, problem: "required when auth.oidc.issuer is set")
            }
            let acceptAccessTokens = try values.bool(.oidcAcceptAccessTokens) ?? false
            let audience = try values.string(.oidcAccessTokenAudience)
            if acceptAccessTokens, audience == nil {
                throw ConfigurationError(
                    setting: .oidcAccessTokenAudience, problem: "required when auth.oidc.acceptAccessTokens is true")
            }
            oidc = OIDCSettings(
                issuer: issuer, clientID: clientID, clientSecret: try values.string(.oidcClientSecret),
                scopes: try values.string(.oidcScopes) ?? "openid profile email",
                adminClaim: try values.string(.oidcAdminClaim) ?? "groups",
                adminValue: try values.string(.oidcAdminValue) ?? "gantry-admins", acceptAccessTokens: acceptAccessTokens,
                accessTokenAudience: audience,
                jwksMinimumRefetchInterval: TimeInterval(try values.int(.oidcJWKSRefetch, in: 0...86_400) ?? 30))
        }
        let introspectionSecret = try values.string(.introspectionSecret)
        if let introspectionSecret, introspectionSecret.count < 32 {
            throw ConfigurationError(setting: .introspectionSecret, problem: "must be at least 32 characters")
        }
        let metricsToken = try values.string(.metricsToken)
        if let metricsToken, metricsToken.count < 32 {
            throw ConfigurationError(setting: .metricsToken, problem: "must be at least 32 characters")
        }
        return Auth(
            publicURL: publicURL, oidc: oidc,
            sessionLifetime: TimeInterval(try values.int(.sessionHours, in: 1...8760) ?? 12) * 3600,
            introspectionSecret: introspectionSecret, metricsToken: metricsToken,
            maxFailedAttemptsPerMinute: try values.int(.maxFailedAuth, in: 1...100_000) ?? 20)
    }

    /// Builds the reader with Gantry's precedence: flags, environment, config file, defaults.
    public static func reader(
        flags: [GantrySetting: String], configFile: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws -> ConfigReader {
        var flagValues: [AbsoluteConfigKey: ConfigValue] = [:]
        for (setting, value) in flags {
            flagValues[AbsoluteConfigKey(setting.components)] = ConfigValue(.string(value), isSecret: setting.isSecret)
        }
        let secrets = Set(GantrySetting.all.filter(\.isSecret).map(\.environmentVariable))
        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "command line", values: flagValues),
            EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: .specific(secrets))
                .prefixKeys(with: "gantry"),
        ]
        if let configFile = configFile ?? environment["GANTRY_CONFIG_FILE"] {
            guard FileManager.default.fileExists(atPath: configFile) else {
                throw ConfigurationError(key: "config", problem: "config file \(configFile) does not exist")
            }
            let location = ConfigReader(
                provider: InMemoryProvider(values: ["filePath": .init(.string(configFile), isSecret: false)]))
            do {
                providers.append(try await FileProvider<JSONSnapshot>(config: location))
            } catch {
                throw ConfigurationError(key: "config", problem: "config file \(configFile) is not valid JSON: \(error)")
            }
        }
        return ConfigReader(providers: providers)
    }

    /// The cache directory alone, for commands that need nothing else (installers, fetchers).
    static func cacheDirectory(flag: String?) async throws -> String {
        var flags: [GantrySetting: String] = [:]
        if let flag { flags[.cacheDir] = flag }
        return try GantryConfiguration(reader: try await reader(flags: flags, configFile: nil)).cacheDirectory
    }

    static func expandTilde(_ path: String, home: String) -> String {
        if path == "~" { return home }
        if path.hasPrefix("~/") { return home + path.dropFirst(1) }
        return path
    }
}

/// A configuration value Gantry cannot start with; the message names the key, its flag and variable.
public struct ConfigurationError: Error, CustomStringConvertible {
    public var description: String

    init(setting: GantrySetting, problem: String) {
        description =
            "invalid configuration \(setting.key) (--\(setting.flag), \(setting.environmentVariable)): \(problem)"
    }

    init(key: String, problem: String) {
        description = "invalid configuration \(key): \(problem)"
    }
}

/// Reads raw values as strings (files may hold numbers) and parses them with errors that name the key.
struct SettingReader {
    let reader: ConfigReader

    func string(_ setting: GantrySetting) throws -> String? {
        let key = ConfigKey(setting.components)
        if let text = reader.string(forKey: key, isSecret: setting.isSecret) {
            guard !text.isEmpty else { throw ConfigurationError(setting: setting, problem: "must not be empty") }
            return text
        }
        if let number = reader.int(forKey: key) { return String(number) }
        return nil
    }

    func bool(_ setting: GantrySetting) throws -> Bool? {
        if let flag = reader.bool(forKey: ConfigKey(setting.components)) { return flag }
        guard let text = try string(setting) else { return nil }
        switch text.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw ConfigurationError(setting: setting, problem: "'\(text)' is not true or false")
        }
    }

    func int(_ setting: GantrySetting, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = try string(setting) else { return nil }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
            throw ConfigurationError(setting: setting, problem: "'\(text)' is not an integer")
        }
        guard range.contains(value) else {
            throw ConfigurationError(setting: setting, problem: "\(value) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }
}

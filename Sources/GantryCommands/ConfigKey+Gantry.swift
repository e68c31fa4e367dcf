/// Every configuration key Gantry reads, with its command-line flag, environment variable, type,
/// default and meaning. `--help`, `docs/configuration.md` and the reader all use this table, and a
/// test checks that the document lists every key.
public struct GantrySetting: Sendable, Hashable {
    /// Dotted key, as written in a JSON config file (`{"http": {"port": 8080}}`).
    public let key: String
    /// Long command-line flag, without dashes.
    public let flag: String
    public let type: String
    public let defaultDescription: String
    public let help: String
    public let isSecret: Bool

    /// The environment variable: `GANTRY_` and the key in upper snake case.
    public var environmentVariable: String {
        var name = "GANTRY"
        for component in key.split(separator: ".") {
            name += "_"
            var previousIsLower = false
            for character in component {
                if character.isUppercase && previousIsLower { name += "_" }
                name += character.uppercased()
                previousIsLower = character.isLowercase
            }
        }
        return name
    }

    public var components: [String] { key.split(separator: ".").map(String.init) }

    /// Help text for `--help`: meaning, variable and default.
    public var helpText: String {
        "\(help) [env: \(environmentVariable)] (default: \(defaultDescription))"
    }

    public static let host = GantrySetting(
        key: "http.host", flag: "host", type: "string", defaultDescription: "127.0.0.1",
        help: "Address the HTTP server listens on.", isSecret: false)
    public static let port = GantrySetting(
        key: "http.port", flag: "port", type: "integer 0-65535", defaultDescription: "8080",
        help: "TCP port the HTTP server listens on (0 picks a free one).", isSecret: false)
    public static let headTimeout = GantrySetting(
        key: "http.headTimeoutSeconds", flag: "head-timeout", type: "integer seconds 1-3600", defaultDescription: "15",
        help: "How long a client may take to send a request's head, from its first byte; then 408 and the connection closes.",
        isSecret: false)
    public static let bodyTimeout = GantrySetting(
        key: "http.bodyTimeoutSeconds", flag: "body-timeout", type: "integer seconds 1-3600", defaultDescription: "60",
        help: "How long a client may take to send a /v1 request's body after its head; then 408 and the connection closes.",
        isSecret: false)
    public static let idleTimeout = GantrySetting(
        key: "http.idleTimeoutSeconds", flag: "idle-timeout", type: "integer seconds 1-86400", defaultDescription: "60",
        help:
            "How long a kept-alive client connection may stay idle between requests, and the longest silence within other request bodies (uploads).",
        isSecret: false)
    public static let dataDir = GantrySetting(
        key: "data.dir", flag: "data-dir", type: "path", defaultDescription: "~/.gantry",
        help: "Directory for the SQLite database, engine logs and uploaded files.", isSecret: false)
    public static let databaseURL = GantrySetting(
        key: "database.url", flag: "database-url", type: "URL", defaultDescription: "sqlite://<data-dir>/gantry.sqlite",
        help: "postgres://user:password@host:port/db for PostgreSQL, or sqlite:///path.", isSecret: true)
    public static let cacheDir = GantrySetting(
        key: "cache.dir", flag: "cache-dir", type: "path", defaultDescription: "$XDG_CACHE_HOME/gantry or ~/.cache/gantry",
        help: "Directory for built engines and downloaded models, shared by all data directories.", isSecret: false)
    public static let llamaServer = GantrySetting(
        key: "engine.llamaServer", flag: "llama-server", type: "path",
        defaultDescription: "<cache-dir>/engines/llama-cpp/<version>/llama-server",
        help: "Path of the llama.cpp llama-server binary.", isSecret: false)
    public static let engineThreads = GantrySetting(
        key: "engine.threads", flag: "engine-threads", type: "integer >= 1", defaultDescription: "half the CPU cores, 1 to 8",
        help: "CPU threads per llama.cpp instance.", isSecret: false)
    public static let engineStartupTimeout = GantrySetting(
        key: "engine.startupTimeoutSeconds", flag: "engine-startup-timeout", type: "integer seconds >= 1",
        defaultDescription: "300", help: "How long an engine instance may take to become healthy.", isSecret: false)
    public static let vllmProgram = GantrySetting(
        key: "engine.vllm", flag: "vllm", type: "program or path", defaultDescription: "vllm",
        help: "vLLM's command; the vllm engine is offered when it is found.", isSecret: false)
    public static let sglangPython = GantrySetting(
        key: "engine.sglangPython", flag: "sglang-python", type: "program or path", defaultDescription: "python3",
        help: "Python that has the sglang package; the sglang engine is offered when it imports.", isSecret: false)
    public static let tgiProgram = GantrySetting(
        key: "engine.tgi", flag: "tgi-launcher", type: "program or path", defaultDescription: "text-generation-launcher",
        help: "Text Generation Inference's launcher; the tgi engine is offered when it is found.", isSecret: false)
    public static let customEngineCommand = GantrySetting(
        key: "engine.customCommand", flag: "custom-engine-command", type: "command template",
        defaultDescription: "none (custom engine off)",
        help:
            "Command line of the 'custom' engine, an OpenAI-compatible server answering /health; placeholders {model} {host} {port} {context} {name} {threads} {gpus} {gpu_count}.",
        isSecret: false)
    public static let engineLogMaxBytes = GantrySetting(
        key: "engine.logMaxBytes", flag: "engine-log-max-bytes", type: "integer bytes >= 4096", defaultDescription: "10485760",
        help: "Size at which an engine's log file is rotated (three rotated files are kept).", isSecret: false)
    public static let queueTimeout = GantrySetting(
        key: "gateway.queueTimeoutSeconds", flag: "queue-timeout", type: "integer seconds >= 1", defaultDescription: "120",
        help: "How long a request waits for a model with no ready instance (starting, or scaled to zero) before a 503.",
        isSecret: false)
    public static let offlineKeyGrace = GantrySetting(
        key: "gateway.offlineKeyGraceSeconds", flag: "offline-key-grace", type: "integer seconds >= 0",
        defaultDescription: "60",
        help:
            "How long after its last check a gateway still accepts an API key it checked, while no control replica can be reached (never past the key's expiry; 0: not at all).",
        isSecret: false)
    public static let maxQueuedRequests = GantrySetting(
        key: "gateway.maxQueuedRequests", flag: "max-queued-requests", type: "integer >= 0", defaultDescription: "100",
        help: "Requests held per model while it has no ready instance; more get a 503 at once.", isSecret: false)
    public static let relay = GantrySetting(
        key: "gateway.relay", flag: "relay", type: "off | engine | full", defaultDescription: "full",
        help:
            "Which of Gantry's own HTTP/1.1 pieces serve /v1: off (Hummingbird's codec and router, async-http-client to the engine), engine (the codec, then the relay's own engine connections), full (also its own request reader ahead of the codec). The same decisions and answers in every mode; the switch to turn the hand-written code off.",
        isSecret: false)
    public static let sharedLimitsFallback = GantrySetting(
        key: "gateway.sharedLimitsFallback", flag: "shared-limits-fallback", type: "local | refuse",
        defaultDescription: "local",
        help:
            "With --role gateway or control, limits and quotas are shared by every gateway through the leader's ledger. When no control replica answers and a gateway's grants run out, limited requests are either admitted against this gateway's own limits alone (local: N gateways may then admit up to N times a limit) or refused with 503 (refuse).",
        isSecret: false)
    public static let role = GantrySetting(
        key: "server.role", flag: "role", type: "all|control|gateway", defaultDescription: "all",
        help: "What this process runs: everything, or a gateway (the /v1 data plane) in front of a control process.",
        isSecret: false)
    public static let controlURL = GantrySetting(
        key: "gateway.controlUrl", flag: "control-url", type: "URL[,URL...]", defaultDescription: "none",
        help:
            "The control role a gateway proxies /api and /auth to, verifies keys with and follows routes from (required with --role gateway, with --introspection-secret); several replicas separated by commas, tried in turn when one cannot be reached.",
        isSecret: false)
    public static let maxRequestBytes = GantrySetting(
        key: "gateway.maxRequestBytes", flag: "max-request-bytes", type: "integer bytes >= 1024",
        defaultDescription: "4194304", help: "Largest /v1 request body accepted.", isSecret: false)
    public static let upstreamTimeout = GantrySetting(
        key: "gateway.upstreamTimeoutSeconds", flag: "upstream-timeout", type: "integer seconds >= 1",
        defaultDescription: "600", help: "How long to wait for an engine's response head.", isSecret: false)
    public static let reconcileInterval = GantrySetting(
        key: "orchestrator.reconcileIntervalSeconds", flag: "reconcile-interval", type: "integer seconds >= 1",
        defaultDescription: "5", help: "Seconds between reconcile passes (changes also trigger one at once).", isSecret: false)
    public static let leaderLease = GantrySetting(
        key: "orchestrator.leaderLeaseSeconds", flag: "leader-lease", type: "integer seconds 2-60",
        defaultDescription: "3",
        help:
            "How long the control replicas' leader lease lasts without renewal (renewed every third of it): a dead leader is replaced within about this plus a sixth.",
        isSecret: false)
    public static let logLevel = GantrySetting(
        key: "log.level", flag: "log-level", type: "trace|debug|info|notice|warning|error|critical",
        defaultDescription: "info", help: "Lowest level of log lines written (JSON lines on stderr).", isSecret: false)

    public static let publicURL = GantrySetting(
        key: "auth.publicUrl", flag: "public-url", type: "URL", defaultDescription: "http://<host>:<port>",
        help: "The URL users reach Gantry at; login callbacks go to <public-url>/auth/callback, and https makes cookies Secure.",
        isSecret: false)
    public static let oidcIssuer = GantrySetting(
        key: "auth.oidc.issuer", flag: "oidc-issuer", type: "URL", defaultDescription: "none (OIDC login off)",
        help: "Issuer URL of the OpenID Connect provider; its discovery document is read from there.", isSecret: false)
    public static let oidcClientID = GantrySetting(
        key: "auth.oidc.clientId", flag: "oidc-client-id", type: "string", defaultDescription: "none",
        help: "Gantry's client id at the provider (required with --oidc-issuer).", isSecret: false)
    public static let oidcClientSecret = GantrySetting(
        key: "auth.oidc.clientSecret", flag: "oidc-client-secret", type: "string", defaultDescription: "none (public client)",
        help: "Client secret, sent with HTTP Basic to the token endpoint.", isSecret: true)
    public static let oidcScopes = GantrySetting(
        key: "auth.oidc.scopes", flag: "oidc-scopes", type: "string", defaultDescription: "openid profile email",
        help: "Scopes requested at login.", isSecret: false)
    public static let oidcAdminClaim = GantrySetting(
        key: "auth.oidc.adminClaim", flag: "oidc-admin-claim", type: "string", defaultDescription: "groups",
        help: "Claim (ID token or UserInfo) that decides the admin role.", isSecret: false)
    public static let oidcAdminValue = GantrySetting(
        key: "auth.oidc.adminValue", flag: "oidc-admin-value", type: "string", defaultDescription: "gantry-admins",
        help: "Users whose admin claim equals or contains this value are admins; everyone else is a user.", isSecret: false)
    public static let oidcAcceptAccessTokens = GantrySetting(
        key: "auth.oidc.acceptAccessTokens", flag: "oidc-accept-access-tokens", type: "boolean", defaultDescription: "false",
        help: "Also accept the provider's JWT access tokens as bearer credentials.", isSecret: false)
    public static let oidcAccessTokenAudience = GantrySetting(
        key: "auth.oidc.accessTokenAudience", flag: "oidc-access-token-audience", type: "string", defaultDescription: "none",
        help: "The aud accepted provider access tokens must carry (required with --oidc-accept-access-tokens).",
        isSecret: false)
    public static let oidcJWKSRefetch = GantrySetting(
        key: "auth.oidc.jwksMinRefetchSeconds", flag: "oidc-jwks-min-refetch", type: "integer seconds >= 0",
        defaultDescription: "30", help: "A token with an unknown key id refetches the provider's keys at most this often.",
        isSecret: false)
    public static let sessionHours = GantrySetting(
        key: "auth.sessionHours", flag: "session-hours", type: "integer hours >= 1", defaultDescription: "12",
        help: "Lifetime of a browser session.", isSecret: false)
    public static let introspectionSecret = GantrySetting(
        key: "auth.introspectionSecret", flag: "introspection-secret", type: "string, 32+ characters",
        defaultDescription: "none (admin keys only)",
        help: "Service credential a separate gateway process sends to POST /auth/introspect.", isSecret: true)
    public static let metricsToken = GantrySetting(
        key: "auth.metricsToken", flag: "metrics-token", type: "string, 32+ characters",
        defaultDescription: "none (admin credentials only)",
        help: "Bearer token a Prometheus scraper sends to GET /metrics; admins' keys and sessions work too.", isSecret: true)
    public static let maxFailedAuth = GantrySetting(
        key: "auth.maxFailedAttemptsPerMinute", flag: "max-failed-auth", type: "integer >= 1", defaultDescription: "20",
        help: "Invalid credentials one address may present per minute before it gets 429 for the rest of the minute.",
        isSecret: false)

    public static let gpuSource = GantrySetting(
        key: "resources.gpuSource", flag: "gpu-source", type: "auto | nvml | nvidia-smi | none | fixture:PATH",
        defaultDescription: "auto",
        help:
            "How this node's GPUs are found: auto uses NVML when the NVIDIA driver is installed, else nvidia-smi when on PATH; fixture:PATH replays recorded nvidia-smi CSV (marked simulated).",
        isSecret: false)
    public static let resourcePoll = GantrySetting(
        key: "resources.pollSeconds", flag: "resource-poll", type: "integer seconds >= 1", defaultDescription: "10",
        help: "Seconds between refreshes of GPU utilisation and memory.", isSecret: false)

    public static let runtime = GantrySetting(
        key: "orchestrator.runtime", flag: "runtime", type: "local | kubernetes", defaultDescription: "local",
        help:
            "Where engines run: local processes on this machine, or one Kubernetes pod per instance (placed by kube-scheduler; nodes and GPUs read from the cluster).",
        isSecret: false)
    public static let kubeconfig = GantrySetting(
        key: "orchestrator.kubernetes.kubeconfig", flag: "kubeconfig", type: "path",
        defaultDescription: "the pod's service account (in a cluster)",
        help: "Kubeconfig file whose current context names the API server and Gantry's credentials.", isSecret: false)
    public static let kubeNamespace = GantrySetting(
        key: "orchestrator.kubernetes.namespace", flag: "kube-namespace", type: "string",
        defaultDescription: "the kubeconfig context's, else the pod's own, else default",
        help: "Namespace engine pods are made in.", isSecret: false)
    public static let kubeInstallation = GantrySetting(
        key: "orchestrator.kubernetes.installation", flag: "kube-installation", type: "label value",
        defaultDescription: "gantry",
        help:
            "Names this Gantry's pods (label gantry.dev/installation), so installations sharing a namespace never touch each other's.",
        isSecret: false)
    public static let kubeImages = GantrySetting(
        key: "orchestrator.kubernetes.images", flag: "kube-images", type: "engine=image,engine=image",
        defaultDescription: "each engine project's published server image",
        help: "Container image per engine (llama-cpp, vllm, sglang, tgi, custom).", isSecret: false)
    public static let kubeRegistryURL = GantrySetting(
        key: "orchestrator.kubernetes.registryURL", flag: "kube-registry-url", type: "URL",
        defaultDescription: "auth.publicURL",
        help: "Gantry's address as engine pods reach it, to fetch their model files.", isSecret: false)
    public static let kubeGantryImage = GantrySetting(
        key: "orchestrator.kubernetes.gantryImage", flag: "kube-gantry-image", type: "image", defaultDescription: "gantry:latest",
        help: "The Gantry image engine pods' init container runs (gantry fetch-model).", isSecret: false)
    public static let kubeReadinessPeriod = GantrySetting(
        key: "orchestrator.kubernetes.readinessPeriodSeconds", flag: "kube-readiness-period", type: "integer seconds 1-300",
        defaultDescription: "5", help: "How often the kubelet probes an engine pod's health path.", isSecret: false)

    public static let objectStore = GantrySetting(
        key: "blobs.store", flag: "object-store", type: "local | s3", defaultDescription: "local",
        help: "Where uploaded model files are kept: a local directory, or an S3-compatible bucket.", isSecret: false)
    public static let blobsDir = GantrySetting(
        key: "blobs.dir", flag: "blobs-dir", type: "path", defaultDescription: "<data-dir>/blobs",
        help: "Directory of the local object store.", isSecret: false)
    public static let s3Endpoint = GantrySetting(
        key: "blobs.s3.endpoint", flag: "s3-endpoint", type: "URL",
        defaultDescription: "$AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS (https://s3.<region>.amazonaws.com)",
        help: "Endpoint of the S3-compatible service (MinIO, Ceph, moto, ...).", isSecret: false)
    public static let s3Region = GantrySetting(
        key: "blobs.s3.region", flag: "s3-region", type: "string",
        defaultDescription: "$AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1", help: "Region used for signing.",
        isSecret: false)
    public static let s3Bucket = GantrySetting(
        key: "blobs.s3.bucket", flag: "s3-bucket", type: "string", defaultDescription: "none (required with s3)",
        help: "Bucket that holds model files.", isSecret: false)
    public static let s3Prefix = GantrySetting(
        key: "blobs.s3.prefix", flag: "s3-prefix", type: "string", defaultDescription: "none",
        help: "Key prefix inside the bucket, to share a bucket (e.g. gantry/).", isSecret: false)
    public static let s3PathStyle = GantrySetting(
        key: "blobs.s3.pathStyle", flag: "s3-path-style", type: "boolean",
        defaultDescription: "true with a custom endpoint, else false",
        help: "Address buckets as <endpoint>/<bucket> instead of <bucket>.<endpoint>.", isSecret: false)
    public static let s3AccessKeyID = GantrySetting(
        key: "blobs.s3.accessKeyId", flag: "s3-access-key-id", type: "string", defaultDescription: "$AWS_ACCESS_KEY_ID",
        help: "Access key id for S3.", isSecret: false)
    public static let s3SecretAccessKey = GantrySetting(
        key: "blobs.s3.secretAccessKey", flag: "s3-secret-access-key", type: "string",
        defaultDescription: "$AWS_SECRET_ACCESS_KEY", help: "Secret access key for S3; never logged.", isSecret: true)
    public static let s3SessionToken = GantrySetting(
        key: "blobs.s3.sessionToken", flag: "s3-session-token", type: "string", defaultDescription: "$AWS_SESSION_TOKEN",
        help: "Session token for temporary S3 credentials; never logged.", isSecret: true)
    public static let s3PartSize = GantrySetting(
        key: "blobs.s3.partSizeMib", flag: "s3-part-size", type: "integer MiB 5-512", defaultDescription: "8",
        help: "Part size of multipart uploads.", isSecret: false)
    public static let s3PartsInFlight = GantrySetting(
        key: "blobs.s3.partsInFlight", flag: "s3-parts-in-flight", type: "integer 1-64", defaultDescription: "3",
        help: "Parts of one upload sent to S3 at the same time; memory per upload is about (this + 1) x the part size.",
        isSecret: false)
    public static let maxFileBytes = GantrySetting(
        key: "registry.maxFileBytes", flag: "max-file-bytes", type: "integer bytes >= 1",
        defaultDescription: "107374182400 (100 GiB)",
        help: "Largest single model file an upload may write.", isSecret: false)
    public static let artifactCacheDir = GantrySetting(
        key: "artifacts.cacheDir", flag: "artifact-cache-dir", type: "path", defaultDescription: "<data-dir>/artifacts",
        help: "Node-side cache of model files downloaded from the object store for engines to load.", isSecret: false)
    public static let artifactCacheMaxBytes = GantrySetting(
        key: "artifacts.cacheMaxBytes", flag: "artifact-cache-max-bytes", type: "integer bytes >= 1",
        defaultDescription: "107374182400 (100 GiB)",
        help: "Size past which least-recently-used cached versions are evicted.", isSecret: false)

    public static let all: [GantrySetting] = [
        host, port, headTimeout, bodyTimeout, idleTimeout, dataDir, databaseURL, cacheDir, llamaServer, engineThreads,
        engineStartupTimeout, vllmProgram,
        sglangPython, tgiProgram, customEngineCommand, engineLogMaxBytes, role, controlURL, maxRequestBytes, upstreamTimeout,
        queueTimeout, offlineKeyGrace,
        maxQueuedRequests, relay, sharedLimitsFallback, reconcileInterval, leaderLease, logLevel, publicURL, oidcIssuer,
        oidcClientID, oidcClientSecret,
        oidcScopes,
        oidcAdminClaim, oidcAdminValue, oidcAcceptAccessTokens, oidcAccessTokenAudience, oidcJWKSRefetch, sessionHours,
        introspectionSecret, metricsToken, maxFailedAuth, gpuSource, resourcePoll, runtime, kubeconfig, kubeNamespace,
        kubeInstallation, kubeImages, kubeRegistryURL, kubeGantryImage, kubeReadinessPeriod, objectStore, blobsDir, s3Endpoint,
        s3Region,
        s3Bucket,
        s3Prefix, s3PathStyle, s3AccessKeyID, s3SecretAccessKey, s3SessionToken, s3PartSize, s3PartsInFlight, maxFileBytes,
        artifactCacheDir,
        artifactCacheMaxBytes,
    ]
}

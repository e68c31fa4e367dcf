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
    public static let maxRequestBytes = GantrySetting(
        key: "gateway.maxRequestBytes", flag: "max-request-bytes", type: "integer bytes >= 1024",
        defaultDescription: "4194304", help: "Largest /v1 request body accepted.", isSecret: false)
    public static let upstreamTimeout = GantrySetting(
        key: "gateway.upstreamTimeoutSeconds", flag: "upstream-timeout", type: "integer seconds >= 1",
        defaultDescription: "600", help: "How long to wait for an engine's response head.", isSecret: false)
    public static let reconcileInterval = GantrySetting(
        key: "orchestrator.reconcileIntervalSeconds", flag: "reconcile-interval", type: "integer seconds >= 1",
        defaultDescription: "5", help: "Seconds between reconcile passes (changes also trigger one at once).", isSecret: false)
    public static let logLevel = GantrySetting(
        key: "log.level", flag: "log-level", type: "trace|debug|info|notice|warning|error|critical",
        defaultDescription: "info", help: "Lowest level of log lines written (JSON lines on stderr).", isSecret: false)

    public static let all: [GantrySetting] = [
        host, port, dataDir, databaseURL, cacheDir, llamaServer, engineThreads, engineStartupTimeout, maxRequestBytes,
        upstreamTimeout, reconcileInterval, logLevel,
    ]
}

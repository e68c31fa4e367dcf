public import ArgumentParser
import Configuration
import Foundation

/// The flags `serve` and `quickstart` share: one per configuration key, documented from the
/// `GantrySetting` table. Unset flags fall through to the environment, the config file, defaults.
public struct ServerOptions: ParsableArguments {
    public init() {}

    @Option(name: .customLong("config"), help: "JSON configuration file. [env: GANTRY_CONFIG_FILE]")
    var configFile: String?
    @Option(name: .customLong(GantrySetting.host.flag), help: ArgumentHelp(GantrySetting.host.helpText))
    var host: String?
    @Option(name: .customLong(GantrySetting.port.flag), help: ArgumentHelp(GantrySetting.port.helpText))
    var port: String?
    @Option(name: .customLong(GantrySetting.headTimeout.flag), help: ArgumentHelp(GantrySetting.headTimeout.helpText))
    var headTimeout: String?
    @Option(name: .customLong(GantrySetting.bodyTimeout.flag), help: ArgumentHelp(GantrySetting.bodyTimeout.helpText))
    var bodyTimeout: String?
    @Option(name: .customLong(GantrySetting.idleTimeout.flag), help: ArgumentHelp(GantrySetting.idleTimeout.helpText))
    var idleTimeout: String?
    @Option(name: .customLong(GantrySetting.dataDir.flag), help: ArgumentHelp(GantrySetting.dataDir.helpText))
    var dataDir: String?
    @Option(name: .customLong(GantrySetting.databaseURL.flag), help: ArgumentHelp(GantrySetting.databaseURL.helpText))
    var databaseURL: String?
    @Option(name: .customLong(GantrySetting.cacheDir.flag), help: ArgumentHelp(GantrySetting.cacheDir.helpText))
    var cacheDir: String?
    @Option(name: .customLong(GantrySetting.llamaServer.flag), help: ArgumentHelp(GantrySetting.llamaServer.helpText))
    var llamaServer: String?
    @Option(name: .customLong(GantrySetting.engineThreads.flag), help: ArgumentHelp(GantrySetting.engineThreads.helpText))
    var engineThreads: String?
    @Option(
        name: .customLong(GantrySetting.engineStartupTimeout.flag),
        help: ArgumentHelp(GantrySetting.engineStartupTimeout.helpText))
    var engineStartupTimeout: String?
    @Option(name: .customLong(GantrySetting.vllmProgram.flag), help: ArgumentHelp(GantrySetting.vllmProgram.helpText))
    var vllmProgram: String?
    @Option(name: .customLong(GantrySetting.sglangPython.flag), help: ArgumentHelp(GantrySetting.sglangPython.helpText))
    var sglangPython: String?
    @Option(name: .customLong(GantrySetting.tgiProgram.flag), help: ArgumentHelp(GantrySetting.tgiProgram.helpText))
    var tgiProgram: String?
    @Option(
        name: .customLong(GantrySetting.customEngineCommand.flag), help: ArgumentHelp(GantrySetting.customEngineCommand.helpText))
    var customEngineCommand: String?
    @Option(name: .customLong(GantrySetting.engineLogMaxBytes.flag), help: ArgumentHelp(GantrySetting.engineLogMaxBytes.helpText))
    var engineLogMaxBytes: String?
    @Option(name: .customLong(GantrySetting.queueTimeout.flag), help: ArgumentHelp(GantrySetting.queueTimeout.helpText))
    var queueTimeout: String?
    @Option(
        name: .customLong(GantrySetting.offlineKeyGrace.flag), help: ArgumentHelp(GantrySetting.offlineKeyGrace.helpText))
    var offlineKeyGrace: String?
    @Option(name: .customLong(GantrySetting.maxQueuedRequests.flag), help: ArgumentHelp(GantrySetting.maxQueuedRequests.helpText))
    var maxQueuedRequests: String?
    @Option(name: .customLong(GantrySetting.relay.flag), help: ArgumentHelp(GantrySetting.relay.helpText))
    var relay: String?
    @Option(
        name: .customLong(GantrySetting.sharedLimitsFallback.flag),
        help: ArgumentHelp(GantrySetting.sharedLimitsFallback.helpText))
    var sharedLimitsFallback: String?
    @Option(name: .customLong(GantrySetting.role.flag), help: ArgumentHelp(GantrySetting.role.helpText))
    var role: String?
    @Option(name: .customLong(GantrySetting.controlURL.flag), help: ArgumentHelp(GantrySetting.controlURL.helpText))
    var controlURL: String?
    @Option(name: .customLong(GantrySetting.maxRequestBytes.flag), help: ArgumentHelp(GantrySetting.maxRequestBytes.helpText))
    var maxRequestBytes: String?
    @Option(name: .customLong(GantrySetting.upstreamTimeout.flag), help: ArgumentHelp(GantrySetting.upstreamTimeout.helpText))
    var upstreamTimeout: String?
    @Option(
        name: .customLong(GantrySetting.reconcileInterval.flag), help: ArgumentHelp(GantrySetting.reconcileInterval.helpText))
    var reconcileInterval: String?
    @Option(name: .customLong(GantrySetting.leaderLease.flag), help: ArgumentHelp(GantrySetting.leaderLease.helpText))
    var leaderLease: String?
    @Option(name: .customLong(GantrySetting.logLevel.flag), help: ArgumentHelp(GantrySetting.logLevel.helpText))
    var logLevel: String?

    @Option(name: .customLong(GantrySetting.publicURL.flag), help: ArgumentHelp(GantrySetting.publicURL.helpText))
    var publicURL: String?
    @Option(name: .customLong(GantrySetting.oidcIssuer.flag), help: ArgumentHelp(GantrySetting.oidcIssuer.helpText))
    var oidcIssuer: String?
    @Option(name: .customLong(GantrySetting.oidcClientID.flag), help: ArgumentHelp(GantrySetting.oidcClientID.helpText))
    var oidcClientID: String?
    @Option(name: .customLong(GantrySetting.oidcClientSecret.flag), help: ArgumentHelp(GantrySetting.oidcClientSecret.helpText))
    var oidcClientSecret: String?
    @Option(name: .customLong(GantrySetting.oidcScopes.flag), help: ArgumentHelp(GantrySetting.oidcScopes.helpText))
    var oidcScopes: String?
    @Option(name: .customLong(GantrySetting.oidcAdminClaim.flag), help: ArgumentHelp(GantrySetting.oidcAdminClaim.helpText))
    var oidcAdminClaim: String?
    @Option(name: .customLong(GantrySetting.oidcAdminValue.flag), help: ArgumentHelp(GantrySetting.oidcAdminValue.helpText))
    var oidcAdminValue: String?
    @Option(
        name: .customLong(GantrySetting.oidcAcceptAccessTokens.flag),
        help: ArgumentHelp(GantrySetting.oidcAcceptAccessTokens.helpText))
    var oidcAcceptAccessTokens: String?
    @Option(
        name: .customLong(GantrySetting.oidcAccessTokenAudience.flag),
        help: ArgumentHelp(GantrySetting.oidcAccessTokenAudience.helpText))
    var oidcAccessTokenAudience: String?
    @Option(name: .customLong(GantrySetting.oidcJWKSRefetch.flag), help: ArgumentHelp(GantrySetting.oidcJWKSRefetch.helpText))
    var oidcJWKSRefetch: String?
    @Option(name: .customLong(GantrySetting.sessionHours.flag), help: ArgumentHelp(GantrySetting.sessionHours.helpText))
    var sessionHours: String?
    @Option(
        name: .customLong(GantrySetting.introspectionSecret.flag), help: ArgumentHelp(GantrySetting.introspectionSecret.helpText))
    var introspectionSecret: String?
    @Option(name: .customLong(GantrySetting.metricsToken.flag), help: ArgumentHelp(GantrySetting.metricsToken.helpText))
    var metricsToken: String?
    @Option(name: .customLong(GantrySetting.maxFailedAuth.flag), help: ArgumentHelp(GantrySetting.maxFailedAuth.helpText))
    var maxFailedAuth: String?
    @Option(name: .customLong(GantrySetting.gpuSource.flag), help: ArgumentHelp(GantrySetting.gpuSource.helpText))
    var gpuSource: String?
    @Option(name: .customLong(GantrySetting.resourcePoll.flag), help: ArgumentHelp(GantrySetting.resourcePoll.helpText))
    var resourcePoll: String?
    @Option(name: .customLong(GantrySetting.runtime.flag), help: ArgumentHelp(GantrySetting.runtime.helpText))
    var runtime: String?
    @Option(name: .customLong(GantrySetting.kubeconfig.flag), help: ArgumentHelp(GantrySetting.kubeconfig.helpText))
    var kubeconfig: String?
    @Option(name: .customLong(GantrySetting.kubeNamespace.flag), help: ArgumentHelp(GantrySetting.kubeNamespace.helpText))
    var kubeNamespace: String?
    @Option(
        name: .customLong(GantrySetting.kubeInstallation.flag), help: ArgumentHelp(GantrySetting.kubeInstallation.helpText))
    var kubeInstallation: String?
    @Option(name: .customLong(GantrySetting.kubeImages.flag), help: ArgumentHelp(GantrySetting.kubeImages.helpText))
    var kubeImages: String?
    @Option(name: .customLong(GantrySetting.kubeRegistryURL.flag), help: ArgumentHelp(GantrySetting.kubeRegistryURL.helpText))
    var kubeRegistryURL: String?
    @Option(name: .customLong(GantrySetting.kubeGantryImage.flag), help: ArgumentHelp(GantrySetting.kubeGantryImage.helpText))
    var kubeGantryImage: String?
    @Option(
        name: .customLong(GantrySetting.kubeReadinessPeriod.flag),
        help: ArgumentHelp(GantrySetting.kubeReadinessPeriod.helpText))
    var kubeReadinessPeriod: String?
    @Option(name: .customLong(GantrySetting.objectStore.flag), help: ArgumentHelp(GantrySetting.objectStore.helpText))
    var objectStore: String?
    @Option(name: .customLong(GantrySetting.blobsDir.flag), help: ArgumentHelp(GantrySetting.blobsDir.helpText))
    var blobsDir: String?
    @Option(name: .customLong(GantrySetting.s3Endpoint.flag), help: ArgumentHelp(GantrySetting.s3Endpoint.helpText))
    var s3Endpoint: String?
    @Option(name: .customLong(GantrySetting.s3Region.flag), help: ArgumentHelp(GantrySetting.s3Region.helpText))
    var s3Region: String?
    @Option(name: .customLong(GantrySetting.s3Bucket.flag), help: ArgumentHelp(GantrySetting.s3Bucket.helpText))
    var s3Bucket: String?
    @Option(name: .customLong(GantrySetting.s3Prefix.flag), help: ArgumentHelp(GantrySetting.s3Prefix.helpText))
    var s3Prefix: String?
    @Option(name: .customLong(GantrySetting.s3PathStyle.flag), help: ArgumentHelp(GantrySetting.s3PathStyle.helpText))
    var s3PathStyle: String?
    @Option(name: .customLong(GantrySetting.s3AccessKeyID.flag), help: ArgumentHelp(GantrySetting.s3AccessKeyID.helpText))
    var s3AccessKeyID: String?
    @Option(name: .customLong(GantrySetting.s3SecretAccessKey.flag), help: ArgumentHelp(GantrySetting.s3SecretAccessKey.helpText))
    var s3SecretAccessKey: String?
    @Option(name: .customLong(GantrySetting.s3SessionToken.flag), help: ArgumentHelp(GantrySetting.s3SessionToken.helpText))
    var s3SessionToken: String?
    @Option(name: .customLong(GantrySetting.s3PartSize.flag), help: ArgumentHelp(GantrySetting.s3PartSize.helpText))
    var s3PartSize: String?
    @Option(name: .customLong(GantrySetting.s3PartsInFlight.flag), help: ArgumentHelp(GantrySetting.s3PartsInFlight.helpText))
    var s3PartsInFlight: String?
    @Option(name: .customLong(GantrySetting.maxFileBytes.flag), help: ArgumentHelp(GantrySetting.maxFileBytes.helpText))
    var maxFileBytes: String?
    @Option(name: .customLong(GantrySetting.artifactCacheDir.flag), help: ArgumentHelp(GantrySetting.artifactCacheDir.helpText))
    var artifactCacheDir: String?
    @Option(
        name: .customLong(GantrySetting.artifactCacheMaxBytes.flag),
        help: ArgumentHelp(GantrySetting.artifactCacheMaxBytes.helpText))
    var artifactCacheMaxBytes: String?

    /// The settings given on the command line.
    public var flags: [GantrySetting: String] {
        let pairs: [(GantrySetting, String?)] = [
            (.host, host), (.port, port), (.headTimeout, headTimeout), (.bodyTimeout, bodyTimeout),
            (.idleTimeout, idleTimeout), (.dataDir, dataDir), (.databaseURL, databaseURL), (.cacheDir, cacheDir),
            (.llamaServer, llamaServer), (.engineThreads, engineThreads), (.engineStartupTimeout, engineStartupTimeout),
            (.maxRequestBytes, maxRequestBytes), (.upstreamTimeout, upstreamTimeout),
            (.vllmProgram, vllmProgram), (.sglangPython, sglangPython), (.tgiProgram, tgiProgram),
            (.customEngineCommand, customEngineCommand), (.engineLogMaxBytes, engineLogMaxBytes), (.queueTimeout, queueTimeout),
            (.offlineKeyGrace, offlineKeyGrace),
            (.maxQueuedRequests, maxQueuedRequests), (.relay, relay), (.sharedLimitsFallback, sharedLimitsFallback),
            (.role, role), (.controlURL, controlURL),
            (.reconcileInterval, reconcileInterval), (.leaderLease, leaderLease), (.logLevel, logLevel), (.publicURL, publicURL),
            (.oidcIssuer, oidcIssuer),
            (.oidcClientID, oidcClientID), (.oidcClientSecret, oidcClientSecret), (.oidcScopes, oidcScopes),
            (.oidcAdminClaim, oidcAdminClaim), (.oidcAdminValue, oidcAdminValue),
            (.oidcAcceptAccessTokens, oidcAcceptAccessTokens), (.oidcAccessTokenAudience, oidcAccessTokenAudience),
            (.oidcJWKSRefetch, oidcJWKSRefetch), (.sessionHours, sessionHours), (.introspectionSecret, introspectionSecret),
            (.metricsToken, metricsToken),
            (.maxFailedAuth, maxFailedAuth), (.gpuSource, gpuSource), (.resourcePoll, resourcePoll),
            (.runtime, runtime), (.kubeconfig, kubeconfig), (.kubeNamespace, kubeNamespace),
            (.kubeInstallation, kubeInstallation), (.kubeImages, kubeImages), (.kubeReadinessPeriod, kubeReadinessPeriod),
            (.kubeRegistryURL, kubeRegistryURL), (.kubeGantryImage, kubeGantryImage),
            (.objectStore, objectStore),
            (.blobsDir, blobsDir),
            (.s3Endpoint, s3Endpoint),
            (.s3Region, s3Region),
            (.s3Bucket, s3Bucket),
            (.s3Prefix, s3Prefix),
            (.s3PathStyle, s3PathStyle),
            (.s3AccessKeyID, s3AccessKeyID),
            (.s3SecretAccessKey, s3SecretAccessKey),
            (.s3SessionToken, s3SessionToken),
            (.s3PartSize, s3PartSize),
            (.s3PartsInFlight, s3PartsInFlight), (.maxFileBytes, maxFileBytes),
            (.artifactCacheDir, artifactCacheDir),
            (.artifactCacheMaxBytes, artifactCacheMaxBytes),
        ]
        return Dictionary(uniqueKeysWithValues: pairs.compactMap { setting, value in value.map { (setting, $0) } })
    }

    /// Resolves flags, environment, file and defaults into a validated configuration.
    public func configuration() async throws -> GantryConfiguration {
        let reader = try await GantryConfiguration.reader(flags: flags, configFile: configFile)
        return try GantryConfiguration(reader: reader)
    }
}

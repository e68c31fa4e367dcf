public import Prometheus

/// What an operator watches of a gateway's shared limits: whether its syncs with the leader's
/// ledger are answered, how often requests wait for one, and how many follow the fallback
/// setting because no ledger answers. Counters are cheap enough for the request path (atomics);
/// no label grows with keys or requests.
public struct SharedLimitsMetrics: Sendable {
    let syncsAnswered: Counter
    let syncsFailed: Counter
    /// 1 while the last sync was answered, 0 while no ledger answers.
    let ledgerReachable: Gauge
    let waits: Counter
    let fallbacks: Counter

    public init(registry: PrometheusCollectorRegistry, fallback: SharedLimitsFallback) {
        let syncs = MetricNameDescriptor(
            namespace: "gantry", metricName: "shared_limits_syncs", unitName: "total",
            helpText: "Syncs of this process's limit grants with the leader's ledger, by result")
        syncsAnswered = registry.makeCounter(descriptor: syncs, labels: [("result", "answered")])
        syncsFailed = registry.makeCounter(descriptor: syncs, labels: [("result", "failed")])
        ledgerReachable = registry.makeGauge(
            descriptor: .init(
                namespace: "gantry", metricName: "shared_limits_ledger_reachable",
                helpText: "1 while the leader's limit ledger answers this process's syncs, else 0"))
        waits = registry.makeCounter(
            descriptor: .init(
                namespace: "gantry", metricName: "shared_limits_waits", unitName: "total",
                helpText: "Limited requests that waited for a sync with the ledger (no grant at hand)"))
        fallbacks = registry.makeCounter(
            descriptor: .init(
                namespace: "gantry", metricName: "shared_limits_fallbacks", unitName: "total",
                helpText: "Limited requests decided by gateway.sharedLimitsFallback because no ledger answered"),
            labels: [("fallback", fallback.rawValue)])
    }
}

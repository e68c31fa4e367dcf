public import Foundation
import Synchronization

/// One minute of one model service: what the console's charts draw, and what `GET
/// /api/v1/deployments/{name}/metrics` returns. Sums, so that minutes from several gateways add up
/// and any mean can be taken over any span.
public struct ServiceMinute: Codable, Sendable, Equatable {
    /// The minute's start.
    public var start: Date
    public var requests: Int = 0
    /// Requests answered with a 5xx status: the service failed them, not the caller.
    public var serverErrors: Int = 0
    /// Requests refused as the caller's fault (4xx: limits, bad input, no access).
    public var clientErrors: Int = 0
    public var promptTokens: Int = 0
    public var completionTokens: Int = 0
    /// The sum of the requests' latencies, to the last byte of the answer. Divided by the minute's
    /// length it is the mean number of requests in flight (Little's law), exact for requests
    /// that started and ended within the minute.
    public var latencySeconds: Double = 0
    public var maxLatencySeconds: Double = 0
    /// Samples of the mean utilisation of the GPUs the service's instances hold, and their sum.
    public var gpuSamples: Int = 0
    public var gpuUtilizationSum: Double = 0
    /// GPU memory in use on those GPUs at the minute's last sample, in bytes.
    public var gpuMemoryUsedBytes: Double?

    public init(start: Date) {
        self.start = start
    }

    public var meanLatencySeconds: Double? { requests > 0 ? latencySeconds / Double(requests) : nil }
    public var meanGPUUtilization: Double? { gpuSamples > 0 ? gpuUtilizationSum / Double(gpuSamples) : nil }

    /// Adds another gateway's counts for the same minute; the GPU sample keeps the later one.
    public mutating func add(_ other: ServiceMinute) {
        requests += other.requests
        serverErrors += other.serverErrors
        clientErrors += other.clientErrors
        promptTokens += other.promptTokens
        completionTokens += other.completionTokens
        latencySeconds += other.latencySeconds
        maxLatencySeconds = max(maxLatencySeconds, other.maxLatencySeconds)
        gpuSamples += other.gpuSamples
        gpuUtilizationSum += other.gpuUtilizationSum
        if let memory = other.gpuMemoryUsedBytes { gpuMemoryUsedBytes = memory }
    }

    enum CodingKeys: String, CodingKey {
        case start, requests
        case serverErrors = "server_errors"
        case clientErrors = "client_errors"
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case latencySeconds = "latency_seconds"
        case maxLatencySeconds = "max_latency_seconds"
        case gpuSamples = "gpu_samples"
        case gpuUtilizationSum = "gpu_utilization_sum"
        case gpuMemoryUsedBytes = "gpu_memory_used_bytes"
    }
}

/// The last hour (by default) of every model service, minute by minute, in memory: the data plane
/// adds each finished request, the resources poller each GPU sample. Bounded: `keep` minutes per
/// service and at most `maxServices` services (the least recently active one goes first); a
/// restarted process starts empty, as Prometheus is the store of record.
///
/// A gateway in its own process keeps one with `reporting`: what it adds is also kept aside until
/// its next report to the control leader takes it (`takeUnreported`), which adds it to the
/// leader's history, so the console there counts every gateway's requests.
public final class ServiceMetricsHistory: Sendable {
    public let keep: Int
    public let maxServices: Int
    public let reporting: Bool
    private let services = Mutex<[String: ServiceSeries]>([:])

    public init(keep: Int = 60, maxServices: Int = 1000, reporting: Bool = false) {
        precondition(keep > 0 && maxServices > 0)
        self.keep = keep
        self.maxServices = maxServices
        self.reporting = reporting
    }

    /// What was added since the last call, per service: the next report's share.
    public func takeUnreported() -> [String: [ServiceMinute]] {
        let all = services.withLock { $0 }
        var taken: [String: [ServiceMinute]] = [:]
        for (service, series) in all {
            let minutes = series.takeUnreported()
            if !minutes.isEmpty { taken[service] = minutes }
        }
        return taken
    }

    /// The series of one service, made on first use; callers on a hot path keep it.
    public func series(_ service: String) -> ServiceSeries {
        services.withLock { services in
            if let series = services[service] { return series }
            if services.count >= maxServices,
                let idlest = services.min(by: { $0.value.lastActive < $1.value.lastActive })?.key
            {
                services[idlest] = nil
            }
            let made = ServiceSeries(keep: keep, reporting: reporting)
            services[service] = made
            return made
        }
    }

    /// The last `keep` minutes of `service` up to `now`, oldest first, with empty minutes filled in.
    public func minutes(of service: String, now: Date = Date()) -> [ServiceMinute] {
        let series = services.withLock { $0[service] }
        return series?.minutes(now: now) ?? ServiceSeries.window(keep: keep, now: now).map { ServiceMinute(start: $0.start) }
    }

    /// Forgets a deleted service.
    public func forget(_ service: String) {
        _ = services.withLock { $0.removeValue(forKey: service) }
    }

    public var serviceNames: [String] { services.withLock { Array($0.keys) }.sorted() }
}

/// One service's minutes: a ring of `keep` slots indexed by minute since the epoch.
public final class ServiceSeries: Sendable {
    struct Ring {
        var slots: [ServiceMinute?]
        var lastActive: Int64 = 0
        /// With `reporting`: what was added since the last report, by minute (a report a second
        /// holds one or two).
        var unreported: [Int64: ServiceMinute] = [:]
    }

    let keep: Int
    let reporting: Bool
    private let ring: Mutex<Ring>

    init(keep: Int, reporting: Bool) {
        self.keep = keep
        self.reporting = reporting
        ring = Mutex(Ring(slots: Array(repeating: nil, count: keep)))
    }

    func takeUnreported() -> [ServiceMinute] {
        ring.withLock { ring in
            defer { ring.unreported.removeAll() }
            return ring.unreported.sorted { $0.key < $1.key }.map(\.value)
        }
    }

    var lastActive: Int64 { ring.withLock { $0.lastActive } }

    static func minuteIndex(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 / 60).rounded(.down)) }

    /// The last `keep` minutes up to `now`, oldest first: each one's index and start.
    static func window(keep: Int, now: Date) -> [(index: Int64, start: Date)] {
        let last = minuteIndex(now)
        return ((last - Int64(keep) + 1)...last).map { ($0, Date(timeIntervalSince1970: Double($0) * 60)) }
    }

    /// The ring slot of a minute.
    private func slot(_ minute: Int64) -> Int { Int(((minute % Int64(keep)) + Int64(keep)) % Int64(keep)) }

    /// Changes the minute `at` falls in, starting it afresh when its slot held an older minute.
    private func update(at date: Date, _ change: (inout ServiceMinute) -> Void) {
        let minute = Self.minuteIndex(date)
        let slot = slot(minute)
        let start = Date(timeIntervalSince1970: Double(minute) * 60)
        ring.withLock { ring in
            // A late report of a minute the ring has already moved past would overwrite a newer one.
            guard minute > ring.lastActive - Int64(keep) else { return }
            var current = ring.slots[slot].flatMap { $0.start == start ? $0 : nil } ?? ServiceMinute(start: start)
            change(&current)
            ring.slots[slot] = current
            if reporting {
                var unreported = ring.unreported[minute] ?? ServiceMinute(start: start)
                change(&unreported)
                ring.unreported[minute] = unreported
            }
            ring.lastActive = max(ring.lastActive, minute)
        }
    }

    /// A finished request.
    public func request(
        at date: Date, status: Int, latencySeconds: Double, promptTokens: Int, completionTokens: Int
    ) {
        update(at: date) { minute in
            minute.requests += 1
            if status >= 500 { minute.serverErrors += 1 } else if status >= 400 { minute.clientErrors += 1 }
            minute.promptTokens += promptTokens
            minute.completionTokens += completionTokens
            minute.latencySeconds += latencySeconds
            minute.maxLatencySeconds = max(minute.maxLatencySeconds, latencySeconds)
        }
    }

    /// One sample of the GPUs the service's instances hold: their mean utilisation (0...1), if the
    /// driver reports it, and the memory in use on them together.
    public func gpuSample(at date: Date, utilization: Double?, memoryUsedBytes: Double?) {
        update(at: date) { minute in
            if let utilization {
                minute.gpuSamples += 1
                minute.gpuUtilizationSum += utilization
            }
            if let memoryUsedBytes { minute.gpuMemoryUsedBytes = memoryUsedBytes }
        }
    }

    /// Counts another process's minute (a gateway's report) into this one.
    public func add(_ other: ServiceMinute) {
        update(at: other.start) { $0.add(other) }
    }

    func minutes(now: Date) -> [ServiceMinute] {
        let slots = ring.withLock { $0.slots }
        return Self.window(keep: keep, now: now).map { minute in
            if let held = slots[slot(minute.index)], held.start == minute.start { return held }
            return ServiceMinute(start: minute.start)
        }
    }
}

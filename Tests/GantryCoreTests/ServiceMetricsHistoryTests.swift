import Foundation
import GantryCore
import Testing

@Suite("Service metrics history")
struct ServiceMetricsHistoryTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)  // a minute boundary

    @Test("requests add up per minute; statuses split into server and client errors; means come from sums")
    func requestsPerMinute() {
        let history = ServiceMetricsHistory(keep: 5)
        let series = history.series("chat")
        series.request(at: start + 1, status: 200, latencySeconds: 0.5, promptTokens: 10, completionTokens: 5)
        series.request(at: start + 59, status: 503, latencySeconds: 1.5, promptTokens: 0, completionTokens: 0)
        series.request(at: start + 60, status: 429, latencySeconds: 0.1, promptTokens: 0, completionTokens: 0)
        let minutes = history.minutes(of: "chat", now: start + 61)
        #expect(minutes.count == 5)
        #expect(minutes.map(\.start) == (-3...1).map { start + Double($0) * 60 })
        let first = minutes[3]
        #expect(first.requests == 2 && first.serverErrors == 1 && first.clientErrors == 0)
        #expect(first.promptTokens == 10 && first.completionTokens == 5)
        #expect(first.meanLatencySeconds == 1.0 && first.maxLatencySeconds == 1.5)
        #expect(minutes[4].requests == 1 && minutes[4].clientErrors == 1)
        #expect(minutes[0...2].allSatisfy { $0.requests == 0 && $0.meanLatencySeconds == nil })
    }

    @Test("the ring keeps `keep` minutes: an old minute's slot starts afresh, a late report of a gone minute is dropped")
    func bounded() {
        let history = ServiceMetricsHistory(keep: 3)
        let series = history.series("chat")
        series.request(at: start, status: 200, latencySeconds: 1, promptTokens: 1, completionTokens: 1)
        // Three minutes later the same slot holds a new minute, not the sum of both.
        series.request(at: start + 180, status: 200, latencySeconds: 1, promptTokens: 1, completionTokens: 1)
        #expect(history.minutes(of: "chat", now: start + 180).map(\.requests) == [0, 0, 1])
        var late = ServiceMinute(start: start)
        late.requests = 7
        series.add(late)
        #expect(history.minutes(of: "chat", now: start + 180).map(\.requests) == [0, 0, 1])
        // A report of a minute still kept adds to it.
        var recent = ServiceMinute(start: start + 120)
        recent.requests = 4
        recent.maxLatencySeconds = 9
        series.add(recent)
        let minutes = history.minutes(of: "chat", now: start + 180)
        #expect(minutes.map(\.requests) == [0, 4, 1] && minutes[1].maxLatencySeconds == 9)
        // Nothing at all after `keep` minutes.
        #expect(history.minutes(of: "chat", now: start + 600).allSatisfy { $0.requests == 0 })
    }

    @Test("GPU samples average; memory keeps the last sample; at most maxServices services, the idlest goes")
    func gpuAndServiceBound() {
        let history = ServiceMetricsHistory(keep: 60, maxServices: 2)
        history.series("a").gpuSample(at: start, utilization: 0.2, memoryUsedBytes: 100)
        history.series("a").gpuSample(at: start + 10, utilization: 0.6, memoryUsedBytes: 300)
        history.series("a").gpuSample(at: start + 20, utilization: nil, memoryUsedBytes: nil)
        let minute = history.minutes(of: "a", now: start).last
        #expect(minute?.gpuSamples == 2 && minute?.meanGPUUtilization == 0.4 && minute?.gpuMemoryUsedBytes == 300)
        history.series("b").request(at: start + 120, status: 200, latencySeconds: 1, promptTokens: 0, completionTokens: 0)
        history.series("c").request(at: start + 120, status: 200, latencySeconds: 1, promptTokens: 0, completionTokens: 0)
        #expect(history.serviceNames == ["b", "c"])
        history.forget("b")
        #expect(history.serviceNames == ["c"])
        #expect(history.minutes(of: "b", now: start + 120).count == 60)
    }

    @Test("a reporting history hands each addition to exactly one report; the leader's adds them up")
    func reports() {
        let gateway = ServiceMetricsHistory(keep: 2, reporting: true)
        gateway.series("chat").request(at: start + 5, status: 200, latencySeconds: 1, promptTokens: 3, completionTokens: 4)
        gateway.series("chat").request(at: start + 65, status: 500, latencySeconds: 2, promptTokens: 0, completionTokens: 0)
        let first = gateway.takeUnreported()
        #expect(first["chat"]?.map(\.requests) == [1, 1] && first["chat"]?.map(\.start) == [start, start + 60])
        #expect(gateway.takeUnreported().isEmpty, "nothing twice")
        gateway.series("chat").request(at: start + 70, status: 200, latencySeconds: 1, promptTokens: 1, completionTokens: 1)
        let second = gateway.takeUnreported()
        #expect(second["chat"]?.map(\.requests) == [1])

        let leader = ServiceMetricsHistory()
        leader.series("chat").request(at: start + 61, status: 200, latencySeconds: 1, promptTokens: 0, completionTokens: 0)
        for report in [first, second] {
            for (service, minutes) in report { for minute in minutes { leader.series(service).add(minute) } }
        }
        let minutes = leader.minutes(of: "chat", now: start + 70).suffix(2)
        #expect(minutes.map(\.requests) == [1, 3] && minutes.map(\.serverErrors) == [0, 1])
        #expect(minutes.last?.maxLatencySeconds == 2)
        // A history that does not report keeps nothing aside.
        #expect(leader.takeUnreported().isEmpty)
    }
}

import Foundation
import Testing

@testable import GantryGateway

/// The shared limits' two state machines together, gateways' `GrantPool`s and the leader's
/// `LimitLedger`, driven through simulated time with network delays and demand far above every
/// limit: what all gateways admit never exceeds a limit in any 60 s window (or at any moment, for
/// concurrency, or ever, for a quota), and at least 90 % of it is admitted. Also across a new
/// ledger (a failover) and a gateway that dies.
@Suite("Shared limits, simulated")
struct SharedLimitsSimulationTests {
    /// A seeded generator, so a failure can be replayed.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        mutating func uniform(_ range: ClosedRange<Double>) -> Double {
            range.lowerBound + Double(next() % 1_000_000) / 1_000_000 * (range.upperBound - range.lowerBound)
        }
        mutating func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
    }

    static let rpm = LimitResource(kind: .requests, scope: "k:rpm")
    static let tpm = LimitResource(kind: .tokens, scope: "k:tpm")
    static let concurrent = LimitResource(kind: .concurrent, scope: "k:conc")
    static let quota = LimitResource(kind: .quota, scope: "key:quota")
    static let limits: [LimitResource: Int] = [rpm: 300, tpm: 30_000, concurrent: 12, quota: 200_000]

    struct Admitted {
        let resource: LimitResource
        let at: Double
        var tokens: Int
    }

    struct Running {
        let gateway: Int
        let admission: SharedAdmission
        let ends: Double
        let tokens: Int
        let resource: LimitResource
    }

    struct Message {
        let gateway: Int
        let sync: LimitSync
        let sentAt: Double
        let arrives: Double
        let answered: Double
    }

    struct Outcome {
        var admitted: [Admitted] = []
        var peakConcurrent = 0
        var concurrentSamples: [Int] = []
    }

    /// Runs `seconds` of simulated time. `newLedgerAt`: the ledger is replaced (its leader died);
    /// `gatewayDiesAt`: gateway 2 stops, its requests with it.
    static func simulate(
        seed: UInt64, seconds: Double, newLedgerAt: Double? = nil, gatewayDiesAt: Double? = nil
    ) -> Outcome {
        var random = Random(state: seed)
        let step = 0.01
        var ledger = LimitLedger(now: 0)
        var pools = [GrantPool(), GrantPool(), GrantPool()]
        let ids = ["gw_a", "gw_b", "gw_c"]
        var inFlight: [Message?] = [nil, nil, nil]
        var running: [Running] = []
        var outcome = Outcome()
        var admittedIndex: [Int: Int] = [:]
        var nextRequest = 0
        var time = 0.0
        var replaced = false
        // The usage table: quota tokens of settled requests, which a ledger reads when it meets
        // the account (written at once here; a gateway writes within a second).
        var stored = 0
        while time < seconds {
            time += step
            if let at = newLedgerAt, !replaced, time >= at {
                ledger = LimitLedger(now: time)
                replaced = true
            }
            let dead = gatewayDiesAt.map { time >= $0 } ?? false
            // Requests that end settle their tokens.
            var still: [Running] = []
            for request in running {
                if dead, request.gateway == 2 { continue }
                if request.ends <= time {
                    pools[request.gateway].settle(request.admission, tokens: request.tokens, now: time)
                    if request.resource == quota { stored += request.tokens }
                } else {
                    still.append(request)
                }
            }
            running = still
            for gateway in 0..<3 {
                if dead, gateway == 2 { continue }
                // Answers arrive; the ledger handled the sync when it arrived.
                if let message = inFlight[gateway], message.answered <= time {
                    // What the host does: a quota account's stored use is read first.
                    for (resource, start) in ledger.quotaToLoad(message.sync) {
                        ledger.loadQuota(
                            resource, periodStart: start, quota: limits[resource]!, used: stored, now: message.arrives)
                    }
                    let answer = ledger.sync(message.sync, now: message.arrives)
                    pools[gateway].apply(answer, sentAt: message.sentAt, now: time)
                    inFlight[gateway] = nil
                }
                if inFlight[gateway] == nil, pools[gateway].syncDue(now: time, interval: 0.25) {
                    let sync = pools[gateway].makeSync(gateway: ids[gateway], now: time)
                    let arrives = time + random.uniform(0.001...0.03)
                    inFlight[gateway] = Message(
                        gateway: gateway, sync: sync, sentAt: time, arrives: arrives,
                        answered: arrives + random.uniform(0.001...0.03))
                }
                // Far more demand than any limit: a few requests per step per gateway.
                for _ in 0..<random.int(0...3) {
                    let resource = [rpm, tpm, concurrent, quota][random.int(0...3)]
                    let reservation = random.int(100...300)
                    let amount = resource.kind == .requests || resource.kind == .concurrent ? 1 : reservation
                    let need = LimitNeed(
                        resource: resource, limit: limits[resource]!, amount: amount,
                        periodStart: resource.kind == .quota ? 0 : nil, label: "key")
                    guard case .taken(let admission) = pools[gateway].take([need], now: time, waitOver: false) else {
                        continue
                    }
                    let used = random.int(reservation / 2...reservation)
                    nextRequest += 1
                    admittedIndex[nextRequest] = outcome.admitted.count
                    outcome.admitted.append(Admitted(resource: resource, at: time, tokens: used))
                    running.append(
                        Running(
                            gateway: gateway, admission: admission, ends: time + random.uniform(0.05...0.6), tokens: used,
                            resource: resource))
                }
            }
            let concurrentNow = running.filter { $0.resource == concurrent }.count
            outcome.peakConcurrent = max(outcome.peakConcurrent, concurrentNow)
            outcome.concurrentSamples.append(concurrentNow)
        }
        return outcome
    }

    /// The most admitted (requests, or tokens used) in any closed 60 s window.
    static func mostInAnyWindow(_ admitted: [Admitted], _ resource: LimitResource, tokens: Bool) -> Int {
        let items = admitted.filter { $0.resource == resource }.sorted { $0.at < $1.at }
        var most = 0
        var sum = 0
        var start = 0
        for (index, item) in items.enumerated() {
            sum += tokens ? item.tokens : 1
            while items[start].at < item.at - 60 {
                sum -= tokens ? items[start].tokens : 1
                start += 1
            }
            most = max(most, sum)
            _ = index
        }
        return most
    }

    static func admitted(_ admitted: [Admitted], _ resource: LimitResource, in range: Range<Double>, tokens: Bool) -> Int {
        admitted.filter { $0.resource == resource && range.contains($0.at) }.reduce(0) { $0 + (tokens ? $1.tokens : 1) }
    }

    static func check(_ outcome: Outcome) {
        #expect(mostInAnyWindow(outcome.admitted, rpm, tokens: false) <= 300)
        #expect(mostInAnyWindow(outcome.admitted, tpm, tokens: true) <= 30_000)
        #expect(outcome.peakConcurrent <= 12)
        #expect(admitted(outcome.admitted, quota, in: 0..<1e9, tokens: true) <= 200_000)
    }

    @Test("three gateways under excess demand: every limit exact, and at least 90 % of it admitted", arguments: [1, 2, 3])
    func exactAndUsed(seed: Int) {
        let outcome = Self.simulate(seed: UInt64(seed), seconds: 130)
        Self.check(outcome)
        // The first minute (after the 1.5 s warm-up) and the next.
        for start in [0.0, 64.0] {
            let window = start..<(start + 64)
            #expect(Self.admitted(outcome.admitted, Self.rpm, in: window, tokens: false) >= 270)
            #expect(Self.admitted(outcome.admitted, Self.tpm, in: window, tokens: true) >= 27_000)
        }
        #expect(Self.admitted(outcome.admitted, Self.quota, in: 0..<1e9, tokens: true) >= 180_000)
        // Concurrency: the slots are in use nearly all the time after the warm-up.
        let samples = outcome.concurrentSamples.dropFirst(300)
        let mean = Double(samples.reduce(0, +)) / Double(samples.count)
        #expect(mean >= 0.9 * 12, "mean concurrency \(mean)")
    }

    @Test("a new ledger (the leader died) hears what gateways used and hands out no minute twice")
    func failover() {
        for seed in [4, 5] {
            let outcome = Self.simulate(seed: UInt64(seed), seconds: 100, newLedgerAt: 20)
            Self.check(outcome)
        }
    }

    @Test("a gateway that dies leaves its slots to the others once they expire")
    func deadGateway() {
        let outcome = Self.simulate(seed: 6, seconds: 40, gatewayDiesAt: 10)
        Self.check(outcome)
        let late = outcome.concurrentSamples.suffix(1500)
        let mean = Double(late.reduce(0, +)) / Double(late.count)
        #expect(mean >= 0.9 * 12, "mean concurrency after the death \(mean)")
    }
}

import AsyncHTTPClient
import Foundation
import GantryCore
import GantryTestSupport
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

/// The orchestrator with real engines: llama.cpp's `llama-server` and the SmolLM2 demo model,
/// started as processes by the local runtime, requests over HTTP through the gateway. Two
/// instances at one thread each fit this 2-core machine.
@Suite("Orchestration end to end with llama.cpp", .serialized, .tags(.llamaCpp))
struct OrchestrationEndToEndTests {
    let llamaServer: String
    let model: String

    init() throws {
        llamaServer = try TestEnvironment.require(TestEnvironment.llamaServer)
        model = try TestEnvironment.require(TestEnvironment.model)
    }

    /// A running server with the demo model registered as versions 1 and 2 (the same file).
    func withServer(_ body: @Sendable (LiveAPI, String, TestServer) async throws -> Void) async throws {
        let test = try await TestServer.make(llamaServer: llamaServer)
        try await test.server.application.test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"
            let api = LiveAPI(key: test.adminKey)
            #expect(try await api.send("POST", "\(base)/api/v1/models", #"{"name":"smollm2","task":"chat"}"#).status == 201)
            for _ in 1...2 {
                let version = try await api.send(
                    "POST", "\(base)/api/v1/models/smollm2/versions",
                    #"{"format":"gguf","context_limit":1024,"artifact_uri":"file://\#(model)"}"#)
                #expect(version.status == 201)
            }
            try await body(api, base, test)
        }
    }

    func json(_ body: [UInt8]) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
    }

    func deployment(_ api: LiveAPI, _ base: String, _ name: String) async throws -> [String: Any] {
        json(try await api.send("GET", "\(base)/api/v1/deployments/\(name)").body)
    }

    /// Polls the deployment until `condition` holds or `seconds` pass.
    func wait(
        _ api: LiveAPI, _ base: String, _ name: String, seconds: Int = 120,
        until condition: ([String: Any]) -> Bool
    ) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var last: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            last = try await deployment(api, base, name)
            if condition(last) { return last }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("deployment \(name) never reached the expected state: \(last)")
        throw GantryError(.internal, "timed out")
    }

    func chat(_ api: LiveAPI, _ base: String, _ name: String, maxTokens: Int = 4, stream: Bool = false) async throws -> Int {
        try await api.send(
            "POST", "\(base)/v1/chat/completions",
            #"{"model":"\#(name)","stream":\#(stream),"messages":[{"role":"user","content":"Say hi"}],"max_tokens":\#(maxTokens)}"#
        ).status
    }

    static func instances(_ deployment: [String: Any]) -> [[String: Any]] {
        deployment["instances"] as? [[String: Any]] ?? []
    }

    static func readyCount(_ deployment: [String: Any]) -> Int {
        instances(deployment).count { $0["state"] as? String == "ready" }
    }

    @Test("a rolling update to a new version under continuous requests completes with zero failed requests")
    func rollingUpdateUnderLoad() async throws {
        try await withServer { api, base, _ in
            #expect(
                try await api.send("POST", "\(base)/api/v1/deployments", #"{"name":"chat","model":"smollm2","version":"1"}"#)
                    .status == 201)
            let before = try await wait(api, base, "chat") { $0["status"] as? String == "ready" }
            let oldInstance = try #require(Self.instances(before).first?["id"] as? String)

            let counts = Mutex((ok: 0, failed: 0, statuses: [Int]()))
            let stop = Mutex(false)
            let load = Task {
                while !stop.withLock({ $0 }) {
                    let status = (try? await chat(api, base, "chat")) ?? 0
                    counts.withLock { counts in
                        if status == 200 { counts.ok += 1 } else { counts.failed += 1; counts.statuses.append(status) }
                    }
                }
            }
            let started = ContinuousClock.now
            let patched = try await api.send("PATCH", "\(base)/api/v1/deployments/chat", #"{"version":"2"}"#)
            #expect(patched.status == 200)
            let after = try await wait(api, base, "chat") { deployment in
                let instances = Self.instances(deployment)
                return deployment["status"] as? String == "ready" && deployment["version"] as? String == "2"
                    && instances.count == 1 && instances.first?["id"] as? String != oldInstance
            }
            let took = ContinuousClock.now - started
            // A fixed time on purpose: requests keep succeeding on the new instance alone for it.
            try await Task.sleep(for: .milliseconds(500))
            stop.withLock { $0 = true }
            await load.value
            let result = counts.withLock { $0 }
            print("rolling update: \(took), \(result.ok) requests succeeded during it, \(result.failed) failed")
            #expect(result.failed == 0, "failed statuses: \(result.statuses)")
            #expect(result.ok >= 2, "requests ran during the roll-out")
            #expect((after["previous_revision"] as? [String: Any])?["version"] as? String == "1")
            let events = json(try await api.send("GET", "\(base)/api/v1/deployments/chat/events").body)
            let messages = (events["data"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
            #expect(messages.contains { $0.hasPrefix("draining: replaced by revision") })
            #expect(messages.contains { $0.hasPrefix("stopped (drained)") })
        }
    }

    @Test("load takes a service from 1 to 2 replicas and idleness brings it back to 1")
    func autoscaleUpAndDown() async throws {
        try await withServer { api, base, _ in
            let created = try await api.send(
                "POST", "\(base)/api/v1/deployments",
                #"{"name":"chat","model":"smollm2","min_replicas":1,"max_replicas":2,"autoscaling":{"target_in_flight_per_replica":1,"scale_up_window_seconds":0,"scale_down_window_seconds":3}}"#
            )
            #expect(created.status == 201)
            _ = try await wait(api, base, "chat") { Self.readyCount($0) == 1 }
            // Three long streams at a target of one request per replica: the maximum, two.
            let streams = (0..<3).map { _ in Task { try await chat(api, base, "chat", maxTokens: 200, stream: true) } }
            let scaled = try await wait(api, base, "chat", seconds: 60) { Self.readyCount($0) == 2 }
            #expect(scaled["replicas"] as? Int == 2)
            for stream in streams { #expect(try await stream.value == 200) }
            let back = try await wait(api, base, "chat", seconds: 60) { deployment in
                deployment["replicas"] as? Int == 1 && Self.instances(deployment).count == 1
            }
            #expect(Self.readyCount(back) == 1)
            #expect(try await chat(api, base, "chat") == 200)
        }
    }

    @Test("a service scaled to zero holds a request while an instance starts, then answers it")
    func scaleFromZero() async throws {
        try await withServer { api, base, test in
            let created = try await api.send(
                "POST", "\(base)/api/v1/deployments",
                #"{"name":"chat","model":"smollm2","min_replicas":0,"max_replicas":1,"autoscaling":{"scale_down_window_seconds":1}}"#
            )
            #expect(created.status == 201)
            // It starts one instance (status pending, then ready), which goes once idle for a second;
            // a poll may miss the short ready phase on a loaded machine, so only the end is awaited.
            _ = try await wait(api, base, "chat") { $0["status"] as? String == "idle" && Self.instances($0).isEmpty }
            let events = try await api.send("GET", "\(base)/api/v1/deployments/chat/events")
            #expect(
                String(decoding: events.body, as: UTF8.self).contains("ready"),
                "an instance was ready before the service went to zero")
            #expect(await test.server.localRuntime.runningInstanceIDs().isEmpty, "no engine runs at zero")

            let started = ContinuousClock.now
            #expect(try await chat(api, base, "chat") == 200)
            print("scale from zero: first request answered after \(ContinuousClock.now - started)")
            let running = try await deployment(api, base, "chat")
            #expect(Self.readyCount(running) == 1)
        }
    }

    @Test("a canary of version 2 runs beside version 1; requests pinned with name@version reach each")
    func canary() async throws {
        try await withServer { api, base, _ in
            #expect(
                try await api.send("POST", "\(base)/api/v1/deployments", #"{"name":"chat","model":"smollm2","version":"1"}"#)
                    .status == 201)
            _ = try await wait(api, base, "chat") { Self.readyCount($0) == 1 }
            let patched = try await api.send(
                "PATCH", "\(base)/api/v1/deployments/chat", #"{"canary":{"version":"2","weight":50}}"#)
            #expect(patched.status == 200)
            let both = try await wait(api, base, "chat") { Self.readyCount($0) == 2 }
            #expect((both["canary"] as? [String: Any])?["weight"] as? Int == 50)
            #expect(both["status"] as? String == "ready" && both["version"] as? String == "1")
            for model in ["chat@1", "chat@2", "chat", "chat"] {
                #expect(try await chat(api, base, model) == 200, "\(model)")
            }
            #expect(try await chat(api, base, "chat@3") == 404)
        }
    }

    @Test("engine logs and events are served to admins only; events record the lifecycle")
    func logsAndEvents() async throws {
        try await withServer { api, base, test in
            #expect(try await api.send("POST", "\(base)/api/v1/deployments", #"{"name":"chat","model":"smollm2"}"#).status == 201)
            let ready = try await wait(api, base, "chat") { $0["status"] as? String == "ready" }
            let instance = try #require(Self.instances(ready).first)
            let id = try #require(instance["id"] as? String)
            #expect(instance["pid"] as? Int != nil)
            let logs = try await api.send("GET", "\(base)/api/v1/deployments/chat/instances/\(id)/logs?max_bytes=4096")
            #expect(logs.status == 200)
            #expect(logs.body.count <= 4096 && String(decoding: logs.body, as: UTF8.self).contains("server"))
            #expect(try await api.send("GET", "\(base)/api/v1/deployments/chat/instances/ins_nope/logs").status == 404)
            let metrics = try await api.send("GET", "\(base)/api/v1/deployments/chat/instances/\(id)/metrics")
            #expect(metrics.status == 200)
            #expect(String(decoding: metrics.body, as: UTF8.self).contains("llamacpp:"), "the engine's own metrics")

            let user = try await test.server.identity.ensureUser(name: "dave", role: .user)
            let (_, key) = try await test.server.identity.issueKey(userID: user.id, name: "k", expiresAt: nil)
            let asUser = LiveAPI(key: key)
            #expect(try await asUser.send("GET", "\(base)/api/v1/deployments/chat/instances/\(id)/logs").status == 403)
            // Events name process ids and can quote a crashed engine's log: admins only too.
            #expect(try await asUser.send("GET", "\(base)/api/v1/deployments/chat/events").status == 403)
            let events = json(try await api.send("GET", "\(base)/api/v1/deployments/chat/events").body)
            let messages = (events["data"] as? [[String: Any]] ?? []).compactMap { $0["message"] as? String }
            #expect(messages.first == "created with version 2 on llama-cpp")
            #expect(messages.contains { $0.hasPrefix("pending: instance 1 of 1") })
            #expect(messages.contains { $0.hasPrefix("starting llama-cpp (pid ") })
            #expect(messages.contains { $0.hasPrefix("ready after ") })

            // The service's last hour, minute by minute, with the request just answered.
            #expect(try await chat(api, base, "chat") == 200)
            #expect(try await asUser.send("GET", "\(base)/api/v1/deployments/chat/metrics").status == 403)
            #expect(try await api.send("GET", "\(base)/api/v1/deployments/nope/metrics").status == 404)
            let history = json(try await api.send("GET", "\(base)/api/v1/deployments/chat/metrics").body)
            let minutes = history["minutes"] as? [[String: Any]] ?? []
            #expect(history["service"] as? String == "chat" && minutes.count == 60)
            let recent = minutes.suffix(2)
            #expect(recent.reduce(0) { $0 + ($1["requests"] as? Int ?? 0) } == 1)
            #expect(recent.reduce(0) { $0 + ($1["completion_tokens"] as? Int ?? 0) } > 0)
            // The instance's series carry the whole label vocabulary: the version and node it runs on.
            let exported = String(decoding: try await api.send("GET", "\(base)/metrics").body, as: UTF8.self)
            let node = try #require(instance["node"] as? String)
            #expect(
                exported.contains(
                    #"gantry_inference_instance_in_flight{service="chat",version="2",instance="\#(id)",node="\#(node)"} 0"#))
        }
    }
}

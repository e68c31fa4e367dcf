import AsyncHTTPClient
import Foundation
import GantryCore
import GantryOrchestrator
import GantryRegistry
import GantryTestSupport
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// The walking skeleton with real parts: the real application on a real port, llama.cpp's
/// `llama-server` started by the orchestrator, the SmolLM2 demo model, requests over HTTP.
@Suite("End to end with llama.cpp", .serialized, .tags(.llamaCpp))
struct EndToEndTests {
    let llamaServer: String
    let model: String

    init() throws {
        llamaServer = try TestEnvironment.require(TestEnvironment.llamaServer)
        model = try TestEnvironment.require(TestEnvironment.model)
    }

    /// POSTs JSON with the given key and returns status and body.
    func post(_ http: HTTPClient, _ url: String, key: String, _ body: String) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "authorization", value: "Bearer \(key)")
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await http.execute(request, timeout: .seconds(120))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    func get(_ http: HTTPClient, _ url: String, key: String) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "authorization", value: "Bearer \(key)")
        let response = try await http.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (try JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
    }

    func waitForStatus(
        _ http: HTTPClient, base: String, key: String, deployment: String, _ wanted: String, notInstance: String? = nil
    ) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(180)
        var last: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            last = try await get(http, "\(base)/api/v1/deployments/\(deployment)", key: key)
            let instances = last["instances"] as? [[String: Any]] ?? []
            let replaced = notInstance.map { old in !instances.contains { $0["id"] as? String == old } } ?? true
            if last["status"] as? String == wanted, replaced, !instances.isEmpty { return last }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("deployment \(deployment) never reached \(wanted): \(last)")
        throw GantryError(.internal, "timed out")
    }

    @Test(
        "admin deploys the demo model; a user's key gets chat completions, plain and streamed; engine death is survived; delete stops the engine"
    )
    func walkingSkeleton() async throws {
        let test = try await TestServer.make(llamaServer: llamaServer)
        let server = test.server
        let http = HTTPClient.shared
        try await server.application.test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"
            let admin = test.adminKey
            #expect(try await post(http, "\(base)/api/v1/models", key: admin, #"{"name":"smollm2","task":"chat"}"#).0 == 201)
            let version = try await post(
                http, "\(base)/api/v1/models/smollm2/versions", key: admin,
                #"{"format":"gguf","context_limit":1024,"artifact_uri":"file://\#(model)"}"#)
            #expect(version.0 == 201)
            let started = ContinuousClock.now
            #expect(
                try await post(http, "\(base)/api/v1/deployments", key: admin, #"{"name":"chat","model":"smollm2"}"#).0 == 201)
            let ready = try await waitForStatus(http, base: base, key: admin, deployment: "chat", "ready")
            print("deploy-to-ready: \(ContinuousClock.now - started)")
            let firstInstance = try #require((ready["instances"] as? [[String: Any]])?.first?["id"] as? String)

            let user = try await server.identity.ensureUser(name: "carol", role: .user)
            let (_, key) = try await server.identity.issueKey(userID: user.id, name: "e2e", expiresAt: nil)

            // Non-streaming: real tokens from the real model, usage reported by the engine.
            let (status, body) = try await post(
                http, "\(base)/v1/chat/completions", key: key,
                #"{"model":"chat","messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":24}"#)
            #expect(status == 200)
            let reply = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
            let message = ((reply["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
            #expect(!(message ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
            #expect(((reply["usage"] as? [String: Any])?["completion_tokens"] as? Int ?? 0) > 0)

            // Streaming: events arrive as the engine produces them, not in one piece at the end.
            var request = HTTPClientRequest(url: "\(base)/v1/chat/completions")
            request.method = .POST
            request.headers.add(name: "authorization", value: "Bearer \(key)")
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(
                ByteBuffer(
                    string:
                        #"{"model":"chat","stream":true,"messages":[{"role":"user","content":"Write a short poem."}],"max_tokens":48}"#
                ))
            let response = try await http.execute(request, timeout: .seconds(120))
            #expect(response.status == .ok)
            var parts = 0
            var text = ""
            for try await part in response.body {
                parts += 1
                text += String(buffer: part)
            }
            #expect(parts >= 3, "the stream arrived in \(parts) piece(s)")
            #expect(text.components(separatedBy: "data: {").count > 3)
            #expect(text.contains("data: [DONE]"))

            let models = try await get(http, "\(base)/v1/models", key: key)
            #expect((models["data"] as? [[String: Any]])?.map { $0["id"] as? String } == ["chat"])

            // The engine dies in the middle of a stream: the client gets an error event, not a hang,
            // and the reconcile loop replaces the instance.
            let pid = try #require(await server.localRuntime.processIdentifier(instanceID: firstInstance))
            request.body = .bytes(
                ByteBuffer(
                    string:
                        #"{"model":"chat","stream":true,"messages":[{"role":"user","content":"Tell a very long story."}],"max_tokens":900}"#
                ))
            let doomed = try await http.execute(request, timeout: .seconds(60))
            var streamed = ""
            var killedAt: ContinuousClock.Instant?
            for try await part in doomed.body {
                streamed += String(buffer: part)
                if killedAt == nil {
                    kill(pid, SIGKILL)
                    killedAt = .now
                }
            }
            let killed = try #require(killedAt)
            #expect(streamed.contains("engine_failed"))
            // The reconcile loop restarts the same instance; requests succeed again. The time from
            // the kill to the first good answer is the failover time of one instance.
            var recoveredAt: ContinuousClock.Instant?
            while recoveredAt == nil, ContinuousClock.now - killed < .seconds(60) {
                let (status, _) = try await post(
                    http, "\(base)/v1/chat/completions", key: key,
                    #"{"model":"chat","messages":[{"role":"user","content":"Hi"}],"max_tokens":4}"#)
                if status == 200 { recoveredAt = .now } else { try await Task.sleep(for: .milliseconds(50)) }
            }
            let recovered = try #require(recoveredAt, "requests never succeeded again after the engine was killed")
            print("kill -9 to first successful request: \(recovered - killed)")
            let after = try await get(http, "\(base)/api/v1/deployments/chat", key: admin)
            let instances = after["instances"] as? [[String: Any]] ?? []
            #expect(instances.count == 1)
            #expect(instances.first?["id"] as? String == firstInstance, "restarted in place")
            #expect(instances.first?["restarts"] as? Int == 1)

            // Deleting the deployment stops its engine and withdraws the route.
            var delete = HTTPClientRequest(url: "\(base)/api/v1/deployments/chat")
            delete.method = .DELETE
            delete.headers.add(name: "authorization", value: "Bearer \(admin)")
            #expect(try await http.execute(delete, timeout: .seconds(10)).status == .accepted)
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline, !(await server.localRuntime.runningInstanceIDs().isEmpty) {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(await server.localRuntime.runningInstanceIDs().isEmpty)
            let (gone, _) = try await post(
                http, "\(base)/v1/chat/completions", key: key, #"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#)
            #expect(gone == 404)
        }
    }

    @Test("graceful shutdown stops every engine the platform started")
    func shutdownStopsEngines() async throws {
        let test = try await TestServer.make(llamaServer: llamaServer)
        let server = test.server
        _ = try await server.registry.createModel(NewModel(name: "smollm2", description: "", task: .chat), createdBy: nil)
        _ = try await server.registry.createVersion(
            modelName: "smollm2", NewVersion(format: "gguf", contextLimit: 512, artifactUri: "file://" + model))
        _ = try await server.deployments.create(DeploymentRequest(name: "chat", model: "smollm2"))
        let pid: Int32? = try await server.application.test(.live) { _ in
            let deadline = ContinuousClock.now + .seconds(120)
            while ContinuousClock.now < deadline {
                if let id = await server.localRuntime.runningInstanceIDs().first,
                    try await server.store.repositories.deployments.deployment(named: "chat")?.status == .ready
                {
                    return await server.localRuntime.processIdentifier(instanceID: id)
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            return nil
        }
        let enginePID = try #require(pid)
        // The test framework has shut the application down gracefully; the engine must be gone (a
        // llama-server left running would not end by itself within the bound).
        try await waitUntil("llama-server \(enginePID) has ended with the application", within: .seconds(5)) {
            kill(enginePID, 0) != 0
        }
    }
}

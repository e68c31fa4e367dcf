import AsyncHTTPClient
import Foundation
import GantryCore
import GantryTestSupport
import Hummingbird
import HummingbirdTesting
import Testing

/// The official `openai` Python client (PyPI, pinned in scripts/peers/test.txt and installed by
/// scripts/test.sh into the test peers' environment) against Gantry with
/// real llama.cpp engines: chat, streaming with and without usage, completions, embeddings, and
/// the client's error classes for 400, 401, 404 and 429. The checks are in
/// Tests/openai-client/check.py; this test deploys what they need and runs them.
@Suite("Official OpenAI Python client", .tags(.llamaCpp, .python))
struct OpenAIClientTests {
    let llamaServer: String
    let model: String

    init() throws {
        llamaServer = try TestEnvironment.require(TestEnvironment.llamaServer)
        model = try TestEnvironment.require(TestEnvironment.model)
    }

    static let contextLimit = 512

    @Test("chat, streams, completions, embeddings and error classes through the openai client")
    func officialClient() async throws {
        let test = try await TestServer.make(llamaServer: llamaServer)
        try await test.server.application.test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"
            let api = LiveAPI(key: test.adminKey)
            #expect(try await api.send("POST", "\(base)/api/v1/models", #"{"name":"smollm2","task":"chat"}"#).status == 201)
            #expect(
                try await api.send(
                    "POST", "\(base)/api/v1/models/smollm2/versions",
                    #"{"format":"gguf","context_limit":1024,"artifact_uri":"file://\#(model)"}"#
                ).status == 201)
            #expect(
                try await api.send(
                    "POST", "\(base)/api/v1/deployments",
                    #"{"name":"chat","model":"smollm2","context_limit":\#(Self.contextLimit)}"#
                ).status == 201)
            #expect(
                try await api.send(
                    "POST", "\(base)/api/v1/deployments",
                    #"{"name":"embed","model":"smollm2","context_limit":256,"engine_args":["--embeddings","--pooling","mean"]}"#
                ).status == 201)
            for name in ["chat", "embed"] {
                let deadline = ContinuousClock.now + .seconds(120)
                while ContinuousClock.now < deadline {
                    let answer = try await api.send("GET", "\(base)/api/v1/deployments/\(name)")
                    let status = (try? JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any])?["status"]
                    if status as? String == "ready" { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            let user = try await test.server.identity.ensureUser(name: "dev", role: .user)
            let (_, key) = try await test.server.identity.issueKey(userID: user.id, name: "client", expiresAt: nil)
            let (_, limited) = try await test.server.identity.issueKey(
                userID: user.id, name: "limited", expiresAt: nil, limits: UsageLimits(requestsPerMinute: 1))

            let output = try await Self.runChecks(
                environment: [
                    "GANTRY_BASE_URL": base, "GANTRY_KEY": key, "GANTRY_LIMITED_KEY": limited, "GANTRY_CHAT_MODEL": "chat",
                    "GANTRY_EMBED_MODEL": "embed", "GANTRY_CONTEXT_LIMIT": String(Self.contextLimit),
                ])
            print(output.text)
            #expect(output.status == 0, "openai client checks failed:\n\(output.text)")
            #expect(output.text.contains("checks passed"))
            let pinned = try Self.pinnedVersion("openai")
            #expect(output.text.contains("openai client \(pinned)\n"), "the client that ran is the pinned one (\(pinned))")

            // What the client did was metered: its chat, stream and completion requests.
            await test.server.usage.flush()
            let records = try await test.server.store.repositories.usage.usage(UsageQuery(userID: user.id, limit: 100))
            #expect(records.contains { $0.endpoint == "embeddings" && $0.status == 200 && $0.promptTokens > 0 })
            let streamed = records.filter { $0.endpoint == "chat.completions" && $0.status == 200 }
            #expect(streamed.count >= 4)
            #expect(streamed.allSatisfy { $0.completionTokens > 0 }, "every stream was metered from the engine's usage")
            #expect(records.contains { $0.errorType == "context_length_exceeded" && $0.instanceID != nil })
        }
    }

    /// The version `scripts/peers/test.txt` pins for `package`.
    static func pinnedVersion(_ package: String) throws -> String {
        let pins = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/peers/test.txt")
        let text = try String(contentsOf: pins, encoding: .utf8)
        for line in text.split(separator: "\n") where line.hasPrefix(package + "==") {
            return String(line.dropFirst(package.count + 2).prefix { !$0.isWhitespace })
        }
        throw GantryError(.internal, "scripts/peers/test.txt pins no \(package)")
    }

    /// Runs check.py with the pinned interpreter of the test peers' environment and waits for it
    /// without blocking a thread: it runs for many seconds, and a blocked thread of the
    /// cooperative pool (two here) starved the other tests' servers.
    static func runChecks(environment: [String: String]) async throws -> (status: Int32, text: String) {
        let python = try TestEnvironment.require(TestEnvironment.python)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("openai-client/check.py")
        let directory = try TemporaryDirectory()
        let output = directory.path + "/output"
        let child = try ChildProcess.spawn(
            [python, script.path], environment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
            outputPath: output)
        let status = await child.wait()
        return (status, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }
}

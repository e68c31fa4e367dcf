import ArgumentParser
import Foundation
import GantryCore
import GantryHTTP
import GantryOrchestrator

/// The spec options `deploy` and `deployments update` share; unset options are not sent, so an
/// update changes only what is given.
struct DeploymentSpecOptions: ParsableArguments {
    @Option(help: "Model version (default: the newest ready version that is not deprecated).") var version: String?
    @Option(help: "Engine: llama-cpp, vllm, sglang, tgi or custom (default: the version's).") var engine: String?
    @Option(name: .customLong("engine-arg"), parsing: .unconditionalSingleValue, help: "An engine argument (repeatable).")
    var engineArgs: [String] = []
    @Option(help: "Context limit in tokens, at most the version's.") var contextLimit: Int?
    @Option(help: "GPUs per replica.") var gpus: Int?
    @Option(help: "Only GPUs whose name contains this, e.g. H100.") var gpuName: String?
    @Option(help: "Only GPUs with at least this much memory free (MiB).") var minFreeMemoryMib: Int?
    @Option(help: "CPU threads per replica.") var cpuThreads: Int?
    @Option(help: "A fixed number of replicas.") var replicas: Int?
    @Option(help: "Fewest replicas (0 scales to zero when idle).") var minReplicas: Int?
    @Option(help: "Most replicas.") var maxReplicas: Int?
    @Option(help: "Autoscaling target: requests in flight per replica.") var targetInFlight: Int?
    @Option(help: "Seconds load must stay high before scaling up.") var scaleUpWindow: Int?
    @Option(help: "Seconds load must stay low before scaling down (and to zero).") var scaleDownWindow: Int?
    @Option(help: "Accepted authentication: api_key, oidc or both, comma-separated.") var auth: String?
    @Option(help: "Only these users may call it, comma-separated.") var users: String?
    @Option(help: "Requests per minute per API key.") var rpmPerKey: Int?
    @Option(help: "Tokens per minute per API key.") var tpmPerKey: Int?
    @Option(help: "Concurrent requests per API key.") var concurrencyPerKey: Int?
    @Option(help: "Requests per minute in total.") var rpm: Int?
    @Option(help: "Tokens per minute in total.") var tpm: Int?
    @Option(help: "Concurrent requests in total.") var concurrency: Int?
    @Option(help: "Seconds to wait for an engine's first byte (default: the server's upstream timeout).")
    var firstByteTimeout: Double?
    @Option(help: "Seconds a stream may stay silent before it is ended with an error event.") var idleTimeout: Double?
    @Option(help: "Run this version as a canary beside the main one (update only).") var canaryVersion: String?
    @Option(help: "Percent of requests for the canary, 1-99; 0 removes it.") var canaryWeight: Int?
    @Option(help: "Canary replicas (default 1).") var canaryReplicas: Int?

    /// What an update changes as whole objects on the server, as the deployment has it now.
    struct Current: Decodable {
        struct Revision: Decodable { var resources: ReplicaResources }
        var revision: Revision
        var access: AccessPolicy
        var limits: FrequencyLimits
        var timeouts: ServiceTimeouts?
    }

    /// The API's own request type, so the CLI sends exactly what the server decodes. The server
    /// replaces resources, access, limits and timeouts as whole objects, so for an update each is
    /// sent as `current` has it with only the given options changed: `--rpm 5` leaves the other
    /// limits, `--cpu-threads 8` the GPUs.
    func request(name: String? = nil, model: String? = nil, over current: Current? = nil) throws -> DeploymentRequest {
        let methods = try auth.map { text in
            try text.split(separator: ",").map { word in
                guard let method = AuthenticationMethod(rawValue: String(word)) else {
                    throw ValidationError("--auth takes api_key, oidc or both, not '\(word)'")
                }
                return method
            }
        }
        let list = { (text: String) in text.split(separator: ",").map(String.init) }

        var resources = current?.revision.resources ?? ReplicaResources()
        if let gpus { resources.gpus = gpus }
        if let gpuName { resources.gpuName = gpuName }
        if let minFreeMemoryMib { resources.minFreeMemoryMib = minFreeMemoryMib }
        if let cpuThreads { resources.cpuThreads = cpuThreads }
        var access = current?.access ?? AccessPolicy()
        if let methods { access.methods = methods }
        if let users { access.users = list(users) }
        var limits = current?.limits ?? FrequencyLimits()
        if let rpmPerKey { limits.requestsPerMinutePerKey = rpmPerKey }
        if let tpmPerKey { limits.tokensPerMinutePerKey = tpmPerKey }
        if let concurrencyPerKey { limits.concurrentRequestsPerKey = concurrencyPerKey }
        if let rpm { limits.requestsPerMinute = rpm }
        if let tpm { limits.tokensPerMinute = tpm }
        if let concurrency { limits.concurrentRequests = concurrency }
        var timeouts = current?.timeouts ?? ServiceTimeouts()
        if let firstByteTimeout { timeouts.firstByteSeconds = firstByteTimeout }
        if let idleTimeout { timeouts.idleSeconds = idleTimeout }

        let anyResources = gpus != nil || gpuName != nil || minFreeMemoryMib != nil || cpuThreads != nil
        let anyLimits = [rpmPerKey, tpmPerKey, concurrencyPerKey, rpm, tpm, concurrency].contains { $0 != nil }
        let anyAutoscaling = targetInFlight != nil || scaleUpWindow != nil || scaleDownWindow != nil
        return DeploymentRequest(
            name: name, model: model, version: version, engine: engine, engineArgs: engineArgs.isEmpty ? nil : engineArgs,
            contextLimit: contextLimit, resources: anyResources ? resources : nil,
            replicas: replicas, minReplicas: minReplicas, maxReplicas: maxReplicas,
            autoscaling: anyAutoscaling
                ? .init(
                    targetInFlightPerReplica: targetInFlight, scaleUpWindowSeconds: scaleUpWindow,
                    scaleDownWindowSeconds: scaleDownWindow) : nil,
            access: auth != nil || users != nil ? access : nil, limits: anyLimits ? limits : nil,
            timeouts: firstByteTimeout != nil || idleTimeout != nil ? timeouts : nil,
            canary: canaryVersion != nil || canaryWeight != nil
                ? .init(version: canaryVersion, weight: canaryWeight ?? 10, replicas: canaryReplicas) : nil)
    }

    static func json(_ request: DeploymentRequest) throws -> String {
        String(decoding: try JSONCoding.encoder().encode(request), as: UTF8.self)
    }
}

/// `gantry deploy NAME MODEL`: creates a model service.
struct DeployCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy", abstract: "Deploy a model as a service callers reach with `model: NAME`.")
    @Argument(help: "Service name: a DNS label, what callers send as `model`.") var name: String
    @Argument(help: "Registered model name.") var model: String
    @OptionGroup var spec: DeploymentSpecOptions
    @Flag(help: "Return at once instead of waiting until the service is ready.") var noWait = false

    func run() async throws {
        let client = try APIClient.configured()
        _ = try await client.expect(
            "POST", "/api/v1/deployments", json: DeploymentSpecOptions.json(try spec.request(name: name, model: model)))
        print("deploying \(name) (\(model))")
        if !noWait { try await DeploymentsCommand.waitUntilSettled(client, name) }
    }
}

/// `gantry deployments`: list, inspect, change and remove model services.
struct DeploymentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deployments", abstract: "List, show, update and delete model services; their events and logs.",
        subcommands: [List.self, Show.self, Update.self, Delete.self, Events.self, Logs.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List deployments.")
        func run() async throws {
            let answer = try await APIClient.configured().expect("GET", "/api/v1/deployments")
            for deployment in answer["data"] as? [[String: Any]] ?? [] {
                let scaling = deployment["scaling"] as? [String: Any] ?? [:]
                print(
                    [
                        deployment["name"] as? String ?? "?", "v\(deployment["version"] as? String ?? "?")",
                        deployment["engine"] as? String ?? "", deployment["status"] as? String ?? "",
                        "replicas \(deployment["replicas"] as? Int ?? 0) (\(scaling["min_replicas"] as? Int ?? 0)-\(scaling["max_replicas"] as? Int ?? 0))",
                        deployment["status_message"] as? String ?? "",
                    ].joined(separator: "  "))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a deployment and its instances as JSON.")
        @Argument var name: String
        func run() async throws {
            let answer = try await APIClient.configured().expect("GET", path(name))
            print(
                String(
                    decoding: try JSONSerialization.data(withJSONObject: answer, options: [.prettyPrinted, .sortedKeys]),
                    as: UTF8.self))
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a deployment: a new version, engine, arguments or resources roll out instance by instance.")
        @Argument var name: String
        @OptionGroup var spec: DeploymentSpecOptions
        @Flag(help: "Return at once instead of waiting for the roll-out.") var noWait = false
        func run() async throws {
            let client = try APIClient.configured()
            let (status, data) = try await client.call("GET", path(name))
            guard status == 200 else { throw APIClient.failure(status: status, body: data) }
            let current = try JSONCoding.decoder().decode(DeploymentSpecOptions.Current.self, from: data)
            let body = try DeploymentSpecOptions.json(try spec.request(over: current))
            guard body != "{}" else { throw ValidationError("nothing to change: give at least one option") }
            _ = try await client.expect("PATCH", path(name), json: body)
            print("updating \(name)")
            if !noWait { try await DeploymentsCommand.waitUntilSettled(client, name) }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a deployment; its instances drain and stop.")
        @Argument var name: String
        func run() async throws {
            _ = try await APIClient.configured().expect("DELETE", path(name))
            print("deleting \(name)")
        }
    }

    struct Events: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "What happened to a deployment, oldest first.")
        @Argument var name: String
        @Option(help: "How many of the newest events.") var limit = 50
        func run() async throws {
            let answer = try await APIClient.configured().expect("GET", path(name, "events") + "?limit=\(limit)")
            for event in answer["data"] as? [[String: Any]] ?? [] {
                let instance = (event["instance_id"] as? String).map { " \($0)" } ?? ""
                print("\(event["created_at"] as? String ?? "")\(instance)  \(event["message"] as? String ?? "")")
            }
        }
    }

    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The end of an instance's engine log.")
        @Argument var name: String
        @Argument(help: "Instance id (default: the first instance).") var instance: String?
        @Option(help: "At most this many bytes.") var maxBytes = 65536
        func run() async throws {
            let client = try APIClient.configured()
            var id = instance
            if id == nil {
                let deployment = try await client.expect("GET", path(name))
                id = (deployment["instances"] as? [[String: Any]])?.first?["id"] as? String
            }
            guard let id else { throw ValidationError("\(name) has no instance") }
            let (status, body) = try await client.call("GET", path(name, "instances", id, "logs") + "?max_bytes=\(maxBytes)")
            guard status == 200 else { throw APIClient.failure(status: status, body: body) }
            FileHandle.standardOutput.write(body)
        }
    }

    /// Prints status changes until the deployment is ready, idle or failed.
    static func waitUntilSettled(_ client: APIClient, _ name: String) async throws {
        var last = ""
        let deadline = ContinuousClock.now + .seconds(900)
        while ContinuousClock.now < deadline {
            let deployment = try await client.expect("GET", path(name))
            let status = deployment["status"] as? String ?? "?"
            let line = "\(status): \(deployment["status_message"] as? String ?? "")"
            if line != last { print("  \(line)") }
            last = line
            // Settled: every instance runs the current revision and is ready (none when idle).
            let revision = (deployment["revision"] as? [String: Any])?["id"] as? String
            let instances = deployment["instances"] as? [[String: Any]] ?? []
            let current = instances.allSatisfy { $0["revision_id"] as? String == revision && $0["state"] as? String == "ready" }
            if (status == "ready" || status == "idle"), current { return }
            if status == "failed" {
                throw GantryError(.unavailable, "\(name) failed: \(deployment["status_message"] as? String ?? "")")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw GantryError(.unavailable, "\(name) did not settle within 15 minutes")
    }
}

private func path(_ segments: String...) -> String {
    APIClient.resourcePath("deployments", segments)
}

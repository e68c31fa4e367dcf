import Foundation
import GantryCore
import GantryStore
import GantryTestSupport
import Logging
import Testing

/// One suite, run against both databases: every repository must behave the same on each.
@Suite("Store conformance", .tags(.postgres))
struct StoreConformanceTests {
    enum Backend: String, CaseIterable, CustomTestStringConvertible {
        case sqlite
        case postgres
        var testDescription: String { rawValue }
    }

    /// Opens a fresh, migrated store of the given kind, runs `body`, closes it.
    func withStore(_ backend: Backend, _ body: (SQLStore) async throws -> Void) async throws {
        let directory = try TemporaryDirectory()
        let location: DatabaseLocation
        switch backend {
        case .sqlite: location = .sqlite(path: directory.path + "/test.sqlite")
        case .postgres: location = .postgres(url: try await PostgresTestDatabase.create())
        }
        let store = try await SQLStore.open(location, logger: Logger(label: "test"))
        do {
            try await store.migrate(logger: Logger(label: "test"))
            try await body(store)
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    @Test("migrations run once and are recorded", arguments: Backend.allCases)
    func migrationsAreIdempotent(backend: Backend) async throws {
        try await withStore(backend) { (store: SQLStore) async throws in
            #expect(try await store.appliedMigrationVersions() == Set(1...SQLStore.latestSchemaVersion))
            #expect(try await store.migrate(logger: Logger(label: "test")) == 0)
            #expect(await store.ping())
        }
    }

    @Test("models and versions: create, read, list, uniqueness", arguments: Backend.allCases)
    func models(backend: Backend) async throws {
        try await withStore(backend) { (store: SQLStore) async throws in
            let repo = store.repositories.models
            let now = Date(timeIntervalSince1970: 1_700_000_000.123)
            let model = Model(
                id: "mdl_1", name: "llama", description: "it's a 'quoted'; DROP TABLE models;--", task: .chat, createdAt: now)
            try await repo.createModel(model)
            #expect(try await repo.model(named: "llama") == model)
            #expect(try await repo.model(id: "mdl_1") == model)
            #expect(try await repo.model(named: "nope") == nil)
            await #expect(throws: GantryError.conflict("model 'llama' already exists")) {
                try await repo.createModel(Model(id: "mdl_2", name: "llama", description: "", task: .chat, createdAt: now))
            }
            let version = ModelVersion(
                id: "ver_1", modelID: "mdl_1", version: "1", format: "gguf", contextLimit: 4096,
                artifactURI: "file:///m.gguf", status: .ready, createdAt: now)
            try await repo.createVersion(version)
            #expect(try await repo.version(modelID: "mdl_1", version: "1") == version)
            #expect(try await repo.version(id: "ver_1") == version)
            await #expect(throws: GantryError.self) {
                try await repo.createVersion(
                    ModelVersion(
                        id: "ver_2", modelID: "mdl_1", version: "1", format: "gguf", contextLimit: 1, artifactURI: "file:///x",
                        status: .ready, createdAt: now))
            }
            #expect(try await repo.listVersions(modelID: "mdl_1") == [version])
            #expect(try await repo.listModels().map(\.name) == ["llama"])
            // Nothing half-written after the refused insert.
            #expect(try await repo.version(id: "ver_2") == nil)
        }
    }

    @Test("deployments and instances: status updates and cascading delete", arguments: Backend.allCases)
    func deployments(backend: Backend) async throws {
        try await withStore(backend) { (store: SQLStore) async throws in
            let repos = store.repositories
            let now = Date(timeIntervalSince1970: 1_700_000_000)
            try await repos.models.createModel(Model(id: "m", name: "m", description: "", task: .chat, createdAt: now))
            try await repos.models.createVersion(
                ModelVersion(
                    id: "v", modelID: "m", version: "1", format: "gguf", contextLimit: 2048, artifactURI: "file:///x",
                    status: .ready, createdAt: now))
            let revision = DeploymentRevision(
                id: "r1", versionID: "v", version: "1", engine: "llama-cpp", contextLimit: 1024, engineArgs: ["--temp", "0"],
                resources: ReplicaResources(gpus: 1, gpuName: "H100"), createdAt: now)
            var deployment = Deployment(
                id: "d", name: "chat", modelID: "m", revision: revision,
                scaling: ScalingPolicy(minReplicas: 0, maxReplicas: 3), replicas: 2,
                access: AccessPolicy(methods: [.apiKey, .oidc], users: ["ann"]), limits: FrequencyLimits(tokensPerMinute: 10),
                status: .pending, statusMessage: "", createdAt: now, updatedAt: now)
            try await repos.deployments.createDeployment(deployment)
            await #expect(throws: GantryError.self) { try await repos.deployments.createDeployment(deployment) }
            try await repos.deployments.updateStatus(deploymentID: "d", status: .ready, message: "2 of 2")
            var stored = try #require(try await repos.deployments.deployment(named: "chat"))
            #expect(stored.status == .ready)
            #expect(stored.statusMessage == "2 of 2")
            #expect(stored.revision == revision && stored.scaling == deployment.scaling && stored.replicas == 2)
            #expect(stored.access == deployment.access && stored.limits == deployment.limits)
            deployment.previousRevision = revision
            deployment.revision.id = "r2"
            deployment.revision.contextLimit = 512
            deployment.replicas = 3
            try await repos.deployments.updateSpec(deployment)
            stored = try #require(try await repos.deployments.deployment(named: "chat"))
            #expect(stored.previousRevision == revision && stored.revision.id == "r2" && stored.contextLimit == 512)
            #expect(stored.replicas == 3 && stored.status == .ready)

            var instance = EngineInstance(
                id: "i", deploymentID: "d", revisionID: "r2", node: "n", state: .starting, createdAt: now, updatedAt: now)
            try await repos.instances.createInstance(instance)
            instance.state = .ready
            instance.endpoint = "http://127.0.0.1:1"
            instance.pid = 4242
            instance.gpuUUIDs = ["GPU-a", "GPU-b"]
            instance.restarts = 2
            try await repos.instances.updateInstance(instance)
            #expect(try await repos.instances.instance(id: "i") == instance)
            #expect(try await repos.instances.listInstances(deploymentID: "d") == [instance])
            #expect(try await repos.instances.listInstances(deploymentID: nil).count == 1)
            for index in 0..<3 {
                try await repos.deployments.recordEvent(
                    DeploymentEvent(
                        deploymentID: "d", instanceID: index == 0 ? nil : "i", kind: "k", message: "e\(index)", createdAt: now))
            }
            #expect(try await repos.deployments.events(deploymentID: "d", limit: 2).map(\.message) == ["e1", "e2"])
            // Nothing brings back a deployment marked for deletion.
            try await repos.deployments.updateStatus(deploymentID: "d", status: .deleting, message: "stopping")
            try await repos.deployments.updateStatus(deploymentID: "d", status: .ready, message: "1 of 1")
            #expect(try await repos.deployments.deployment(named: "chat")?.status == .deleting)
            try await repos.deployments.deleteDeployment(id: "d")
            #expect(try await repos.deployments.listDeployments().isEmpty)
            #expect(try await repos.instances.listInstances(deploymentID: nil).isEmpty)
        }
    }

    @Test("users and API keys: create, revoke, touch, count", arguments: Backend.allCases)
    func identities(backend: Backend) async throws {
        try await withStore(backend) { (store: SQLStore) async throws in
            let repos = store.repositories
            let now = Date(timeIntervalSince1970: 1_700_000_000)
            let user = User(id: "u", name: "ada", email: "ada@example.org", role: .admin, disabled: false, createdAt: now)
            try await repos.users.createUser(user)
            #expect(try await repos.users.user(named: "ada") == user)
            try await repos.users.setDisabled(userID: "u", disabled: true)
            #expect(try await repos.users.user(id: "u")?.disabled == true)
            #expect(try await repos.keys.countKeys() == 0)
            let key = APIKeyRecord(
                id: "k1", userID: "u", name: "laptop", secretHash: "abc", createdAt: now, expiresAt: now.addingTimeInterval(60),
                revokedAt: nil, lastUsedAt: nil)
            try await repos.keys.createKey(key, maxActiveKeys: nil)
            #expect(try await repos.keys.key(id: "k1") == key)
            #expect(try await repos.keys.key(id: "' OR '1'='1") == nil)
            try await repos.keys.touchKey(id: "k1", at: now.addingTimeInterval(5))
            try await repos.keys.revokeKey(id: "k1", at: now.addingTimeInterval(10))
            try await repos.keys.revokeKey(id: "k1", at: now.addingTimeInterval(20))
            let stored = try #require(try await repos.keys.key(id: "k1"))
            #expect(stored.lastUsedAt == now.addingTimeInterval(5))
            #expect(stored.revokedAt == now.addingTimeInterval(10), "a second revoke must not move the revocation time")
            #expect(try await repos.keys.countKeys() == 1)
            #expect(try await repos.keys.listKeys(userID: "u").count == 1)
            #expect(try await repos.keys.listKeys(userID: "other").isEmpty)
            let limited = APIKeyRecord(
                id: "k2", userID: "u", name: "ci", secretHash: "def", createdAt: now, expiresAt: nil, revokedAt: nil,
                lastUsedAt: nil, limits: UsageLimits(requestsPerMinute: 60, tokenQuota: 1000, quotaPeriod: .day))
            try await repos.keys.createKey(limited, maxActiveKeys: nil)
            #expect(try await repos.keys.key(id: "k2") == limited, "limits round-trip")
            try await repos.keys.updateKeyLimits(id: "k2", limits: UsageLimits(tokensPerMinute: 5))
            #expect(try await repos.keys.key(id: "k2")?.limits == UsageLimits(tokensPerMinute: 5))
            try await repos.keys.updateKeyLimits(id: "k2", limits: nil)
            #expect(try await repos.keys.key(id: "k2")?.limits == nil)
        }
    }

    @Test("a user's limits round-trip; the key cap holds under concurrent creation", arguments: Backend.allCases)
    func userLimitsAndKeyCap(backend: Backend) async throws {
        try await withStore(backend) { (store: SQLStore) async throws in
            let repos = store.repositories
            let now = Date()
            let user = User(id: "u", name: "ann", email: nil, role: .user, disabled: false, createdAt: now)
            try await repos.users.createUser(user)
            #expect(try await repos.users.user(id: "u")?.limits == nil)
            let limits = UsageLimits(requestsPerMinute: 10, tokenQuota: 500, quotaPeriod: .day)
            try await repos.users.updateLimits(userID: "u", limits: limits, maxKeys: 3)
            let stored = try #require(try await repos.users.user(id: "u"))
            #expect(stored.limits == limits && stored.maxKeys == 3)
            #expect(try await repos.users.listUsers().first?.maxKeys == 3)

            // A revoked and an expired key do not count against the cap.
            func key(_ id: String, expires: Date? = nil) -> APIKeyRecord {
                APIKeyRecord(
                    id: id, userID: "u", name: id, secretHash: id, createdAt: now, expiresAt: expires, revokedAt: nil,
                    lastUsedAt: nil)
            }
            try await repos.keys.createKey(key("old"), maxActiveKeys: 3)
            try await repos.keys.revokeKey(id: "old", at: now)
            try await repos.keys.createKey(key("gone", expires: now.addingTimeInterval(-1)), maxActiveKeys: nil)
            // Twelve creations at once against a cap of 3: exactly three land.
            let outcomes = await withTaskGroup(of: String?.self) { group in
                for index in 0..<12 {
                    group.addTask {
                        do {
                            try await repos.keys.createKey(key("k\(index)"), maxActiveKeys: 3)
                            return nil
                        } catch let error as GantryError {
                            return error.code ?? "\(error.kind)"
                        } catch {
                            return "\(error)"
                        }
                    }
                }
                return await group.reduce(into: [String?]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == nil }.count == 3, "\(outcomes)")
            #expect(outcomes.compactMap { $0 }.allSatisfy { $0 == "key_limit_reached" }, "\(outcomes)")
            #expect(try await repos.keys.listKeys(userID: "u").filter { $0.revokedAt == nil }.count == 4)

            try await repos.users.updateLimits(userID: "u", limits: nil, maxKeys: nil)
            let cleared = try #require(try await repos.users.user(id: "u"))
            #expect(cleared.limits == nil && cleared.maxKeys == nil)
        }
    }

    static func usageRecord(_ index: Int, day0: Date) -> UsageRecord {
        let failed = index % 10 == 0
        let id = String(format: "use_%05d", index)
        let time = day0.addingTimeInterval(Double(index) * 42)
        let even = index % 2 == 0
        return UsageRecord(
            id: id, createdAt: time, keyID: even ? "k1" : nil, userID: even ? "u1" : "u2",
            deployment: index % 3 == 0 ? "a" : "b", version: "1", instanceID: index % 5 == 0 ? nil : "ins_x",
            endpoint: "chat.completions", promptTokens: 10, completionTokens: index % 7,
            timeToFirstTokenMs: index % 4 == 0 ? nil : 12, latencyMs: 30, status: failed ? 429 : 200,
            errorType: failed ? "rate_limit_exceeded" : nil, engineSeconds: 0.25)
    }

    @Test("pending logins: taken once under concurrency, expire, replaced, bounded per kind", arguments: Backend.allCases)
    func pendingLogins(backend: Backend) async throws {
        try await withStore(backend) { (store: SQLStore) async throws in
            let repo = store.repositories.pendingLogins
            let now = Date()
            let later = now.addingTimeInterval(600)
            try await repo.insertPendingLogin(
                kind: "browser", key: "k1", payload: Data("{\"a\":1}".utf8), expiresAt: later, capacity: 3, now: now)
            #expect(try await repo.pendingLogin(kind: "browser", key: "k1", now: now) == Data("{\"a\":1}".utf8))
            #expect(try await repo.pendingLogin(kind: "device", key: "k1", now: now) == nil, "kinds do not mix")
            // The same key again replaces the entry (a retried start), it does not fail.
            try await repo.insertPendingLogin(
                kind: "browser", key: "k1", payload: Data("{\"a\":2}".utf8), expiresAt: later, capacity: 3, now: now)
            // Twenty takers at once, as from several replicas: exactly one gets the entry.
            let taken = try await withThrowingTaskGroup(of: Data?.self) { group in
                for _ in 0..<20 { group.addTask { try await repo.takePendingLogin(kind: "browser", key: "k1", now: now) } }
                return try await group.reduce(into: [Data]()) { if let data = $1 { $0.append(data) } }
            }
            #expect(taken == [Data("{\"a\":2}".utf8)])
            // Expired entries are not returned, and no longer count against the bound.
            let past = now.addingTimeInterval(-1)
            try await repo.insertPendingLogin(
                kind: "device", key: "old", payload: Data("{}".utf8), expiresAt: past, capacity: 3,
                now: past.addingTimeInterval(-1))
            #expect(try await repo.pendingLogin(kind: "device", key: "old", now: now) == nil)
            #expect(try await repo.takePendingLogin(kind: "device", key: "old", now: now) == nil)
            for index in 0..<3 {
                try await repo.insertPendingLogin(
                    kind: "device", key: "d\(index)", payload: Data("{}".utf8), expiresAt: later, capacity: 3, now: now)
            }
            await #expect(throws: GantryError.self) {
                try await repo.insertPendingLogin(
                    kind: "device", key: "d3", payload: Data("{}".utf8), expiresAt: later, capacity: 3, now: now)
            }
            try await repo.insertPendingLogin(
                kind: "browser", key: "b", payload: Data("{}".utf8), expiresAt: later, capacity: 3, now: now)
            try await repo.deletePendingLogin(kind: "device", key: "d0")
            #expect(try await repo.pendingLogin(kind: "device", key: "d0", now: now) == nil)
            try await repo.insertPendingLogin(
                kind: "device", key: "d3", payload: Data("{}".utf8), expiresAt: later, capacity: 3, now: now)
        }
    }

    @Test("leases: one holder at a time, renewed, taken after expiry or release, terms grow", arguments: Backend.allCases)
    func leases(backend: Backend) async throws {
        try await withStore(backend) { (store: SQLStore) async throws in
            let repo = store.repositories.leases
            #expect(try await repo.acquireLease(name: "lead", holder: "a", duration: .seconds(30)) == 1)
            #expect(try await repo.acquireLease(name: "lead", holder: "b", duration: .seconds(30)) == nil)
            #expect(try await repo.acquireLease(name: "lead", holder: "a", duration: .seconds(30)) == 1, "renewed")
            #expect(try await repo.acquireLease(name: "other", holder: "b", duration: .seconds(30)) == 1, "names apart")
            // Given up: the next holder takes it at once, in the next term.
            try await repo.releaseLease(name: "lead", holder: "b")
            #expect(try await repo.acquireLease(name: "lead", holder: "b", duration: .seconds(30)) == nil, "not b's")
            try await repo.releaseLease(name: "lead", holder: "a")
            // Seconds, not milliseconds: the suites run in parallel on a loaded machine.
            #expect(try await repo.acquireLease(name: "lead", holder: "b", duration: .seconds(3)) == 2)
            #expect(try await repo.acquireLease(name: "lead", holder: "a", duration: .seconds(30)) == nil)
            // Not renewed: it runs out, and of ten replicas asking at once exactly one gets it.
            try await Task.sleep(for: .milliseconds(3100))
            let winners = try await withThrowingTaskGroup(of: Int64?.self) { group in
                for index in 0..<10 {
                    group.addTask { try await repo.acquireLease(name: "lead", holder: "r\(index)", duration: .seconds(30)) }
                }
                return try await group.reduce(into: [Int64]()) { if let term = $1 { $0.append(term) } }
            }
            #expect(winners == [3])
        }
    }

    @Test(
        "usage records: a batch written again adds nothing, and an overlapping one only its new records",
        arguments: Backend.allCases)
    func usageWrittenOnce(backend: Backend) async throws {
        try await withStore(backend) { (store: SQLStore) async throws in
            let repo = store.repositories.usage
            let day0 = Date(timeIntervalSince1970: 1_700_006_400)
            let first = (0..<2500).map { Self.usageRecord($0, day0: day0) }
            try await repo.recordUsage(first)
            // The recorder retries a batch whose acknowledgement it lost: the database had it.
            try await repo.recordUsage(first)
            // A batch of records partly written before (the first statement of a retried batch
            // committed, the second did not), with new ones behind them.
            let overlapping = (2000..<3000).map { Self.usageRecord($0, day0: day0) }
            try await repo.recordUsage(overlapping)
            let stored = try await repo.usage(UsageQuery(limit: 10_000))
            #expect(stored.count == 3000)
            #expect(Set(stored.map(\.id)).count == 3000, "each record once")
            #expect(stored.first == overlapping.last)
        }
    }

    @Test("usage records: batches over one statement, filters, newest-first paging, daily sums", arguments: Backend.allCases)
    func usage(backend: Backend) async throws {
        try await withStore(backend) { (store: SQLStore) async throws in
            let repo = store.repositories.usage
            let day0 = Date(timeIntervalSince1970: 1_700_006_400)  // 2023-11-15T00:00:00Z
            // 4,100 records over two days, two users, two deployments: three INSERT statements of
            // up to 2,000 rows (the recorder's batch size).
            let records = (0..<4100).map { Self.usageRecord($0, day0: day0) }
            try await repo.recordUsage(records)
            let newest = try await repo.usage(UsageQuery(limit: 2))
            #expect(newest.map(\.id) == ["use_04099", "use_04098"])
            #expect(newest.first == records.last, "every field round-trips")
            #expect(try await repo.usage(UsageQuery(before: "use_00002", limit: 10)).map(\.id) == ["use_00001", "use_00000"])
            #expect(
                try await repo.usage(UsageQuery(userID: "u1", limit: 5000)).count == records.count { $0.userID == "u1" })
            #expect(
                try await repo.usage(UsageQuery(keyID: "k1", deployment: "a", limit: 5000)).count
                    == records.count { $0.keyID == "k1" && $0.deployment == "a" })
            let firstDay = try await repo.usage(UsageQuery(to: day0.addingTimeInterval(86_400), limit: 5000))
            #expect(firstDay.count == records.count { $0.createdAt < day0.addingTimeInterval(86_400) })
            #expect(firstDay.count > 2000 && firstDay.count < 4100, "both days hold records")

            let daily = try await repo.dailyUsage(UsageQuery())
            #expect(daily.map(\.day) == ["2023-11-15", "2023-11-15", "2023-11-16", "2023-11-16"])
            #expect(daily.map(\.deployment) == ["a", "b", "a", "b"])
            #expect(daily.reduce(0) { $0 + $1.requests } == 4100)
            let firstA = records.filter { $0.deployment == "a" && $0.createdAt < day0.addingTimeInterval(86_400) }
            #expect(daily[0].requests == firstA.count)
            #expect(daily[0].failedRequests == firstA.count { $0.status >= 400 })
            #expect(daily[0].completionTokens == firstA.reduce(0) { $0 + $1.completionTokens })
            #expect(try await repo.dailyUsage(UsageQuery(userID: "nobody")).isEmpty)

            let k1Tokens = records.filter { $0.keyID == "k1" && $0.createdAt >= day0.addingTimeInterval(86_400) }
                .reduce(0) { $0 + $1.totalTokens }
            #expect(try await repo.tokensUsed(keyID: "k1", since: day0.addingTimeInterval(86_400)) == k1Tokens)
            #expect(try await repo.tokensUsed(keyID: "nobody", since: day0) == 0)
            // A user's tokens count records with and without a key.
            let u2Tokens = records.filter { $0.userID == "u2" && $0.createdAt >= day0.addingTimeInterval(86_400) }
                .reduce(0) { $0 + $1.totalTokens }
            #expect(u2Tokens > 0)
            #expect(try await repo.tokensUsed(userID: "u2", since: day0.addingTimeInterval(86_400)) == u2Tokens)
            #expect(try await repo.tokensUsed(userID: "nobody", since: day0) == 0)
        }
    }

    @Test(
        "usage records: text that JSON must escape round-trips exactly; NUL becomes U+FFFD instead of failing the batch",
        arguments: Backend.allCases)
    func usageEscapes(backend: Backend) async throws {
        try await withStore(backend) { (store: SQLStore) async throws in
            let repo = store.repositories.usage
            let awkward = "q\"b\\s/\n\t\u{01}\u{1F} é 😀 'x' null,]"
            var record = Self.usageRecord(1, day0: Date(timeIntervalSince1970: 1_700_006_400))
            record.userID = awkward
            record.keyID = "k\u{7F}\u{0}z"
            record.deployment = "d[\"]"
            record.errorType = "}{"
            record.instanceID = nil
            record.timeToFirstTokenMs = nil
            record.engineSeconds = 1.2345
            record.estimated = true  // and `other` is not
            var other = Self.usageRecord(2, day0: Date(timeIntervalSince1970: 1_700_006_400))
            other.promptTokens = Int(Int32.max) + 5
            try await repo.recordUsage([record, other])
            let stored = try await repo.usage(UsageQuery(userID: awkward, limit: 10))
            record.engineSeconds = 1.235  // stored as whole milliseconds
            record.keyID = "k\u{7F}\u{FFFD}z"  // NUL cannot be stored in PostgreSQL text
            #expect(stored == [record])
            #expect(try await repo.usage(UsageQuery(keyID: "k\u{7F}\u{FFFD}z", limit: 10)).map(\.id) == [record.id])
            #expect(try await repo.usage(UsageQuery(userID: other.userID, limit: 10)).first?.promptTokens == other.promptTokens)
            #expect(try await repo.usage(UsageQuery(userID: other.userID, limit: 10)).first?.estimated == false)
        }
    }

    @Test(
        "model registry rows: labels filter, file records, ready versions refuse file changes, cascading deletes",
        arguments: Backend.allCases)
    func registryRows(backend: Backend) async throws {
        try await withStore(backend) { (store: SQLStore) async throws in
            let repo = store.repositories.models
            // Whole milliseconds: what both databases store.
            let now = Date(timeIntervalSince1970: 1_800_000_000.123)
            for (name, team) in [("a", "x"), ("b", "y"), ("c", "x")] {
                try await repo.createModel(
                    Model(
                        id: "mdl_\(name)", name: name, description: "", task: .chat, owner: "o", labels: ["team": team],
                        createdAt: now))
            }
            #expect(try await repo.listModels(ModelQuery(labels: ["team": "x"])).map(\.name) == ["a", "c"])
            #expect(try await repo.listModels(ModelQuery(after: "a", limit: 1)).map(\.name) == ["b"])
            #expect(try await repo.model(named: "a")?.labels == ["team": "x"])

            let version = ModelVersion(
                id: "ver_1", modelID: "mdl_a", version: "1", format: "gguf", contextLimit: 8,
                inputSchema: .object(["type": .string("object")]), engineArgs: ["--temp", "0"], artifactURI: nil,
                status: .pending, createdAt: now)
            try await repo.createVersion(version)
            #expect(try await repo.version(id: "ver_1") == version)
            let file = ModelFile(
                path: "m.gguf", size: 3, sha256: String(repeating: "a", count: 64), objectKey: "k1", createdAt: now)
            #expect(try await repo.recordFile(versionID: "ver_1", file) == nil)
            var replacement = file
            replacement.objectKey = "k2"
            #expect(
                try await repo.recordFile(versionID: "ver_1", replacement)?.objectKey == "k1", "the replaced record is returned")
            #expect(try await repo.files(versionID: "ver_1").map(\.objectKey) == ["k2"])
            #expect(try await repo.version(id: "ver_1")?.status == .uploading)

            var ready = try #require(try await repo.version(id: "ver_1"))
            ready.status = .ready
            #expect(try await repo.updateVersion(ready, expectedStatus: .pending) == false, "a stale status changes nothing")
            #expect(try await repo.updateVersion(ready, expectedStatus: .uploading))
            await #expect(throws: GantryError.self) { try await repo.recordFile(versionID: "ver_1", file) }
            await #expect(throws: GantryError.self) { try await repo.deleteFile(versionID: "ver_1", path: "m.gguf") }
            #expect(try await repo.files(versionID: "ver_1").count == 1)

            try await repo.deleteModel(id: "mdl_a")
            #expect(try await repo.model(named: "a") == nil)
            #expect(try await repo.version(id: "ver_1") == nil)
            #expect(try await repo.files(versionID: "ver_1").isEmpty)
            #expect(try await repo.listModels(ModelQuery(labels: ["team": "x"])).map(\.name) == ["c"])
        }
    }

}

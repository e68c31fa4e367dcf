import Foundation
public import GantryCore

/// What an admin asks for when creating or changing a model service. Every field is optional in
/// a change; nil keeps the current value.
public struct DeploymentRequest: Codable, Sendable {
    public var name: String?
    public var model: String?
    public var version: String?
    public var engine: String?
    public var engineArgs: [String]?
    public var contextLimit: Int?
    public var resources: ReplicaResources?
    /// A fixed replica count: min and max both.
    public var replicas: Int?
    public var minReplicas: Int?
    public var maxReplicas: Int?
    public var autoscaling: AutoscalingRequest?
    public var access: AccessPolicy?
    public var limits: FrequencyLimits?
    public var timeouts: ServiceTimeouts?
    /// A canary beside the main revision; `weight: 0` removes it.
    public var canary: CanaryRequest?

    public struct CanaryRequest: Codable, Sendable {
        /// Its version (default: the canary's current one).
        public var version: String?
        /// Percent of requests, 1-99; 0 removes the canary.
        public var weight: Int
        public var replicas: Int?
        public var engineArgs: [String]?

        public init(version: String? = nil, weight: Int, replicas: Int? = nil, engineArgs: [String]? = nil) {
            self.version = version
            self.weight = weight
            self.replicas = replicas
            self.engineArgs = engineArgs
        }
    }

    public struct AutoscalingRequest: Codable, Sendable {
        public var targetInFlightPerReplica: Int?
        public var scaleUpWindowSeconds: Int?
        public var scaleDownWindowSeconds: Int?

        public init(targetInFlightPerReplica: Int? = nil, scaleUpWindowSeconds: Int? = nil, scaleDownWindowSeconds: Int? = nil) {
            self.targetInFlightPerReplica = targetInFlightPerReplica
            self.scaleUpWindowSeconds = scaleUpWindowSeconds
            self.scaleDownWindowSeconds = scaleDownWindowSeconds
        }
    }

    public init(
        name: String? = nil, model: String? = nil, version: String? = nil, engine: String? = nil, engineArgs: [String]? = nil,
        contextLimit: Int? = nil, resources: ReplicaResources? = nil, replicas: Int? = nil, minReplicas: Int? = nil,
        maxReplicas: Int? = nil, autoscaling: AutoscalingRequest? = nil, access: AccessPolicy? = nil,
        limits: FrequencyLimits? = nil, timeouts: ServiceTimeouts? = nil, canary: CanaryRequest? = nil
    ) {
        self.timeouts = timeouts
        self.canary = canary
        self.name = name
        self.model = model
        self.version = version
        self.engine = engine
        self.engineArgs = engineArgs
        self.contextLimit = contextLimit
        self.resources = resources
        self.replicas = replicas
        self.minReplicas = minReplicas
        self.maxReplicas = maxReplicas
        self.autoscaling = autoscaling
        self.access = access
        self.limits = limits
    }
}

/// Validates and records desired state; the reconcile loop makes it real.
public struct DeploymentService: Sendable {
    let repositories: Repositories
    let supportedEngines: [String]
    let allocator: any ResourceAllocator
    let reconciler: Reconciler

    public init(
        repositories: Repositories, supportedEngines: [String], allocator: any ResourceAllocator, reconciler: Reconciler
    ) {
        self.repositories = repositories
        self.supportedEngines = supportedEngines
        self.allocator = allocator
        self.reconciler = reconciler
    }

    public static let replicaLimit = 64

    /// Creates a deployment of `model` at `version` (the newest ready, not deprecated version when
    /// nil), on `engine` (the version's default engine, else llama-cpp, when nil).
    public func create(_ request: DeploymentRequest) async throws -> Deployment {
        guard let name = request.name else { throw GantryError.invalid("name is required", param: "name") }
        try ResourceName.validate(name, field: "name")
        guard let modelName = request.model else { throw GantryError.invalid("model is required", param: "model") }
        guard let model = try await repositories.models.model(named: modelName) else {
            throw GantryError.notFound("model '\(modelName)' not found", code: "model_not_found")
        }
        let version = try await chooseVersion(of: model, named: request.version)
        let revision = try await makeRevision(request, version: version, base: nil)
        let scaling = try makeScaling(request, base: nil)
        let now = Date()
        let deployment = Deployment(
            id: Identifier.make("dep"), name: name, modelID: model.id, revision: revision, scaling: scaling,
            replicas: max(1, scaling.minReplicas), access: try validated(request.access ?? AccessPolicy()),
            limits: try (request.limits ?? FrequencyLimits()).validated(),
            timeouts: try (request.timeouts ?? ServiceTimeouts()).validated(), status: .pending,
            statusMessage: "waiting for the reconcile loop", createdAt: now, updatedAt: now)
        try await repositories.deployments.createDeployment(deployment)
        try await repositories.deployments.recordEvent(
            DeploymentEvent(
                deploymentID: deployment.id, instanceID: nil, kind: "created",
                message: "created with version \(revision.version) on \(revision.engine)"))
        reconciler.wake()
        return deployment
    }

    /// Changes a deployment. A change to what instances run (version, engine, arguments, context
    /// limit, resources) is a new revision, rolled out one instance at a time; scaling, access and
    /// limits apply at once.
    public func update(name: String, _ request: DeploymentRequest) async throws -> Deployment {
        guard var deployment = try await repositories.deployments.deployment(named: name), deployment.status != .deleting
        else { throw GantryError.notFound("deployment '\(name)' not found") }
        if let newName = request.name, newName != name {
            throw GantryError.invalid("a deployment cannot be renamed", param: "name")
        }
        guard let model = try await repositories.models.model(id: deployment.modelID) else {
            throw GantryError.conflict("the deployment's model no longer exists")
        }
        if let requested = request.model, requested != model.name {
            throw GantryError.invalid("a deployment cannot change its model; create another deployment", param: "model")
        }
        var changes: [String] = []
        let versionChanged = request.version != nil && request.version != deployment.revision.version
        let version: ModelVersion
        if versionChanged {
            version = try await chooseVersion(of: model, named: request.version)
        } else if let current = try await repositories.models.version(id: deployment.versionID) {
            version = current
        } else {
            throw GantryError.conflict("the deployment's model version no longer exists; give a version")
        }
        let revision = try await makeRevision(request, version: version, base: deployment.revision)
        if !revision.runsLike(deployment.revision) {
            deployment.previousRevision = deployment.revision
            deployment.revision = revision
            changes.append("new revision: version \(revision.version), engine \(revision.engine)")
            // Rolling the canary's revision out to everything promotes it: the canary ends.
            if let canary = deployment.canary, canary.revision.runsLike(revision) {
                deployment.canary = nil
                changes.append("canary promoted")
            }
        }
        if let request = request.canary {
            try await applyCanary(request, of: model, to: &deployment, changes: &changes)
        }
        let scaling = try makeScaling(request, base: deployment.scaling)
        if scaling != deployment.scaling {
            deployment.scaling = scaling
            deployment.replicas = min(scaling.maxReplicas, max(scaling.minReplicas, deployment.replicas))
            changes.append("replicas \(scaling.minReplicas)…\(scaling.maxReplicas)")
        }
        if let access = request.access {
            deployment.access = try validated(access)
            changes.append("access policy")
        }
        if let limits = request.limits {
            deployment.limits = try limits.validated()
            changes.append("limits")
        }
        if let timeouts = request.timeouts {
            deployment.timeouts = try timeouts.validated()
            changes.append("timeouts")
        }
        guard !changes.isEmpty else { return deployment }
        try await repositories.deployments.updateSpec(deployment)
        try await repositories.deployments.recordEvent(
            DeploymentEvent(
                deploymentID: deployment.id, instanceID: nil, kind: "updated", message: changes.joined(separator: "; ")))
        reconciler.wake()
        return deployment
    }

    /// Marks a deployment for deletion; the reconcile loop stops its instances and removes it.
    public func delete(name: String) async throws {
        guard let deployment = try await repositories.deployments.deployment(named: name) else {
            throw GantryError.notFound("deployment '\(name)' not found")
        }
        try await repositories.deployments.updateStatus(
            deploymentID: deployment.id, status: .deleting, message: "stopping instances")
        reconciler.wake()
    }

    // MARK: - Canary

    private func applyCanary(
        _ request: DeploymentRequest.CanaryRequest, of model: Model, to deployment: inout Deployment, changes: inout [String]
    ) async throws {
        guard request.weight != 0 else {
            if deployment.canary != nil { changes.append("canary removed") }
            deployment.canary = nil
            return
        }
        guard (1...99).contains(request.weight) else {
            throw GantryError.invalid("canary.weight must be between 1 and 99 (0 removes the canary)", param: "canary.weight")
        }
        let replicas = request.replicas ?? deployment.canary?.replicas ?? 1
        guard (1...Self.replicaLimit).contains(replicas) else {
            throw GantryError.invalid("canary.replicas must be between 1 and \(Self.replicaLimit)", param: "canary.replicas")
        }
        guard let versionName = request.version ?? deployment.canary?.revision.version else {
            throw GantryError.invalid("canary.version is required for a new canary", param: "canary.version")
        }
        let version = try await chooseVersion(of: model, named: versionName)
        var revision = try await makeRevision(
            DeploymentRequest(engineArgs: request.engineArgs), version: version, base: deployment.revision)
        if let current = deployment.canary?.revision, current.runsLike(revision) { revision = current }
        guard !revision.runsLike(deployment.revision) else {
            throw GantryError.invalid("the canary would run exactly what the deployment runs", param: "canary")
        }
        if revision.id == deployment.revision.id { revision.id = Identifier.make("rev") }
        deployment.canary = CanaryRevision(revision: revision, weight: request.weight, replicas: replicas)
        changes.append("canary version \(revision.version) at \(request.weight) % with \(replicas) replica(s)")
    }

    // MARK: - Validation

    private func chooseVersion(of model: Model, named versionName: String?) async throws -> ModelVersion {
        let version: ModelVersion
        if let versionName {
            guard let found = try await repositories.models.version(modelID: model.id, version: versionName) else {
                throw GantryError.notFound("version '\(versionName)' of model '\(model.name)' not found")
            }
            version = found
        } else {
            guard
                let newest = try await repositories.models.listVersions(modelID: model.id).last(where: {
                    $0.status == .ready && !$0.deprecated
                })
            else {
                throw GantryError.invalid("model '\(model.name)' has no ready version that is not deprecated", param: "version")
            }
            version = newest
        }
        guard version.status == .ready else {
            throw GantryError.conflict("version '\(version.version)' is \(version.status.rawValue), not ready")
        }
        return version
    }

    private func makeRevision(_ request: DeploymentRequest, version: ModelVersion, base: DeploymentRevision?) async throws
        -> DeploymentRevision
    {
        let versionChanged = base.map { $0.versionID != version.id } ?? true
        // A new version brings its own defaults unless the request overrides them.
        let engine = request.engine ?? (versionChanged ? nil : base?.engine) ?? version.defaultEngine ?? EngineName.llamaCpp
        guard supportedEngines.contains(engine) else {
            throw GantryError.invalid(
                "engine '\(engine)' is not available on any node; available: \(supportedEngines.joined(separator: ", "))",
                param: "engine")
        }
        let contextLimit = request.contextLimit ?? (versionChanged ? nil : base?.contextLimit) ?? version.contextLimit
        guard contextLimit >= 1 else {
            throw GantryError.invalid("context_limit must be at least 1", param: "context_limit")
        }
        guard contextLimit <= version.contextLimit else {
            throw GantryError.invalid(
                "context_limit \(contextLimit) is above version \(version.version)'s limit of \(version.contextLimit) tokens",
                param: "context_limit")
        }
        let engineArgs = request.engineArgs ?? (versionChanged ? nil : base?.engineArgs) ?? version.engineArgs
        try EngineArguments.validate(engineArgs)
        let resources = request.resources ?? base?.resources ?? ReplicaResources()
        guard resources.gpus >= 0, resources.gpus <= 64 else {
            throw GantryError.invalid("resources.gpus must be between 0 and 64", param: "resources.gpus")
        }
        if let threads = resources.cpuThreads, threads < 1 || threads > 1024 {
            throw GantryError.invalid("resources.cpu_threads must be between 1 and 1024", param: "resources.cpu_threads")
        }
        if let memory = resources.minFreeMemoryMib, memory < 0 {
            throw GantryError.invalid("resources.min_free_memory_mib cannot be negative", param: "resources.min_free_memory_mib")
        }
        // Only for resources being asked for now: an unchanged revision's own instances hold
        // what it needs, and a PATCH of its access or limits must not fail on their account.
        if resources != base?.resources { try await allocator.checkSatisfiable(resources) }
        let candidate = DeploymentRevision(
            id: Identifier.make("rev"), versionID: version.id, version: version.version, engine: engine,
            contextLimit: contextLimit, engineArgs: engineArgs, resources: resources, createdAt: Date())
        if let base, candidate.runsLike(base) { return base }
        return candidate
    }

    private func makeScaling(_ request: DeploymentRequest, base: ScalingPolicy?) throws -> ScalingPolicy {
        var scaling = base ?? ScalingPolicy()
        if let replicas = request.replicas {
            guard request.minReplicas == nil, request.maxReplicas == nil else {
                throw GantryError.invalid("give either replicas or min_replicas and max_replicas", param: "replicas")
            }
            scaling.minReplicas = replicas
            scaling.maxReplicas = replicas
        }
        if let min = request.minReplicas { scaling.minReplicas = min }
        if let max = request.maxReplicas { scaling.maxReplicas = max }
        if base == nil, request.replicas == nil {
            // min alone means "at least"; max alone means "1 up to max".
            if request.maxReplicas == nil { scaling.maxReplicas = max(scaling.minReplicas, 1) }
            if request.minReplicas == nil { scaling.minReplicas = min(1, scaling.maxReplicas) }
        }
        guard scaling.minReplicas >= 0, scaling.maxReplicas >= 1, scaling.maxReplicas <= Self.replicaLimit else {
            throw GantryError.invalid(
                "replicas must be between 0 (min) or 1 (max) and \(Self.replicaLimit)", param: "max_replicas")
        }
        guard scaling.minReplicas <= scaling.maxReplicas else {
            throw GantryError.invalid(
                "min_replicas (\(scaling.minReplicas)) is greater than max_replicas (\(scaling.maxReplicas))",
                param: "min_replicas")
        }
        if let autoscaling = request.autoscaling {
            if let target = autoscaling.targetInFlightPerReplica { scaling.targetInFlightPerReplica = target }
            if let up = autoscaling.scaleUpWindowSeconds { scaling.scaleUpWindowSeconds = up }
            if let down = autoscaling.scaleDownWindowSeconds { scaling.scaleDownWindowSeconds = down }
        }
        guard (1...10_000).contains(scaling.targetInFlightPerReplica) else {
            throw GantryError.invalid(
                "autoscaling.target_in_flight_per_replica must be between 1 and 10000",
                param: "autoscaling.target_in_flight_per_replica")
        }
        guard (0...86_400).contains(scaling.scaleUpWindowSeconds), (0...86_400).contains(scaling.scaleDownWindowSeconds) else {
            throw GantryError.invalid("autoscaling windows must be between 0 and 86400 seconds", param: "autoscaling")
        }
        return scaling
    }

    private func validated(_ access: AccessPolicy) throws -> AccessPolicy {
        guard !access.methods.isEmpty else {
            throw GantryError.invalid("access.methods needs at least one of api_key, oidc", param: "access.methods")
        }
        if let roles = access.roles, let unknown = roles.first(where: { Role(rawValue: $0) == nil }) {
            throw GantryError.invalid("access.roles: unknown role '\(unknown)'", param: "access.roles")
        }
        return access
    }
}

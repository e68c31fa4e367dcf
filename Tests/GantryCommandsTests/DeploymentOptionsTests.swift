import GantryCore
import Testing

@testable import GantryCommands

@Suite("deployments update options")
struct DeploymentOptionsTests {
    @Test("an update changes only the fields given; the rest of each object is sent as the deployment has it")
    func updateKeepsTheRest() throws {
        let current = DeploymentSpecOptions.Current(
            revision: .init(resources: ReplicaResources(gpus: 2, gpuName: "H100")),
            access: AccessPolicy(methods: [.apiKey, .oidc], users: ["ann"]),
            limits: FrequencyLimits(tokensPerMinute: 1000, concurrentRequests: 4),
            timeouts: ServiceTimeouts(firstByteSeconds: 30))
        let request = try DeploymentSpecOptions.parse(["--rpm", "5", "--cpu-threads", "8", "--users", "bob"])
            .request(over: current)
        #expect(request.limits == FrequencyLimits(requestsPerMinute: 5, tokensPerMinute: 1000, concurrentRequests: 4))
        #expect(request.resources == ReplicaResources(gpus: 2, gpuName: "H100", cpuThreads: 8))
        #expect(request.access == AccessPolicy(methods: [.apiKey, .oidc], users: ["bob"]))
        #expect(request.timeouts == nil, "timeouts were not given")
        #expect(try DeploymentSpecOptions.parse([]).request(over: current).limits == nil)
    }
}

import GantryCore
import GantryGateway
import Logging

/// Carries changes of credentials (a revoked key, a disabled user, changed limits) between
/// control replicas through the store. The replica that makes one bumps the `credentials` change
/// counter; the leader follows the counter and tells its route watchers, the gateways, as it does
/// for a change made through itself. Without it, a revocation through a standby would reach the
/// gateways only when their remembered verifications expire (5 s).
struct CredentialChangeRelay: Sendable {
    static let counter = "credentials"
    let counters: any ChangeCounterRepository
    let routes: RouteTable
    /// How often the leader reads the counter: the delay a change through a standby adds.
    let interval: Duration
    let logger: Logger

    func announce() async {
        do {
            try await counters.bumpChangeCounter(name: Self.counter)
        } catch {
            logger.warning(
                "could not tell the other control replicas of a credential change", metadata: ["error": "\(error)"])
        }
    }

    /// Follows the counter until cancelled (while this replica leads).
    func follow() async {
        var seen = try? await counters.changeCounter(name: Self.counter)
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            guard let value = try? await counters.changeCounter(name: Self.counter) else { continue }
            // A change through this replica moved the local generation already; telling the
            // gateways once more only costs them one introspection per key.
            if let seen, value != seen { await routes.credentialsChanged() }
            seen = value
        }
    }
}

import Foundation

/// The real OIDC provider the tests log in with: nanoidp from PyPI, started by
/// `scripts/test.sh` (see `start_nanoidp` in scripts/lib.sh) with these users.
public struct NanoIDP: Sendable {
    public let issuer: String
    public let clientID: String
    public let clientSecret: String
    /// Sent as `X-Management-Secret` to rotate signing keys.
    public let managementSecret: String
    /// The `aud` of the provider's access tokens.
    public let accessTokenAudience: String

    public static let admin = (username: "alice", password: "alice-pw")
    public static let user = (username: "bob", password: "bob-pw")

    public static func fromEnvironment() throws -> NanoIDP {
        NanoIDP(
            issuer: try TestEnvironment.require("GANTRY_TEST_OIDC_ISSUER"),
            clientID: try TestEnvironment.require("GANTRY_TEST_OIDC_CLIENT_ID"),
            clientSecret: try TestEnvironment.require("GANTRY_TEST_OIDC_CLIENT_SECRET"),
            managementSecret: try TestEnvironment.require("GANTRY_TEST_OIDC_MANAGEMENT_SECRET"),
            accessTokenAudience: try TestEnvironment.require("GANTRY_TEST_OIDC_AUDIENCE"))
    }
}

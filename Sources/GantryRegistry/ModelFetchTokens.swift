import Crypto
public import Foundation
public import GantryCore

/// Short-lived tokens that open one model version's files, for nodes that fetch them themselves
/// (a pod's init container): `gmf.<version id>.<expiry>.<HMAC-SHA256 of both>`. Nothing is stored:
/// the key checks them. The key comes from the service credential the control role shares with
/// its gateways when one is set, so every replica checks what another issued; otherwise a random
/// key per process (tokens then end with the process, and a pod that could not fetch in time is
/// replaced with a fresh one).
public struct ModelFetchTokens: ModelFetchGrants {
    let key: SymmetricKey
    /// `<registry URL>/internal/model-files`, as pods reach it.
    let baseURL: String
    let lifetime: TimeInterval
    let now: @Sendable () -> Date

    public static let prefix = "/internal/model-files"

    public init(
        secret: String?, baseURL: String, lifetime: TimeInterval = 3600, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        if let secret {
            key = SymmetricKey(data: SHA256.hash(data: Data(("gantry-model-fetch:" + secret).utf8)))
        } else {
            key = SymmetricKey(size: .bits256)
        }
        self.baseURL = (baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL) + Self.prefix
        self.lifetime = lifetime
        self.now = now
    }

    public func grant(versionID: String) -> ModelFetchGrant {
        let expiry = Int(now().timeIntervalSince1970 + lifetime)
        let token = "gmf.\(versionID).\(expiry).\(signature(versionID: versionID, expiry: expiry))"
        return ModelFetchGrant(url: baseURL + "/" + versionID, token: token)
    }

    /// Throws `.unauthorized` unless `token` is a live grant for `versionID`.
    public func check(_ token: String?, versionID: String) throws {
        guard let token else {
            throw GantryError(.unauthorized, "send the fetch token in \(ModelFetchGrant.header)", code: "missing_fetch_token")
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4, parts[0] == "gmf", parts[1] == versionID, let expiry = Int(parts[2]),
            constantTimeEqual(parts[3], signature(versionID: versionID, expiry: expiry))
        else {
            throw GantryError(.unauthorized, "the fetch token is not valid for this version", code: "invalid_fetch_token")
        }
        guard Double(expiry) > now().timeIntervalSince1970 else {
            throw GantryError(.unauthorized, "the fetch token has expired", code: "expired_fetch_token")
        }
    }

    func signature(versionID: String, expiry: Int) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(versionID).\(expiry)".utf8), using: key)
        return Hex.encode(Array(mac))
    }
}

import Foundation
import GantryCore

/// Logins in progress, kept in the store for a few minutes and usable once.
///
/// A browser login lives from `/auth/login` to `/auth/callback`; a device login from
/// `POST /auth/device` until the CLI collects its key; a loopback (CLI) login from `/auth/cli`
/// until its one-time code is redeemed. Entries are removed when used or expired, so a replayed
/// `state`, device handle or code finds nothing. They live in the store, not in memory, so a login
/// may come back to any control replica on the same database; each is indexed by a digest of its
/// state, handle or code, so the store holds nothing a reader could redeem.
struct PendingLogins: Sendable {
    struct Browser: Codable, Sendable {
        var nonce: String
        var verifier: String
        var returnTo: String
    }

    struct Device: Codable, Sendable {
        var providerDeviceCode: String
    }

    /// A CLI waiting on a loopback port (RFC 8252) for the browser login it asked for.
    struct CLIRequest: Codable, Sendable {
        var port: Int
        var state: String
        var codeChallenge: String
    }

    /// A finished CLI login, waiting for the CLI to exchange its one-time code.
    struct CLICode: Codable, Sendable {
        var userID: String
        var codeChallenge: String
    }

    /// The kinds of entry, each bounded on its own.
    enum Kind: String {
        case browser, device, cliRequest = "cli_request", cliCode = "cli_code"
    }

    /// How long a CLI's one-time code stays redeemable.
    static let cliCodeLifetime: TimeInterval = 120

    let repository: any PendingLoginRepository
    let lifetime: TimeInterval
    /// Starting a login needs no credential, so each kind is bounded by `capacity` entries.
    let capacity: Int

    init(repository: any PendingLoginRepository, lifetime: TimeInterval = 600, capacity: Int = 10_000) {
        self.repository = repository
        self.lifetime = lifetime
        self.capacity = capacity
    }

    func addBrowser(state: String, _ login: Browser) async throws {
        try await insert(login, kind: .browser, key: state, lifetime: lifetime)
    }

    /// Removes and returns the login for `state`: a second callback with the same state fails.
    func takeBrowser(state: String) async throws -> Browser? {
        try await take(Browser.self, kind: .browser, key: state)
    }

    func addDevice(handle: String, _ login: Device, lifetime: TimeInterval) async throws {
        try await insert(login, kind: .device, key: handle, lifetime: lifetime)
    }

    func device(handle: String) async throws -> Device? {
        let payload = try await repository.pendingLogin(
            kind: Kind.device.rawValue, key: RandomToken.sha256Hex(handle), now: Date())
        return try payload.map { try JSONDecoder().decode(Device.self, from: $0) }
    }

    func removeDevice(handle: String) async throws {
        try await repository.deletePendingLogin(kind: Kind.device.rawValue, key: RandomToken.sha256Hex(handle))
    }

    func addCLIRequest(id: String, _ request: CLIRequest) async throws {
        try await insert(request, kind: .cliRequest, key: id, lifetime: lifetime)
    }

    func takeCLIRequest(id: String) async throws -> CLIRequest? {
        try await take(CLIRequest.self, kind: .cliRequest, key: id)
    }

    func addCLICode(_ code: String, _ entry: CLICode) async throws {
        try await insert(entry, kind: .cliCode, key: code, lifetime: Self.cliCodeLifetime)
    }

    func takeCLICode(_ code: String) async throws -> CLICode? {
        try await take(CLICode.self, kind: .cliCode, key: code)
    }

    private func insert<Value: Encodable>(_ value: Value, kind: Kind, key: String, lifetime: TimeInterval) async throws {
        let now = Date()
        try await repository.insertPendingLogin(
            kind: kind.rawValue, key: RandomToken.sha256Hex(key), payload: try JSONEncoder().encode(value),
            expiresAt: now.addingTimeInterval(lifetime), capacity: capacity, now: now)
    }

    private func take<Value: Decodable>(_ type: Value.Type, kind: Kind, key: String) async throws -> Value? {
        let payload = try await repository.takePendingLogin(kind: kind.rawValue, key: RandomToken.sha256Hex(key), now: Date())
        return try payload.map { try JSONDecoder().decode(type, from: $0) }
    }
}

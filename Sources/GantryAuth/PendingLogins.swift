import Foundation
import GantryCore

/// Logins in progress, kept in memory for a few minutes and usable once.
///
/// A browser login lives from `/auth/login` to `/auth/callback`; a device login from
/// `POST /auth/device` until the CLI collects its key; a loopback (CLI) login from `/auth/cli`
/// until its one-time code is redeemed. Entries are removed when used or expired, so a replayed
/// `state`, device handle or code finds nothing. (In-process: a login must come back to the
/// process that started it, which holds while the control role runs as one replica.)
actor PendingLogins {
    struct Browser: Sendable {
        var nonce: String
        var verifier: String
        var returnTo: String
    }

    struct Device: Sendable {
        var providerDeviceCode: String
    }

    /// A CLI waiting on a loopback port (RFC 8252) for the browser login it asked for.
    struct CLIRequest: Sendable {
        var port: Int
        var state: String
        var codeChallenge: String
    }

    /// A finished CLI login, waiting for the CLI to exchange its one-time code.
    struct CLICode: Sendable {
        var userID: String
        var codeChallenge: String
    }

    /// How long a CLI's one-time code stays redeemable.
    static let cliCodeLifetime: TimeInterval = 120

    let lifetime: TimeInterval
    private var browser: ExpiringTable<Browser>
    private var devices: ExpiringTable<Device>
    private var cliRequests: ExpiringTable<CLIRequest>
    private var cliCodes: ExpiringTable<CLICode>

    /// Starting a login needs no credential, so each table is bounded by `capacity`.
    init(lifetime: TimeInterval = 600, capacity: Int = 10_000) {
        self.lifetime = lifetime
        browser = ExpiringTable(capacity: capacity)
        devices = ExpiringTable(capacity: capacity)
        cliRequests = ExpiringTable(capacity: capacity)
        cliCodes = ExpiringTable(capacity: capacity)
    }

    func addBrowser(state: String, _ login: Browser) throws {
        try browser.insert(login, for: state, lifetime: lifetime)
    }

    /// Removes and returns the login for `state`: a second callback with the same state fails.
    func takeBrowser(state: String) -> Browser? {
        browser.take(state)
    }

    func addDevice(handle: String, _ login: Device, lifetime: TimeInterval) throws {
        try devices.insert(login, for: handle, lifetime: lifetime)
    }

    func device(handle: String) -> Device? {
        devices.peek(handle)
    }

    func removeDevice(handle: String) {
        _ = devices.take(handle)
    }

    func addCLIRequest(id: String, _ request: CLIRequest) throws {
        try cliRequests.insert(request, for: id, lifetime: lifetime)
    }

    func takeCLIRequest(id: String) -> CLIRequest? {
        cliRequests.take(id)
    }

    func addCLICode(_ code: String, _ entry: CLICode) throws {
        try cliCodes.insert(entry, for: code, lifetime: Self.cliCodeLifetime)
    }

    func takeCLICode(_ code: String) -> CLICode? {
        cliCodes.take(code)
    }
}

/// A bounded map whose entries vanish after their lifetime.
struct ExpiringTable<Value: Sendable>: Sendable {
    private var entries: [String: (value: Value, expiresAt: Date)] = [:]
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    static var full: GantryError {
        GantryError(.rateLimited, "too many logins in progress; try again in a minute", retryAfter: 60)
    }

    mutating func insert(_ value: Value, for key: String, lifetime: TimeInterval) throws {
        purge()
        guard entries.count < capacity else { throw Self.full }
        entries[key] = (value, Date().addingTimeInterval(lifetime))
    }

    mutating func take(_ key: String) -> Value? {
        purge()
        return entries.removeValue(forKey: key)?.value
    }

    mutating func peek(_ key: String) -> Value? {
        purge()
        return entries[key]?.value
    }

    private mutating func purge() {
        let now = Date()
        entries = entries.filter { $0.value.expiresAt > now }
    }
}

import Foundation
import GantryCore

/// Logins in progress, kept in memory for a few minutes and usable once.
///
/// A browser login lives from `/auth/login` to `/auth/callback`; a device login from
/// `POST /auth/device` until the CLI collects its key. Entries are removed when used or expired,
/// so a replayed `state` or device handle finds nothing. (In-process: a login must come back to
/// the process that started it, which holds while the control role runs as one replica.)
actor PendingLogins {
    struct Browser: Sendable {
        var nonce: String
        var verifier: String
        var returnTo: String
        var createdAt: Date
    }

    struct Device: Sendable {
        var providerDeviceCode: String
        var expiresAt: Date
        var interval: Int
    }

    /// A CLI waiting on a loopback port (RFC 8252) for the browser login it asked for.
    struct CLIRequest: Sendable {
        var port: Int
        var state: String
        var codeChallenge: String
        var createdAt: Date
    }

    /// A finished CLI login, waiting for the CLI to exchange its one-time code.
    struct CLICode: Sendable {
        var userID: String
        var codeChallenge: String
        var createdAt: Date
    }

    private var browser: [String: Browser] = [:]
    private var devices: [String: Device] = [:]
    private var cliRequests: [String: CLIRequest] = [:]
    private var cliCodes: [String: CLICode] = [:]
    let lifetime: TimeInterval
    /// Starting a login needs no credential, so the table is bounded: past this many logins in
    /// flight, new ones are refused until old ones finish or expire.
    let capacity: Int

    init(lifetime: TimeInterval = 600, capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    func addBrowser(state: String, _ login: Browser) throws {
        purge()
        guard browser.count < capacity else { throw Self.full }
        browser[state] = login
    }

    static let full = GantryError(.rateLimited, "too many logins in progress; try again in a minute", retryAfter: 60)

    /// Removes and returns the login for `state`: a second callback with the same state fails.
    func takeBrowser(state: String) -> Browser? {
        purge()
        return browser.removeValue(forKey: state)
    }

    func addDevice(handle: String, _ login: Device) throws {
        purge()
        guard devices.count < capacity else { throw Self.full }
        devices[handle] = login
    }

    func device(handle: String) -> Device? {
        purge()
        return devices[handle]
    }

    func removeDevice(handle: String) {
        devices[handle] = nil
    }

    func addCLIRequest(id: String, _ request: CLIRequest) throws {
        purge()
        guard cliRequests.count < capacity else { throw Self.full }
        cliRequests[id] = request
    }

    func takeCLIRequest(id: String) -> CLIRequest? {
        purge()
        return cliRequests.removeValue(forKey: id)
    }

    func addCLICode(_ code: String, _ entry: CLICode) throws {
        purge()
        guard cliCodes.count < capacity else { throw Self.full }
        cliCodes[code] = entry
    }

    func takeCLICode(_ code: String) -> CLICode? {
        purge()
        return cliCodes.removeValue(forKey: code)
    }

    private func purge() {
        let now = Date()
        cliRequests = cliRequests.filter { now.timeIntervalSince($0.value.createdAt) < lifetime }
        cliCodes = cliCodes.filter { now.timeIntervalSince($0.value.createdAt) < 120 }
        browser = browser.filter { now.timeIntervalSince($0.value.createdAt) < lifetime }
        devices = devices.filter { $0.value.expiresAt > now }
    }
}

import Foundation
import GantryCore

/// What `gantry login` stores for later commands: the server and an API key, in the user's
/// config directory, readable by the user only (0600 in a 0700 directory).
struct CLICredentials: Codable {
    var server: String
    var apiKey: String
    var keyId: String
    var user: String

    static func path(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let base = environment["XDG_CONFIG_HOME"] ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.config")
        return base + "/gantry/credentials.json"
    }

    func save(to path: String = CLICredentials.path()) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let data = try JSONEncoder().encode(self)
        // Create with 0600 before writing, so the key is never readable by others, not even briefly.
        let temporary = path + ".tmp"
        _ = FileManager.default.createFile(atPath: temporary, contents: nil, attributes: [.posixPermissions: 0o600])
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
        try handle.write(contentsOf: data)
        try handle.close()
        _ = try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.moveItem(atPath: temporary, toPath: path)
    }

    static func load(from path: String = CLICredentials.path()) throws -> CLICredentials {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw GantryError(.unauthorized, "not logged in: run 'gantry login --server URL' first")
        }
        return try JSONDecoder().decode(CLICredentials.self, from: data)
    }
}

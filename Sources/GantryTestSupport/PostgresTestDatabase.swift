import Foundation
import GantryStore
import Logging
import SQLKit

/// Creates a fresh, empty database in the test cluster for one test, so tests never share state.
public enum PostgresTestDatabase {
    /// Returns the URL of a new database named `gantry_test_<random>`.
    public static func create() async throws -> String {
        let adminURL = try TestEnvironment.require(TestEnvironment.postgresURL)
        let name = "gantry_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        let admin = try await SQLStore.open(.postgres(url: adminURL), logger: Logger(label: "test"))
        do {
            try await admin.database.raw("CREATE DATABASE \(unsafeRaw: String(name))").run()
        } catch {
            try? await admin.close()
            throw error
        }
        try await admin.close()
        guard var components = URLComponents(string: adminURL) else {
            throw TestEnvironment.Missing(name: TestEnvironment.postgresURL)
        }
        components.path = "/" + name
        return components.string!
    }
}

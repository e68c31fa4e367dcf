import Foundation
import GantryCore
import Logging
import NIOCore
import NIOSSL
import PostgresKit
import SQLKit

/// SQLKit over PostgresNIO's `PostgresClient` pool: each query leases a connection for its
/// duration; `withSession` keeps one connection for a whole closure (for transactions).
struct PostgresClientDatabase: SQLDatabase {
    let client: PostgresClient
    let logger: Logger

    var eventLoop: any EventLoop { MultiThreadedEventLoopGroup.singleton.any() }
    var dialect: any SQLDialect { PostgresDialect() }
    var queryLogLevel: Logger.Level? { nil }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
        eventLoop.makeFutureWithTask { try await self.execute(sql: query, onRow) }
    }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) async throws {
        try await client.withConnection { connection in
            try await connection.sql(queryLogLevel: nil).execute(sql: query, onRow)
        }
    }

    func withSession<R>(_ closure: @escaping @Sendable (any SQLDatabase) async throws -> R) async throws -> R {
        try await client.withConnection { connection in try await closure(connection.sql(queryLogLevel: nil)) }
    }

    /// The pool's configuration from a `postgres://` URL. TLS follows `sslmode`: `disable`,
    /// `prefer` (the default: TLS when the server offers it) or `require` / `verify-*`.
    static func clientConfiguration(url: String, core: PostgresConnection.Configuration) throws -> PostgresClient.Configuration {
        let mode = URLComponents(string: url)?.queryItems?.last { ["sslmode", "tlsmode", "ssl", "tls"].contains($0.name) }?.value
        let tls: PostgresClient.Configuration.TLS
        switch mode ?? "prefer" {
        case "disable", "false": tls = .disable
        case "require", "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        default: tls = .prefer(.makeClientConfiguration())
        }
        guard let host = core.host else { throw GantryError.invalid("database.url has no host") }
        var configuration = PostgresClient.Configuration(
            host: host, port: core.port ?? 5432, username: core.username, password: core.password, database: core.database,
            tls: tls)
        configuration.options.maximumConnections = 16
        configuration.options.connectionIdleTimeout = .seconds(60)
        return configuration
    }
}

import Foundation
public import GantryCore
public import Logging
import NIOCore
import NIOPosix
import PostgresKit
public import SQLKit
import SQLiteKit

/// The persistence layer: one SQLKit code path over SQLite and PostgreSQL.
///
/// SQLite uses a single connection (SQLite serialises writers anyway, and one connection avoids
/// `SQLITE_BUSY` between our own connections); PostgreSQL uses a connection pool.
public final class SQLStore: Sendable {
    public let database: any SQLDatabase
    public let location: DatabaseLocation
    private let closeConnections: @Sendable () async throws -> Void

    private init(database: any SQLDatabase, location: DatabaseLocation, close: @escaping @Sendable () async throws -> Void) {
        self.database = database
        self.location = location
        self.closeConnections = close
    }

    /// Opens the database and checks it with one real query, so that a wrong password or an
    /// unreachable host is reported at start with the server's own error, not as a pool timeout.
    public static func open(_ location: DatabaseLocation, logger: Logger) async throws -> SQLStore {
        switch location {
        case .sqlite, .sqliteInMemory:
            let storage: SQLiteConnection.Storage
            if case .sqlite(let path) = location {
                try FileManager.default.createDirectory(
                    at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
                storage = .file(path: path)
            } else {
                storage = .memory
            }
            // SQLite's calls block, so they run on a thread of the store's own. NIO's shared
            // blocking pool has one thread per core and is also where file-system calls (and
            // anything else that blocks) wait; a query queued behind them stalled every request
            // that needed the database. One thread is enough: the store has one connection and
            // runs one statement at a time.
            let threadPool = NIOThreadPool(numberOfThreads: 1)
            threadPool.start()
            let connection: SQLiteConnection
            do {
                connection = try await SQLiteConnection.open(
                    storage: storage, threadPool: threadPool, logger: logger,
                    on: MultiThreadedEventLoopGroup.singleton.any())
            } catch {
                try? await threadPool.shutdownGracefully()
                throw error
            }
            let close: @Sendable () async throws -> Void = {
                defer { threadPool.shutdownGracefully { _ in } }
                try await connection.close().get()
            }
            let database = SerialSQLiteDatabase(base: connection.sql(), lock: AsyncLock())
            do {
                try await database.raw("PRAGMA journal_mode=WAL").run()
                try await database.raw("PRAGMA busy_timeout=5000").run()
                try await database.raw("PRAGMA foreign_keys=ON").run()
            } catch {
                try? await close()
                throw error
            }
            return SQLStore(database: database, location: location, close: close)
        case .postgres(let url):
            let configuration: SQLPostgresConfiguration
            do {
                configuration = try SQLPostgresConfiguration(url: url)
            } catch {
                throw GantryError.invalid("database.url is not a valid PostgreSQL URL (\(location))")
            }
            let client = PostgresClient(
                configuration: try PostgresClientDatabase.clientConfiguration(url: url, core: configuration.coreConfiguration),
                backgroundLogger: logger)
            // The client's pool lives as long as this task; `close()` ends it. It starts before the
            // connection check so that it is running by the time the first query leases a connection.
            let pool = Task { await client.run() }
            do {
                try await checkPostgres(configuration, location: location, logger: logger)
            } catch {
                pool.cancel()
                throw error
            }
            return SQLStore(database: PostgresClientDatabase(client: client, logger: logger), location: location) {
                pool.cancel()
                _ = await pool.value
            }
        }
    }

    private static func checkPostgres(_ configuration: SQLPostgresConfiguration, location: DatabaseLocation, logger: Logger)
        async throws
    {
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration.coreConfiguration, id: 0,
                logger: logger)
        } catch let error as PSQLError {
            let detail = error.serverInfo?[.message] ?? String(describing: error.code)
            let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            throw GantryError(.unavailable, "cannot connect to PostgreSQL at \(location): \(detail)\(state)")
        } catch {
            throw GantryError(.unavailable, "cannot connect to PostgreSQL at \(location): \(error)")
        }
        try? await connection.close()
    }

    /// Answers whether the database still takes queries (for `/readyz`).
    public func ping() async -> Bool {
        do {
            try await database.raw("SELECT 1").run()
            return true
        } catch {
            return false
        }
    }

    public func close() async throws {
        try await closeConnections()
    }

    /// The repositories of this store.
    public var repositories: Repositories {
        Repositories(
            models: SQLModelRepository(store: self),
            deployments: SQLDeploymentRepository(db: database),
            instances: SQLInstanceRepository(db: database),
            users: SQLUserRepository(db: database),
            keys: SQLAPIKeyRepository(store: self),
            sessions: SQLSessionRepository(db: database),
            allocations: SQLAllocationRepository(store: self),
            usage: SQLUsageRepository(db: database),
            pendingLogins: SQLPendingLoginRepository(db: database),
            leases: SQLLeaseRepository(db: database),
            changeCounters: SQLChangeCounterRepository(db: database)
        )
    }
}

import Foundation
import GantryCore

/// Which database a store opens: an SQLite file (the embedded default) or a PostgreSQL server.
public enum DatabaseLocation: Sendable, Equatable, CustomStringConvertible {
    case sqlite(path: String)
    case sqliteInMemory
    case postgres(url: String)

    /// Parses `--database-url`: `postgres://…` / `postgresql://…`, `sqlite:///abs/path` or `sqlite::memory:`.
    public init(url: String) throws {
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            self = .postgres(url: url)
        } else if url == "sqlite::memory:" {
            self = .sqliteInMemory
        } else if url.hasPrefix("sqlite://") {
            let path = String(url.dropFirst("sqlite://".count))
            guard !path.isEmpty else { throw GantryError.invalid("database.url: sqlite URL has no path") }
            self = .sqlite(path: path)
        } else {
            throw GantryError.invalid("database.url must start with postgres://, postgresql:// or sqlite://")
        }
    }

    /// Never prints a password: the URL is reduced to scheme, host and database.
    public var description: String {
        switch self {
        case .sqlite(let path): return "sqlite://\(path)"
        case .sqliteInMemory: return "sqlite::memory:"
        case .postgres(let url):
            guard let components = URLComponents(string: url) else { return "postgres://<unparsable>" }
            return "postgres://\(components.host ?? "")\(components.port.map { ":\($0)" } ?? "")\(components.path)"
        }
    }
}

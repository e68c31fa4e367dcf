import Foundation
import Synchronization

/// The control replicas a gateway talks to (`gateway.controlUrl`, a comma-separated list), and
/// which of them answered last. Every call to the control role (the route watch, key
/// introspection, reports, proxied `/api` and `/auth` requests) starts with the one that answered
/// last and moves on to the next when it cannot be reached, so a gateway keeps working while any
/// replica is up.
public final class ControlEndpoints: Sendable {
    /// Base URLs, without a trailing slash, in the configured order.
    public let urls: [String]
    private let preferred = Atomic<Int>(0)

    public init(urls: [String]) throws {
        let cleaned = urls.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            .map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        guard !cleaned.isEmpty else { throw GantryError(.invalidRequest, "gateway.controlUrl names no control URL") }
        for url in cleaned where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
            throw GantryError(.invalidRequest, "gateway.controlUrl: '\(url)' is not an http or https URL")
        }
        self.urls = cleaned
    }

    /// `list`: URLs separated by commas.
    public convenience init(_ list: String) throws {
        try self.init(urls: list.split(separator: ",").map(String.init))
    }

    /// The URLs to try, the one that answered last first, then the others in the configured order.
    public var ordered: [String] {
        let first = preferred.load(ordering: .relaxed) % urls.count
        return Array(urls[first...] + urls[..<first])
    }

    /// `url` answered: it is tried first from now on.
    public func answered(_ url: String) {
        if let index = urls.firstIndex(of: url) { preferred.store(index, ordering: .relaxed) }
    }

    /// Runs `attempt` on each URL in `ordered` until one does not throw, and returns its result.
    /// An error `tryNext` refuses (the request may have reached a replica, and is not safe to
    /// send twice) is thrown at once; otherwise the last error is thrown after every URL failed.
    /// `nonisolated(nonsending)`: it runs on the caller's executor, so an actor (the gateway's
    /// reporter) can pass a closure that uses its own state.
    nonisolated(nonsending) public func first<T: Sendable>(
        tryNext: (any Error) -> Bool = { _ in true }, _ attempt: (String) async throws -> T
    ) async throws -> T {
        var lastError: (any Error)?
        for url in ordered {
            do {
                let result = try await attempt(url)
                answered(url)
                return result
            } catch {
                guard tryNext(error), !Task.isCancelled else { throw error }
                lastError = error
            }
        }
        throw lastError ?? GantryError(.unavailable, "no control URL")
    }
}

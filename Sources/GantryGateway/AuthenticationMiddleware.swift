import Foundation
public import GantryCore
public import GantryHTTP
import HTTPTypes
public import Hummingbird

/// Authenticates every request under the protected prefixes with `Authorization: Bearer`.
///
/// Operations routes (`/healthz`, `/readyz`, `/metrics`) stay open so probes and scrapers need no
/// credential; everything under `/v1` and `/api` needs one.
public struct AuthenticationMiddleware: RouterMiddleware {
    public typealias Context = GantryRequestContext

    let verifier: any CredentialVerifier
    let protectedPrefixes: [String]

    public init(verifier: any CredentialVerifier, protectedPrefixes: [String] = ["/v1/", "/api/"]) {
        self.verifier = verifier
        self.protectedPrefixes = protectedPrefixes
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let path = request.uri.path
        guard protectedPrefixes.contains(where: { path.hasPrefix($0) }) else { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            throw GantryError(
                .unauthorized, "no API key provided: send 'Authorization: Bearer <key>'", code: "missing_api_key")
        }
        guard header.count > 7, header.prefix(7).lowercased() == "bearer " else {
            throw GantryError(.unauthorized, "the Authorization header must use the Bearer scheme", code: "invalid_api_key")
        }
        let token = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        var context = context
        context.principal = try await verifier.verify(bearer: token)
        if let keyID = context.principal?.keyID { context.logger[metadataKey: "key_id"] = .string(keyID) }
        return try await next(request, context)
    }
}

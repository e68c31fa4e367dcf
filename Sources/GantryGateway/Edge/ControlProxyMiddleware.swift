public import AsyncHTTPClient
import Foundation
public import GantryCore
import GantryHTTP
import HTTPTypes
public import Hummingbird
import NIOCore
import NIOHTTP1

/// In a gateway process: sends every request that is not the gateway's own (`/v1`, operations
/// routes) to the control role unchanged, and relays the answer as it arrives. It sits before
/// authentication: the control role authenticates these requests itself (sessions, CSRF, keys).
///
/// Request bodies are collected up to `maxBodyBytes` before they are sent (DESIGN.md section 7:
/// a request body must not be handed to the HTTP client as a stream); model files larger than
/// that are uploaded to the control role directly.
public struct ControlProxyMiddleware<Context: RequestContext>: RouterMiddleware {
    let control: ControlEndpoints
    let client: HTTPClient
    let maxBodyBytes: Int
    let timeout: Duration
    /// The service credential: proves to the control role the client address this gateway reports.
    let serviceSecret: String
    let clientAddress: @Sendable (Context) -> String

    /// `client` must not follow redirects: the caller gets the control role's own answers.
    public init(
        control: ControlEndpoints, client: HTTPClient, maxBodyBytes: Int, serviceSecret: String,
        timeout: Duration = .seconds(600), clientAddress: @escaping @Sendable (Context) -> String
    ) {
        self.serviceSecret = serviceSecret
        self.clientAddress = clientAddress
        self.control = control
        self.client = client
        self.maxBodyBytes = maxBodyBytes
        self.timeout = timeout
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let path = request.uri.path
        if path.hasPrefix("/v1/") || ProxiedHeaders.localPaths.contains(path) { return try await next(request, context) }
        var upstream = HTTPClientRequest(url: request.uri.description)
        upstream.method = HTTPMethod(rawValue: request.method.rawValue)
        for field in request.headers
        where !ProxiedHeaders.connectionHeaders.contains(field.name.canonicalName)
            && !ForwardedClient.names.contains(field.name.canonicalName)
        {
            upstream.headers.add(name: field.name.rawName, value: field.value)
        }
        // The control role slows failed authentication down per client, not per gateway.
        let address = clientAddress(context)
        upstream.headers.add(name: ForwardedClient.addressField.rawName, value: address)
        upstream.headers.add(
            name: ForwardedClient.proofField.rawName, value: ForwardedClient.proof(address: address, secret: serviceSecret))
        if let id = context.logger[metadataKey: RequestID.metadataKey] {
            upstream.headers.add(name: "x-request-id", value: "\(id)")
        }
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: maxBodyBytes)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw GantryError(
                .payloadTooLarge,
                "request body is larger than the gateway relays (\(maxBodyBytes) bytes); send it to the control role directly")
        }
        if body.readableBytes > 0 { upstream.body = .bytes(body) }
        let response: HTTPClientResponse
        // Another replica gets the request when it did not leave, or could not change anything.
        let safe = request.method == .get || request.method == .head
        do {
            response = try await control.first(tryNext: { safe || ControlConnection.notConnected($0) }) { base in
                var attempt = upstream
                attempt.url = base + request.uri.description
                return try await client.execute(attempt, timeout: .init(timeout))
            }
        } catch {
            context.logger.warning("control role unreachable", metadata: ["error": "\(error)"])
            throw GantryError(.badGateway, "the control role could not be reached", code: "control_unavailable")
        }
        var headers = HTTPFields()
        for (name, value) in response.headers where !ProxiedHeaders.connectionHeaders.contains(name.lowercased()) {
            if let field = HTTPField.Name(name) { headers.append(HTTPField(name: field, value: value)) }
        }
        if let length = response.headers.first(name: "content-length") { headers[.contentLength] = length }
        return Response(
            status: .init(code: Int(response.status.code)), headers: headers,
            body: ResponseBody { writer in
                for try await chunk in response.body { try await writer.write(chunk) }
                try await writer.finish(nil)
            })
    }
}

enum ProxiedHeaders {
    static let localPaths: Set<String> = ["/healthz", "/readyz", "/metrics", "/v1"]
    /// Headers that describe one connection, not the request (RFC 9110 section 7.6.1), and the
    /// ones the HTTP client sets itself.
    static let connectionHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host",
        "content-length", "x-request-id",
    ]
}

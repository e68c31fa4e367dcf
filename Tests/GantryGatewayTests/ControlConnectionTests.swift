import AsyncHTTPClient
import NIOCore
import NIOPosix
import Testing

@testable import GantryGateway

@Suite("Control connection failures")
struct ControlConnectionTests {
    @Test("a refused connection, as the gateway's control client reports it, counts as never sent")
    func refusedConnection() async throws {
        // A port that was just free: bound, then closed, so connecting to it is refused.
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(channel.localAddress?.port)
        try await channel.close()
        // As the gateway configures its control client: refused connections are not retried.
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(2), read: .seconds(5))
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            _ = try await client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/v1/users"), timeout: .seconds(5))
            Issue.record("a closed port answered")
        } catch {
            #expect(ControlConnection.notConnected(error), "\(error)")
        }
        try await client.shutdown()
        #expect(!ControlConnection.notConnected(HTTPClientError.readTimeout), "a request that may have arrived")
        #expect(!ControlConnection.notConnected(HTTPClientError.remoteConnectionClosed))
    }
}

import Foundation
import GantryAuth
import GantryCore
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// The CLI half of a loopback login (RFC 8252): listen on 127.0.0.1, send the user's browser to
/// Gantry's login, receive a one-time code on the loopback port, and redeem it with the PKCE
/// verifier only this process knows.
struct LoopbackLogin {
    let base: String

    func run() async throws {
        let verifier = RandomToken.make(byteCount: 48)
        let state = RandomToken.make()
        let (callbacks, deliver) = AsyncStream.makeStream(of: (code: String, state: String).self)
        let router = Router()
        router.get("/callback") { request, _ in
            let query = request.uri.queryParameters
            if let code = query["code"], let returned = query["state"] {
                deliver.yield((String(code), String(returned)))
            }
            return Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: "<p>Gantry login complete. You can close this window.</p>")))
        }
        let ports = AsyncStream.makeStream(of: Int.self)
        var quiet = Logger(label: "gantry-login")
        quiet.logLevel = .error
        let listener = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { ports.continuation.yield($0.localAddress?.port ?? 0) }, logger: quiet)
        let group = ServiceGroup(services: [listener], logger: quiet)

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            defer { tasks.cancelAll() }
            var portIterator = ports.stream.makeAsyncIterator()
            guard let port = await portIterator.next() else {
                throw GantryError(.internal, "the loopback listener did not start")
            }
            let url =
                "\(base)/auth/cli?port=\(port)&state=\(state)&code_challenge=\(RandomToken.pkceChallenge(for: verifier))"
            print("To log in, open this address in a browser on this machine:\n  \(url)")
            flushStandardOutput()
            if ExternalCommand.exists("xdg-open") { _ = try? ChildProcess.spawn(["xdg-open", url], outputPath: "/dev/null") }

            let received = try await withThrowingTaskGroup(of: (code: String, state: String)?.self) { race in
                race.addTask {
                    var iterator = callbacks.makeAsyncIterator()
                    return await iterator.next()
                }
                race.addTask {
                    try await Task.sleep(for: .seconds(600))
                    return nil
                }
                let first = try await race.next() ?? nil
                race.cancelAll()
                return first
            }
            await group.triggerGracefulShutdown()
            guard let received else { throw GantryError(.unauthorized, "no login arrived within 10 minutes") }
            guard received.state == state else { throw GantryError(.unauthorized, "the login answer's state does not match") }
            let api = APIClient(server: base, apiKey: nil)
            let answer = try await api.expect(
                "POST", "/auth/cli/token", json: APIClient.json(["code": received.code, "code_verifier": verifier]))
            try saveLogin(answer, server: base)
        }
    }
}

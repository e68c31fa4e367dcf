import Foundation
import GantryCore
import Testing

@testable import GantryAuth

@Suite("Pending logins")
struct PendingLoginsTests {
    func login() -> PendingLogins.Browser {
        .init(nonce: "n", verifier: "v", returnTo: "/")
    }

    @Test("a state is usable once, expires, and the table is bounded")
    func singleUseExpiryAndCapacity() async throws {
        let pending = PendingLogins(lifetime: 0.2, capacity: 2)
        try await pending.addBrowser(state: "a", login())
        try await pending.addBrowser(state: "b", login())
        await #expect(throws: GantryError.self) { try await pending.addBrowser(state: "c", login()) }
        #expect(await pending.takeBrowser(state: "a") != nil)
        #expect(await pending.takeBrowser(state: "a") == nil, "a state is used once")
        try await Task.sleep(for: .milliseconds(300))
        #expect(await pending.takeBrowser(state: "b") == nil, "an old login has expired")
        try await pending.addBrowser(state: "c", login())
    }

    @Test("return paths stay on this server")
    func safeReturnPaths() {
        #expect(LoginService.safeReturnPath("/models?x=1") == "/models?x=1")
        for unsafe in ["//evil.example", "/\\evil.example", "https://evil.example", "evil", "/a\r\nSet-Cookie: x=y", ""] {
            #expect(LoginService.safeReturnPath(unsafe) == "/", "\(unsafe)")
        }
    }
}

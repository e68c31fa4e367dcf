import Foundation
import GantryCore
import Testing

@testable import GantryAuth

@Suite("Pending logins")
struct PendingLoginsTests {
    func login() -> PendingLogins.Browser {
        .init(nonce: "n", verifier: "v", returnTo: "/")
    }

    @Test("a state is usable once, expires, and each kind is bounded; the store sees only digests")
    func singleUseExpiryAndCapacity() async throws {
        let store = MemoryPendingLoginRepository()
        let pending = PendingLogins(repository: store, lifetime: 0.2, capacity: 2)
        try await pending.addBrowser(state: "a", login())
        try await pending.addBrowser(state: "b", login())
        await #expect(throws: GantryError.self) { try await pending.addBrowser(state: "c", login()) }
        try await pending.addCLICode("c", .init(userID: "u", codeChallenge: "x"))  // another kind, its own bound
        #expect(try await pending.takeBrowser(state: "a")?.nonce == "n")
        #expect(try await pending.takeBrowser(state: "a") == nil, "a state is used once")
        #expect(try await pending.takeCLICode("a") == nil, "kinds do not mix")
        // Fixed time on purpose: expiry is by the wall clock.
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await pending.takeBrowser(state: "b") == nil, "an old login has expired")
        try await pending.addBrowser(state: "c", login())
        let keys = await store.keys
        #expect(!keys.contains { ["a", "b", "c"].contains($0) }, "only digests reach the store")
        #expect(keys.first == RandomToken.sha256Hex("a"))
    }

    @Test("canonical paths: no empty, dot or backslash segments, no encoded separators, one leading slash")
    func canonicalPaths() {
        for accepted in ["/", "/api/v1/keys?limit=2", "/v1/chat/completions", "/me?next=/a/../b//c", "/a%20b/c%41"] {
            #expect(CanonicalPath.accepts(accepted), "\(accepted)")
        }
        for refused in [
            "", "*", "api/v1/keys", "http://host/api/v1/keys", "//api/v1/keys", "/api//v1/keys", "/api/v1/keys/", "//",
            "//?next=/", "/api/./v1/keys", "/api/v1/../keys", "/..", "/api\\v1", "/api%2Fv1/keys", "/api%2fv1",
            "/%2e%2e/keys", "/a%5Cb", "/a%5c",
        ] {
            #expect(!CanonicalPath.accepts(refused), "\(refused)")
        }
    }

    @Test("return paths stay on this server")
    func safeReturnPaths() {
        #expect(LoginService.safeReturnPath("/models?x=1") == "/models?x=1")
        #expect(LoginService.safeReturnPath("/auth/cli/complete?request=abc-123") == "/auth/cli/complete?request=abc-123")
        let unsafe = [
            "//evil.example", "/\\evil.example", "https://evil.example", "evil", "/a\r\nSet-Cookie: x=y", "",
            // Browsers drop tabs and newlines inside a URL, and read a backslash as a slash.
            "/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "/ /evil.example", "/\t\\evil.example",
            "/\u{0B}/evil.example", "/%2F/evil.example", "/%2f%2fevil.example", "/%5Cevil.example", "/./evil",
            "/a/../b", "/a//b", "/\u{FF0F}/evil.example", "/\"onload=x", "/<script>",
        ]
        for unsafe in unsafe {
            #expect(LoginService.safeReturnPath(unsafe) == "/", "\(unsafe)")
        }
    }
}

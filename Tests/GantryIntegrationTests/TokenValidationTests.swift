import Crypto
import Foundation
import GantryAuth
import GantryCore
import GantryTestSupport
import Hummingbird
import JWTKit
import Logging
import NIOCore
import Synchronization
import Testing

/// ID-token attacks against the validator. A token-minting provider is the point here (the tests
/// need tokens no honest provider would sign), so it is a fake: an ES256 key served through a
/// real discovery document and JWKS over HTTP. The login flows themselves run against nanoidp.
@Suite("OIDC token validation")
struct TokenValidationTests {
    /// Claims as a test wants them, including wrong ones.
    struct Claims: JWTPayload {
        var iss: String
        var sub: String
        var aud: String
        var exp: Double
        var nbf: Double?
        var iat: Double?
        var nonce: String?
        var groups: [String]?

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    /// A provider whose signing key the test holds.
    final class Provider: Sendable {
        let key = ES256PrivateKey()
        let signer = JWTKeyCollection()
        let keyID = Mutex("key-1")
        let jwksFetches = Mutex(0)

        func jwk(kid: String) -> String {
            let parameters = key.publicKey.parameters!
            return
                #"{"kty":"EC","crv":"P-256","x":"\#(parameters.x)","y":"\#(parameters.y)","kid":"\#(kid)","alg":"ES256","use":"sig"}"#
        }

        func router() -> Router<BasicRequestContext> {
            let router = Router()
            router.get("/.well-known/openid-configuration") { request, _ in
                let base = "http://\(request.head.authority ?? "")"
                return Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: .init(
                        byteBuffer: ByteBuffer(
                            string:
                                #"{"issuer":"\#(base)","authorization_endpoint":"\#(base)/authorize","token_endpoint":"\#(base)/token","jwks_uri":"\#(base)/jwks"}"#
                        )))
            }
            router.get("/jwks") { _, _ in
                self.jwksFetches.withLock { $0 += 1 }
                let kid = self.keyID.withLock { $0 }
                return Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(string: #"{"keys":[\#(self.jwk(kid: kid))]}"#)))
            }
            return router
        }

        func sign(_ claims: Claims, kid: String? = nil) async throws -> String {
            let kid = kid ?? keyID.withLock { $0 }
            await signer.add(ecdsa: key, kid: JWKIdentifier(string: kid))
            return try await signer.sign(claims, kid: JWKIdentifier(string: kid))
        }
    }

    func withClient(
        minimumRefetch: TimeInterval = 30, _ body: @Sendable (Provider, OIDCClient, String) async throws -> Void
    ) async throws {
        let provider = Provider()
        try await LocalTestServer.withServer(provider.router()) { base in
            let client = OIDCClient(
                settings: OIDCSettings(
                    issuer: base, clientID: "gantry", clientSecret: nil, jwksMinimumRefetchInterval: minimumRefetch),
                httpClient: .shared, logger: Logger(label: "test"))
            try await body(provider, client, base)
        }
    }

    func claims(_ issuer: String, _ change: (inout Claims) -> Void = { _ in }) -> Claims {
        let now = Date().timeIntervalSince1970
        var claims = Claims(
            iss: issuer, sub: "user-1", aud: "gantry", exp: now + 300, nbf: now - 5, iat: now - 5, nonce: "n-1",
            groups: ["gantry-admins"])
        change(&claims)
        return claims
    }

    func expectRejected(_ client: OIDCClient, _ token: String, nonce: String? = "n-1", _ reason: String) async {
        do {
            _ = try await client.validateIDToken(token, nonce: nonce)
            Issue.record("accepted a token with \(reason)")
        } catch let error as GantryError {
            #expect(error.kind == .unauthorized, "\(reason): \(error)")
            #expect(!error.message.contains(token), "the token must not be echoed")
        } catch {
            Issue.record("unexpected error for \(reason): \(error)")
        }
    }

    @Test("a valid token is accepted and the admin claim read")
    func valid() async throws {
        try await withClient { provider, client, issuer in
            let identity = try await client.validateIDToken(try await provider.sign(claims(issuer)), nonce: "n-1")
            #expect(identity.subject == "user-1")
            #expect(identity.isAdmin)
            let user = try await client.validateIDToken(
                try await provider.sign(claims(issuer) { $0.groups = ["staff"] }), nonce: "n-1")
            #expect(!user.isAdmin)
        }
    }

    @Test("tampered signature, alg none, HS256 with the public key: all rejected")
    func forgedSignatures() async throws {
        try await withClient { provider, client, issuer in
            let good = try await provider.sign(claims(issuer))
            let parts = good.split(separator: ".").map(String.init)

            // Payload changed after signing (sub: user-1 → admin), signature kept.
            let forgedPayload = RandomToken.base64URL(
                Data(
                    #"{"iss":"\#(issuer)","sub":"admin","aud":"gantry","exp":\#(Date().timeIntervalSince1970 + 300),"nonce":"n-1","groups":["gantry-admins"]}"#
                        .utf8))
            await expectRejected(client, [parts[0], forgedPayload, parts[2]].joined(separator: "."), "a tampered payload")
            var signature = Array(parts[2])
            signature[5] = signature[5] == "A" ? "B" : "A"
            await expectRejected(client, [parts[0], parts[1], String(signature)].joined(separator: "."), "a tampered signature")

            let noneHeader = RandomToken.base64URL(Data(#"{"alg":"none","kid":"key-1","typ":"JWT"}"#.utf8))
            await expectRejected(client, "\(noneHeader).\(parts[1]).", "alg none")

            // HS256 keyed with the provider's public key, the classic algorithm confusion.
            let hsHeader = RandomToken.base64URL(Data(#"{"alg":"HS256","kid":"key-1","typ":"JWT"}"#.utf8))
            let input = "\(hsHeader).\(parts[1])"
            for secret in [provider.jwk(kid: "key-1"), provider.key.publicKey.pemRepresentation] {
                let mac = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: Data(secret.utf8)))
                await expectRejected(client, input + "." + RandomToken.base64URL(Data(mac)), "HS256 signed with the public key")
            }
            await expectRejected(client, "not.a.jwt", "garbage")
        }
    }

    @Test("wrong issuer, wrong audience, expired, not yet valid, wrong or missing nonce: all rejected")
    func wrongClaims() async throws {
        try await withClient { provider, client, issuer in
            let now = Date().timeIntervalSince1970
            await expectRejected(
                client, try await provider.sign(claims(issuer) { $0.iss = "http://evil.example" }), "a wrong iss")
            await expectRejected(client, try await provider.sign(claims(issuer) { $0.aud = "another-client" }), "a wrong aud")
            await expectRejected(client, try await provider.sign(claims(issuer) { $0.exp = now - 120 }), "an expired exp")
            await expectRejected(client, try await provider.sign(claims(issuer) { $0.nbf = now + 600 }), "a future nbf")
            await expectRejected(client, try await provider.sign(claims(issuer) { $0.iat = now + 600 }), "a future iat")
            await expectRejected(client, try await provider.sign(claims(issuer) { $0.nonce = "n-2" }), "a wrong nonce")
            await expectRejected(client, try await provider.sign(claims(issuer) { $0.nonce = nil }), "no nonce")
            // Within the 60 s skew an expiry just passed is still accepted.
            _ = try await client.validateIDToken(try await provider.sign(claims(issuer) { $0.exp = now - 10 }), nonce: "n-1")
        }
    }

    @Test("an unknown kid refetches the keys (rotation works) but at most once per interval")
    func keyRotationAndRefetchLimit() async throws {
        try await withClient(minimumRefetch: 3600) { provider, client, issuer in
            _ = try await client.validateIDToken(try await provider.sign(claims(issuer)), nonce: "n-1")
            #expect(provider.jwksFetches.withLock { $0 } == 1)
            // Forged key ids: the first may trigger a refetch... but only once per interval.
            for index in 0..<5 {
                await expectRejected(client, try await provider.sign(claims(issuer), kid: "forged-\(index)"), "an unknown kid")
            }
            #expect(provider.jwksFetches.withLock { $0 } == 1, "unknown kids must not make Gantry hammer the provider")
        }
        try await withClient(minimumRefetch: 0) { provider, client, issuer in
            _ = try await client.validateIDToken(try await provider.sign(claims(issuer)), nonce: "n-1")
            provider.keyID.withLock { $0 = "key-2" }
            let rotated = try await client.validateIDToken(try await provider.sign(claims(issuer)), nonce: "n-1")
            #expect(rotated.subject == "user-1")
            #expect(provider.jwksFetches.withLock { $0 } == 2)
        }
    }
}

import Foundation
import GantryCore
import GantryTestSupport
import Hummingbird
import Testing

@testable import GantryBlobs

/// What only the S3 store has: request signing, credentials handling, the service's errors.
@Suite("S3 object store")
struct S3ObjectStoreTests {
    static let exampleCredentials = S3Credentials(
        accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")

    /// AWS's worked example "GET Object" of Signature Version 4 for S3 (header-based auth).
    @Test("SigV4 matches AWS's GET Object example")
    func signatureMatchesAWSExample() {
        let signer = SigV4Signer(credentials: Self.exampleCredentials, region: "us-east-1")
        let headers = signer.sign(
            method: "GET", path: "/test.txt", query: [],
            headers: [("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9")],
            payloadHash: SigV4Signer.emptyPayloadHash, date: Date(timeIntervalSince1970: 1_369_353_600))
        let values = Dictionary(uniqueKeysWithValues: headers)
        #expect(values["x-amz-date"] == "20130524T000000Z")
        #expect(values["x-amz-content-sha256"] == SigV4Signer.emptyPayloadHash)
        #expect(
            values["authorization"]
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(values["x-amz-security-token"] == nil)
    }

    @Test("a session token is sent and signed")
    func sessionTokenIsSigned() {
        var credentials = Self.exampleCredentials
        credentials.sessionToken = "token/with+chars"
        let signer = SigV4Signer(credentials: credentials, region: "eu-west-1")
        let values = Dictionary(
            uniqueKeysWithValues: signer.sign(
                method: "PUT", path: "/b/k", query: [("uploads", "")], headers: [("host", "h")],
                payloadHash: SigV4Signer.emptyPayloadHash, date: Date(timeIntervalSince1970: 0)))
        #expect(values["x-amz-security-token"] == "token/with+chars")
        #expect(
            values["authorization"]?.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,") == true)
        #expect(values["authorization"]?.contains("/19700101/eu-west-1/s3/aws4_request") == true)
    }

    @Test("keys and query values are percent-encoded once, RFC 3986 style")
    func encoding() {
        #expect(SigV4Signer.uriEncode("dir with space/a+b ü~.-_", keepSlash: true) == "dir%20with%20space/a%2Bb%20%C3%BC~.-_")
        #expect(SigV4Signer.uriEncode("a/b=c&d", keepSlash: false) == "a%2Fb%3Dc%26d")
        #expect(
            SigV4Signer.canonicalQuery([("uploadId", "x/y"), ("partNumber", "2"), ("list-type", "2"), ("prefix", "")])
                == "list-type=2&partNumber=2&prefix=&uploadId=x%2Fy")
        #expect(SigV4Signer.timestamp(Date(timeIntervalSince1970: 1_709_251_199)) == "20240229T235959Z")
        #expect(SigV4Signer.timestamp(Date(timeIntervalSince1970: 951_782_400)) == "20000229T000000Z")
    }

    @Test("printing credentials or a configuration never shows the secret")
    func credentialsAreRedacted() throws {
        var credentials = Self.exampleCredentials
        credentials.sessionToken = "SESSION-TOKEN-VALUE"
        let configuration = S3Configuration(region: "us-east-1", bucket: "b", credentials: credentials)
        var dumped = ""
        dump(credentials, to: &dumped)
        var dumpedConfiguration = ""
        dump(configuration, to: &dumpedConfiguration)
        let printed = [
            "\(credentials)", String(reflecting: credentials), dumped, "\(configuration)", String(reflecting: configuration),
            dumpedConfiguration,
        ]
        for text in printed {
            #expect(!text.contains("wJalrXUtnFEMI"), "\(text)")
            #expect(!text.contains("SESSION-TOKEN-VALUE"), "\(text)")
        }
        #expect("\(credentials)".contains("AKIAIOSFODNN7EXAMPLE"))
    }

    @Test("credentials come from AWS_* variables")
    func credentialsFromEnvironment() {
        #expect(
            S3Credentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"])
                == S3Credentials(accessKeyID: "id", secretAccessKey: "secret"))
        #expect(
            S3Credentials.fromEnvironment([
                "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token",
            ])?.sessionToken == "token")
        #expect(S3Credentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "id"]) == nil)
        #expect(S3Credentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "secret"]) == nil)
    }

    @Test("configuration defaults and validation")
    func configuration() throws {
        let credentials = Self.exampleCredentials
        let aws = S3Configuration(region: "eu-central-1", bucket: "b", credentials: credentials)
        #expect(aws.resolvedEndpoint.absoluteString == "https://s3.eu-central-1.amazonaws.com")
        #expect(!aws.usePathStyle && aws.partSize == 8 << 20)
        let custom = S3Configuration(
            region: "us-east-1", bucket: "b", credentials: credentials, endpoint: URL(string: "http://127.0.0.1:9000"))
        #expect(custom.usePathStyle)
        try custom.validate()
        var small = custom
        small.partSize = (5 << 20) - 1
        #expect(throws: GantryError.self) { try small.validate() }
        var noBucket = custom
        noBucket.bucket = ""
        #expect(throws: GantryError.self) { try S3ObjectStore(configuration: noBucket) }
    }

    @Test("an abort answered 5xx is tried again, up to three times")
    func abortRetries() async throws {
        // A FAKE S3 endpoint for aborts only: 500 twice, then 204.
        let calls = AbortCalls()
        let router = Router()
        router.delete("**") { _, _ -> Response in
            let call = await calls.next()
            return Response(status: call < 3 ? .internalServerError : .noContent)
        }
        try await LocalTestServer.withServer(router) { base in
            let configuration = S3Configuration(
                region: "us-east-1", bucket: "b", credentials: S3Credentials(accessKeyID: "id", secretAccessKey: "secret"),
                endpoint: URL(string: base), keyPrefix: "")
            let store = try S3ObjectStore(configuration: configuration)
            await store.abortShieldedFromCancellation("k", uploadID: "u1")
            #expect(await calls.count == 3, "two 500s, then the abort went through")
            try await store.shutdown()
        }
    }

    actor AbortCalls {
        var count = 0
        func next() -> Int {
            count += 1
            return count
        }
    }

    @Test("a missing bucket is a clear badGateway error, without secrets", .tags(.moto))
    func missingBucket() async throws {
        let configuration = try ObjectStoreConformanceTests.s3Configuration(bucket: "gantry-no-such-bucket", prefix: "")
        let store = try S3ObjectStore(configuration: configuration)
        for operation in ["list", "put", "read"] {
            let error = await #expect(throws: GantryError.self, "\(operation)") {
                switch operation {
                case "list": _ = try await store.list(prefix: "")
                case "put": try await store.put("k", [1, 2, 3])
                default: _ = try await store.readAll("k")
                }
            }
            #expect(error?.kind == .badGateway, "\(operation)")
            #expect(error?.message.contains("object store: NoSuchBucket") == true, "\(String(describing: error))")
            #expect(error?.message.contains(configuration.credentials.secretAccessKey) == false)
        }
        try await store.shutdown()
    }

    @Test("a wrong secret is refused by the service (signatures are checked), and not echoed", .tags(.moto))
    func wrongSecret() async throws {
        var configuration = try ObjectStoreConformanceTests.s3Configuration(prefix: "")
        configuration.credentials.secretAccessKey = "not-the-secret-\(UUID().uuidString)"
        let store = try S3ObjectStore(configuration: configuration)
        let error = await #expect(throws: GantryError.self) { _ = try await store.list(prefix: "") }
        #expect(error?.kind == .badGateway)
        #expect(error?.message.contains("SignatureDoesNotMatch") == true, "\(String(describing: error))")
        #expect(error?.message.contains(configuration.credentials.secretAccessKey) == false)
        try await store.shutdown()
    }

    @Test(
        "a put larger than a part is a multipart upload; open uploads are seen and aborted, and old ones removed as leftovers",
        .tags(.moto))
    func multipartUploads() async throws {
        let store = try S3ObjectStore(
            configuration: ObjectStoreConformanceTests.s3Configuration(prefix: "mp-\(UUID().uuidString)/"))
        do {
            try await store.createBucketIfMissing()
            try await store.put("big", TestBytes.random(S3Configuration.minimumPartSize * 2 + 1))
            // S3 gives a multipart object the ETag "<md5 of the part md5s>-<number of parts>".
            let head = try await store.send(S3Request(method: .HEAD, key: try store.objectKey("big")), operation: "test")
            #expect(head.headers.first(name: "etag")?.hasSuffix("-3\"") == true, "\(head.headers)")
            try await store.put("small", TestBytes.random(1000))
            let small = try await store.send(S3Request(method: .HEAD, key: try store.objectKey("small")), operation: "test")
            #expect(small.headers.first(name: "etag")?.contains("-") == false)

            // The check the conformance suite relies on sees an open upload, and abort ends it.
            let id = try await store.createMultipartUpload(try store.objectKey("open"))
            #expect(try await store.listMultipartUploads(prefix: "").map(\.key) == ["open"])
            try await store.abortMultipartUpload(try store.objectKey("open"), uploadID: id)
            #expect(try await store.listMultipartUploads(prefix: "").isEmpty)
            #expect(try await store.list(prefix: "").map(\.key) == ["big", "small"])

            // An upload a crashed put left open is aborted once older than the age given. moto
            // reports every upload as initiated on one fixed day of 2010, so only the reading of
            // that time and the removal are checked here; that young ones stay is the local
            // store's test (LocalDirectoryObjectStoreTests.leftovers).
            _ = try await store.createMultipartUpload(try store.objectKey("crashed"))
            let initiated = try #require(try await store.listMultipartUploads(prefix: "").first?.initiated)
            #expect(initiated < Date())
            try await store.removeLeftovers(olderThan: .seconds(3600))
            #expect(try await store.listMultipartUploads(prefix: "").isEmpty)
            #expect(try await store.list(prefix: "").map(\.key) == ["big", "small"], "objects are not leftovers")
        } catch {
            try? await store.shutdown()
            throw error
        }
        try await store.shutdown()
    }

    @Test("an unreachable service is unavailable, quickly")
    func unreachable() async throws {
        // Nothing listens on port 1, so every connection attempt is refused.
        let port = 1
        let configuration = S3Configuration(
            region: "us-east-1", bucket: "b", credentials: S3Credentials(accessKeyID: "a", secretAccessKey: "s"),
            endpoint: URL(string: "http://127.0.0.1:\(port)"), connectTimeout: .seconds(1))
        let store = try S3ObjectStore(configuration: configuration)
        let started = ContinuousClock.now
        let error = await #expect(throws: GantryError.self) { _ = try await store.list(prefix: "") }
        #expect(error?.kind == .unavailable)
        #expect(ContinuousClock.now - started < .seconds(10))
        try await store.shutdown()
    }
}

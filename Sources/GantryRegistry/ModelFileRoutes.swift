import Foundation
public import GantryCore
public import GantryHTTP
import HTTPTypes
public import Hummingbird

/// Where nodes fetch a version's files themselves (a pod's init container), with a fetch token
/// for that version instead of a user's credential: the manifest (paths, sizes, digests, the
/// engine's entry file), then each file, streamed from the object store, with ranges so an
/// interrupted download resumes where it stopped.
public struct ModelFileRoutes: Sendable {
    let models: any ModelRepository
    let registry: RegistryService
    let tokens: ModelFetchTokens

    public init(models: any ModelRepository, registry: RegistryService, tokens: ModelFetchTokens) {
        self.models = models
        self.registry = registry
        self.tokens = tokens
    }

    struct Manifest: Codable {
        struct File: Codable {
            var path: String
            var size: Int64
            var sha256: String
        }
        var versionID: String
        var format: String
        var entryFile: String?
        var files: [File]

        enum CodingKeys: String, CodingKey {
            case versionID = "version_id"
            case format
            case entryFile = "entry_file"
            case files
        }
    }

    public func add(to router: Router<GantryRequestContext>) {
        let group = router.group(RouterPath(ModelFetchTokens.prefix))
        group.get("{version}") { request, context in
            let (version, files) = try await authorized(request, context)
            let manifest = Manifest(
                versionID: version.id, format: version.format, entryFile: try version.entryFile(among: files),
                files: files.map { .init(path: $0.path, size: $0.size, sha256: $0.sha256) })
            return JSONResponse(manifest)
        }
        group.get("{version}/files/**") { request, context in
            let (_, files) = try await authorized(request, context)
            let raw = request.uri.path
            guard let marker = raw.range(of: "/files/") else { throw GantryError.notFound("no file path") }
            let path = String(raw[marker.upperBound...]).removingPercentEncoding ?? ""
            guard let file = files.first(where: { $0.path == path }) else {
                throw GantryError.notFound("the version has no file '\(path)'", code: "file_not_found")
            }
            var headers: HTTPFields = [
                .contentType: "application/octet-stream", .acceptRanges: "bytes", .eTag: "\"\(file.sha256)\"",
            ]
            let range: Range<Int64>
            var status = HTTPResponse.Status.ok
            switch ByteRange.parse(request.headers[.range], size: file.size) {
            case .whole:
                range = 0..<file.size
            case .part(let part):
                range = part
                status = .partialContent
                headers[.contentRange] = "bytes \(part.lowerBound)-\(part.upperBound - 1)/\(file.size)"
            case .unsatisfiable:
                headers[.contentRange] = "bytes */\(file.size)"
                return Response(status: .rangeNotSatisfiable, headers: headers)
            }
            let registry = self.registry
            let body = ResponseBody(contentLength: Int(range.count)) { writer in
                try await registry.withBytes(of: file, range: range) { chunks in
                    for try await chunk in chunks { try await writer.write(chunk) }
                }
                try await writer.finish(nil)
            }
            return Response(status: status, headers: headers, body: body)
        }
    }

    /// The version and its files, once the fetch token is checked for it.
    func authorized(_ request: Request, _ context: GantryRequestContext) async throws -> (ModelVersion, [ModelFile]) {
        let versionID = try context.parameters.require("version")
        try tokens.check(request.headers[HTTPField.Name(ModelFetchGrant.header)!], versionID: versionID)
        guard let version = try await models.version(id: versionID) else {
            throw GantryError.notFound("model version '\(versionID)' does not exist")
        }
        return (version, try await models.files(versionID: versionID))
    }
}

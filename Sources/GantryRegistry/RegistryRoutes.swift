import Foundation
import GantryBlobs
public import GantryCore
public import GantryHTTP
import HTTPTypes
public import Hummingbird

/// `/api/v1/models`: admins register, change, upload and delete; every authenticated user may read
/// the metadata. File contents are for admins only: weights are not everyone's to copy.
public struct RegistryRoutes: Sendable {
    let registry: RegistryService

    public init(registry: RegistryService) {
        self.registry = registry
    }

    /// Header carrying the SHA-256 an upload must have.
    public static let expectedDigestHeader = HTTPField.Name("x-gantry-sha256")!

    public func add(to router: Router<GantryRequestContext>) {
        let models = router.group("/api/v1/models")
        models.post { request, context in
            let principal = try context.requireAdmin()
            let body = try await request.decodeJSON(as: NewModel.self)
            return JSONResponse(try await registry.createModel(body, createdBy: principal), status: .created)
        }
        models.get { request, context in
            _ = try context.requirePrincipal()
            let query = try Self.modelQuery(
                request.uri.queryParameters.map { (key: String($0.key), value: String($0.value)) })
            let page = try await registry.listModels(query)
            return JSONResponse(PageResponse(page.models, nextCursor: page.last.map(PageCursor.encode)))
        }
        models.get("{name}") { _, context in
            _ = try context.requirePrincipal()
            let model = try await registry.model(named: try context.parameters.require("name"))
            let versions = try await registry.listVersions(modelName: model.name, after: nil, limit: 1000).versions
            return JSONResponse(RecordWithField(model, adding: "versions", versions))
        }
        models.patch("{name}") { request, context in
            _ = try context.requireAdmin()
            let changes = try await request.decodeJSON(as: ModelChanges.self)
            return JSONResponse(try await registry.updateModel(named: try context.parameters.require("name"), changes))
        }
        models.delete("{name}") { _, context in
            _ = try context.requireAdmin()
            try await registry.deleteModel(named: try context.parameters.require("name"))
            return Response(status: .noContent)
        }
        addVersionRoutes(to: models.group("{name}/versions"))
    }

    private func addVersionRoutes(to versions: RouterGroup<GantryRequestContext>) {
        versions.post { request, context in
            _ = try context.requireAdmin()
            let body = try await request.decodeJSON(as: NewVersion.self)
            return JSONResponse(
                try await registry.createVersion(modelName: try context.parameters.require("name"), body), status: .created)
        }
        versions.get { request, context in
            _ = try context.requirePrincipal()
            let query = request.uri.queryParameters
            let limit = try PageCursor.limit(query["limit"].map(String.init))
            let after = try query["cursor"].map { try PageCursor.decode(String($0)) }
            let page = try await registry.listVersions(
                modelName: try context.parameters.require("name"), after: after, limit: limit)
            return JSONResponse(PageResponse(page.versions, nextCursor: page.last.map(PageCursor.encode)))
        }
        versions.get("{version}") { _, context in
            _ = try context.requirePrincipal()
            let (_, version) = try await registry.version(
                modelName: try context.parameters.require("name"), version: try context.parameters.require("version"))
            let withFiles = RecordWithField(version, adding: "files", try await registry.files(of: version))
            return JSONResponse(
                RecordWithField(withFiles, adding: "uploads_in_progress", await registry.uploadsInProgress(of: version)))
        }
        versions.patch("{version}") { request, context in
            _ = try context.requireAdmin()
            let changes = try await request.decodeJSON(as: VersionChanges.self)
            return JSONResponse(
                try await registry.updateVersion(
                    modelName: try context.parameters.require("name"), version: try context.parameters.require("version"),
                    changes))
        }
        versions.delete("{version}") { _, context in
            _ = try context.requireAdmin()
            try await registry.deleteVersion(
                modelName: try context.parameters.require("name"), version: try context.parameters.require("version"))
            return Response(status: .noContent)
        }
        versions.post("{version}/complete") { _, context in
            _ = try context.requireAdmin()
            return JSONResponse(
                try await registry.complete(
                    modelName: try context.parameters.require("name"), version: try context.parameters.require("version")))
        }
        addFileRoutes(to: versions.group("{version}/files"))
    }

    private func addFileRoutes(to files: RouterGroup<GantryRequestContext>) {
        files.put("**") { request, context in
            _ = try context.requireAdmin()
            let declared = request.headers[.contentLength].flatMap { Int64($0) }
            // The handler itself is the only reader of the body, and it finishes reading before
            // it returns (DESIGN.md section 7).
            let file = try await registry.upload(
                modelName: try context.parameters.require("name"), version: try context.parameters.require("version"),
                path: try Self.filePath(request), body: request.body,
                expectedSHA256: request.headers[Self.expectedDigestHeader], declaredLength: declared)
            return JSONResponse(file, status: .created)
        }
        files.get("**") { request, context in
            _ = try context.requireAdmin()
            let file = try await registry.file(
                modelName: try context.parameters.require("name"), version: try context.parameters.require("version"),
                path: try Self.filePath(request))
            let registry = self.registry
            let body = ResponseBody(contentLength: Int(file.size)) { writer in
                try await registry.withBytes(of: file) { chunks in
                    for try await chunk in chunks { try await writer.write(chunk) }
                }
                try await writer.finish(nil)
            }
            return Response(
                status: .ok,
                headers: [
                    .contentType: "application/octet-stream", Self.expectedDigestHeader: file.sha256,
                    .eTag: "\"\(file.sha256)\"",
                ],
                body: body)
        }
        files.delete("**") { request, context in
            _ = try context.requireAdmin()
            try await registry.deleteFile(
                modelName: try context.parameters.require("name"), version: try context.parameters.require("version"),
                path: try Self.filePath(request))
            return Response(status: .noContent)
        }
    }

    /// The file path: everything after `/files/` in the raw request path, each segment
    /// percent-decoded, so that an encoded `..%2F` is seen (and refused) as the traversal it is,
    /// and an empty segment (`a//b`) is refused rather than silently merged by the router.
    static func filePath(_ request: Request) throws -> String {
        let raw = request.uri.path
        guard let versions = raw.range(of: "/versions/"),
            let files = raw.range(of: "/files/", range: versions.upperBound..<raw.endIndex)
        else { throw GantryError.invalid("the request has no file path", param: "path") }
        let segments = try raw[files.upperBound...].split(separator: "/", omittingEmptySubsequences: false).map { segment in
            guard let decoded = String(segment).removingPercentEncoding else {
                throw GantryError.invalid("file path is not valid percent-encoding", param: "path")
            }
            return decoded
        }
        let path = segments.joined(separator: "/")
        try ModelFilePath.validate(path)
        return path
    }

    static func modelQuery(_ pairs: [(key: String, value: String)]) throws -> ModelQuery {
        var parameters: [String: String] = [:]
        var labels: [String] = []
        for (key, value) in pairs {
            if key == "label" { labels.append(value) } else { parameters[key] = value }
        }
        var query = ModelQuery()
        if let task = parameters["task"] {
            guard let value = ModelTask(rawValue: task) else {
                throw GantryError.invalid(
                    "task must be one of \(ModelTask.allCases.map(\.rawValue).joined(separator: ", "))", param: "task")
            }
            query.task = value
        }
        query.owner = parameters["owner"]
        query.namePrefix = parameters["name_prefix"]
        for label in labels {
            let parts = label.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw GantryError.invalid("label filters look like label=key=value", param: "label") }
            query.labels[String(parts[0])] = String(parts[1])
        }
        query.limit = try PageCursor.limit(parameters["limit"])
        query.after = try parameters["cursor"].map(PageCursor.decode)
        return query
    }
}

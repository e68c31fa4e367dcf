import GantryHTTP
import Hummingbird
import NIOCore

/// `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every `/api` operation and the `/v1`
/// endpoints, kept in the repository (`Resources/openapi.json`) and compiled in.
/// `OpenAPITests` checks it against the routes the server registers, both ways.
enum OpenAPIRoutes {
    static let path = "/api/v1/openapi.json"

    static func add(to router: Router<GantryRequestContext>) {
        let document = ByteBuffer(bytes: PackageResources.openapi_json)
        router.get(RouterPath(path)) { _, context in
            // Like every /api route: for a caller with a credential (it names the admin API).
            _ = try context.requirePrincipal()
            return Response(
                status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: document))
        }
    }
}

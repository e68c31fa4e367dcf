import Foundation
public import GantryCore
public import GantryHTTP
public import Hummingbird

/// `GET /api/v1/usage`: metered requests, newest first, or daily sums with `group_by=day`.
/// Filters: `user` (a user id; admins only, others see their own), `key_id`, `model`, `from`,
/// `to` (ISO 8601 times or `YYYY-MM-DD` days, UTC; `to` exclusive), and for records `limit`
/// (1-1000, default 100) and `before` (the last id of the previous page).
public struct UsageRoutes: Sendable {
    let repository: any UsageRepository
    let recorder: UsageRecorder

    public init(repository: any UsageRepository, recorder: UsageRecorder) {
        self.repository = repository
        self.recorder = recorder
    }

    struct Page: Encodable, Sendable {
        var object = "list"
        var data: [UsageRecord]
        var hasMore: Bool
    }

    struct Daily: Encodable, Sendable {
        var object = "list"
        var data: [DailyUsage]
    }

    public func add(to router: Router<GantryRequestContext>) {
        router.get("/api/v1/usage") { request, context in
            let principal = try context.requirePrincipal()
            let parameters = request.uri.queryParameters
            var query = UsageQuery()
            if let user = parameters["user"].map(String.init), user != principal.userID {
                guard principal.isAdmin else { throw GantryError(.forbidden, "only admins may read other users' usage") }
                query.userID = user
            } else if !principal.isAdmin || parameters["user"] != nil {
                query.userID = principal.userID
            }
            query.keyID = parameters["key_id"].map(String.init)
            query.deployment = parameters["model"].map(String.init)
            query.from = try parameters["from"].map { try Self.time(String($0), param: "from") }
            query.to = try parameters["to"].map { try Self.time(String($0), param: "to") }
            // Records still waiting to be written are written first: callers read their own requests.
            await recorder.flush()
            switch parameters["group_by"].map(String.init) {
            case "day":
                return try JSONResponse(Daily(data: await repository.dailyUsage(query))).response(from: request, context: context)
            case nil:
                break
            case let other?:
                throw GantryError.invalid("group_by must be 'day', not '\(other)'", param: "group_by")
            }
            let limit = try PageCursor.limit(parameters["limit"].map(String.init))
            query.limit = limit + 1
            query.before = parameters["before"].map(String.init)
            let records = try await repository.usage(query)
            return try JSONResponse(Page(data: Array(records.prefix(limit)), hasMore: records.count > limit))
                .response(from: request, context: context)
        }
    }

    static func time(_ text: String, param: String) throws -> Date {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        if let day = try? Date(text + "T00:00:00Z", strategy: .iso8601) { return day }
        throw GantryError.invalid("\(param) must be an ISO 8601 time or a YYYY-MM-DD day", param: param)
    }
}

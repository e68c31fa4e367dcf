public import Foundation

/// One metered request of the data plane: who called what, where it ran, what it cost.
public struct UsageRecord: Codable, Sendable, Equatable {
    public var id: String
    public var createdAt: Date
    /// The API key used; nil for a caller who authenticated otherwise (session, provider token).
    public var keyID: String?
    public var userID: String
    public var deployment: String
    /// The model version that answered; empty when the request never reached an engine.
    public var version: String
    public var instanceID: String?
    /// `chat.completions`, `completions` or `embeddings`.
    public var endpoint: String
    public var promptTokens: Int
    public var completionTokens: Int
    /// Milliseconds from the request's arrival to the first byte of the answer's body.
    public var timeToFirstTokenMs: Int?
    public var latencyMs: Int
    /// The HTTP status the caller got.
    public var status: Int
    /// The OpenAI error type of a failed request (`rate_limit_exceeded`, `context_length_exceeded`, ...).
    public var errorType: String?
    /// Seconds an engine spent on the request: from sending it to the end of the answer.
    public var engineSeconds: Double
    /// The tokens are the gateway's upper bound, not the engine's count: the request may have run
    /// on an engine, but its usage never arrived (the client hung up before the usage chunk, the
    /// engine failed or timed out). What was reserved for it is charged.
    public var estimated: Bool

    public init(
        id: String, createdAt: Date, keyID: String?, userID: String, deployment: String, version: String,
        instanceID: String?, endpoint: String, promptTokens: Int, completionTokens: Int, timeToFirstTokenMs: Int?,
        latencyMs: Int, status: Int, errorType: String?, engineSeconds: Double, estimated: Bool = false
    ) {
        self.id = id
        self.createdAt = createdAt
        self.keyID = keyID
        self.userID = userID
        self.deployment = deployment
        self.version = version
        self.instanceID = instanceID
        self.endpoint = endpoint
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.timeToFirstTokenMs = timeToFirstTokenMs
        self.latencyMs = latencyMs
        self.status = status
        self.errorType = errorType
        self.engineSeconds = engineSeconds
        self.estimated = estimated
    }

    public var totalTokens: Int { promptTokens + completionTokens }
}

/// Which usage records to read. Every filter is optional; `from` is inclusive, `to` exclusive.
public struct UsageQuery: Sendable, Equatable {
    public var userID: String?
    public var keyID: String?
    public var deployment: String?
    public var from: Date?
    public var to: Date?
    /// Id of the last record of the previous page (records come newest first).
    public var before: String?
    public var limit: Int

    public init(
        userID: String? = nil, keyID: String? = nil, deployment: String? = nil, from: Date? = nil, to: Date? = nil,
        before: String? = nil, limit: Int = 100
    ) {
        self.userID = userID
        self.keyID = keyID
        self.deployment = deployment
        self.from = from
        self.to = to
        self.before = before
        self.limit = limit
    }
}

/// Usage summed over one UTC day and deployment.
public struct DailyUsage: Codable, Sendable, Equatable {
    /// `YYYY-MM-DD`, UTC.
    public var day: String
    public var deployment: String
    public var requests: Int
    public var failedRequests: Int
    public var promptTokens: Int
    public var completionTokens: Int

    public init(day: String, deployment: String, requests: Int, failedRequests: Int, promptTokens: Int, completionTokens: Int) {
        self.day = day
        self.deployment = deployment
        self.requests = requests
        self.failedRequests = failedRequests
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }
}

public protocol UsageRepository: Sendable {
    /// Stores a batch of records in one statement.
    func recordUsage(_ records: [UsageRecord]) async throws
    /// Records matching the query, newest first.
    func usage(_ query: UsageQuery) async throws -> [UsageRecord]
    /// Daily sums per deployment of the records matching the query (its paging is ignored), oldest day first.
    func dailyUsage(_ query: UsageQuery) async throws -> [DailyUsage]
    /// Tokens (prompt plus completion) a key used from `since` on.
    func tokensUsed(keyID: String, since: Date) async throws -> Int
    /// Tokens (prompt plus completion) a user used from `since` on, with any credential.
    func tokensUsed(userID: String, since: Date) async throws -> Int
}

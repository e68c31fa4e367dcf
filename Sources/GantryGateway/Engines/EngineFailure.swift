import GantryCore
import GantryHTTP
import NIOCore

/// How a failed engine exchange is answered, the same on the router's path and the direct
/// relay's: the error for each way an engine can fail, and the SSE event that ends a stream
/// the engine broke.
enum EngineFailure {
    /// Every connection the gateway may open to the engine is busy: not the engine's fault.
    static let overloaded = GantryError(
        .unavailable, "the model's engines are busy; retry shortly", code: "engine_overloaded", retryAfter: 1)
    /// No connection could be made, or it failed before the answer began.
    static let unreachable = GantryError(.badGateway, "the model's engine could not be reached", code: "engine_unavailable")

    static func noAnswer(within seconds: Double) -> GantryError {
        GantryError(.gatewayTimeout, "the model's engine did not answer within \(seconds) s", code: "engine_timeout")
    }

    /// The answer began and then stalled (`timedOut`) or broke off.
    static func whileAnswering(timedOut: Bool) -> GantryError {
        timedOut
            ? GantryError(.gatewayTimeout, "the model's engine stalled while answering", code: "engine_timeout")
            : GantryError(.badGateway, "the model's engine failed while answering", code: "engine_failed")
    }

    static func duringStream(timedOut: Bool) -> GantryError {
        timedOut
            ? GantryError(.gatewayTimeout, "the model's engine stalled during the stream", code: "engine_timeout")
            : GantryError(.badGateway, "the model's engine failed during the stream", code: "engine_failed")
    }

    /// The engine's own context-overflow answer, as the gateway's `context_length_exceeded`.
    static func contextOverflow(_ entry: RouteEntry, endpoint: InferenceEndpoint) -> GantryError {
        AdmissionPipeline.contextExceeded(
            "the prompt plus max_tokens exceeds the context limit of model '\(entry.deployment)' (\(entry.contextLimit) tokens)",
            param: endpoint.promptField)
    }

    /// The SSE event that ends a stream with `error`, in the OpenAI envelope.
    static func event(_ error: GantryError) -> ByteBuffer {
        var event = ByteBuffer(string: "data: ")
        event.writeBytes(ErrorResponse(error: error, style: .openAI).body())
        event.writeString("\n\n")
        return event
    }

    /// The status a stream ended by `error` is metered with.
    static func status(of error: GantryError) -> Int { Int(ErrorResponse.status(for: error.kind).code) }
}

extension RouteEntry {
    /// The wait for an engine's answer to begin, and the longest silence within it: the
    /// service's own, else the gateway's upstream timeout.
    func firstByteTimeout(default upstream: Duration) -> Duration { timeouts.firstByteSeconds.map { .seconds($0) } ?? upstream }
    func idleTimeout(default upstream: Duration) -> Duration { timeouts.idleSeconds.map { .seconds($0) } ?? upstream }
}

import NIOCore

/// One direct exchange with an engine, from admission to its end: a pure state machine, told what
/// happened and when (as `ClientDeadlines` is), that keeps the phase, the attempt and the engine's
/// deadlines and answers every event with what `DirectExchange`, its I/O shell, must do. No
/// timers: the event loop's `DeadlineSweep` asks `deadlinePassed(now:)`.
///
/// Every way out ends in `finished`, once: later events (a client leaving after the answer, an
/// engine closing after a timeout) are answered with `.none`, so nothing is accounted twice.
struct ExchangeStateMachine {
    enum State: Equatable {
        /// Before the admission pipeline admitted the request.
        case admitting
        /// Admitted, an instance leased, a connection to it asked for.
        case connecting(attempt: Int)
        /// The request is written; the engine's head is due by `deadline`.
        case waitingForHead(attempt: Int, deadline: NIODeadline)
        /// The engine's head arrived. Its body is relayed as it comes (`streaming`) or collected;
        /// the engine may be silent at most the idle timeout since `lastRead`.
        case answering(streaming: Bool, lastRead: NIODeadline)
        case finished
    }

    enum Action: Equatable {
        case none
        /// Ask the pool for a connection to the leased instance.
        case connect
        /// Write the request on the connection; its deadlines are now watched.
        case send
        /// The instance could not be connected to (so the request never reached it): release it,
        /// report it, and connect to another ready instance.
        case retry
        /// Answer the client with this failure; no answer has begun.
        case fail(Failure)
        /// A stream has begun: end it with an error event the client can see.
        case endStreamWithError(timedOut: Bool)
        /// The engine's answer is whole: finish relaying it, or write it.
        case finish
        /// The client left: close the engine's connection (which cancels its request) and
        /// account the request as abandoned.
        case abandon
    }

    enum Failure: Equatable {
        /// Every connection the gateway may open to the engine is busy; not the engine's fault.
        case overloaded
        case unreachable
        /// No head within the first-byte timeout.
        case noAnswer
        /// The engine failed, or went silent, after its head and before the end of a whole answer.
        case whileAnswering(timedOut: Bool)
    }

    /// One retry, only when the first instance could not even be connected to.
    static let maxAttempts = 2

    private(set) var state = State.admitting
    private var firstByteTimeout = TimeAmount.zero
    private var idleTimeout = TimeAmount.zero

    /// The pipeline admitted the request, with its service's timeouts.
    mutating func admitted(firstByteTimeout: TimeAmount, idleTimeout: TimeAmount) -> Action {
        guard case .admitting = state else { return .none }
        self.firstByteTimeout = firstByteTimeout
        self.idleTimeout = idleTimeout
        state = .connecting(attempt: 1)
        return .connect
    }

    /// Ended before admission: answered here (a refusal) or handed to the router.
    mutating func endedBeforeAdmission() {
        if case .admitting = state { state = .finished }
    }

    mutating func connected(now: NIODeadline) -> Action {
        guard case .connecting(let attempt) = state else { return .none }
        state = .waitingForHead(attempt: attempt, deadline: now + firstByteTimeout)
        return .send
    }

    /// No connection: `poolFull` when the pool refused (every connection busy), otherwise the
    /// instance could not be reached.
    mutating func connectFailed(poolFull: Bool) -> Action {
        guard case .connecting(let attempt) = state else { return .none }
        if poolFull {
            state = .finished
            return .fail(.overloaded)
        }
        guard attempt < Self.maxAttempts else {
            state = .finished
            return .fail(.unreachable)
        }
        state = .connecting(attempt: attempt + 1)
        return .retry
    }

    /// A retry found no other ready instance.
    mutating func noInstanceToRetry() -> Action {
        guard case .connecting = state else { return .none }
        state = .finished
        return .fail(.unreachable)
    }

    mutating func headReceived(streaming: Bool, now: NIODeadline) -> Action {
        guard case .waitingForHead = state else { return .none }
        state = .answering(streaming: streaming, lastRead: now)
        return .none
    }

    mutating func bodyReceived(now: NIODeadline) {
        guard case .answering(let streaming, _) = state else { return }
        state = .answering(streaming: streaming, lastRead: now)
    }

    /// The engine's answer ended. Before its head this is not an answer: the failure the pool
    /// reports for the closed connection decides.
    mutating func engineEnded() -> Action {
        guard case .answering = state else { return .none }
        state = .finished
        return .finish
    }

    /// The engine's connection failed, it closed early, the answer outgrew the relay's bound, or a
    /// deadline passed (`timedOut`).
    mutating func engineFailed(timedOut: Bool) -> Action {
        switch state {
        case .admitting, .finished:
            return .none
        case .connecting, .waitingForHead:
            state = .finished
            return .fail(timedOut ? .noAnswer : .unreachable)
        case .answering(let streaming, _):
            state = .finished
            return streaming ? .endStreamWithError(timedOut: timedOut) : .fail(.whileAnswering(timedOut: timedOut))
        }
    }

    mutating func clientClosed() -> Action {
        guard state != .finished else { return .none }
        state = .finished
        return .abandon
    }

    /// Whether the engine has taken too long: for its head, or since its last bytes.
    func deadlinePassed(now: NIODeadline) -> Bool {
        switch state {
        case .waitingForHead(_, let deadline): now >= deadline
        case .answering(_, let lastRead): now >= lastRead + idleTimeout
        case .admitting, .connecting, .finished: false
        }
    }

    var isFinished: Bool { state == .finished }

    /// The attempt in progress (1 or 2), 0 before admission or after the end.
    var attempt: Int {
        switch state {
        case .connecting(let attempt), .waitingForHead(let attempt, _): attempt
        default: 0
        }
    }
}

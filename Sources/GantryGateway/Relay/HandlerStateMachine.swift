/// One client connection as the relay's handler behind the codec (`DirectRelayHandler`) sees it:
/// a pure state machine told what happened (a request part arrived, an exchange ended or gave its
/// request back, the router wrote an answer, the client left) that answers with what the handler
/// must do. The handler keeps the parts, the body and the exchange; this keeps the decisions:
/// which request the relay serves, what the router gets, what waits, when reading is held, when
/// the connection closes.
///
/// Order on the connection is kept: a request is served directly only when the router owes no
/// answer on this connection, and while an exchange runs, further (pipelined) parts are held.
struct HandlerStateMachine {
    enum State: Equatable {
        /// Between requests.
        case idle
        /// Reading the body of a request the relay may serve; `bytes` of it so far.
        case collecting(bytes: Int)
        /// Passing a request's parts to the router, up to its end.
        case passingOn
        /// An exchange serves a request.
        case serving
    }

    /// A request part, as far as the decisions go.
    enum Part: Equatable {
        /// `direct`: the relay could serve the request (a `/v1` endpoint it relays, a caller it
        /// verified recently, relaying on). Asked only when `mayServeNext`.
        case head(direct: Bool)
        case body(bytes: Int)
        case end
    }

    enum PartAction: Equatable {
        /// Pass the part to the router.
        case forward
        /// Keep it: the head of a request the relay may serve, or a chunk of its body.
        case collect
        /// Keep it for after the running exchange.
        case hold
        /// Give the router the head and body collected so far, then this part: the relay does
        /// not serve this request after all (its body is too large, or it is not HTTP).
        case passCollected
        /// The collected request is whole (this was its end): serve it.
        case startExchange
    }

    enum FinishAction: Equatable {
        case none
        /// The client asked to close after this answer.
        case close
        /// Serve what was held meanwhile, then read on (`resumeHeld`, `resumed`).
        case resume
    }

    /// Bytes a held part is counted for beyond its body: what a part costs to keep.
    static let partOverhead = 64

    /// The largest request body the relay collects; a larger one goes to the router (413).
    let maxRequestBytes: Int
    /// Pipelined bytes held during an exchange before reading is held too.
    let maxHeldBytes: Int
    private(set) var state = State.idle
    /// Requests given to the router whose answer has not been written yet.
    private(set) var routerOwes = 0
    private(set) var heldBytes = 0
    /// Reading is held until the exchange ends.
    private(set) var readHeld = false
    private(set) var clientGone = false
    /// The next request is one the front's exchange handed to the router: it goes there directly.
    private var nextToRouter = false
    /// The router's answer being written announced `connection: close` (it came before the body).
    private var closingAfterAnswer = false

    init(maxRequestBytes: Int, maxHeldBytes: Int) {
        self.maxRequestBytes = maxRequestBytes
        self.maxHeldBytes = maxHeldBytes
    }

    /// Whether a head arriving now could be served by the relay (so whether it is worth asking
    /// the cache about its caller): nothing in progress, and no answer owed by the router before it.
    var mayServeNext: Bool { state == .idle && routerOwes == 0 && !nextToRouter }

    var isServing: Bool { state == .serving }

    /// The front handed the connection on with a request its exchange gave back: that request
    /// (the next head) goes to the router.
    mutating func nextRequestGoesToRouter() {
        nextToRouter = true
    }

    mutating func partArrived(_ part: Part) -> PartAction {
        switch state {
        case .serving:
            if case .body(let bytes) = part { heldBytes += bytes }
            heldBytes += Self.partOverhead
            return .hold
        case .passingOn:
            if case .end = part { state = .idle }
            return .forward
        case .collecting(let collected):
            switch part {
            case .body(let bytes) where collected + bytes > maxRequestBytes:
                // The router answers 413 (and reads the rest of the body).
                return passCollected()
            case .body(let bytes):
                state = .collecting(bytes: collected + bytes)
                return .collect
            case .end:
                state = .serving
                return .startExchange
            case .head:
                // A new head before the end: not HTTP; the router deals with it.
                return passCollected()
            }
        case .idle:
            guard case .head(let direct) = part else { return .forward }
            if direct, mayServeNext {
                state = .collecting(bytes: 0)
                return .collect
            }
            nextToRouter = false
            routerOwes += 1
            state = .passingOn
            return .forward
        }
    }

    private mutating func passCollected() -> PartAction {
        routerOwes += 1
        state = .passingOn
        return .passCollected
    }

    /// A held part is taken out to be served (then given to `partArrived`, as it arrived).
    mutating func releaseHeld(_ part: Part) {
        if case .body(let bytes) = part { heldBytes -= bytes }
        heldBytes -= Self.partOverhead
    }

    /// The held parts were served as far as they go: whether reading, held, goes on now.
    mutating func resumed() -> Bool {
        guard state != .serving, readHeld else { return false }
        readHeld = false
        return true
    }

    /// The channel wants to read: held while an exchange runs and the held parts pass the bound
    /// (below it reading goes on, so a client that leaves is seen at once and its engine request
    /// cancelled).
    mutating func readRequested() -> Bool {
        if state == .serving, heldBytes > maxHeldBytes {
            readHeld = true
            return false
        }
        return true
    }

    /// The exchange gave its request back (it must wait, or its caller failed authentication):
    /// whether to pass it to the router now (not when the client has left), then resume.
    mutating func exchangeHandedToRouter() -> Bool {
        guard !clientGone, state == .serving else { return false }
        routerOwes += 1
        state = .idle
        return true
    }

    /// The exchange wrote its whole answer. `closeAfter`: its request asked to close.
    mutating func exchangeFinished(closeAfter: Bool) -> FinishAction {
        guard !clientGone, state == .serving else { return .none }
        state = .idle
        return closeAfter ? .close : .resume
    }

    /// The router writes an answer's head. `beforeBody`: the request's body has not all arrived
    /// (a refused credential, a body too large). Then the connection closes after this answer
    /// rather than read the rest to throw it away (Hummingbird would drain it through the codec,
    /// however large: an unauthenticated caller's bytes), and the head must say
    /// `connection: close` (returns true), or a client would send its next request on a
    /// connection about to close, and fail it.
    mutating func routerAnswerHead(beforeBody: Bool) -> Bool {
        guard beforeBody else { return false }
        closingAfterAnswer = true
        return true
    }

    /// The router's answer ends: whether to close the connection once it is written. Once
    /// announced, the close happens even if the body finished arriving meanwhile.
    mutating func routerAnswerEnded(beforeBody: Bool) -> Bool {
        routerOwes = max(0, routerOwes - 1)
        let close = closingAfterAnswer || beforeBody
        closingAfterAnswer = false
        return close
    }

    /// The client left: whether an exchange was running (it must be told, to cancel the engine's
    /// request).
    mutating func clientLeft() -> Bool {
        clientGone = true
        return state == .serving
    }
}

/// One client connection as the relay's front (`DirectRelayFront`) sees it: a pure state machine
/// told what happened (bytes arrived, a head was parsed, the caller was verified, an exchange
/// ended, graceful shutdown began, the client left) that answers with what the front must do. The
/// front keeps the bytes and the exchange; this keeps the decisions: when to parse, when to hand
/// the connection to the codec for good, when to hold reading, when to close.
struct FrontStateMachine {
    enum State: Equatable {
        /// No request in progress: bytes are parsed as they come.
        case reading
        /// A head is parsed and its body is still arriving; `verifying`: its caller is being
        /// checked, and the body is not read past `unverifiedBytes` until then.
        case waitingForBody(verifying: Bool)
        /// An exchange serves a request; `closeAfter`: its client asked to close after the answer.
        case serving(closeAfter: Bool)
        /// The codec reads the connection from now on; the front passes bytes through.
        case handedOn
        /// The client left, or the front closed the connection.
        case closed
    }

    enum Action: Equatable {
        case none
        /// Try to parse what is buffered (a head, or the rest of a body).
        case parse
        /// Give the connection to the codec: the request being served first when `withCurrent`
        /// (the router answers it), then every byte not served yet, in order.
        case handOn(withCurrent: Bool)
        /// Verify the caller of the request whose body is arriving.
        case verify
        /// Start an exchange for the whole request buffered.
        case startExchange
        /// Ask the channel for more bytes (reading was held).
        case read
        case close
        /// Tell the exchange its client left.
        case abandonExchange
    }

    /// What the credential in a head says before its body is read (`DirectRelay.Caller`).
    enum Caller: Equatable {
        case refused, remembered, unverified
    }

    /// How many bytes of one connection are held unread while it waits.
    struct Bounds: Equatable {
        /// Pipelined bytes held while an exchange runs.
        var whileServing: Int
        /// Body bytes held while the caller is verified.
        var whileVerifying: Int
    }

    let bounds: Bounds
    private(set) var state: State
    /// Graceful shutdown began while a request was in progress: close after it.
    private(set) var closeWhenDone = false
    /// Reading is held until the state changes.
    private(set) var readHeld = false

    /// `parses`: whether the front reads requests itself (`gateway.relay` = `full`); otherwise
    /// the codec reads the connection from the start.
    init(parses: Bool, bounds: Bounds) {
        self.bounds = bounds
        state = parses ? .reading : .handedOn
    }

    var isHandedOn: Bool { state == .handedOn }

    /// Bytes arrived: kept for later while an exchange runs, parsed otherwise.
    func bytesArrived() -> Action {
        switch state {
        case .reading, .waitingForBody: .parse
        case .serving, .handedOn, .closed: .none
        }
    }

    /// The buffered bytes are not a request the front reads (`DirectRequestHead` said
    /// `notDirect`), or a refused caller's body is arriving.
    mutating func notDirect() -> Action {
        switch state {
        case .reading, .waitingForBody: return handOn(withCurrent: false)
        case .serving, .handedOn, .closed: return .none
        }
    }

    /// A head was parsed. `whole`: its body has arrived too.
    mutating func headParsed(whole: Bool, closeAfter: Bool, caller: Caller) -> Action {
        switch state {
        case .reading:
            guard !whole else {
                state = .serving(closeAfter: closeAfter)
                return .startExchange
            }
            switch caller {
            case .refused: return handOn(withCurrent: false)
            case .remembered:
                state = .waitingForBody(verifying: false)
                return .none
            case .unverified:
                state = .waitingForBody(verifying: true)
                return .verify
            }
        case .waitingForBody:
            guard whole else { return .none }
            state = .serving(closeAfter: closeAfter)
            return .startExchange
        case .serving, .handedOn, .closed:
            return .none
        }
    }

    /// The caller of the request whose body is arriving was verified (or refused). Accepted, the
    /// body is read on (`resumeReading`) and parsed: the verifier remembers the caller now.
    mutating func verified(_ accepted: Bool) -> Action {
        guard case .waitingForBody(verifying: true) = state else { return .none }
        guard accepted else { return handOn(withCurrent: false) }
        state = .waitingForBody(verifying: false)
        return .parse
    }

    /// The exchange gave the request to the router (it must wait, or failed authentication).
    mutating func exchangeHandedToRouter() -> Action {
        guard case .serving = state else { return .none }
        return handOn(withCurrent: true)
    }

    /// The exchange's answer is written. Then, in order: close if its client asked to; serve a
    /// whole pipelined request (even after graceful shutdown began: `settled` follows the parse).
    mutating func exchangeFinished() -> Action {
        guard case .serving(let closeAfter) = state else { return .none }
        if closeAfter {
            state = .closed
            return .close
        }
        state = .reading
        return .parse
    }

    /// After the parse that followed an exchange: close if graceful shutdown asked for it and no
    /// new request started, or let reading go on.
    mutating func settled() -> Action {
        switch state {
        case .reading, .waitingForBody:
            if closeWhenDone {
                state = .closed
                return .close
            }
            if readHeld {
                readHeld = false
                return .read
            }
            return .none
        case .serving, .handedOn, .closed:
            return .none
        }
    }

    /// The channel wants to read: held while the bytes waiting pass the state's bound (a client
    /// that leaves during an exchange must still be seen at once, so reading goes on below it).
    mutating func readRequested(buffered: Int) -> Action {
        switch state {
        case .serving where buffered > bounds.whileServing,
            .waitingForBody(verifying: true) where buffered >= bounds.whileVerifying:
            readHeld = true
            return .none
        case .closed:
            return .none
        default:
            return .read
        }
    }

    /// Graceful shutdown began. Handed on, the codec's handlers decide (the front passes the
    /// event on); with nothing in progress the connection closes now; otherwise after the answer.
    mutating func quiesce(bytesWaiting: Bool) -> Action {
        switch state {
        case .handedOn, .closed:
            return .none
        case .reading where !bytesWaiting:
            state = .closed
            return .close
        case .reading, .waitingForBody, .serving:
            closeWhenDone = true
            return .none
        }
    }

    /// The client left.
    mutating func inactive() -> Action {
        let serving = if case .serving = state { true } else { false }
        state = .closed
        return serving ? .abandonExchange : .none
    }

    /// Reading was held and may go on now (after a verification, or once handed on): clears it.
    mutating func resumeReading() -> Bool {
        guard readHeld else { return false }
        readHeld = false
        return true
    }

    private mutating func handOn(withCurrent: Bool) -> Action {
        state = .handedOn
        return .handOn(withCurrent: withCurrent)
    }
}

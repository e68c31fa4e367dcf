public import NIOCore

/// How long a client connection may take for each part of its requests, and idle between them.
public struct ClientTimeouts: Sendable, Equatable {
    /// From a request's first byte (or the end of the previous answer, when its bytes were already
    /// waiting) to the end of its head.
    public var head: TimeAmount
    /// From the head to the end of a `/v1` body (bounded by the request size limit). Other
    /// bodies (model uploads of any size) may take as long as they need, but not `idle` without
    /// a byte.
    public var body: TimeAmount
    /// Between requests on a kept-alive connection, and between reads of an unbounded body.
    public var idle: TimeAmount

    public init(head: TimeAmount = .seconds(15), body: TimeAmount = .seconds(60), idle: TimeAmount = .seconds(60)) {
        self.head = head
        self.body = body
        self.idle = idle
    }
}

/// One client connection's deadlines: a pure state machine, told what happened and when, that
/// says which deadline has passed. No timers here: a `DeadlineSweep` asks every connection of
/// its event loop every 250 ms, so a request costs a few field updates.
///
/// While an answer is being produced there is no deadline (the engine's first-byte and idle
/// timeouts bound that), so a long stream is never cut. Several requests may be in progress at
/// once (pipelining); the connection is idle only when all of them are answered.
struct ClientDeadlines {
    enum Expired: String, Equatable {
        case head
        case body
        case idle
    }

    let timeouts: ClientTimeouts
    /// Requests whose head has arrived and whose answer is not finished.
    private(set) var inProgress = 0
    /// The body being read: since when, and whether it is bounded (a `/v1` body).
    private var reading: (since: NIODeadline, bounded: Bool)?
    /// Bytes of a head that has not arrived whole yet, since when.
    private var headSince: NIODeadline?
    private var idleSince: NIODeadline
    private var lastRead: NIODeadline
    /// Bytes of a following request arrived while an answer was being written.
    private var nextRequestBytes = false

    init(timeouts: ClientTimeouts, now: NIODeadline) {
        self.timeouts = timeouts
        idleSince = now
        lastRead = now
    }

    /// Any bytes from the client.
    mutating func bytesReceived(now: NIODeadline) {
        lastRead = now
        if inProgress == 0, reading == nil, headSince == nil { headSince = now }
        if inProgress > 0, reading == nil { nextRequestBytes = true }
    }

    /// A request's head arrived whole; its body follows (`boundedBody`: a `/v1` body).
    mutating func headReceived(now: NIODeadline, boundedBody: Bool) {
        inProgress += 1
        headSince = nil
        nextRequestBytes = false
        reading = (now, boundedBody)
    }

    /// The request's body arrived whole (or it has none).
    mutating func bodyReceived() {
        reading = nil
    }

    /// A request counted by `headReceived` goes to another reader of this connection, which will
    /// count it again (the front hands it to the codec).
    mutating func handedOn() {
        inProgress = max(0, inProgress - 1)
        reading = nil
    }

    /// An answer was written whole. `bytesWaiting`: bytes of a further request already arrived.
    mutating func answerFinished(now: NIODeadline, bytesWaiting: Bool) {
        inProgress = max(0, inProgress - 1)
        guard inProgress == 0, reading == nil else { return }
        // Also when the next request's bytes came before the answer's end was recorded (the
        // client read the answer and wrote again before this side saw the end go out).
        if bytesWaiting || nextRequestBytes {
            nextRequestBytes = false
            headSince = now
        } else {
            headSince = nil
            idleSince = now
        }
    }

    /// The deadline that has passed at `now`, if any.
    func expired(now: NIODeadline) -> Expired? {
        if let reading {
            if reading.bounded { return now - reading.since >= timeouts.body ? .body : nil }
            return now - lastRead >= timeouts.idle ? .body : nil
        }
        if inProgress > 0 { return nil }
        if let headSince { return now - headSince >= timeouts.head ? .head : nil }
        return now - idleSince >= timeouts.idle ? .idle : nil
    }

    /// Whether the client may be told 408: nothing of an answer has been written, so one fits.
    var mayAnswer: Bool { inProgress == (reading == nil ? 0 : 1) }

    /// The request being answered is the one whose body is still arriving (answers go in order,
    /// and only the newest request can be mid-body): an answer written now, a refusal before the
    /// body was needed, is the connection's last, or the body's rest would be read to be thrown
    /// away.
    var answeringBeforeBody: Bool { reading != nil && inProgress == 1 }
}

/// A connection's deadlines and what to do when one passes: shared by the connection's two relay
/// handlers (the front sees every byte; the handler behind the codec sees heads, ends and the
/// router's answers once the front has handed the connection on). Used on its event loop only.
final class ClientConnectionDeadlines: SweepMember {
    var state: ClientDeadlines
    /// Called once when a deadline passes: answers 408 where it may and closes the connection.
    var onExpiry: ((ClientDeadlines.Expired, Bool) -> Void)?
    var sweepIndex: Int?

    init(timeouts: ClientTimeouts) {
        state = ClientDeadlines(timeouts: timeouts, now: .now())
    }

    /// The deadlines of every client connection of one event loop, checked every 250 ms while it
    /// has connections: deadlines are seconds long, so that is exact enough and costs nothing per
    /// request.
    static func sweep(on eventLoop: any EventLoop) -> DeadlineSweep<ClientConnectionDeadlines> {
        DeadlineSweep(
            eventLoop: eventLoop, interval: .milliseconds(250), passed: { $0.state.expired(now: $1) != nil },
            expired: { connection, now in
                guard let reason = connection.state.expired(now: now) else { return }
                connection.onExpiry?(reason, connection.state.mayAnswer)
            })
    }
}

import NIOCore
import Testing

@testable import GantryGateway

/// The direct relay's exchange with an engine as a state machine, told the time: every transition,
/// and the first-byte and idle deadlines, without sleeping.
@Suite("Direct relay: the exchange state machine")
struct ExchangeStateMachineTests {
    typealias Machine = ExchangeStateMachine
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    static func admitted(firstByte: TimeAmount = .seconds(10), idle: TimeAmount = .seconds(5)) -> Machine {
        var machine = Machine()
        #expect(machine.admitted(firstByteTimeout: firstByte, idleTimeout: idle) == .connect)
        return machine
    }

    @Test("a whole answer: connect, send, head, body, end; the first-byte deadline, then the idle one")
    func wholeAnswer() {
        var machine = Self.admitted()
        #expect(!machine.deadlinePassed(now: Self.start + .seconds(3600)), "no deadline while connecting")
        #expect(machine.connected(now: Self.start) == .send)
        #expect(!machine.deadlinePassed(now: Self.start + .milliseconds(9_999)))
        #expect(machine.deadlinePassed(now: Self.start + .seconds(10)), "the head is due within the first-byte timeout")
        #expect(machine.headReceived(streaming: false, now: Self.start + .seconds(2)) == .none)
        #expect(!machine.deadlinePassed(now: Self.start + .seconds(6)))
        #expect(machine.deadlinePassed(now: Self.start + .seconds(7)), "after the head, the idle timeout from the last read")
        machine.bodyReceived(now: Self.start + .seconds(6))
        #expect(!machine.deadlinePassed(now: Self.start + .seconds(10)), "each read moves the idle deadline")
        #expect(machine.engineEnded() == .finish)
        #expect(machine.isFinished)
        #expect(!machine.deadlinePassed(now: Self.start + .seconds(3600)))
        #expect(machine.clientClosed() == .none, "a client leaving after the answer changes nothing")
        #expect(machine.engineFailed(timedOut: false) == .none)
    }

    @Test("a refused connection is retried once on another instance; a second refusal is a 502")
    func retryAfterRefusedConnection() {
        var machine = Self.admitted()
        #expect(machine.connectFailed(poolFull: false) == .retry)
        #expect(machine.attempt == 2)
        #expect(machine.connectFailed(poolFull: false) == .fail(.unreachable))
        #expect(machine.isFinished)

        var recovered = Self.admitted()
        #expect(recovered.connectFailed(poolFull: false) == .retry)
        #expect(recovered.connected(now: Self.start) == .send)
        #expect(recovered.headReceived(streaming: true, now: Self.start) == .none)
        #expect(recovered.engineEnded() == .finish)

        var alone = Self.admitted()
        #expect(alone.connectFailed(poolFull: false) == .retry)
        #expect(alone.noInstanceToRetry() == .fail(.unreachable), "no other ready instance")
    }

    @Test("a full pool is answered at once, without a retry: the engine is not at fault")
    func poolFull() {
        var machine = Self.admitted()
        #expect(machine.connectFailed(poolFull: true) == .fail(.overloaded))
        #expect(machine.connected(now: Self.start) == .none, "a connection that comes late is not used")
    }

    @Test("a timeout before the head is no answer; after the head, a stream ends with an error event")
    func timeouts() {
        var silent = Self.admitted()
        _ = silent.connected(now: Self.start)
        #expect(silent.engineFailed(timedOut: true) == .fail(.noAnswer))

        var closed = Self.admitted()
        _ = closed.connected(now: Self.start)
        #expect(closed.engineFailed(timedOut: false) == .fail(.unreachable), "closed before its head")

        var stalledStream = Self.admitted()
        _ = stalledStream.connected(now: Self.start)
        _ = stalledStream.headReceived(streaming: true, now: Self.start)
        #expect(stalledStream.deadlinePassed(now: Self.start + .seconds(5)))
        #expect(stalledStream.engineFailed(timedOut: true) == .endStreamWithError(timedOut: true))
        #expect(stalledStream.engineFailed(timedOut: true) == .none, "ended once")

        var stalledAnswer = Self.admitted()
        _ = stalledAnswer.connected(now: Self.start)
        _ = stalledAnswer.headReceived(streaming: false, now: Self.start)
        #expect(stalledAnswer.engineFailed(timedOut: true) == .fail(.whileAnswering(timedOut: true)))

        var brokenStream = Self.admitted()
        _ = brokenStream.connected(now: Self.start)
        _ = brokenStream.headReceived(streaming: true, now: Self.start)
        #expect(brokenStream.engineFailed(timedOut: false) == .endStreamWithError(timedOut: false))
    }

    @Test("a client gone mid-stream, while connecting or before admission abandons the exchange, once")
    func clientGone() {
        var streaming = Self.admitted()
        _ = streaming.connected(now: Self.start)
        _ = streaming.headReceived(streaming: true, now: Self.start)
        streaming.bodyReceived(now: Self.start + .seconds(1))
        #expect(streaming.clientClosed() == .abandon)
        #expect(streaming.clientClosed() == .none)
        #expect(streaming.engineEnded() == .none, "the engine's end after the client left is not an answer")
        #expect(streaming.engineFailed(timedOut: false) == .none, "nor is its connection closing")
        #expect(!streaming.deadlinePassed(now: Self.start + .seconds(3600)))

        var connecting = Self.admitted()
        #expect(connecting.clientClosed() == .abandon)
        #expect(connecting.connected(now: Self.start) == .none)
        #expect(connecting.connectFailed(poolFull: false) == .none)

        var admitting = Machine()
        #expect(admitting.clientClosed() == .abandon)
        #expect(admitting.admitted(firstByteTimeout: .seconds(1), idleTimeout: .seconds(1)) == .none)
    }

    @Test("handed to the router or refused before admission: later events do nothing")
    func endedBeforeAdmission() {
        var machine = Machine()
        machine.endedBeforeAdmission()
        #expect(machine.isFinished)
        #expect(machine.admitted(firstByteTimeout: .seconds(1), idleTimeout: .seconds(1)) == .none)
        #expect(machine.clientClosed() == .none)

        var running = Self.admitted()
        running.endedBeforeAdmission()
        #expect(!running.isFinished, "after admission only the machine's own events end it")
    }

    @Test("events out of order are ignored: a head before the request is sent, a body before the head")
    func outOfOrder() {
        var machine = Self.admitted()
        #expect(machine.headReceived(streaming: true, now: Self.start) == .none)
        #expect(machine.state == .connecting(attempt: 1))
        machine.bodyReceived(now: Self.start)
        #expect(machine.engineEnded() == .none)
        #expect(machine.state == .connecting(attempt: 1))
    }
}

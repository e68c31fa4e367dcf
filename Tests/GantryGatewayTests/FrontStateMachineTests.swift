import Testing

@testable import GantryGateway

/// The relay front's connection as a state machine: every transition, without a socket.
@Suite("Direct relay: the front's connection state machine")
struct FrontStateMachineTests {
    typealias Machine = FrontStateMachine
    static let bounds = Machine.Bounds(whileServing: 64 * 1024, whileVerifying: 64 * 1024)

    static func reading() -> Machine { Machine(parses: true, bounds: bounds) }

    static func serving(closeAfter: Bool = false) -> Machine {
        var machine = reading()
        #expect(machine.headParsed(whole: true, closeAfter: closeAfter, caller: .remembered) == .startExchange)
        return machine
    }

    @Test("a whole request is served; bytes that arrive meanwhile wait, and are parsed after the answer")
    func keepAlive() {
        var machine = Self.reading()
        #expect(machine.bytesArrived() == .parse)
        #expect(machine.headParsed(whole: true, closeAfter: false, caller: .remembered) == .startExchange)
        #expect(machine.state == .serving(closeAfter: false))
        #expect(machine.bytesArrived() == .none, "pipelined bytes wait for the answer")
        #expect(machine.readRequested(buffered: 1000) == .read, "reading goes on: a client that leaves is seen")
        #expect(machine.readRequested(buffered: 70 * 1024) == .none, "held past the bound")
        #expect(machine.exchangeFinished() == .parse)
        #expect(machine.settled() == .read, "the held read resumes")
        #expect(machine.state == .reading)
    }

    @Test("a request that asked to close is answered, then the connection closes")
    func closeAfter() {
        var machine = Self.serving(closeAfter: true)
        #expect(machine.exchangeFinished() == .close)
        #expect(machine.settled() == .none)
        #expect(machine.bytesArrived() == .none)
    }

    @Test("hand-over to the codec: what the front does not read, or a request the router must answer, goes on for good")
    func handOver() {
        var notDirect = Self.reading()
        #expect(notDirect.notDirect() == .handOn(withCurrent: false))
        #expect(notDirect.isHandedOn)
        #expect(notDirect.bytesArrived() == .none)
        #expect(notDirect.headParsed(whole: true, closeAfter: false, caller: .remembered) == .none)

        var routed = Self.serving()
        _ = routed.readRequested(buffered: 70 * 1024)
        #expect(routed.exchangeHandedToRouter() == .handOn(withCurrent: true), "the request itself goes first")
        let resumed = routed.resumeReading()
        #expect(resumed, "a held read resumes once handed on")
        #expect(routed.exchangeFinished() == .none)

        var refused = Self.reading()
        #expect(refused.headParsed(whole: false, closeAfter: false, caller: .refused) == .handOn(withCurrent: false))

        var codecOnly = Machine(parses: false, bounds: Self.bounds)
        #expect(codecOnly.isHandedOn, "gateway.relay below full: the codec reads from the start")
        #expect(codecOnly.quiesce(bytesWaiting: false) == .none, "its handlers decide about shutdown")
    }

    @Test("a caller not known yet: its body waits at the bound until it is verified; refused, the router answers")
    func verification() {
        var machine = Self.reading()
        #expect(machine.headParsed(whole: false, closeAfter: false, caller: .unverified) == .verify)
        #expect(machine.readRequested(buffered: 10) == .read)
        #expect(machine.readRequested(buffered: 64 * 1024) == .none, "no more of an unverified body")
        #expect(machine.headParsed(whole: false, closeAfter: false, caller: .unverified) == .none, "verified once")
        #expect(machine.verified(true) == .parse)
        let resumed = machine.resumeReading()
        #expect(resumed)
        #expect(machine.verified(true) == .none, "an answer for no verification in progress")
        #expect(machine.headParsed(whole: true, closeAfter: false, caller: .remembered) == .startExchange)

        var refused = Self.reading()
        _ = refused.headParsed(whole: false, closeAfter: false, caller: .unverified)
        #expect(refused.verified(false) == .handOn(withCurrent: false))

        var known = Self.reading()
        #expect(known.headParsed(whole: false, closeAfter: false, caller: .remembered) == .none)
        #expect(known.readRequested(buffered: 1 << 20) == .read, "a known caller's body is read on")
    }

    @Test("graceful shutdown: idle closes now; a pipelined whole request is still served, then the close")
    func gracefulShutdown() {
        var idle = Self.reading()
        #expect(idle.quiesce(bytesWaiting: false) == .close)

        var pipelined = Self.serving()
        #expect(pipelined.quiesce(bytesWaiting: true) == .none)
        #expect(pipelined.closeWhenDone)
        #expect(pipelined.exchangeFinished() == .parse)
        #expect(pipelined.headParsed(whole: true, closeAfter: false, caller: .remembered) == .startExchange)
        #expect(pipelined.settled() == .none, "not while the pipelined request is served")
        #expect(pipelined.exchangeFinished() == .parse)
        #expect(pipelined.settled() == .close)

        var partial = Self.serving()
        _ = partial.quiesce(bytesWaiting: true)
        #expect(partial.exchangeFinished() == .parse)
        #expect(partial.headParsed(whole: false, closeAfter: false, caller: .remembered) == .none)
        #expect(partial.settled() == .close, "a request not whole yet is not waited for")

        var waitingBytes = Self.reading()
        #expect(waitingBytes.quiesce(bytesWaiting: true) == .none, "bytes of a request arrived: it is read first")
        #expect(waitingBytes.headParsed(whole: true, closeAfter: false, caller: .remembered) == .startExchange)
    }

    @Test("a client gone mid-exchange abandons it; later events do nothing")
    func clientGone() {
        var machine = Self.serving()
        #expect(machine.inactive() == .abandonExchange)
        #expect(machine.exchangeFinished() == .none)
        #expect(machine.exchangeHandedToRouter() == .none)
        #expect(machine.readRequested(buffered: 0) == .none)
        #expect(machine.quiesce(bytesWaiting: false) == .none)

        var idle = Self.reading()
        #expect(idle.inactive() == .none)
    }
}

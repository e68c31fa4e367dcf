import Testing

@testable import GantryGateway

/// The relay's handler behind the codec as a state machine: every transition, without a socket.
@Suite("Direct relay: the handler's connection state machine")
struct HandlerStateMachineTests {
    typealias Machine = HandlerStateMachine

    static func idle() -> Machine { Machine(maxRequestBytes: 1000, maxHeldBytes: 500) }

    /// A request the relay serves: head, body, end.
    static func serving() -> Machine {
        var machine = idle()
        #expect(machine.partArrived(.head(direct: true)) == .collect)
        #expect(machine.partArrived(.body(bytes: 100)) == .collect)
        #expect(machine.partArrived(.end) == .startExchange)
        #expect(machine.isServing)
        return machine
    }

    @Test("a request the relay may serve is collected whole, served, and the connection goes on")
    func serveDirectly() {
        var machine = Self.idle()
        #expect(machine.mayServeNext)
        #expect(machine.partArrived(.head(direct: true)) == .collect)
        #expect(machine.state == .collecting(bytes: 0))
        #expect(machine.partArrived(.body(bytes: 300)) == .collect)
        #expect(machine.partArrived(.body(bytes: 300)) == .collect)
        #expect(machine.state == .collecting(bytes: 600))
        #expect(machine.partArrived(.end) == .startExchange)
        #expect(!machine.mayServeNext)
        #expect(machine.exchangeFinished(closeAfter: false) == .resume)
        #expect(machine.state == .idle)
        #expect(machine.mayServeNext)
        #expect(machine.routerOwes == 0)
    }

    @Test("a request the relay does not serve goes to the router part by part, up to its end")
    func passOn() {
        var machine = Self.idle()
        #expect(machine.partArrived(.head(direct: false)) == .forward)
        #expect(machine.state == .passingOn)
        #expect(machine.routerOwes == 1)
        #expect(machine.partArrived(.body(bytes: 5000)) == .forward, "the router bounds what it reads")
        #expect(machine.partArrived(.end) == .forward)
        #expect(machine.state == .idle)
        #expect(machine.partArrived(.body(bytes: 1)) == .forward, "a stray part is the router's to refuse")
    }

    @Test("a body past the relay's bound: the router gets what was collected, then the rest (it answers 413)")
    func bodyTooLarge() {
        var machine = Self.idle()
        _ = machine.partArrived(.head(direct: true))
        #expect(machine.partArrived(.body(bytes: 900)) == .collect)
        #expect(machine.partArrived(.body(bytes: 101)) == .passCollected)
        #expect(machine.state == .passingOn)
        #expect(machine.routerOwes == 1)
        #expect(machine.partArrived(.body(bytes: 10)) == .forward)
        #expect(machine.partArrived(.end) == .forward)
        #expect(machine.state == .idle)
    }

    @Test("a second head before the first request ended is not HTTP: everything goes to the router")
    func headInsideBody() {
        var machine = Self.idle()
        _ = machine.partArrived(.head(direct: true))
        #expect(machine.partArrived(.head(direct: false)) == .passCollected)
        #expect(machine.state == .passingOn)
    }

    @Test("order is kept: while the router owes an answer, the next request goes to the router too")
    func routerAnswersFirst() {
        var machine = Self.idle()
        _ = machine.partArrived(.head(direct: false))
        _ = machine.partArrived(.end)
        #expect(!machine.mayServeNext, "the router owes the first answer")
        #expect(machine.partArrived(.head(direct: true)) == .forward, "even one the relay could serve")
        _ = machine.partArrived(.end)
        #expect(machine.routerOwes == 2)
        #expect(machine.routerAnswerEnded(beforeBody: false) == false)
        #expect(machine.routerAnswerEnded(beforeBody: false) == false)
        #expect(machine.routerOwes == 0)
        #expect(machine.mayServeNext)
        #expect(machine.routerAnswerEnded(beforeBody: false) == false)
        #expect(machine.routerOwes == 0, "never below zero")
    }

    @Test("a request the front's exchange handed to the router goes there, once")
    func frontHandedOn() {
        var machine = Self.idle()
        machine.nextRequestGoesToRouter()
        #expect(!machine.mayServeNext)
        #expect(machine.partArrived(.head(direct: true)) == .forward)
        _ = machine.partArrived(.end)
        _ = machine.routerAnswerEnded(beforeBody: false)
        #expect(machine.mayServeNext, "the next request may be served again")
    }

    @Test("pipelined parts wait during an exchange; reading goes on below the bound and is held above it")
    func pipelined() {
        var machine = Self.serving()
        #expect(machine.partArrived(.head(direct: false)) == .hold)
        #expect(machine.partArrived(.body(bytes: 200)) == .hold)
        #expect(machine.heldBytes == 200 + 2 * Machine.partOverhead)
        #expect(machine.readRequested() == true, "a client that leaves must still be seen")
        #expect(machine.partArrived(.body(bytes: 200)) == .hold)
        #expect(machine.readRequested() == false, "held past the bound")
        #expect(machine.readHeld)
        #expect(machine.resumed() == false, "not while the exchange runs")

        #expect(machine.exchangeFinished(closeAfter: false) == .resume)
        // The handler serves the held parts in order.
        machine.releaseHeld(.head(direct: false))
        #expect(machine.partArrived(.head(direct: true)) == .collect)
        machine.releaseHeld(.body(bytes: 200))
        #expect(machine.partArrived(.body(bytes: 200)) == .collect)
        machine.releaseHeld(.body(bytes: 200))
        #expect(machine.partArrived(.body(bytes: 200)) == .collect)
        #expect(machine.heldBytes == 0)
        #expect(machine.resumed() == true, "the held read goes on")
        #expect(!machine.readHeld)
        #expect(machine.resumed() == false, "once")
    }

    @Test("a held request served after the exchange starts another; reading stays held until that ends")
    func heldRequestServed() {
        var machine = Self.serving()
        _ = machine.partArrived(.head(direct: false))
        _ = machine.partArrived(.body(bytes: 600))
        _ = machine.partArrived(.end)
        #expect(machine.readRequested() == false)
        _ = machine.exchangeFinished(closeAfter: false)
        machine.releaseHeld(.head(direct: false))
        _ = machine.partArrived(.head(direct: true))
        machine.releaseHeld(.body(bytes: 600))
        #expect(machine.partArrived(.body(bytes: 600)) == .collect)
        machine.releaseHeld(.end)
        #expect(machine.partArrived(.end) == .startExchange)
        #expect(machine.resumed() == false, "a new exchange runs")
        #expect(machine.exchangeFinished(closeAfter: false) == .resume)
        #expect(machine.resumed() == true)
    }

    @Test("the exchange gives its request back: the router owes it, then the held parts follow")
    func exchangeHandsBack() {
        var machine = Self.serving()
        _ = machine.partArrived(.head(direct: true))
        #expect(machine.exchangeHandedToRouter() == true)
        #expect(machine.routerOwes == 1)
        #expect(machine.state == .idle)
        machine.releaseHeld(.head(direct: false))
        #expect(machine.partArrived(.head(direct: true)) == .forward, "after the router's answer, not before")
        #expect(machine.exchangeHandedToRouter() == false, "no exchange runs")
    }

    @Test("a request that asked to close is answered, then the connection closes")
    func closeAfterAnswer() {
        var machine = Self.serving()
        #expect(machine.exchangeFinished(closeAfter: true) == .close)
    }

    @Test("the client left mid-exchange: the exchange is told; what the exchange does next changes nothing")
    func clientLeft() {
        var machine = Self.serving()
        #expect(machine.clientLeft() == true, "the engine's request must be cancelled")
        #expect(machine.exchangeFinished(closeAfter: false) == .none)
        #expect(machine.exchangeHandedToRouter() == false, "nothing to hand a request to")

        var idle = Self.idle()
        #expect(idle.clientLeft() == false, "no exchange to tell")
    }

    @Test("the router answers before the body arrived: the head says close and the connection closes after it")
    func answerBeforeBody() {
        var machine = Self.idle()
        _ = machine.partArrived(.head(direct: false))
        #expect(machine.routerAnswerHead(beforeBody: true) == true, "connection: close goes in the head")
        // The rest of the body arrives while the answer is written: the close stands.
        _ = machine.partArrived(.end)
        #expect(machine.routerAnswerEnded(beforeBody: false) == true)
        _ = machine.partArrived(.head(direct: false))
        #expect(machine.routerAnswerHead(beforeBody: false) == false)
        #expect(machine.routerAnswerEnded(beforeBody: false) == false, "an ordinary answer keeps the connection")
    }
}

import GantryOrchestrator
import Testing

/// Every transition of the leader election, without a store or a clock.
@Suite struct LeadershipStateMachineTests {
    let start = ContinuousClock.now
    func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }
    func machine() -> LeadershipStateMachine {
        LeadershipStateMachine(duration: .seconds(3), stepDownMargin: .seconds(1))
    }

    @Test func leadsWhenTheStoreGivesTheLease() {
        var machine = machine()
        #expect(machine.answered(term: 4, sentAt: at(0), now: at(50)) == .startLeading(term: 4))
        #expect(machine.role == .leading(term: 4, validUntil: at(2000)))
        // Renewed: nothing to do, and the deadline moves from when the renewal was sent.
        #expect(machine.answered(term: 4, sentAt: at(1000), now: at(1100)) == LeadershipStateMachine.Action.none)
        #expect(machine.role == .leading(term: 4, validUntil: at(3000)))
    }

    @Test func followsWhileAnotherHoldsTheLease() {
        var machine = machine()
        #expect(machine.answered(term: nil, sentAt: at(0), now: at(10)) == LeadershipStateMachine.Action.none)
        #expect(!machine.isLeading)
    }

    @Test func stepsDownWhenAnotherTookTheLease() {
        var machine = machine()
        _ = machine.answered(term: 1, sentAt: at(0), now: at(10))
        #expect(
            machine.answered(term: nil, sentAt: at(1000), now: at(1010)) == .stepDown(reason: "another replica holds the lease"))
        #expect(!machine.isLeading)
    }

    @Test func keepsLeadingThroughStoreErrorsUntilTheLeaseMayEnd() {
        var machine = machine()
        _ = machine.answered(term: 1, sentAt: at(0), now: at(10))
        #expect(machine.failed(now: at(1000)) == LeadershipStateMachine.Action.none)
        #expect(machine.isLeading)
        // One renewal interval before the store could let another replica take it.
        #expect(machine.failed(now: at(2000)) == .stepDown(reason: "the lease was not renewed in time"))
        #expect(!machine.isLeading)
    }

    @Test func stepsDownOnTimeEvenWhileARenewalHangs() {
        var machine = machine()
        _ = machine.answered(term: 1, sentAt: at(0), now: at(10))
        #expect(machine.expire(now: at(1999)) == LeadershipStateMachine.Action.none)
        #expect(machine.expire(now: at(2000)) == .stepDown(reason: "the lease was not renewed in time"))
        // Said once.
        #expect(machine.expire(now: at(2100)) == LeadershipStateMachine.Action.none)
    }

    @Test func aLateAnswerDoesNotStartLeading() {
        var machine = machine()
        // Sent at 0, answered after the time it could prove anything for.
        #expect(machine.answered(term: 1, sentAt: at(0), now: at(2500)) == LeadershipStateMachine.Action.none)
        #expect(!machine.isLeading)
        _ = machine.answered(term: 1, sentAt: at(3000), now: at(3010))
        #expect(
            machine.answered(term: 1, sentAt: at(4000), now: at(6500)) == .stepDown(reason: "the lease was not renewed in time"))
    }

    @Test func aNewTermRestartsTheWork() {
        var machine = machine()
        _ = machine.answered(term: 1, sentAt: at(0), now: at(10))
        #expect(machine.answered(term: 3, sentAt: at(1000), now: at(1010)) == .restart(term: 3))
        #expect(machine.role == .leading(term: 3, validUntil: at(3000)))
    }

    @Test func resignsOnlyWhenLeading() {
        var machine = machine()
        #expect(machine.resign() == LeadershipStateMachine.Action.none)
        _ = machine.answered(term: 1, sentAt: at(0), now: at(10))
        #expect(machine.resign() == .stepDown(reason: "shutting down"))
        #expect(!machine.isLeading)
    }
}

import NIOCore

/// Something a `DeadlineSweep` watches: it keeps its place in the sweep's list, so leaving it is
/// a swap, not a search.
protocol SweepMember: AnyObject {
    var sweepIndex: Int? { get set }
}

/// Members of one event loop checked against their deadlines every `interval` while any is
/// watched: one scheduled task per loop instead of a timer scheduled and cancelled per request
/// or connection (two per request were about 2 % of the gateway's CPU). A deadline is noticed up
/// to one interval late. Used on its event loop only.
final class DeadlineSweep<Member: SweepMember> {
    let eventLoop: any EventLoop
    let interval: TimeAmount
    /// Whether the member's deadline has passed at the given time.
    private let passed: (Member, NIODeadline) -> Bool
    /// Called for each member whose deadline passed, after it has left the sweep.
    private let expired: (Member, NIODeadline) -> Void
    private var members: [Member] = []
    private var scheduled = false

    init(
        eventLoop: any EventLoop, interval: TimeAmount, passed: @escaping (Member, NIODeadline) -> Bool,
        expired: @escaping (Member, NIODeadline) -> Void
    ) {
        self.eventLoop = eventLoop
        self.interval = interval
        self.passed = passed
        self.expired = expired
    }

    func add(_ member: Member) {
        guard member.sweepIndex == nil else { return }
        member.sweepIndex = members.count
        members.append(member)
        if !scheduled { schedule() }
    }

    func remove(_ member: Member) {
        guard let index = member.sweepIndex else { return }
        member.sweepIndex = nil
        let last = members.removeLast()
        if index < members.count {
            members[index] = last
            last.sweepIndex = index
        }
    }

    private func schedule() {
        scheduled = true
        eventLoop.assumeIsolated().scheduleTask(in: interval) { self.sweep() }
    }

    private func sweep() {
        scheduled = false
        let now = NIODeadline.now()
        // Collected first: a member whose deadline passed leaves the list.
        for member in members.filter({ passed($0, now) }) {
            remove(member)
            expired(member, now)
        }
        if !members.isEmpty { schedule() }
    }
}

import NIOCore
import Testing

@testable import GantryGateway

/// The deadlines of a client connection as a state machine, told the time: no sleeping.
@Suite("Client connection deadlines")
struct ClientDeadlinesTests {
    let timeouts = ClientTimeouts(head: .seconds(10), body: .seconds(30), idle: .seconds(60))
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func at(_ seconds: Int64) -> NIODeadline { start + .seconds(seconds) }

    @Test("an idle connection expires after the idle timeout; a head's first byte starts the head deadline")
    func idleThenHead() {
        var deadlines = ClientDeadlines(timeouts: timeouts, now: start)
        #expect(deadlines.expired(now: at(59)) == nil)
        #expect(deadlines.expired(now: at(60)) == .idle)
        deadlines.bytesReceived(now: at(50))
        // Later bytes of the same head do not move the head's deadline.
        deadlines.bytesReceived(now: at(58))
        #expect(deadlines.expired(now: at(59)) == nil)
        #expect(deadlines.expired(now: at(60)) == .head)
        #expect(deadlines.mayAnswer)
    }

    @Test("a bounded body has a deadline from its head; an unbounded one only a limit on silence")
    func bodies() {
        var bounded = ClientDeadlines(timeouts: timeouts, now: start)
        bounded.bytesReceived(now: at(1))
        bounded.headReceived(now: at(2), boundedBody: true)
        bounded.bytesReceived(now: at(31))
        #expect(bounded.expired(now: at(31)) == nil)
        #expect(bounded.expired(now: at(32)) == .body, "bytes still arriving do not extend a /v1 body's deadline")
        #expect(bounded.mayAnswer)

        var upload = ClientDeadlines(timeouts: timeouts, now: start)
        upload.bytesReceived(now: at(1))
        upload.headReceived(now: at(1), boundedBody: false)
        for second in stride(from: Int64(30), through: 600, by: 30) {
            upload.bytesReceived(now: at(second))
            #expect(upload.expired(now: at(second + 59)) == nil, "an upload that keeps sending is never cut")
        }
        #expect(upload.expired(now: at(660)) == .body)
    }

    @Test("no deadline runs while an answer is produced; after it the idle one, or the head one if bytes wait")
    func answering() {
        var deadlines = ClientDeadlines(timeouts: timeouts, now: start)
        deadlines.bytesReceived(now: at(0))
        deadlines.headReceived(now: at(0), boundedBody: true)
        deadlines.bodyReceived()
        #expect(deadlines.expired(now: at(3600)) == nil, "a long stream is never cut")
        // A pipelined request's bytes arrive during the answer: its head is timed from the answer's end.
        deadlines.bytesReceived(now: at(100))
        #expect(deadlines.expired(now: at(3600)) == nil)
        deadlines.answerFinished(now: at(3600), bytesWaiting: true)
        #expect(deadlines.expired(now: at(3609)) == nil)
        #expect(deadlines.expired(now: at(3610)) == .head)

        // The next request's bytes arrive before the answer's end is recorded: still a head.
        var early = ClientDeadlines(timeouts: timeouts, now: start)
        early.headReceived(now: at(0), boundedBody: true)
        early.bodyReceived()
        early.bytesReceived(now: at(1))
        early.answerFinished(now: at(2), bytesWaiting: false)
        #expect(early.expired(now: at(12)) == .head)

        var quiet = ClientDeadlines(timeouts: timeouts, now: start)
        quiet.headReceived(now: at(0), boundedBody: true)
        quiet.bodyReceived()
        quiet.answerFinished(now: at(5), bytesWaiting: false)
        #expect(quiet.expired(now: at(64)) == nil)
        #expect(quiet.expired(now: at(65)) == .idle)
    }

    @Test("pipelined requests: idle only when every answer is written; a request handed on is counted once")
    func pipelinedAndHandedOn() {
        var deadlines = ClientDeadlines(timeouts: timeouts, now: start)
        deadlines.headReceived(now: at(0), boundedBody: true)
        deadlines.bodyReceived()
        deadlines.headReceived(now: at(0), boundedBody: true)
        deadlines.bodyReceived()
        deadlines.answerFinished(now: at(1), bytesWaiting: false)
        #expect(deadlines.expired(now: at(1000)) == nil, "the second request is still being answered")
        #expect(!deadlines.mayAnswer)
        deadlines.answerFinished(now: at(1000), bytesWaiting: false)
        #expect(deadlines.expired(now: at(1060)) == .idle)

        // The front counts a head, then hands the request to the codec, whose head counts it again.
        var handed = ClientDeadlines(timeouts: timeouts, now: start)
        handed.headReceived(now: at(0), boundedBody: true)
        handed.handedOn()
        handed.headReceived(now: at(0), boundedBody: false)
        handed.bodyReceived()
        handed.answerFinished(now: at(2), bytesWaiting: false)
        #expect(handed.inProgress == 0)
        #expect(handed.expired(now: at(62)) == .idle)

        // An answer before the body: the connection's last. Not when it answers an earlier
        // request while a later one's body arrives.
        var early = ClientDeadlines(timeouts: timeouts, now: start)
        early.headReceived(now: at(0), boundedBody: true)
        #expect(early.answeringBeforeBody)
        var pipelined = ClientDeadlines(timeouts: timeouts, now: start)
        pipelined.headReceived(now: at(0), boundedBody: false)
        pipelined.bodyReceived()
        pipelined.headReceived(now: at(0), boundedBody: true)
        #expect(!pipelined.answeringBeforeBody)
    }
}
